//! The person index (*indeks individu DTKS*): every person DTKS holds or is verifying,
//! so that a new proposal is checked against all of DTKS — not only its own batch —
//! for persons it already holds (integrity criteria 1 and 4).
//!
//! A person enters when their proposal is matched and is not a duplicate; takes the
//! household id when verivali accepts the household (`household.accepted`); leaves when
//! the proposal is returned (`household.returned`) or the household removed
//! (`household.removed`). Persons are found by NIK (one holder per NIK, serialised by an
//! advisory lock per NIK so that proposals matched at the same moment see each other)
//! and, where no NIK can be trusted, by linkage on name, birth date, sex and region
//! (serialised by a lock per birth date).

use dtks_domain::linkage::{Decision, Model, Record, Thresholds, compare};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

use dtks_platform::db::stmt;

/// Who already holds a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub proposal_id: uuid::Uuid,
    /// Empty until verivali accepts the household.
    pub household_id: String,
    /// The family (Kartu Keluarga) the person is in there.
    pub kk_number: String,
}

/// One person to index.
pub struct Entry<'a> {
    pub family_index: u32,
    pub member_index: u32,
    /// The NIK known to be this person's (their own, checked; or linked), if any.
    pub nik: Option<&'a str>,
    pub kk_number: &'a str,
    pub full_name: &'a str,
    pub birth_date: Option<chrono::NaiveDate>,
    pub sex: i16,
    pub village_code: &'a str,
}

/// Takes the keys' locks (NIKs, or `born:{date}`) for the rest of the transaction, in a
/// fixed order (no deadlock between two proposals sharing several keys).
pub async fn lock(txn: &DatabaseTransaction, keys: &mut Vec<&str>) -> Result<(), DbErr> {
    keys.sort_unstable();
    keys.dedup();
    for nik in keys.iter() {
        txn.execute_raw(stmt(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
            [(*nik).to_owned().into()],
        ))
        .await?;
    }
    Ok(())
}

fn holder(row: &sea_orm::QueryResult) -> Result<Holder, DbErr> {
    Ok(Holder {
        proposal_id: row.try_get("", "proposal_id")?,
        household_id: row
            .try_get::<Option<String>>("", "household_id")?
            .unwrap_or_default(),
        kk_number: row.try_get("", "kk_number")?,
    })
}

/// The holder of `nik` other than `household` (a change proposal for a household is not
/// a duplicate of that household).
pub async fn by_nik(
    txn: &DatabaseTransaction,
    nik: &str,
    household: &str,
) -> Result<Option<Holder>, DbErr> {
    let row = txn
        .query_one_raw(stmt(
            "SELECT proposal_id, household_id, kk_number FROM person_index
             WHERE nik = $1 AND ($2 = '' OR household_id IS DISTINCT FROM $2)",
            [nik.to_owned().into(), household.to_owned().into()],
        ))
        .await?;
    row.as_ref().map(holder).transpose()
}

/// The holder a person most probably is, when the model is sure. For a person whose
/// NIK checked out (`without_nik_only`), only persons held without a NIK are considered:
/// two persons with different checked NIKs are different persons.
pub async fn by_linkage(
    txn: &DatabaseTransaction,
    model: &Model,
    person: &Record,
    household: &str,
    without_nik_only: bool,
) -> Result<Option<Holder>, DbErr> {
    let (Some(born), Some(village)) = (person.birth_date, person.village.as_deref()) else {
        return Ok(None);
    };
    let rows = txn
        .query_all_raw(stmt(
            "SELECT proposal_id, household_id, kk_number, full_name, birth_date, sex, village_code
             FROM person_index
             WHERE ((birth_date = $1 AND left(village_code, 8) = $2) OR (name_key = $3 AND birth_date = $1))
               AND ($4 = '' OR household_id IS DISTINCT FROM $4)
               AND (NOT $5 OR nik IS NULL)
             LIMIT 200",
            [
                born.into(),
                village.get(..8).unwrap_or(village).to_owned().into(),
                person.name.phonetic_sorted().to_owned().into(),
                household.to_owned().into(),
                without_nik_only.into(),
            ],
        ))
        .await?;
    let mut best: Option<(f64, Holder)> = None;
    for row in &rows {
        let name: String = row.try_get("", "full_name")?;
        let village: String = row.try_get("", "village_code")?;
        let sex: i16 = row.try_get("", "sex")?;
        let other = Record::new(
            &name,
            row.try_get("", "birth_date")?,
            u8::try_from(sex).ok(),
            Some(&village),
        );
        let probability = model.probability(&compare(person, &other));
        if Thresholds::default().decide(probability) == Decision::Link
            && best.as_ref().is_none_or(|(p, _)| probability > *p)
        {
            best = Some((probability, holder(row)?));
        }
    }
    Ok(best.map(|(_, h)| h))
}

