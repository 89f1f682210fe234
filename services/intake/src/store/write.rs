//! Writing proposals: one path for a single submission and for bulk batches. A batch is
//! written with binary COPY into `proposals`, `proposal_persons` and the outbox in one
//! transaction, so a proposal and its `proposal.submitted` event commit together or not
//! at all. Idempotency: a proposal whose idempotency key, or channel and external
//! reference, was seen before (earlier, or earlier in the same batch) is not written
//! again; it is answered with the first proposal's id and current status.

use std::collections::HashMap;

use dtks_platform::copy::{BinaryRows, copy_in};
use dtks_proto::intake::v1::ProposalStatus;
use sea_orm::DatabaseConnection;

use crate::check::Prepared;

/// What became of one prepared proposal.
#[derive(Debug, Clone)]
pub struct Stored {
    pub proposal_id: uuid::Uuid,
    pub status: i32,
    pub replayed: bool,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Idempotency(String),
    Reference(i16, String),
}

fn keys(p: &Prepared) -> impl Iterator<Item = Key> {
    let idem = (!p.idempotency_key.is_empty()).then(|| Key::Idempotency(p.idempotency_key.clone()));
    let reference = (!p.external_reference.is_empty())
        .then(|| Key::Reference(p.channel as i16, p.external_reference.clone()));
    idem.into_iter().chain(reference)
}

/// Earlier proposals holding any of `batch`'s keys.
async fn existing(
    pool: &sqlx::PgPool,
    batch: &[Prepared],
) -> Result<HashMap<Key, Stored>, sqlx::Error> {
    let mut idem = Vec::new();
    let (mut channels, mut references) = (Vec::new(), Vec::new());
    for key in batch.iter().flat_map(keys) {
        match key {
            Key::Idempotency(k) => idem.push(k),
            Key::Reference(c, r) => {
                channels.push(c);
                references.push(r);
            }
        }
    }
    if idem.is_empty() && references.is_empty() {
        return Ok(HashMap::new());
    }
    type Found = (uuid::Uuid, i16, Option<String>, i16, Option<String>);
    let rows: Vec<Found> = sqlx::query_as(
        "SELECT p.proposal_id, p.status, p.idempotency_key, p.channel, p.external_reference
           FROM proposals p
          WHERE p.idempotency_key = ANY($1)
         UNION
         SELECT p.proposal_id, p.status, p.idempotency_key, p.channel, p.external_reference
           FROM proposals p
           JOIN unnest($2::smallint[], $3::text[]) AS k(channel, reference)
             ON p.channel = k.channel AND p.external_reference = k.reference",
    )
    .bind(&idem)
    .bind(&channels)
    .bind(&references)
    .fetch_all(pool)
    .await?;
    let mut found = HashMap::new();
    for (proposal_id, status, key, channel, reference) in rows {
        let stored = Stored {
            proposal_id,
            status: i32::from(status),
            replayed: true,
        };
        if let Some(k) = key {
            found.insert(Key::Idempotency(k), stored.clone());
        }
        if let Some(r) = reference {
            found.insert(Key::Reference(channel, r), stored);
        }
    }
    Ok(found)
}

/// Stores `batch`; the answer has one entry per input, in order.
/// Where sealed values live (`dtks_platform::sealed` binds each to its place and row).
pub const SEALED_HOUSEHOLD: &str = "intake.proposals.household";
const SEALED_NAME: &str = "intake.proposal_persons.full_name";

pub async fn store(
    db: &DatabaseConnection,
    batch: Vec<Prepared>,
) -> Result<Vec<Stored>, sqlx::Error> {
    let pool = db.get_postgres_connection_pool();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_store(pool, &batch).await {
            // A concurrent twin committed one of our keys between the look-up and the
            // COPY (23505), or two batches sharing keys deadlocked on their unique index
            // entries (40P01): look again, and what was stored is answered as a replay.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("23505" | "40P01")) && attempt < 5 =>
            {
                continue;
            }
            other => return other,
        }
    }
}

