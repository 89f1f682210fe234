//! PostgreSQL binary COPY: the bulk write path. Rows are encoded straight into the
//! `COPY … FROM STDIN (FORMAT binary)` wire format, with no per-row statement, so a
//! batch of thousands of rows costs one round trip.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

fn pg_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date")
}

/// A buffer of rows in PostgreSQL's binary COPY format. Every row must push exactly the
/// columns the COPY statement names, in order.
pub struct BinaryRows {
    buf: Vec<u8>,
    rows: usize,
}

impl Default for BinaryRows {
    fn default() -> Self {
        Self::new()
    }
}

impl BinaryRows {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Self { buf, rows: 0 }
    }

    /// Starts a row of `columns` fields.
    pub fn row(&mut self, columns: i16) -> &mut Self {
        self.rows += 1;
        self.buf.extend_from_slice(&columns.to_be_bytes());
        self
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let len = i32::try_from(bytes.len()).expect("a COPY field is under 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    pub fn uuid(&mut self, value: uuid::Uuid) -> &mut Self {
        self.field(value.as_bytes())
    }

    pub fn i16(&mut self, value: i16) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub fn i32(&mut self, value: i32) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub fn i64(&mut self, value: i64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub fn f64(&mut self, value: f64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.field(value.as_bytes())
    }

    /// NULL for an empty string.
    pub fn text_or_null(&mut self, value: &str) -> &mut Self {
        if value.is_empty() {
            self.null()
        } else {
            self.text(value)
        }
    }

    pub fn bytea(&mut self, value: &[u8]) -> &mut Self {
        self.field(value)
    }

    pub fn date(&mut self, value: NaiveDate) -> &mut Self {
        let days = i32::try_from((value - pg_epoch()).num_days()).expect("date in range");
        self.i32(days)
    }

    pub fn timestamptz(&mut self, value: DateTime<Utc>) -> &mut Self {
        let micros = (value.naive_utc() - pg_epoch().and_hms_opt(0, 0, 0).expect("midnight"))
            .num_microseconds()
            .expect("timestamp in range");
        self.field(&micros.to_be_bytes())
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    /// Bytes buffered and not yet sent.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes what is buffered (the header included, the first time) and keeps counting
    /// rows, for a COPY sent while its rows are still being made.
    fn take(&mut self) -> Vec<u8> {
        let capacity = self.buf.capacity();
        std::mem::replace(&mut self.buf, Vec::with_capacity(capacity))
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The finished buffer, with the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// A `COPY {target} FROM STDIN (FORMAT binary)` fed while its rows are being made: the
/// server stores one part while the caller encodes the next, and millions of rows
/// never sit in memory at once.
pub struct CopyIn<'c> {
    copy: Option<sqlx::postgres::PgCopyIn<&'c mut PgConnection>>,
    rows: BinaryRows,
}

impl<'c> CopyIn<'c> {
    /// Sends once this much is buffered.
    const PART: usize = 1 << 20;

    pub async fn start(conn: &'c mut PgConnection, target: &str) -> Result<Self, sqlx::Error> {
        let copy = conn
            .copy_in_raw(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
            .await?;
        Ok(Self {
            copy: Some(copy),
            rows: BinaryRows::new(),
        })
    }

    /// The buffer the next rows go into.
    pub fn rows(&mut self) -> &mut BinaryRows {
        &mut self.rows
    }

    async fn send(&mut self, data: Vec<u8>) -> Result<(), sqlx::Error> {
        let copy = self.copy.as_mut().expect("a CopyIn is used until finished");
        if let Err(error) = copy.send(data).await {
            if let Some(copy) = self.copy.take() {
                let _ = copy.abort("send failed").await;
            }
            return Err(error);
        }
        Ok(())
    }

    /// Sends the buffered rows once they fill a part.
    pub async fn flush_when_full(&mut self) -> Result<(), sqlx::Error> {
        if self.rows.buffered() >= Self::PART {
            let data = self.rows.take();
            self.send(data).await?;
        }
        Ok(())
    }

    /// Sends the rest and ends the COPY; returns the number of rows the server stored.
    pub async fn finish(mut self) -> Result<u64, sqlx::Error> {
        let rows = std::mem::take(&mut self.rows);
        let data = rows.finish();
        self.send(data).await?;
        match self.copy.take() {
            Some(copy) => copy.finish().await,
            None => Err(sqlx::Error::Protocol("COPY already ended".into())),
        }
    }
}

/// One row of a binary `COPY … TO STDOUT`, its fields read by position.
pub struct Fields<'a> {
    row: &'a [u8],
    offsets: &'a [(usize, i32)],
}

fn bad(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("binary COPY: {what}"))
}

impl<'a> Fields<'a> {
    /// The field's bytes; `None` for NULL.
    pub fn bytes(&self, i: usize) -> Option<&'a [u8]> {
        let (start, len) = *self.offsets.get(i)?;
        (len >= 0).then(|| &self.row[start..start + len as usize])
    }

    fn fixed<const N: usize>(&self, i: usize) -> Result<[u8; N], sqlx::Error> {
        self.bytes(i)
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or_else(|| bad(&format!("field {i} is NULL or not {N} bytes")))
    }

    pub fn uuid(&self, i: usize) -> Result<uuid::Uuid, sqlx::Error> {
        Ok(uuid::Uuid::from_bytes(self.fixed(i)?))
    }

    pub fn i16(&self, i: usize) -> Result<i16, sqlx::Error> {
        Ok(i16::from_be_bytes(self.fixed(i)?))
    }

    pub fn i32(&self, i: usize) -> Result<i32, sqlx::Error> {
        Ok(i32::from_be_bytes(self.fixed(i)?))
    }

    pub fn i64(&self, i: usize) -> Result<i64, sqlx::Error> {
        Ok(i64::from_be_bytes(self.fixed(i)?))
    }

    pub fn f64(&self, i: usize) -> Result<f64, sqlx::Error> {
        Ok(f64::from_be_bytes(self.fixed(i)?))
    }

    pub fn text(&self, i: usize) -> Result<&'a str, sqlx::Error> {
        let bytes = self
            .bytes(i)
            .ok_or_else(|| bad(&format!("field {i} is NULL")))?;
        std::str::from_utf8(bytes).map_err(|_| bad(&format!("field {i} is not UTF-8")))
    }
}

