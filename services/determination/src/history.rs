//! A household's history (*riwayat perubahan*): every version of its record, each with
//! who decided it, when, why and what changed field by field; the households behind a
//! month's diff, by name, with the versions that made each change; and what moved a
//! household's decile since the month before.

use dtks_platform::auth::Claims;
use dtks_platform::auth::scope_covers;
use dtks_platform::db::stmt;
use dtks_platform::{audit, fields};
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::*;
use prost::Message;
use sea_orm::ConnectionTrait;
use tonic::Status;

use crate::error::Result;
use crate::read::{household_id, read_ahead, two_months};
use crate::registry::{Named, compare, entries};
use crate::run::Api;

/// The largest page of named changes.
const MAX_BATCH: u32 = 5_000;

const VERSION_COLUMNS: &str = "household_id, version, region_code, valid_from, kind, change_type,
    coalesce(reason, removal_reason) AS reason, proposal_id, case_id, decided_by, household IS NULL AS removed, removal_code";

/// One stored version, with its record when asked for.
struct Stored {
    household_id: uuid::Uuid,
    version: HouseholdVersion,
    household: Option<pb::Household>,
}

fn stored(r: &sea_orm::QueryResult, with_record: bool) -> Result<Stored> {
    let valid_from: chrono::DateTime<chrono::Utc> = r.try_get("", "valid_from")?;
    let id = |c: &str| -> Result<String> {
        Ok(r.try_get::<Option<uuid::Uuid>>("", c)?
            .map(|u| u.to_string())
            .unwrap_or_default())
    };
    let household = if with_record {
        r.try_get::<Option<Vec<u8>>>("", "household")?
            .map(|b| pb::Household::decode(b.as_slice()))
            .transpose()?
    } else {
        None
    };
    Ok(Stored {
        household_id: r.try_get("", "household_id")?,
        household,
        version: HouseholdVersion {
            // Versions below zero were recovered from snapshots older than the
            // registry's history; they have no number of their own.
            version: r.try_get::<i64>("", "version")?.max(0) as u64,
            valid_from: Some(std::time::SystemTime::from(valid_from).into()),
            region_code: r.try_get("", "region_code")?,
            kind: i32::from(r.try_get::<Option<i16>>("", "kind")?.unwrap_or_default()),
            change_type: i32::from(
                r.try_get::<Option<i16>>("", "change_type")?
                    .unwrap_or_default(),
            ),
            reason: r
                .try_get::<Option<String>>("", "reason")?
                .unwrap_or_default(),
            proposal_id: id("proposal_id")?,
            case_id: id("case_id")?,
            decided_by: r
                .try_get::<Option<String>>("", "decided_by")?
                .unwrap_or_default(),
            removed: r.try_get("", "removed")?,
            changes: Vec::new(),
            removal_reason: i32::from(
                r.try_get::<Option<i16>>("", "removal_code")?
                    .unwrap_or_default(),
            ),
        },
    })
}

/// The versions of each household in `(after, upto]`, oldest first, without records.
async fn versions_between(
    db: &impl ConnectionTrait,
    ranges: &[(uuid::Uuid, i64, i64)],
) -> Result<std::collections::HashMap<uuid::Uuid, Vec<HouseholdVersion>>> {
    let ids: Vec<uuid::Uuid> = ranges.iter().map(|r| r.0).collect();
    let after: Vec<i64> = ranges.iter().map(|r| r.1).collect();
    let upto: Vec<i64> = ranges.iter().map(|r| r.2).collect();
    let rows = db
        .query_all_raw(stmt(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM registry_versions v
                 JOIN unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS u (id, after, upto)
                   ON v.household_id = u.id AND v.version > u.after AND v.version <= u.upto
                 ORDER BY v.household_id, v.valid_from, v.version"
            ),
            [ids.into(), after.into(), upto.into()],
        ))
        .await?;
    let mut out: std::collections::HashMap<uuid::Uuid, Vec<HouseholdVersion>> =
        std::collections::HashMap::new();
    for r in &rows {
        let s = stored(r, false)?;
        out.entry(s.household_id).or_default().push(s.version);
    }
    Ok(out)
}

/// The region a request names, held to the caller's: empty names the caller's own
/// (the country for a national officer).
pub(crate) fn region_asked(who: &Claims, asked: &str) -> Result<String> {
    let region = if asked.is_empty() {
        who.region.clone()
    } else {
        asked.to_owned()
    };
    if !who.region.is_empty() {
        who.require_region(&region)?;
    }
    Ok(region)
}

