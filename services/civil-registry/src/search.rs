//! Search over the population: by identifier (`idtype-value`, type `NIK`; a message's
//! NIK requests are answered with one query) and by predicate (`predicate`: the
//! standard's list of `{expression1, condition, expression2}`, each condition `and`,
//! `or` or `not`, the items joined by `and`), with pagination. Records come back as a
//! `reg_records` object holding a JSON-LD `@graph` of `CRVS_Person`s.
//!
//! Predicate attributes: `name` (`eq`, case and spacing ignored), `name_part` (`eq`:
//! one part of the name, as written, case ignored), `birth_date`
//! (`eq`, `ge`, `le`, `gt`, `lt`), `sex` (`eq`: `male`/`female`), `village_code`,
//! `district_code`, `regency_code`, `province_code` (`eq`, `in`), `kk_number` (`eq`).

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, Value as SqlValue};
use serde_json::{Value, json};

use dtks_platform::db::stmt;

pub const MAX_PAGE_SIZE: u64 = 100;
/// The furthest into a search a page may start: more records than Indonesia has people.
pub const MAX_OFFSET: u64 = 1_000_000_000;
pub const DEFAULT_PAGE_SIZE: u64 = 10;

const COLUMNS: &str = "nik, kk_number, full_name, birth_place, birth_date::text AS birth_date, sex, village_code, death_date::text AS death_date, marital_status";

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One person as a DCI `CRVS_Person` record.
pub fn record(row: &sea_orm::QueryResult) -> Value {
    let get = |c: &str| row.try_get::<String>("", c).unwrap_or_default();
    let optional = |c: &str| {
        row.try_get::<Option<String>>("", c)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let sex = match row.try_get::<i16>("", "sex").unwrap_or_default() {
        1 => "male",
        2 => "female",
        _ => "",
    };
    json!({
        "@type": RECORD_TYPE,
        "identifier": [
            { "identifier_type": "NIK", "identifier_value": get("nik") },
            { "identifier_type": "KK", "identifier_value": get("kk_number") },
        ],
        "name": { "given_name": get("full_name"), "surname": "" },
        "sex": sex,
        "birth_date": get("birth_date"),
        "birth_place": { "name": get("birth_place") },
        "death_date": optional("death_date"),
        "marital_status": optional("marital_status"),
        "address": [{ "region_code": get("village_code"), "country_code": "ID" }],
    })
}

fn rejected(reference_id: &Value, code: &str, message: String) -> Value {
    json!({
        "reference_id": reference_id, "timestamp": now(), "status": "rjct",
        "status_reason_code": code, "status_reason_message": message,
    })
}

/// The registry type this registry answers as (`reg_type`).
pub const REG_TYPE: &str = "ns:dukcapil:RegistryType:Civil";
/// What its records are (`reg_record_type`, and each record's `@type`).
pub const RECORD_TYPE: &str = "CRVS_Person";

/// A page of records as the standard's `reg_records` object: a JSON-LD node set
/// (`@graph`) of `CRVS_Person` records.
pub fn reg_records(records: Vec<Value>) -> Value {
    json!({
        "@context": "https://schema.spdci.org/extensions/dci/v1/Person.jsonld",
        "@graph": records,
    })
}

fn succeeded(
    reference_id: &Value,
    criteria: &Value,
    records: Vec<Value>,
    page: (u64, u64),
    total: u64,
) -> Value {
    let event_type = criteria
        .get("reg_event_type")
        .and_then(Value::as_str)
        .unwrap_or("REGISTER");
    json!({
        "reference_id": reference_id, "timestamp": now(), "status": "succ",
        "data": {
            "version": "1.0.0", "reg_type": REG_TYPE, "reg_event_type": event_type,
            "reg_record_type": RECORD_TYPE, "reg_records": reg_records(records),
        },
        "pagination": { "page_size": page.0, "page_number": page.1, "total_count": total },
    })
}

/// Answers every request of a `search_request` array, in order.
pub async fn answer(
    db: &DatabaseConnection,
    requests: &[Value],
) -> Result<Vec<Value>, sea_orm::DbErr> {
    // The identifier requests of the message, answered together.
    let niks: Vec<String> = requests
        .iter()
        .filter_map(|r| nik_of(r.get("search_criteria")?))
        .map(str::to_owned)
        .collect();
    // The predicate requests, parsed, and those of one shape answered by one statement.
    let parsed: Vec<Option<Result<Predicate, String>>> = requests
        .iter()
        .map(|request| {
            let criteria = request.get("search_criteria")?;
            (criteria.get("query_type").and_then(Value::as_str) == Some("predicate"))
                .then(|| Predicate::parse(criteria))
        })
        .collect();
    let mut shapes: HashMap<(String, u64, u64), Vec<usize>> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        if let Some(Ok(p)) = p {
            shapes.entry(p.shape()).or_default().push(i);
        }
    }
    // The NIKs and each shape's statement at once, each on its own connection: a
    // message's answer waits for its slowest statement, not for their sum.
    let by_nik = async {
        let mut by_nik: HashMap<String, Value> = HashMap::new();
        if !niks.is_empty() {
            let rows = db
                .query_all_raw(stmt(
                    &format!("SELECT {COLUMNS} FROM persons WHERE nik = ANY($1)"),
                    [niks.into()],
                ))
                .await?;
            for row in &rows {
                by_nik.insert(row.try_get("", "nik")?, record(row));
            }
        }
        Ok::<_, sea_orm::DbErr>(by_nik)
    };
    let by_shape = futures::future::try_join_all(shapes.into_values().map(|members| {
        let predicates: Vec<&Predicate> = members
            .iter()
            .filter_map(|i| parsed[*i].as_ref()?.as_ref().ok())
            .collect();
        async move {
            let results = Predicate::run_many(db, &predicates).await?;
            Ok::<_, sea_orm::DbErr>(members.into_iter().zip(results))
        }
    }));
    let (by_nik, by_shape) = futures::future::try_join(by_nik, by_shape).await?;
    let mut answered: HashMap<usize, (Vec<Value>, u64)> = by_shape.into_iter().flatten().collect();
    let mut responses = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let reference_id = request
            .get("reference_id")
            .cloned()
            .unwrap_or(Value::String(String::new()));
        let criteria = request.get("search_criteria").cloned().unwrap_or_default();
        let response = match criteria.get("query_type").and_then(Value::as_str) {
            Some("idtype-value") => match nik_of(&criteria) {
                Some(nik) => {
                    let records: Vec<Value> = by_nik.get(nik).cloned().into_iter().collect();
                    let total = records.len() as u64;
                    succeeded(&reference_id, &criteria, records, (1, 1), total)
                }
                None => rejected(
                    &reference_id,
                    "rjct.search_criteria.invalid",
                    "idtype-value takes the identifier type NIK with its value as text".into(),
                ),
            },
            Some("predicate") => match (&parsed[i], answered.remove(&i)) {
                (Some(Ok(predicate)), Some((records, total))) => succeeded(
                    &reference_id,
                    &criteria,
                    records,
                    (predicate.page_size, predicate.page_number),
                    total,
                ),
                (Some(Err(why)), _) if why.starts_with("pagination") => {
                    rejected(&reference_id, "rjct.pagination.invalid", why.clone())
                }
                (Some(Err(why)), _) => {
                    rejected(&reference_id, "rjct.search_criteria.invalid", why.clone())
                }
                _ => rejected(
                    &reference_id,
                    "rjct.search_criteria.invalid",
                    "the predicate search could not be answered".into(),
                ),
            },
            _ => rejected(
                &reference_id,
                "rjct.search_criteria.invalid",
                "this registry answers idtype-value and predicate queries; expressions are not supported".into(),
            ),
        };
        responses.push(response);
    }
    Ok(responses)
}

/// The NIK an identifier request asks for. A value holding a NUL character names no
/// one (PostgreSQL text cannot hold it): such a request is answered as invalid.
fn nik_of(criteria: &Value) -> Option<&str> {
    (criteria.get("query_type")?.as_str()? == "idtype-value"
        && criteria.pointer("/query/type")?.as_str()? == "NIK")
        .then(|| criteria.pointer("/query/value")?.as_str())
        .flatten()
        .filter(|nik| !nik.contains('\0'))
}

/// One value a predicate binds.
#[derive(Debug, Clone, PartialEq)]
enum Param {
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
struct Facts {
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
    conditions: Vec<String>,
    /// A condition an index answers alone that every answer meets: the rows it finds
    /// are read first, and the conditions held against them.
    narrow: Option<String>,
    params: Vec<Param>,
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
    fn from_rows(&self, sql: &str) -> String {
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
    fn matching(&self, each: impl Fn(&str) -> String) -> String {
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

#[cfg(test)]
mod tests;
