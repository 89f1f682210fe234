//! Programmes (*program bansos*): a code, a name, an eligibility rule (see
//! [`crate::rules`]), quotas per regency and where the criteria come from; versioned —
//! every change is a new version, and every version is kept.
//!
//! The definitions the service ships (`programmes.json`: PKH, BPNT/Sembako, PBI-JKN, KIP,
//! RS-RTLH) are saved at start when a programme of that code does not exist yet; a
//! ministry changes them with `SaveProgramme` like any other.

use std::collections::HashMap;

use dtks_platform::auth::Claims;
use dtks_platform::db::stmt;
use dtks_platform::grpc;
use dtks_proto::distribution::v1::{ListProgrammesRequest, ListProgrammesResponse, Programme};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tonic::Status;

use crate::Distribution;
use crate::error::Result;

use dtks_eligibility::rules::Rule;

use dtks_eligibility::shipped;

/// Saves each shipped programme that does not exist yet.
pub async fn seed(db: &DatabaseConnection) -> anyhow::Result<()> {
    for p in shipped()? {
        Rule::compile(&p.rule).map_err(|e| anyhow::anyhow!("shipped programme {}: {e}", p.code))?;
        let txn = db.begin().await?;
        let inserted = txn
            .execute_raw(stmt(
                "INSERT INTO programmes (code, name, version, source, rule, quotas) VALUES ($1, $2, 1, $3, $4, '{}'::jsonb)
                 ON CONFLICT (code) DO NOTHING",
                [p.code.clone().into(), p.name.into(), p.source.into(), p.rule.into()],
            ))
            .await?
            .rows_affected();
        if inserted == 1 {
            history(&txn, &p.code, "shipped").await?;
        }
        txn.commit().await?;
    }
    Ok(())
}

async fn history(conn: &impl ConnectionTrait, code: &str, by: &str) -> Result<(), sea_orm::DbErr> {
    conn.execute_raw(stmt(
        "INSERT INTO programme_versions (code, version, name, rule, quotas, source, saved_by)
         SELECT code, version, name, rule, quotas, source, $2 FROM programmes WHERE code = $1",
        [code.into(), by.into()],
    ))
    .await?;
    Ok(())
}

fn from_row(r: &sea_orm::QueryResult) -> Result<Programme> {
    let quotas: serde_json::Value = r.try_get("", "quotas")?;
    Ok(Programme {
        code: r.try_get("", "code")?,
        name: r.try_get("", "name")?,
        rule: r.try_get("", "rule")?,
        version: r.try_get::<i32>("", "version")? as u32,
        quotas: serde_json::from_value::<HashMap<String, u64>>(quotas)?,
        source: r.try_get("", "source")?,
    })
}

const COLUMNS: &str = "code, name, rule, version, quotas, source";

impl Distribution {
    /// Every programme with its rule and quotas.
    pub(crate) async fn list_programmes(
        &self,
        _who: &Claims,
        _req: &ListProgrammesRequest,
    ) -> Result<ListProgrammesResponse> {
        let db = &self.db;
        let programmes = db
            .query_all_raw(stmt(
                &format!("SELECT {COLUMNS} FROM programmes ORDER BY code"),
                [],
            ))
            .await?
            .iter()
            .map(from_row)
            .collect::<Result<_>>()?;
        Ok(ListProgrammesResponse { programmes })
    }
}

/// A programme's current version and its compiled rule.
pub async fn current(db: &impl ConnectionTrait, code: &str) -> Result<(Programme, Rule)> {
    let programme = db
        .query_one_raw(stmt(
            &format!("SELECT {COLUMNS} FROM programmes WHERE code = $1"),
            [code.into()],
        ))
        .await?
        .map(|r| from_row(&r))
        .transpose()?
        .ok_or_else(|| {
            grpc::invalid_field("programme_code", format!("unknown programme {code}"))
        })?;
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
        let before = txn
            .query_one_raw(stmt(
                &format!("SELECT {COLUMNS} FROM programmes WHERE code = $1 FOR UPDATE"),
                [p.code.clone().into()],
            ))
            .await?
            .map(|r| from_row(&r))
            .transpose()?;
        let submitted = Programme {
            code: p.code.clone(),
            name: p.name.trim().to_owned(),
            rule: p.rule.clone(),
            version: 0,
            quotas: p.quotas.clone(),
            source: p.source.trim().to_owned(),
        };
        match &before {
            Some(b)
                if Programme {
                    version: 0,
                    ..b.clone()
                } == submitted =>
            {
                return Ok(b.clone());
            }
            Some(_) => {
                txn.execute_raw(stmt(
                "UPDATE programmes SET name = $2, rule = $3, quotas = $4, source = $5, version = version + 1 WHERE code = $1",
                [submitted.code.clone().into(), submitted.name.clone().into(), submitted.rule.clone().into(), quotas.into(), submitted.source.clone().into()],
            ))
            .await?;
            }
            None => {
                txn.execute_raw(stmt(
                "INSERT INTO programmes (code, name, version, source, rule, quotas) VALUES ($1, $2, 1, $3, $4, $5)",
                [submitted.code.clone().into(), submitted.name.clone().into(), submitted.source.clone().into(), submitted.rule.clone().into(), quotas.into()],
            ))
            .await?;
            }
        }
        history(&txn, &p.code, &who.sub).await?;
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