impl Api {
    /// Every version of a household, oldest first, each against the one before.
    pub(crate) async fn get_household_history(
        &self,
        who: &Claims,
        req: &GetHouseholdHistoryRequest,
    ) -> Result<HouseholdHistory> {
        let id = household_id(&req.household_id)?;
        let rows = self
            .db
            .query_all_raw(stmt(
                &format!(
                    "SELECT {VERSION_COLUMNS}, household FROM registry_versions
                     WHERE household_id = $1 ORDER BY valid_from, version"
                ),
                [id.into()],
            ))
            .await?;
        let versions = rows
            .iter()
            .map(|r| stored(r, true))
            .collect::<Result<Vec<_>>>()?;
        // The household is read where it is now: a household that moved is no longer
        // its old region's to read.
        let Some(now) = versions.last() else {
            return Err(Status::not_found("the household has never been in DTKS").into());
        };
        who.require_region(&now.version.region_code)?;
        audit::record(&self.db, who, "determination.GetHouseholdHistory", &[id]).await?;
        let mut last: Option<&pb::Household> = None;
        let mut out = Vec::with_capacity(versions.len());
        for s in &versions {
            let mut version = s.version.clone();
            // The first record, and a removal, are whole: a change lists its fields.
            if let (Some(before), Some(after)) = (last, s.household.as_ref()) {
                version.changes = fields::changes("dtks.common.v1.Household", before, after)
                    .into_iter()
                    .filter(|c| c.field != "household_id")
                    .map(|c| FieldChange {
                        field: c.field,
                        before: c.before,
                        after: c.after,
                    })
                    .collect();
            }
            last = s.household.as_ref().or(last);
            out.push(version);
        }
        Ok(HouseholdHistory {
            household_id: id.to_string(),
            versions: out,
        })
    }

    /// The households behind the diff of two months, by name, in household id order,
    /// within the caller's region.
    pub(crate) async fn stream_snapshot_changes(
        &self,
        who: &Claims,
        req: &StreamSnapshotChangesRequest,
    ) -> Result<tonic::codegen::BoxStream<SnapshotChangesPage>> {
        let (from, to) = two_months(req.from.as_ref(), req.to.as_ref())?;
        let region = region_asked(who, &req.region_code)?;
        let (early, late) = (self.determined(from).await?, self.determined(to).await?);
        audit::record(
            &self.db,
            who,
            "determination.StreamSnapshotChanges",
            &[
                format!("{:04}-{:02}..{:04}-{:02}", from.0, from.1, to.0, to.1),
                if region.is_empty() {
                    "national".to_owned()
                } else {
                    region.clone()
                },
            ],
        )
        .await?;
        let mut named = Vec::new();
        if early.0 != late.0 {
            let mut conn = self.db.get_postgres_connection_pool().acquire().await?;
            let old = entries(&mut conn, early.0).await?;
            let new = entries(&mut conn, late.0).await?;
            compare(&mut conn, &old, &new, Some(&mut named)).await?;
        }
        named.retain(|n| req.decile_moves || n.changed || n.before.is_none() || n.after.is_none());
        let batch = req.batch_size.clamp(1, MAX_BATCH) as usize;
        let (db, watermarks) = (self.db.clone(), (early.1, late.1));
        let snapshots = (early.0, late.0);
        let pages = futures::stream::unfold(named.into_iter(), move |mut rest| {
            let (db, region) = (db.clone(), region.clone());
            async move {
                loop {
                    let chunk: Vec<Named> = rest.by_ref().take(batch).collect();
                    if chunk.is_empty() {
                        return None;
                    }
                    match page(&db, &chunk, snapshots, watermarks, &region).await {
                        Err(e) => return Some((Err(Status::from(e)), Vec::new().into_iter())),
                        Ok(changes) if changes.is_empty() => continue,
                        Ok(changes) => return Some((Ok(SnapshotChangesPage { changes }), rest)),
                    }
                }
            }
        });
        Ok(Box::pin(read_ahead(pages)))
    }

    /// The snapshot that stands for a determined month, and the registry change it
    /// includes up to.
    async fn determined(&self, period: (i32, i32)) -> Result<(uuid::Uuid, i64)> {
        let snap = self
            .snapshot(&self.db, period)
            .await?
            .ok_or(crate::error::Error::NotDetermined)?;
        let id = crate::store::standing_of(&self.db, &snap).await?;
        Ok((id, snap.input_watermark as i64))
    }

