//! The entries of a beneficiary list, stored in chunks of [`CHUNK`] consecutive
//! positions: one row of `list_chunks` per chunk rather than one row per household, so
//! that a list of millions is written by one COPY of a few hundred rows and delivered a
//! chunk at a time.
//!
//! One entry's bytes, all integers big-endian (the database's own `uuid_send`,
//! `int8send` and `int2send` write the same, so `list_entry_bytes` and the
//! `list_entries` view in SQL agree with this module):
//!
//! ```text
//! household_id  16 bytes
//! national_rank  8 bytes
//! decile         2 bytes
//! region_code    2-byte length, UTF-8
//! head_nik       2-byte length, UTF-8 (length 0: none)
//! head_name      2-byte length, UTF-8 (length 0: none)
//! ```

use dtks_platform::copy::CopyIn;
use dtks_proto::distribution::v1::Recipient;
use tonic::Status;

use crate::error::Result;

use dtks_eligibility::month::Month;

/// Positions per chunk; chunk `k` holds positions `k * CHUNK + 1 ..= (k + 1) * CHUNK`.
pub const CHUNK: i64 = 5000;

/// One entry as the list keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    pub household_id: uuid::Uuid,
    pub national_rank: i64,
    pub decile: i16,
    pub region_code: &'a str,
    pub head_nik: Option<&'a str>,
    pub head_name: Option<&'a str>,
}

fn text(out: &mut Vec<u8>, value: &str) {
    // Codes, NIKs and names are far below 64 KiB; a longer text is cut at a character.
    let mut end = value.len().min(usize::from(u16::MAX));
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&value.as_bytes()[..end]);
}

pub fn encode(out: &mut Vec<u8>, e: &Entry<'_>) {
    out.extend_from_slice(e.household_id.as_bytes());
    out.extend_from_slice(&e.national_rank.to_be_bytes());
    out.extend_from_slice(&e.decile.to_be_bytes());
    text(out, e.region_code);
    text(out, e.head_nik.unwrap_or_default());
    text(out, e.head_name.unwrap_or_default());
}

/// Reads the entries of one chunk, in position order.
pub fn decode(data: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    fn take<'a>(data: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], String> {
        let part = data
            .get(*at..*at + n)
            .ok_or_else(|| format!("a list chunk ends inside an entry at byte {at}"))?;
        *at += n;
        Ok(part)
    }
    fn text<'a>(data: &'a [u8], at: &mut usize) -> Result<&'a str, String> {
        let n = u16::from_be_bytes(take(data, at, 2)?.try_into().expect("2 bytes"));
        std::str::from_utf8(take(data, at, usize::from(n))?)
            .map_err(|_| "a list chunk holds text that is not UTF-8".to_owned())
    }
    let mut at = 0;
    let mut entries = Vec::new();
    while at < data.len() {
        let id = uuid::Uuid::from_slice(take(data, &mut at, 16)?).expect("16 bytes");
        let rank = i64::from_be_bytes(take(data, &mut at, 8)?.try_into().expect("8 bytes"));
        let decile = i16::from_be_bytes(take(data, &mut at, 2)?.try_into().expect("2 bytes"));
        let region_code = text(data, &mut at)?;
        let nik = text(data, &mut at)?;
        let name = text(data, &mut at)?;
        entries.push(Entry {
            household_id: id,
            national_rank: rank,
            decile,
            region_code,
            head_nik: (!nik.is_empty()).then_some(nik),
            head_name: (!name.is_empty()).then_some(name),
        });
    }
    Ok(entries)
}

impl Entry<'_> {
    pub fn recipient(&self) -> Recipient {
        Recipient {
            household_id: self.household_id.to_string(),
            region_code: self.region_code.to_owned(),
            national_rank: self.national_rank as u64,
            decile: u32::try_from(self.decile).unwrap_or_default(),
            head_nik: self.head_nik.unwrap_or_default().to_owned(),
            head_name: self.head_name.unwrap_or_default().to_owned(),
            household: None,
        }
    }
}

