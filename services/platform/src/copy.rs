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

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The finished buffer, with the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
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