    /// What moved a household's decile since the month before `period` (whose rows
    /// `standing` holds): the month, its decile then (0 when it was not in DTKS), and
    /// the versions of its record between.
    pub(crate) async fn since_month_before(
        &self,
        household: uuid::Uuid,
        period: (i32, i32),
        standing: uuid::Uuid,
    ) -> Result<(Option<pb::Period>, u32, Vec<HouseholdVersion>)> {
        let Some(before) = u32::try_from(period.1)
            .ok()
            .and_then(|m| dtks_domain::Period::new(period.0, m))
            .and_then(dtks_domain::Period::previous)
        else {
            return Ok((None, 0, Vec::new()));
        };
        let before = (before.year(), before.month() as i32);
        let row_in = |snapshot: uuid::Uuid| {
            self.db.query_one_raw(stmt(
                "SELECT version, decile FROM snapshot_rows WHERE snapshot_id = $1 AND household_id = $2",
                [snapshot.into(), household.into()],
            ))
        };
        let now = match row_in(standing).await? {
            Some(r) => r.try_get::<i64>("", "version")?,
            None => return Ok((None, 0, Vec::new())),
        };
        let Ok((snapshot, watermark)) = self.determined(before).await else {
            return Ok((None, 0, Vec::new()));
        };
        let (after, decile) = match row_in(snapshot).await? {
            Some(r) => (
                r.try_get::<i64>("", "version")?,
                r.try_get::<i16>("", "decile")?,
            ),
            None => (watermark, 0),
        };
        let mut versions = versions_between(&self.db, &[(household, after, now)]).await?;
        Ok((
            Some(pb::Period {
                year: before.0,
                month: before.1,
            }),
            u32::try_from(decile).unwrap_or_default(),
            versions.remove(&household).unwrap_or_default(),
        ))
    }
}

/// One page of named changes: each household's region and deciles, and the versions
/// between its two months; those outside `region` left out.
async fn page(
    db: &impl ConnectionTrait,
    chunk: &[Named],
    (early, late): (uuid::Uuid, uuid::Uuid),
    (from, to): (i64, i64),
    region: &str,
) -> Result<Vec<HouseholdChange>> {
    let regions = |snapshot: uuid::Uuid, ids: Vec<uuid::Uuid>| async move {
        let rows = db
            .query_all_raw(stmt(
                "SELECT household_id, region_code FROM snapshot_rows WHERE snapshot_id = $1 AND household_id = ANY($2)",
                [snapshot.into(), ids.into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<uuid::Uuid>("", "household_id")?,
                    r.try_get::<String>("", "region_code")?,
                ))
            })
            .collect::<Result<std::collections::HashMap<_, _>>>()
    };
    let id_of = |n: &Named| uuid::Uuid::from_u128(n.after.or(n.before).map_or(0, |e| e.id));
    // Where each stands in `to`, or stood in `from` when removed.
    let (present, gone): (Vec<&Named>, Vec<&Named>) = chunk.iter().partition(|n| n.after.is_some());
    let now_in = regions(late, present.into_iter().map(id_of).collect()).await?;
    let was_in = regions(early, gone.into_iter().map(id_of).collect()).await?;
    let kept: Vec<(&Named, String)> = chunk
        .iter()
        .filter_map(|n| {
            let id = id_of(n);
            let region = now_in.get(&id).or_else(|| was_in.get(&id))?.clone();
            Some((n, region))
        })
        .filter(|(_, r)| scope_covers(region, r))
        .collect();
    let ranges: Vec<(uuid::Uuid, i64, i64)> = kept
        .iter()
        .map(|(n, _)| {
            (
                id_of(n),
                n.before.map_or(from, |e| e.version),
                n.after.map_or(to, |e| e.version),
            )
        })
        .collect();
    let mut versions = versions_between(db, &ranges).await?;
    Ok(kept
        .into_iter()
        .map(|(n, region_code)| {
            let id = id_of(n);
            let change = match (n.before, n.after) {
                (None, _) => ChangeKind::Added,
                (_, None) => ChangeKind::Removed,
                _ if n.changed => ChangeKind::Changed,
                _ => ChangeKind::DecileMoved,
            };
            HouseholdChange {
                household_id: id.to_string(),
                region_code,
                change: change as i32,
                decile_before: n.before.map_or(0, |e| u32::from(e.decile)),
                decile_after: n.after.map_or(0, |e| u32::from(e.decile)),
                versions: versions.remove(&id).unwrap_or_default(),
            }
        })
        .collect())
}
