//! The extract of an approved data request: the households of a determined month in the
//! request's region, each cut down to the kinds of data the request was approved for,
//! with NIK and names masked for requesters who may not see them (the public). Before
//! every batch the request is checked again, so that a revocation or the end of the
//! period of use stops a delivery between two batches. Every delivery and batch is
//! audited as list deliveries are.

use dtks_platform::auth::Claims;
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::{RankedHousehold, StreamSnapshotRequest};
use dtks_proto::distribution::v1::{
    DataKind, Recipient, RecipientBatch, RequestStatus, RequesterKind, StreamExtractRequest,
};
use sea_orm::DatabaseConnection;
use tonic::Status;

use crate::Distribution;
use crate::error::Result;

use crate::delivery::{Audit, Batches, Source, Start, batches, cursor};
use crate::requests::{self, Stored};

/// `3204051203800001` → `320405********01`: the region digits and the last two.
pub fn mask_nik(nik: &str) -> String {
    if nik.len() == 16 && nik.is_ascii() {
        format!("{}********{}", &nik[..6], &nik[14..])
    } else if nik.is_empty() {
        String::new()
    } else {
        "*".repeat(nik.chars().count())
    }
}

/// `Asep Sunandar` → `A*** S*******`: each word's first letter.
pub fn mask_name(name: &str) -> String {
    name.split_whitespace()
        .map(|w| {
            let mut chars = w.chars();
            let first = chars.next().map(String::from).unwrap_or_default();
            first + &"*".repeat(chars.count())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A household cut down to `kinds`, identity masked when `masked`.
pub fn minimise(h: &pb::Household, kinds: &[DataKind], masked: bool) -> pb::Household {
    let has = |k: DataKind| kinds.contains(&k);
    let identity = has(DataKind::Identity);
    let mut out = pb::Household {
        household_id: h.household_id.clone(),
        ..Default::default()
    };
    out.address = if has(DataKind::Address) {
        h.address.clone()
    } else {
        h.address.as_ref().map(|a| pb::Address {
            village_code: a.village_code.clone(),
            ..Default::default()
        })
    };
    if has(DataKind::Address) {
        out.location = h.location;
    }
    if has(DataKind::Dwelling) {
        out.dwelling = h.dwelling;
    }
    if has(DataKind::SocioEconomic) {
        out.assets = h.assets;
        out.assistance_history = h.assistance_history.clone();
        out.psks_potential = h.psks_potential.clone();
    }
    out.families = h
        .families
        .iter()
        .map(|f| pb::Family {
            kk_number: match (identity, masked) {
                (true, false) => f.kk_number.clone(),
                (true, true) => mask_nik(&f.kk_number),
                (false, _) => String::new(),
            },
            members: f
                .members
                .iter()
                .map(|p| {
                    let mut m = pb::Person::default();
                    if identity {
                        m.nik = if masked {
                            mask_nik(&p.nik)
                        } else {
                            p.nik.clone()
                        };
                        m.full_name = if masked {
                            mask_name(&p.full_name)
                        } else {
                            p.full_name.clone()
                        };
                    }
                    if has(DataKind::Demographic) {
                        m.birth_place = p.birth_place.clone();
                        m.birth_date = p.birth_date;
                        m.sex = p.sex;
                        m.marital_status = p.marital_status;
                        m.relationship = p.relationship;
                        m.deceased = p.deceased;
                    }
                    if has(DataKind::SocioEconomic) {
                        m.education = p.education;
                        m.school_status = p.school_status;
                        m.work_status = p.work_status;
                        m.occupation = p.occupation.clone();
                        m.sector = p.sector.clone();
                        m.monthly_income = p.monthly_income;
                        m.skills = p.skills.clone();
                        m.special_groups = p.special_groups.clone();
                    }
                    if has(DataKind::Health) {
                        m.health = p.health;
                    }
                    m
                })
                .collect(),
        })
        .collect();
    out
}

/// Who may see NIK and names unmasked: every requester but the public.
fn sees_identity(kind: RequesterKind) -> bool {
    kind != RequesterKind::Public
}

fn recipient(h: RankedHousehold, request: &Stored) -> Recipient {
    let kinds = &request.data_kinds;
    let masked = !sees_identity(request.kind);
    let record = h.household.unwrap_or_default();
    let head = record
        .families
        .iter()
        .flat_map(|f| f.members.iter())
        .find(|p| p.relationship == pb::Relationship::Head as i32);
    let (head_nik, head_name) = match (kinds.contains(&DataKind::Identity), head) {
        (true, Some(p)) if masked => (mask_nik(&p.nik), mask_name(&p.full_name)),
        (true, Some(p)) => (p.nik.clone(), p.full_name.clone()),
        _ => (String::new(), String::new()),
    };
    let rank = kinds.contains(&DataKind::WelfareRank);
    let record_kinds = [
        DataKind::Address,
        DataKind::Demographic,
        DataKind::SocioEconomic,
        DataKind::Dwelling,
        DataKind::Health,
        DataKind::Identity,
    ];
    Recipient {
        household_id: h.household_id,
        region_code: h.region_code,
        national_rank: if rank { h.national_rank } else { 0 },
        decile: if rank { h.decile } else { 0 },
        head_nik,
        head_name,
        household: record_kinds
            .iter()
            .any(|k| kinds.contains(k))
            .then(|| minimise(&record, kinds, masked)),
    }
}

pub type Determination =
    dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            dtks_platform::auth::BearerToken,
        >,
    >;

struct Extract {
    db: DatabaseConnection,
    audit: Audit,
    determination: Determination,
    request_id: uuid::Uuid,
    period: pb::Period,
    batch: usize,
    after: i64,
    done: bool,
    pages: Option<tonic::Streaming<dtks_proto::determination::v1::SnapshotPage>>,
}

impl Source for Extract {
    async fn next(&mut self) -> Result<Option<RecipientBatch>> {
        if self.done {
            return Ok(None);
        }
        // Still approved, inside its period, handed over — at every batch.
        let request = requests::deliverable(&self.db, self.request_id).await?;
        // One stream of the month's pages for the whole delivery, read a page a batch.
        if self.pages.is_none() {
            self.pages = Some(
                self.determination
                    .clone()
                    .stream_snapshot(StreamSnapshotRequest {
                        period: Some(self.period),
                        region_code: request.region_code.clone(),
                        max_decile: 10,
                        batch_size: self.batch as u32,
                        after_rank: self.after as u64,
                    })
                    .await?
                    .into_inner(),
            );
        }
        let page = match self.pages.as_mut() {
            Some(pages) => pages.message().await?,
            None => None,
        };
        let households = page.map(|p| p.households).unwrap_or_default();
        if households.is_empty() {
            self.audit.finish().await?;
            self.done = true;
            return Ok(None);
        }
        let last = households
            .last()
            .map_or(self.after, |h| h.national_rank as i64);
        let n = households.len() as i64;
        let batch = RecipientBatch {
            recipients: households
                .into_iter()
                .map(|h| recipient(h, &request))
                .collect(),
            cursor: cursor(last),
        };
        self.audit.batch(self.after + 1, last, n).await?;
        self.after = last;
        Ok(Some(batch))
    }
}

impl Distribution {
    /// Opens the delivery of a request's extract to the officer who filed it.
    pub(crate) async fn stream_extract(
        &self,
        who: &Claims,
        req: &StreamExtractRequest,
    ) -> Result<Batches> {
        let (db, signal, determination) = (&self.db, &self.outbox, &self.determination);
        let start = Start::of(
            "request_id",
            &req.request_id,
            &req.cursor,
            req.batch_size,
            "households",
        )?;
        let request_id = start.id;
        let (year, month) = dtks_platform::convert::period_key(req.period.as_ref())?;
        let request = requests::deliverable(db, request_id).await?;
        if !request.filed_by(who) {
            return Err(Status::not_found(format!("no data request {request_id}")).into());
        }
        debug_assert_eq!(request.status, RequestStatus::Approved);
        let audit = Audit::open(db, signal, who, (None, Some(request_id)), &req.cursor).await?;
        Ok(batches(Extract {
            db: db.clone(),
            audit,
            determination: determination.clone(),
            request_id,
            period: pb::Period { year, month },
            batch: start.batch,
            after: start.after,
            done: false,
            pages: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn household() -> pb::Household {
        pb::Household {
            household_id: "h".into(),
            address: Some(pb::Address {
                village_code: "32.04.05.2001".into(),
                street: "Jl. Melati 4".into(),
                ..Default::default()
            }),
            families: vec![pb::Family {
                kk_number: "3204050101000001".into(),
                members: vec![pb::Person {
                    nik: "3204051203800001".into(),
                    full_name: "Asep Sunandar".into(),
                    monthly_income: 900_000,
                    relationship: pb::Relationship::Head as i32,
                    health: Some(pb::Health {
                        chronic_illness: true,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            }],
            dwelling: Some(pb::Dwelling::default()),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_approved_kinds_leave_and_the_public_sees_identity_masked() {
        let h = household();
        let out = minimise(&h, &[DataKind::Identity], false);
        let p = &out.families[0].members[0];
        assert_eq!(
            (p.nik.as_str(), p.full_name.as_str()),
            ("3204051203800001", "Asep Sunandar")
        );
        assert_eq!(p.monthly_income, 0);
        assert!(p.health.is_none() && out.dwelling.is_none());
        let address = out.address.expect("village kept");
        assert_eq!(
            (address.village_code.as_str(), address.street.as_str()),
            ("32.04.05.2001", "")
        );
        let out = minimise(&h, &[DataKind::Identity, DataKind::SocioEconomic], true);
        let p = &out.families[0].members[0];
        assert_eq!(
            (p.nik.as_str(), p.full_name.as_str()),
            ("320405********01", "A*** S*******")
        );
        assert_eq!(out.families[0].kk_number, "320405********01");
        assert_eq!(p.monthly_income, 900_000);
        let out = minimise(&h, &[DataKind::Health], false);
        let p = &out.families[0].members[0];
        assert!(p.nik.is_empty() && p.full_name.is_empty() && out.families[0].kk_number.is_empty());
        assert!(p.health.as_ref().is_some_and(|h| h.chronic_illness));
    }
}
