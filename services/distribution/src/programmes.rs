//! Programmes (*program bansos*): a code, a name, an eligibility rule (see
//! [`crate::rules`]), quotas per regency and where the criteria come from; versioned —
//! every change is a new version, and every version is kept.
//!
//! The definitions the service ships (`programmes.json`: PKH, BPNT/Sembako, PBI-JKN, KIP,
//! RS-RTLH) are saved at start when a programme of that code does not exist yet; a
//! ministry changes them with `SaveProgramme` like any other.

use std::collections::HashMap;

use dtks_platform::auth::Claims;
use dtks_platform::grpc;
use dtks_proto::distribution::v1::{ListProgrammesRequest, ListProgrammesResponse, Programme};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tonic::Status;

use crate::Distribution;
use crate::error::Result;
use crate::store::programmes as store;

use dtks_eligibility::rules::Rule;

use dtks_eligibility::shipped;

/// Saves each shipped programme that does not exist yet.
pub async fn seed(db: &DatabaseConnection) -> anyhow::Result<()> {
    for p in shipped()? {
        Rule::compile(&p.rule).map_err(|e| anyhow::anyhow!("shipped programme {}: {e}", p.code))?;
        let txn = db.begin().await?;
        let shipped = store::Model {
            code: p.code.clone(),
            name: p.name,
            version: 1,
            source: p.source,
            rule: p.rule,
            quotas: serde_json::json!({}),
        };
        if store::add(&txn, shipped).await? {
            store::keep_version(&txn, &p.code, "shipped").await?;
        }
        txn.commit().await?;
    }
    Ok(())
}

/// A programme as the API answers it.
fn programme(row: store::Model) -> Result<Programme> {
    Ok(Programme {
        code: row.code,
        name: row.name,
        rule: row.rule,
        version: row.version as u32,
        quotas: serde_json::from_value::<HashMap<String, u64>>(row.quotas)?,
        source: row.source,
    })
}

impl Distribution {
    /// Every programme with its rule and quotas.
    pub(crate) async fn list_programmes(
        &self,
        _who: &Claims,
        _req: &ListProgrammesRequest,
    ) -> Result<ListProgrammesResponse> {
        let rows = store::all(&self.db).await?;
        let programmes = rows.into_iter().map(programme).collect::<Result<_>>()?;
        Ok(ListProgrammesResponse { programmes })
    }
}

/// A programme's current version and its compiled rule.
pub async fn current(db: &impl ConnectionTrait, code: &str) -> Result<(Programme, Rule)> {
    let row = store::find(db, code, false).await?.ok_or_else(|| {
        grpc::invalid_field("programme_code", format!("unknown programme {code}"))
    })?;
    let programme = programme(row)?;
    let rule = Rule::compile(&programme.rule).map_err(|e| {
        Status::failed_precondition(format!("programme {code}'s rule no longer compiles: {e}"))
    })?;
    Ok((programme, rule))
}

/// Checks a programme as submitted; every problem is named with its field.
fn check(p: &Programme) -> Result<()> {
    let mut v = dtks_domain::Violations::default();
    let code_ok = !p.code.is_empty()
        && p.code.len() <= 20
        && p.code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    if !code_ok {
        v.push(
            "code",
            "1 to 20 capital letters, digits and hyphens, such as PKH or PBI-JKN",
        );
    }
    if p.name.trim().is_empty() || p.name.chars().count() > 200 {
        v.push("name", "must name the programme (1 to 200 characters)");
    }
    if p.source.trim().is_empty() {
        v.push("source", "must say where the criteria come from");
    }
    if let Err(e) = Rule::compile(&p.rule) {
        v.push("rule", e.to_string());
    }
    for region in p.quotas.keys() {
        let regency = dtks_domain::RegionCode::parse(region)
            .is_ok_and(|c| c.level() == dtks_domain::RegionLevel::Regency);
        if !regency {
            v.push(
                format!("quotas[{region}]"),
                "quotas are per regency (kabupaten/kota), such as 32.04",
            );
        }
    }
    if v.is_empty() {
        Ok(())
    } else {
        Err(grpc::invalid_argument(&v).into())
    }
}

impl Distribution {
    /// Saves a programme: a new one at version 1, a changed one at its next version; the
    /// same definition again changes nothing.
    pub async fn save_programme(&self, who: &Claims, p: &Programme) -> Result<Programme> {
        let db = &self.db;
        check(p)?;
        let quotas = serde_json::to_value(&p.quotas)?;
        let txn = db.begin().await?;
        let before = match store::find(&txn, &p.code, true).await? {
            Some(row) => Some((row.version, programme(row)?)),
            None => None,
        };
        let submitted = Programme {
            code: p.code.clone(),
            name: p.name.trim().to_owned(),
            rule: p.rule.clone(),
            version: 0,
            quotas: p.quotas.clone(),
            source: p.source.trim().to_owned(),
        };
        let version = match &before {
            Some((_, b))
                if Programme {
                    version: 0,
                    ..b.clone()
                } == submitted =>
            {
                return Ok(b.clone());
            }
            Some((version, _)) => version + 1,
            None => 1,
        };
        let row = store::Model {
            code: submitted.code.clone(),
            name: submitted.name,
            version,
            source: submitted.source,
            rule: submitted.rule,
            quotas,
        };
        if before.is_some() {
            store::change(&txn, row).await?;
        } else if !store::add(&txn, row).await? {
            return Err(
                Status::aborted("the programme was created meanwhile; save it again").into(),
            );
        }
        store::keep_version(&txn, &p.code, &who.sub).await?;
        let (saved, _) = current(&txn, &p.code).await?;
        txn.commit().await?;
        Ok(saved)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_programme_has_a_rule_that_compiles_and_a_source() {
        let shipped = super::shipped().expect("programmes.json parses");
        let codes: Vec<&str> = shipped.iter().map(|p| p.code.as_str()).collect();
        for code in ["PKH", "BPNT", "PBI-JKN", "KIP", "RS-RTLH"] {
            assert!(codes.contains(&code), "{code} is shipped");
        }
        for p in &shipped {
            let rule = dtks_eligibility::rules::Rule::compile(&p.rule)
                .unwrap_or_else(|e| panic!("{}: {e}", p.code));
            assert!(!p.source.trim().is_empty(), "{}", p.code);
            // The sample household (decile 1, a toddler, earth floor, owned house, no
            // insurance) qualifies for every shipped programme but KIP (no school child).
            let sample = dtks_eligibility::household::RuleHousehold::sample();
            assert_eq!(rule.eligible(&sample), Ok(p.code != "KIP"), "{}", p.code);
        }
    }
}