/// Where the next unit of a binary COPY stream ends.
enum Unit {
    /// Not all of it has arrived.
    Partial,
    Row(usize),
    Trailer,
}

/// Reads the row starting at `buf[0]` into `offsets` (relative to `buf`).
fn next_unit(buf: &[u8], offsets: &mut Vec<(usize, i32)>) -> Result<Unit, sqlx::Error> {
    let Some(count) = buf.get(..2) else {
        return Ok(Unit::Partial);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Unit::Trailer);
    }
    let count = usize::try_from(count).map_err(|_| bad("negative field count"))?;
    offsets.clear();
    let mut at = 2;
    for _ in 0..count {
        let Some(len) = buf.get(at..at + 4) else {
            return Ok(Unit::Partial);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        offsets.push((at, len));
        if len > 0 {
            at += len as usize;
        }
    }
    Ok(if at <= buf.len() {
        Unit::Row(at)
    } else {
        Unit::Partial
    })
}

/// Decodes a binary COPY stream fed in parts of any size.
#[derive(Default)]
struct Decoder {
    buf: Vec<u8>,
    start: usize,
    header: bool,
    ended: bool,
    offsets: Vec<(usize, i32)>,
    rows: u64,
}

impl Decoder {
    fn feed(
        &mut self,
        chunk: &[u8],
        each: &mut impl FnMut(&Fields<'_>) -> Result<(), sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
        if !self.header {
            // Signature, flags, and the header extension's length and bytes.
            let Some(ext) = self.buf.get(SIGNATURE.len() + 4..SIGNATURE.len() + 8) else {
                return Ok(());
            };
            if !self.buf.starts_with(SIGNATURE) {
                return Err(bad("not a binary COPY stream"));
            }
            let ext = i32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
            let skip = SIGNATURE.len() + 8 + usize::try_from(ext).map_err(|_| bad("header"))?;
            if self.buf.len() < skip {
                return Ok(());
            }
            self.start = skip;
            self.header = true;
        }
        while !self.ended {
            match next_unit(&self.buf[self.start..], &mut self.offsets)? {
                Unit::Partial => break,
                Unit::Trailer => self.ended = true,
                Unit::Row(len) => {
                    each(&Fields {
                        row: &self.buf[self.start..self.start + len],
                        offsets: &self.offsets,
                    })?;
                    self.rows += 1;
                    self.start += len;
                }
            }
        }
        Ok(())
    }

    fn end(self) -> Result<u64, sqlx::Error> {
        if self.ended {
            Ok(self.rows)
        } else {
            Err(bad("the stream ended inside a row"))
        }
    }
}

/// Runs `COPY ({query}) TO STDOUT (FORMAT binary)` and hands every row to `each` as it
/// arrives; returns the number of rows.
pub async fn copy_out(
    conn: &mut PgConnection,
    query: &str,
    mut each: impl FnMut(&Fields<'_>) -> Result<(), sqlx::Error>,
) -> Result<u64, sqlx::Error> {
    use futures::StreamExt;
    let mut stream = conn
        .copy_out_raw(&format!("COPY ({query}) TO STDOUT (FORMAT binary)"))
        .await?;
    let mut decoder = Decoder::default();
    while let Some(chunk) = stream.next().await {
        decoder.feed(&chunk?, &mut each)?;
    }
    decoder.end()
}

/// Runs `COPY {target} FROM STDIN (FORMAT binary)` with `rows` on `conn`; returns the
/// number of rows written. `target` is `table (col, …)`.
pub async fn copy_in(
    conn: &mut PgConnection,
    target: &str,
    rows: BinaryRows,
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut copy = conn
        .copy_in_raw(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
        .await?;
    let data = rows.finish();
    for chunk in data.chunks(1 << 20) {
        if let Err(error) = copy.send(chunk).await {
            let _ = copy.abort("send failed").await;
            return Err(error);
        }
    }
    copy.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_are_read_back_whatever_the_parts() {
        let mut rows = BinaryRows::new();
        let id = uuid::Uuid::from_u128(42);
        rows.row(4).uuid(id).i64(-7).text("32.04").null();
        rows.row(4).uuid(id).i64(1 << 40).text("").bytea(&[1, 2, 3]);
        let data = rows.finish();
        for part in [1, 2, 3, 7, 64, data.len()] {
            let mut seen = Vec::new();
            let mut decoder = Decoder::default();
            for chunk in data.chunks(part) {
                decoder
                    .feed(chunk, &mut |f: &Fields<'_>| {
                        seen.push((
                            f.uuid(0)?,
                            f.i64(1)?,
                            f.text(2)?.to_owned(),
                            f.bytes(3).map(<[u8]>::to_vec),
                        ));
                        Ok(())
                    })
                    .expect("decodes");
            }
            assert_eq!(decoder.end().expect("complete"), 2, "parts of {part}");
            assert_eq!(
                seen,
                vec![
                    (id, -7, "32.04".to_owned(), None),
                    (id, 1 << 40, String::new(), Some(vec![1, 2, 3])),
                ]
            );
        }
        // A stream cut inside a row is an error, not a short answer.
        let mut decoder = Decoder::default();
        decoder
            .feed(&data[..data.len() - 5], &mut |_: &Fields<'_>| Ok(()))
            .expect("so far so good");
        assert!(decoder.end().is_err());
        // A field of the wrong width is refused by its reader.
        let mut decoder = Decoder::default();
        let mut wrong = None;
        decoder
            .feed(&data, &mut |f: &Fields<'_>| {
                wrong.get_or_insert(f.i32(1).is_err());
                Ok(())
            })
            .expect("decodes");
        assert_eq!(wrong, Some(true));
    }
}