async fn try_store(pool: &sqlx::PgPool, batch: &[Prepared]) -> Result<Vec<Stored>, sqlx::Error> {
    let mut seen = existing(pool, batch).await?;
    let mut answers = Vec::with_capacity(batch.len());
    let mut fresh = Vec::with_capacity(batch.len());
    for p in batch {
        if let Some(first) = keys(p).find_map(|k| seen.get(&k).cloned()) {
            answers.push(first);
            continue;
        }
        let stored = Stored {
            proposal_id: p.proposal_id,
            status: ProposalStatus::Submitted as i32,
            replayed: false,
        };
        for k in keys(p) {
            let mut replay = stored.clone();
            replay.replayed = true;
            seen.insert(k, replay);
        }
        answers.push(stored);
        fresh.push(p);
    }
    if fresh.is_empty() {
        return Ok(answers);
    }
    let now = dtks_platform::clock::now();
    let mut proposals = BinaryRows::new();
    let mut persons = BinaryRows::new();
    for p in &fresh {
        proposals
            .row(18)
            .uuid(p.proposal_id)
            .text_or_null(&p.idempotency_key)
            .i16(p.channel as i16)
            .i16(p.kind as i16)
            .i16(p.change_type as i16)
            .text_or_null(&p.external_reference)
            .text(&p.region_code)
            .i16(ProposalStatus::Submitted as i16)
            .text(&p.submitted_by)
            .timestamptz(now)
            .timestamptz(now)
            .text(&p.reason);
        match &p.minutes {
            Some((number, date, attendees)) => {
                proposals.text(number).date(*date).i32(*attendees);
            }
            None => {
                proposals.null().null().null();
            }
        }
        // The household as submitted and the members' names are sealed at rest (no query
        // reads them); NIK and KK stay searchable.
        let sealed = |place: &str, plain: &[u8]| {
            dtks_platform::sealed::seal(place, &p.proposal_id, plain)
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))
        };
        proposals
            .text_or_null(&p.target_household_id)
            .text("")
            .bytea(&sealed(SEALED_HOUSEHOLD, &p.household)?);
        for person in &p.persons {
            let name = sealed(
                &format!("{SEALED_NAME}/{}.{}", person.family_no, person.member_no),
                person.full_name.as_bytes(),
            )?;
            persons
                .row(9)
                .uuid(p.proposal_id)
                .i16(person.family_no)
                .i16(person.member_no)
                .text_or_null(&person.nik)
                .text_or_null(&person.kk_number)
                .bytea(&name)
                .date(person.birth_date)
                .i16(person.sex)
                .i16(person.relationship);
        }
    }
    let mut txn = pool.begin().await?;
    copy_in(
        &mut txn,
        "proposals (proposal_id, idempotency_key, channel, kind, change_type, external_reference, region_code, status, submitted_by, submitted_at, updated_at, reason, minutes_number, minutes_date, minutes_attendees, target_household_id, status_reason, household)",
        proposals,
    )
    .await?;
    copy_in(
        &mut txn,
        "proposal_persons (proposal_id, family_no, member_no, nik, kk_number, full_name_sealed, birth_date, sex, relationship)",
        persons,
    )
    .await?;
    dtks_platform::outbox::enqueue_copy(&mut txn, fresh.iter().map(|p| &p.envelope)).await?;
    // The proposals name their members: who submitted which is in the audit log, one
    // entry per officer of the batch.
    let mut by_officer: std::collections::BTreeMap<(&str, &str), Vec<String>> = Default::default();
    for p in &fresh {
        by_officer
            .entry((p.submitted_by.as_str(), p.submitted_role))
            .or_default()
            .push(p.proposal_id.to_string());
    }
    for (officer, proposals) in by_officer {
        dtks_platform::audit::record_sqlx(&mut txn, officer, "intake.SubmitProposal", &proposals)
            .await?;
    }
    txn.commit().await?;
    Ok(answers)
}