/// Writes the selected households of `month` (in list order, each with its head's NIK
/// and name) as the chunks of list `list_id`, by one binary COPY.
pub async fn store(
    conn: &mut sqlx::PgConnection,
    list_id: uuid::Uuid,
    month: &Month,
    selected: &[u32],
) -> Result<()> {
    let mut copy =
        CopyIn::start(conn, "list_chunks (list_id, first_position, entries, data)").await?;
    let mut data = Vec::new();
    for (k, chunk) in selected.chunks(CHUNK as usize).enumerate() {
        data.clear();
        for &i in chunk {
            let i = i as usize;
            let (nik, name) = month.head(i);
            encode(
                &mut data,
                &Entry {
                    household_id: month.ids[i],
                    national_rank: month.ranks[i] as i64,
                    decile: i16::from(month.deciles[i]),
                    region_code: month.region(i),
                    head_nik: nik,
                    head_name: name,
                },
            );
        }
        copy.rows()
            .row(4)
            .uuid(list_id)
            .i64(k as i64 * CHUNK + 1)
            .i32(chunk.len() as i32)
            .bytea(&data);
        copy.flush_when_full().await?;
    }
    copy.finish().await?;
    Ok(())
}

/// The chunk holding position `position` (1-based) of a list: its first position and
/// bytes, or `None` past the end.
pub async fn chunk_at(
    pool: &sqlx::PgPool,
    list_id: uuid::Uuid,
    position: i64,
) -> Result<Option<(i64, Vec<u8>)>> {
    let first = (position - 1).div_euclid(CHUNK) * CHUNK + 1;
    Ok(sqlx::query_as(
        "SELECT first_position, data FROM list_chunks WHERE list_id = $1 AND first_position = $2",
    )
    .bind(list_id)
    .bind(first)
    .fetch_optional(pool)
    .await?)
}

/// Every household of a list (for the difference between two lists).
pub async fn household_ids(pool: &sqlx::PgPool, list_id: uuid::Uuid) -> Result<Vec<uuid::Uuid>> {
    let chunks: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT data FROM list_chunks WHERE list_id = $1 ORDER BY first_position")
            .bind(list_id)
            .fetch_all(pool)
            .await?;
    let mut ids = Vec::new();
    for (data,) in &chunks {
        ids.extend(
            decode(data)
                .map_err(Status::internal)?
                .iter()
                .map(|e| e.household_id),
        );
    }
    Ok(ids)
}

/// How many of `new` are not in `old` (added) and of `old` not in `new` (removed).
pub fn difference(mut old: Vec<uuid::Uuid>, mut new: Vec<uuid::Uuid>) -> (u64, u64) {
    old.sort_unstable();
    new.sort_unstable();
    let (mut added, mut removed) = (0, 0);
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Less => {
                    removed += 1;
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    added += 1;
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    a.next();
                    b.next();
                }
            },
            (Some(_), None) => {
                removed += a.count() as u64;
                break;
            }
            (None, Some(_)) => {
                added += b.count() as u64;
                break;
            }
            (None, None) => break,
        }
    }
    (added, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_cut_chunk_is_refused() {
        let entries = [
            Entry {
                household_id: uuid::Uuid::from_u128(7),
                national_rank: 1,
                decile: 1,
                region_code: "32.04.05.2001",
                head_nik: Some("3204051203800001"),
                head_name: Some("Siti Aminah"),
            },
            Entry {
                household_id: uuid::Uuid::from_u128(u128::MAX),
                national_rank: i64::MAX,
                decile: 10,
                region_code: "",
                head_nik: None,
                head_name: Some("Ñoman Gede Wayan"),
            },
        ];
        let mut data = Vec::new();
        for e in &entries {
            encode(&mut data, e);
        }
        assert_eq!(decode(&data).expect("decodes"), entries);
        assert!(decode(&data[..data.len() - 1]).is_err());
        assert!(decode(&[]).expect("empty").is_empty());
    }

    #[test]
    fn the_difference_counts_who_came_and_who_left() {
        let id = |n: u128| uuid::Uuid::from_u128(n);
        assert_eq!(
            difference(vec![id(1), id(2), id(3)], vec![id(3), id(4), id(1), id(5)]),
            (2, 1)
        );
        assert_eq!(difference(vec![], vec![id(1)]), (1, 0));
        assert_eq!(difference(vec![id(1)], vec![]), (0, 1));
    }
}
