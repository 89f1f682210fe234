//! Region reference data: the Kemendagri codes of every province, regency/city, district
//! and village, from `deploy/reference/idn-area-data` (ODbL; origin beside the files),
//! loaded into the shared read-only `reference` schema by migration.

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};

use crate::db::stmt;

const PROVINCES: &str = include_str!("../../../../deploy/reference/idn-area-data/provinces.csv");
const REGENCIES: &str = include_str!("../../../../deploy/reference/idn-area-data/regencies.csv");
const DISTRICTS: &str = include_str!("../../../../deploy/reference/idn-area-data/districts.csv");
pub const VILLAGES: &str = include_str!("../../../../deploy/reference/idn-area-data/villages.csv");

/// Every village (desa/kelurahan) code, held in memory: the hot-path check for a
/// proposal's address, from the same files the migration loads.
pub fn village_codes() -> &'static std::collections::HashSet<&'static str> {
    static CODES: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    CODES.get_or_init(|| {
        VILLAGES
            .lines()
            .skip(1)
            .filter_map(|line| line.split(',').next())
            .collect()
    })
}

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(LoadIdnAreaData4_0_1)]
    }
}

struct LoadIdnAreaData4_0_1;

impl MigrationName for LoadIdnAreaData4_0_1 {
    fn name(&self) -> &str {
        "m0001_idn_area_data_4_0_1"
    }
}

/// Codes, parents and names, column by column.
type Columns = (Vec<String>, Vec<String>, Vec<String>);

/// Parses `code,parent,name` rows (provinces have no parent column).
fn rows(csv_text: &str) -> Result<Columns, DbErr> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let (mut codes, mut parents, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(|e| DbErr::Migration(e.to_string()))?;
        codes.push(record[0].to_owned());
        if record.len() == 3 {
            parents.push(record[1].to_owned());
            names.push(record[2].to_owned());
        } else {
            parents.push(String::new());
            names.push(record[1].to_owned());
        }
    }
    Ok((codes, parents, names))
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for LoadIdnAreaData4_0_1 {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            r#"
CREATE TABLE regions (
    code TEXT PRIMARY KEY,
    parent_code TEXT REFERENCES regions (code),
    level SMALLINT NOT NULL CHECK (level BETWEEN 1 AND 4),
    name TEXT NOT NULL
);
CREATE INDEX regions_parent ON regions (parent_code);
"#,
        )
        .await?;
        for (level, text) in [
            (1i16, PROVINCES),
            (2, REGENCIES),
            (3, DISTRICTS),
            (4, VILLAGES),
        ] {
            let (codes, parents, names) = rows(text)?;
            db.execute_raw(stmt(
                "INSERT INTO regions (code, parent_code, level, name)
                 SELECT c, NULLIF(p, ''), $4, n FROM unnest($1::text[], $2::text[], $3::text[]) AS t(c, p, n)",
                [codes.into(), parents.into(), names.into(), level.into()],
            ))
            .await?;
        }
        Ok(())
    }
}

/// Names of regions by code, for refusals and reports.
pub async fn exists<C: ConnectionTrait>(db: &C, code: &str) -> Result<bool, DbErr> {
    Ok(db
        .query_one_raw(stmt(
            "SELECT 1 AS one FROM reference.regions WHERE code = $1",
            [code.to_owned().into()],
        ))
        .await?
        .is_some())
}
