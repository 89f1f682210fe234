//! A search by predicate: the standard's list of `{expression1, condition,
//! expression2}` parsed into conditions on the persons table (each attribute with the
//! operators it takes), counted and paged from an index where it can be.

use sea_orm::{ConnectionTrait, DatabaseConnection, Value as SqlValue};
use serde_json::Value;

use dtks_platform::db::stmt;

use crate::records::{COLUMNS, DEFAULT_PAGE_SIZE, MAX_OFFSET, MAX_PAGE_SIZE, record};

/// One value a predicate binds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Texts(Vec<String>),
    Date(chrono::NaiveDate),
    Small(i16),
}

impl Param {
    fn sql(&self) -> SqlValue {
        match self {
            Param::Text(t) => t.clone().into(),
            Param::Texts(t) => t.clone().into(),
            Param::Date(d) => (*d).into(),
            Param::Small(n) => (*n).into(),
        }
    }

    /// The value as JSON text, for a statement answering many searches of one shape.
    fn json(&self) -> Value {
        match self {
            Param::Text(t) => Value::String(t.clone()),
            // An array literal: each element quoted, `"` and `\` escaped.
            Param::Texts(t) => Value::String(format!(
                "{{{}}}",
                t.iter()
                    .map(|e| format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            Param::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            Param::Small(n) => Value::String(n.to_string()),
        }
    }

    /// Where the value stands in that statement: the `k`th of the search's `params`.
    fn in_row(&self, k: usize) -> String {
        let cast = match self {
            Param::Text(_) => "",
            Param::Texts(_) => "::text[]",
            Param::Date(_) => "::date",
            Param::Small(_) => "::smallint",
        };
        format!("(q.params->>{k}){cast}")
    }
}

/// What every answer of a search must be, read from its conditions joined by `and`:
/// enough to see a name part sought in one regency over whole birth years.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    part: Option<String>,
    regency: Option<String>,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
}

impl Facts {
    fn note(&mut self, term: &Value) {
        let get = |k: &str| term.get(k).and_then(Value::as_str);
        let (Some(name), Some(operator), Some(value)) = (
            get("attribute_name"),
            get("operator"),
            get("attribute_value"),
        ) else {
            return;
        };
        let date = || chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok();
        match (name, operator) {
            ("name_part", "eq") => self.part = Some(value.trim().to_uppercase()),
            ("regency_code", "eq") => self.regency = Some(value.to_owned()),
            ("birth_date", "ge") => self.from = date(),
            ("birth_date", "le") => self.to = date(),
            _ => {}
        }
    }

    /// The keys of `person_part_keys` (part, regency, birth year) every answer has one
    /// of, when the search holds a name part in one regency over at most ten whole
    /// birth years: a condition the index answers, beside the search's own.
    fn part_keys(&self) -> Option<Vec<String>> {
        use chrono::Datelike;
        let (part, regency, from, to) = (
            self.part.as_ref()?,
            self.regency.as_ref()?,
            self.from?,
            self.to?,
        );
        let whole = from.ordinal() == 1 && to.month() == 12 && to.day() == 31;
        (whole && (0..10).contains(&(to.year() - from.year())) && !part.is_empty()).then(|| {
            (from.year()..=to.year())
                .map(|year| format!("{part}|{regency}|{year}"))
                .collect()
        })
    }
}

/// A parsed predicate search: SQL conditions with their parameters, and the page.
#[derive(Debug)]
pub struct Predicate {
    pub(crate) conditions: Vec<String>,
    /// A condition an index answers alone that every answer meets: the rows it finds
    /// are read first, and the conditions held against them.
    pub(crate) narrow: Option<String>,
    pub(crate) params: Vec<Param>,
    pub page_size: u64,
    pub page_number: u64,
}

impl Predicate {
    pub fn parse(criteria: &Value) -> Result<Self, String> {
        let terms = criteria
            .get("query")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or("predicate query must be a non-empty array")?;
        let mut predicate = Predicate {
            conditions: Vec::new(),
            narrow: None,
            params: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            page_number: 1,
        };
        // Each item is `expression1`, or `expression1 condition expression2` with the
        // condition `and`, `or` or `not` (and not); the items all hold together.
        let mut facts = Facts::default();
        for term in terms {
            let first = term
                .get("expression1")
                .ok_or("each item of a predicate query needs expression1")?;
            if matches!(
                term.get("condition").and_then(Value::as_str),
                None | Some("and")
            ) {
                facts.note(first);
                if let Some(second) = term.get("expression2") {
                    facts.note(second);
                }
            }
            let first = predicate.add(first)?;
            let condition = match term.get("condition").and_then(Value::as_str) {
                None => first,
                Some(joined @ ("and" | "or" | "not")) => {
                    let second =
                        predicate
                            .add(term.get("expression2").ok_or_else(|| {
                                format!("condition `{joined}` needs expression2")
                            })?)?;
                    match joined {
                        "and" => format!("({first} AND {second})"),
                        "or" => format!("({first} OR {second})"),
                        _ => format!("({first} AND NOT {second})"),
                    }
                }
                Some(other) => return Err(format!("condition `{other}` is not and, or or not")),
            };
            predicate.conditions.push(condition);
        }
        if let Some(keys) = facts.part_keys() {
            let p = predicate.bind(Param::Texts(keys));
            predicate.narrow = Some(format!(
                "person_part_keys(full_name, village_code, birth_date) && {p}"
            ));
        }
        if let Some(page) = criteria.get("pagination") {
            let number = |name: &str, default: u64| {
                page.get(name).map_or(Ok(default), |v| {
                    v.as_u64()
                        .filter(|n| *n >= 1)
                        .ok_or(format!("pagination.{name} must be a whole number from 1"))
                })
            };
            predicate.page_size = number("page_size", DEFAULT_PAGE_SIZE)?;
            predicate.page_number = number("page_number", 1)?;
            if predicate.page_size > MAX_PAGE_SIZE {
                return Err(format!(
                    "pagination.page_size must be at most {MAX_PAGE_SIZE}"
                ));
            }
            // The page must start inside a population: no offset past MAX_OFFSET, and no
            // arithmetic on the caller's numbers that could overflow.
            let offset = (predicate.page_number - 1).checked_mul(predicate.page_size);
            if offset.is_none_or(|o| o > MAX_OFFSET) {
                return Err(format!(
                    "pagination.page_number is too large: a page may start at most {MAX_OFFSET} records in"
                ));
            }
        }
        Ok(predicate)
    }

    fn bind(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    /// The SQL condition of one predicate, its values bound.
    fn add(&mut self, term: &Value) -> Result<String, String> {
        let name = term
            .get("attribute_name")
            .and_then(Value::as_str)
            .ok_or("each predicate needs attribute_name")?;
        let operator = term
            .get("operator")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{name}: operator is required"))?;
        let value = term.get("attribute_value").unwrap_or(&Value::Null);
        if value.as_str().is_some_and(|v| v.contains('\0')) {
            return Err(format!("{name}: attribute_value holds a NUL character"));
        }
        let text = || {
            value
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("{name}: attribute_value must be a non-empty string"))
        };
        let condition = match (name, operator) {
            ("name", "eq") => {
                let normal = text()?
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_uppercase();
                let p = self.bind(Param::Text(normal));
                format!("name_norm = {p}")
            }
            ("name_part", "eq") => {
                let part = text()?.trim().to_uppercase();
                if part.contains(char::is_whitespace) {
                    return Err(format!("{name}: attribute_value is one part of a name"));
                }
                let p = self.bind(Param::Texts(vec![part]));
                format!("string_to_array(name_norm, ' ') @> {p}::text[]")
            }
            ("birth_date", "eq" | "ge" | "le" | "gt" | "lt") => {
                let date = chrono::NaiveDate::parse_from_str(&text()?, "%Y-%m-%d")
                    .map_err(|_| format!("{name}: attribute_value must be YYYY-MM-DD"))?;
                let sql = match operator {
                    "eq" => "=",
                    "ge" => ">=",
                    "le" => "<=",
                    "gt" => ">",
                    _ => "<",
                };
                let p = self.bind(Param::Date(date));
                format!("birth_date {sql} {p}")
            }
            ("sex", "eq") => {
                let code: i16 = match text()?.as_str() {
                    "male" => 1,
                    "female" => 2,
                    _ => return Err("sex: attribute_value must be male or female".into()),
                };
                let p = self.bind(Param::Small(code));
                format!("sex = {p}")
            }
            ("kk_number", "eq") => {
                let p = self.bind(Param::Text(text()?));
                format!("kk_number = {p}")
            }
            ("village_code" | "district_code" | "regency_code" | "province_code", "eq" | "in") => {
                // `in` takes the codes as one text, separated by commas (the standard's
                // attribute value is never an array).
                let codes: Vec<String> = if operator == "in" {
                    text()?.split(',').map(|c| c.trim().to_owned()).collect()
                } else {
                    vec![text()?]
                };
                // A region code's length says its level: 2, 5, 8 or 13 characters.
                let width = match name {
                    "village_code" => 13,
                    "district_code" => 8,
                    "regency_code" => 5,
                    _ => 2,
                };
                if let Some(bad) = codes.iter().find(|c| c.len() != width) {
                    return Err(format!("{name}: `{bad}` is not a code of that level"));
                }
                let p = self.bind(Param::Texts(codes));
                if width == 5 {
                    format!("regency = ANY({p})")
                } else {
                    format!("left(village_code, {width}) = ANY({p})")
                }
            }
            _ => return Err(format!("{name} with operator {operator} is not supported")),
        };
        Ok(condition)
    }

    /// What searches answered by one statement share: the conditions and the page.
    pub fn shape(&self) -> (String, u64, u64) {
        (
            format!("{} {:?}", self.conditions.join(" AND "), self.narrow),
            self.page_size,
            self.page_number,
        )
    }

    /// `sql` with each bound value read from the row `q` of a statement that answers
    /// many searches of this shape.
    pub(crate) fn from_rows(&self, sql: &str) -> String {
        let mut sql = sql.to_owned();
        // From the last: `$12` must not be read as `$1` followed by `2`.
        for (k, param) in self.params.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", k + 1), &param.in_row(k));
        }
        sql
    }

    /// The NIKs of the matching persons, for a search's `FROM`: its conditions held
    /// against the table, or against what `narrow` found first (fenced, so that the
    /// planner reads that one index and not the others the conditions could use); then
    /// fenced again, so that the page is taken after the filter instead of by walking
    /// the table in NIK order. A search by name and regency reads only the index
    /// (`persons_name_regency_nik`), however many namesakes it counts.
    pub(crate) fn matching(&self, each: impl Fn(&str) -> String) -> String {
        let source = match &self.narrow {
            Some(narrow) => format!(
                "(SELECT * FROM persons WHERE {} OFFSET 0) persons",
                each(narrow)
            ),
            None => "persons".to_owned(),
        };
        format!(
            "(SELECT nik FROM {source} WHERE {} OFFSET 0) m",
            each(&self.conditions.join(" AND "))
        )
    }

    /// One page of the matching persons' records in NIK order, each with how many match
    /// in all: counted and paged on the NIKs, and only the page's rows read.
    fn page_sql(matching: &str, limit: u64, offset: u64) -> String {
        format!(
            "SELECT {COLUMNS}, (SELECT count(*) FROM {matching}) AS total FROM persons
             WHERE nik IN (SELECT nik FROM {matching} ORDER BY nik LIMIT {limit} OFFSET {offset})
             ORDER BY nik"
        )
    }

    /// Answers searches of one shape ([`Predicate::shape`]) with one statement: each
    /// search's values a row, each row's page found beside it. A lone search, or pages
    /// past the first, are answered one by one.
    pub async fn run_many(
        db: &DatabaseConnection,
        searches: &[&Predicate],
    ) -> Result<Vec<(Vec<Value>, u64)>, sea_orm::DbErr> {
        let Some(first) = searches.first() else {
            return Ok(Vec::new());
        };
        if searches.len() == 1 || first.page_number > 1 {
            let mut out = Vec::with_capacity(searches.len());
            for s in searches {
                out.push(s.run(db).await?);
            }
            return Ok(out);
        }
        let rows_of: Value = searches
            .iter()
            .map(|s| Value::Array(s.params.iter().map(Param::json).collect()))
            .collect();
        let rows = db
            .query_all_raw(stmt(
                &format!(
                    "SELECT q.i, r.* FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS q (params, i)
                     CROSS JOIN LATERAL ({}) r",
                    Self::page_sql(&first.matching(|sql| first.from_rows(sql)), first.page_size, 0)
                ),
                [rows_of.into()],
            ))
            .await?;
        let mut out: Vec<(Vec<Value>, u64)> = vec![(Vec::new(), 0); searches.len()];
        for row in &rows {
            let i = row.try_get::<i64>("", "i")?;
            let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) else {
                continue;
            };
            slot.1 = row.try_get::<i64>("", "total")?.max(0) as u64;
            slot.0.push(record(row));
        }
        Ok(out)
    }

    /// One page of matching records, and how many match in all.
    pub async fn run(&self, db: &DatabaseConnection) -> Result<(Vec<Value>, u64), sea_orm::DbErr> {
        let matching = self.matching(str::to_owned);
        let offset = self
            .page_number
            .saturating_sub(1)
            .saturating_mul(self.page_size);
        let rows = db
            .query_all_raw(stmt(
                &Self::page_sql(&matching, self.page_size, offset),
                self.params.iter().map(Param::sql).collect::<Vec<_>>(),
            ))
            .await?;
        let total = match rows.first() {
            Some(row) => row.try_get::<i64>("", "total")? as u64,
            // Past the last page: count separately so the caller still learns the total.
            None if self.page_number > 1 => {
                let row = db
                    .query_one_raw(stmt(
                        &format!("SELECT count(*) AS total FROM {matching}"),
                        self.params.iter().map(Param::sql).collect::<Vec<_>>(),
                    ))
                    .await?;
                row.map(|r| r.try_get::<i64>("", "total"))
                    .transpose()?
                    .unwrap_or(0) as u64
            }
            None => 0,
        };
        Ok((rows.iter().map(record).collect(), total))
    }
}