/// Adds a proposal's person.
pub async fn insert(
    txn: &DatabaseTransaction,
    proposal_id: uuid::Uuid,
    household_id: &str,
    entry: &Entry<'_>,
) -> Result<(), DbErr> {
    let name_key = dtks_domain::linkage::NameKey::new(entry.full_name);
    txn.execute_raw(stmt(
        "INSERT INTO person_index (proposal_id, family_index, member_index, nik, kk_number, household_id,
             full_name, name_key, birth_date, sex, village_code)
         VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), $7, $8, $9, $10, $11)
         ON CONFLICT (proposal_id, family_index, member_index) DO NOTHING",
        [
            proposal_id.into(),
            (entry.family_index as i32).into(),
            (entry.member_index as i32).into(),
            entry.nik.map(str::to_owned).into(),
            entry.kk_number.to_owned().into(),
            household_id.to_owned().into(),
            entry.full_name.to_owned().into(),
            name_key.phonetic_sorted().to_owned().into(),
            entry.birth_date.into(),
            entry.sex.into(),
            entry.village_code.to_owned().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// `household.accepted`: the proposal's persons now belong to a DTKS household. For a
/// change of a household already in DTKS, the household is what the change says: its
/// earlier persons whose NIK the change still holds (`kept`, its living members) stay,
/// and the rest leave (a member who died or moved out; and those held without a NIK,
/// whom the change indexed again). All are searched for in its `village` from now on.
pub async fn accepted(
    txn: &DatabaseTransaction,
    proposal_id: uuid::Uuid,
    (household_id, village): (&str, &str),
    kept: &[String],
) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        "DELETE FROM person_index WHERE household_id = $2 AND proposal_id <> $1
             AND (nik IS NULL OR NOT nik = ANY($3))",
        [
            proposal_id.into(),
            household_id.to_owned().into(),
            kept.to_vec().into(),
        ],
    ))
    .await?;
    // The proposal's persons and those the household kept, in its village (a household
    // that moved is searched for in its new one).
    txn.execute_raw(stmt(
        "UPDATE person_index SET household_id = $2, village_code = coalesce(NULLIF($3, ''), village_code)
         WHERE proposal_id = $1 OR household_id = $2",
        [
            proposal_id.into(),
            household_id.to_owned().into(),
            village.to_owned().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Whether `household` (a DTKS household) already holds `nik`: a change proposal's
/// member it holds is not indexed again.
pub async fn holds(txn: &DatabaseTransaction, household: &str, nik: &str) -> Result<bool, DbErr> {
    if household.is_empty() {
        return Ok(false);
    }
    let sql = "SELECT 1 AS one FROM person_index WHERE nik = $1 AND household_id = $2";
    let row = txn
        .query_one_raw(stmt(
            sql,
            [nik.to_owned().into(), household.to_owned().into()],
        ))
        .await?;
    Ok(row.is_some())
}

/// How a DTKS household holds one of its persons: name, birth date, sex and village.
pub type Identity = (String, Option<chrono::NaiveDate>, i16, String);

/// The persons `household` (a DTKS household) holds, by NIK.
pub async fn identities(
    db: &impl ConnectionTrait,
    household: &str,
) -> Result<std::collections::HashMap<String, Identity>, DbErr> {
    if household.is_empty() {
        return Ok(Default::default());
    }
    let rows = db
        .query_all_raw(stmt(
            "SELECT nik, full_name, birth_date, sex, village_code FROM person_index
             WHERE household_id = $1 AND nik IS NOT NULL",
            [household.to_owned().into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("", "nik")?,
                (
                    r.try_get("", "full_name")?,
                    r.try_get("", "birth_date")?,
                    r.try_get("", "sex")?,
                    r.try_get("", "village_code")?,
                ),
            ))
        })
        .collect()
}

/// `household.returned`: the proposal's persons are no longer held.
pub async fn returned(txn: &DatabaseTransaction, proposal_id: uuid::Uuid) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        "DELETE FROM person_index WHERE proposal_id = $1",
        [proposal_id.into()],
    ))
    .await?;
    Ok(())
}

/// `household.removed`: the household left DTKS, and its persons with it.
pub async fn removed(txn: &DatabaseTransaction, household_id: &str) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        "DELETE FROM person_index WHERE household_id = $1",
        [household_id.to_owned().into()],
    ))
    .await?;
    Ok(())
}

/// The DTKS household (or, before acceptance, the proposal) holding a NIK, for vital
/// events: (household id, proposal id, village).
pub async fn holder_of(
    db: &impl ConnectionTrait,
    nik: &str,
) -> Result<Option<(String, uuid::Uuid, String)>, DbErr> {
    holder_where(db, "nik = $1", nik).await
}

/// The DTKS household holding a family card (KK), for a birth registered on it.
pub async fn family_of(
    db: &impl ConnectionTrait,
    kk_number: &str,
) -> Result<Option<(String, uuid::Uuid, String)>, DbErr> {
    holder_where(db, "kk_number = $1 AND household_id IS NOT NULL", kk_number).await
}

async fn holder_where(
    db: &impl ConnectionTrait,
    condition: &str,
    value: &str,
) -> Result<Option<(String, uuid::Uuid, String)>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            &format!(
                "SELECT coalesce(household_id, '') AS household_id, proposal_id, village_code
                 FROM person_index WHERE {condition} LIMIT 1"
            ),
            [value.to_owned().into()],
        ))
        .await?;
    row.map(|r| {
        Ok((
            r.try_get("", "household_id")?,
            r.try_get("", "proposal_id")?,
            r.try_get("", "village_code")?,
        ))
    })
    .transpose()
}
