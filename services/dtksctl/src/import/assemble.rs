//! Rows joined into households: every cell parsed, every problem placed on the row it
//! concerns.

use std::collections::HashMap;

use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use dtks_proto::intake::v1::{Minutes, SubmitProposalRequest};

use dtksctl::sheet::{ERRORS, Table};

use super::columns::*;

/// Reads one table row as a map from column to cell, checking its cells.
struct Row<'a> {
    table: &'a Table,
    cells: &'a [String],
    errors: Vec<String>,
}

impl<'a> Row<'a> {
    fn new(table: &'a Table, cells: &'a [String]) -> Self {
        Self {
            table,
            cells,
            errors: Vec::new(),
        }
    }

    fn text(&self, column: &str) -> String {
        self.table
            .column(column)
            .and_then(|i| self.cells.get(i))
            .cloned()
            .unwrap_or_default()
    }

    fn fail(&mut self, column: &str, why: impl std::fmt::Display) {
        self.errors.push(format!("{column}: {why}"));
    }

    fn number<T: std::str::FromStr + Default>(&mut self, column: &str) -> T {
        let text = self.text(column).replace(['_', ' '], "");
        if text.is_empty() {
            return T::default();
        }
        text.parse().unwrap_or_else(|_| {
            self.fail(column, format!("{text:?} is not a number"));
            T::default()
        })
    }

    fn flag(&mut self, column: &str) -> bool {
        match self.text(column).to_ascii_lowercase().as_str() {
            "" | "0" | "no" | "n" | "false" | "tidak" | "t" => false,
            "1" | "yes" | "y" | "true" | "ya" => true,
            other => {
                self.fail(column, format!("{other:?} is not 1/0 (ya/tidak)"));
                false
            }
        }
    }

    fn date(&mut self, column: &str) -> Option<pb::Date> {
        let text = self.text(column);
        if text.is_empty() {
            return None;
        }
        match chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
            Ok(d) => {
                use chrono::Datelike;
                Some(pb::Date {
                    year: d.year(),
                    month: d.month() as i32,
                    day: d.day() as i32,
                })
            }
            Err(_) => {
                self.fail(column, format!("{text:?} is not a date YYYY-MM-DD"));
                None
            }
        }
    }

    fn code_of(&mut self, column: &str, text: &str) -> i32 {
        let Some((_, prefix, name_of)) = coded_columns().into_iter().find(|(c, ..)| *c == column)
        else {
            return 0;
        };
        if text.is_empty() {
            return 0;
        }
        if let Ok(n) = text.parse::<i32>() {
            return n;
        }
        let wanted = text.trim().to_ascii_uppercase().replace([' ', '-'], "_");
        let codes = codes_of(name_of, prefix);
        codes
            .iter()
            .find(|(_, name)| *name == wanted)
            .map(|(c, _)| *c)
            .unwrap_or_else(|| {
                let valid: Vec<&str> = codes.iter().map(|(_, n)| n.as_str()).collect();
                self.fail(
                    column,
                    format!("{text:?} is not one of {}", valid.join(", ")),
                );
                0
            })
    }

    fn code(&mut self, column: &str) -> i32 {
        let text = self.text(column);
        self.code_of(column, &text)
    }

    fn list(&self, column: &str) -> Vec<String> {
        self.text(column)
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A household of the file: the proposal built from its rows, or the problems found in
/// them; and where its rows are, to put errors back on them.
pub(super) struct Assembled {
    pub(super) reference: String,
    pub(super) household_row: usize,
    /// Per family (in family_no order): its families-table row (if any) and persons rows.
    pub(super) families: Vec<(Option<usize>, Vec<usize>)>,
    pub(super) request: Option<SubmitProposalRequest>,
}

/// Errors by (table index, row index).
pub(super) type Errors = HashMap<(usize, usize), Vec<String>>;

pub(super) fn assemble(
    tables: &[Table],
    channel: ev::Channel,
    errors: &mut Errors,
) -> anyhow::Result<Vec<Assembled>> {
    let [households, families, persons] = tables else {
        anyhow::bail!("a proposal file has three tables")
    };
    for table in tables {
        let columns: &[(&str, &str)] = match table.name {
            "households" => HOUSEHOLD_COLUMNS,
            "families" => FAMILY_COLUMNS,
            _ => PERSON_COLUMNS,
        };
        for (column, _) in columns
            .iter()
            .take(if table.name == "households" { 1 } else { 2 })
        {
            anyhow::ensure!(
                table.column(column).is_some(),
                "the {} table has no {column} column (see `dtksctl template`)",
                table.name
            );
        }
        if let Some(unknown) = table
            .headers
            .iter()
            .find(|h| *h != ERRORS && !columns.iter().any(|(c, _)| c == h))
        {
            anyhow::bail!("the {} table has an unknown column {unknown:?}", table.name);
        }
    }
    // family rows and person rows by household_ref, then by family_no.
    let mut family_rows: HashMap<String, Vec<(u32, usize)>> = HashMap::new();
    for (i, (_, cells)) in families.rows.iter().enumerate() {
        let mut row = Row::new(families, cells);
        let no: u32 = row.number("family_no");
        family_rows
            .entry(row.text("household_ref"))
            .or_default()
            .push((no, i));
        if !row.errors.is_empty() {
            errors.entry((1, i)).or_default().extend(row.errors);
        }
    }
    let mut person_rows: HashMap<(String, u32), Vec<usize>> = HashMap::new();
    for (i, (_, cells)) in persons.rows.iter().enumerate() {
        let mut row = Row::new(persons, cells);
        let no: u32 = row.number("family_no");
        person_rows
            .entry((row.text("household_ref"), no))
            .or_default()
            .push(i);
        if !row.errors.is_empty() {
            errors.entry((2, i)).or_default().extend(row.errors);
        }
    }
    let mut seen = HashMap::new();
    let mut out = Vec::new();
    for (hi, (_, cells)) in households.rows.iter().enumerate() {
        let mut row = Row::new(households, cells);
        let reference = row.text("household_ref");
        if reference.is_empty() {
            row.fail("household_ref", "is required");
        } else if let Some(first) = seen.insert(reference.clone(), hi) {
            row.fail(
                "household_ref",
                format!("repeats the household on line {}", households.rows[first].0),
            );
        }
        let mut numbers: Vec<u32> = family_rows
            .get(&reference)
            .map(|f| f.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default();
        numbers.extend(
            person_rows
                .keys()
                .filter(|(r, _)| *r == reference)
                .map(|(_, n)| *n),
        );
        numbers.sort_unstable();
        numbers.dedup();
        let mut layout = Vec::new();
        let mut pb_families = Vec::new();
        for no in numbers {
            let family_row = family_rows
                .get(&reference)
                .and_then(|f| f.iter().find(|(n, _)| *n == no).map(|(_, i)| *i));
            let members_rows = person_rows
                .get(&(reference.clone(), no))
                .cloned()
                .unwrap_or_default();
            let kk_number = family_row
                .map(|i| Row::new(families, &families.rows[i].1).text("kk_number"))
                .unwrap_or_default();
            let mut members = Vec::new();
            for &pi in &members_rows {
                let (person, problems) = person(persons, &persons.rows[pi].1);
                if !problems.is_empty() {
                    errors.entry((2, pi)).or_default().extend(problems);
                }
                members.push(person);
            }
            pb_families.push(pb::Family { kk_number, members });
            layout.push((family_row, members_rows));
        }
        let household = household(&mut row, pb_families);
        let minutes = (channel == ev::Channel::Musdes).then(|| Minutes {
            number: row.text("minutes_number"),
            date: row.date("minutes_date"),
            attendees: row.number("minutes_attendees"),
        });
        let kind = match row.code("kind") {
            0 => ev::ProposalKind::Add as i32,
            k => k,
        };
        let request = SubmitProposalRequest {
            idempotency_key: String::new(),
            channel: channel as i32,
            kind,
            external_reference: reference.clone(),
            household: Some(household),
            minutes,
            reason: row.text("reason"),
            change_type: row.code("change_type"),
            removal_reason: row.code("removal_reason"),
        };
        if !row.errors.is_empty() {
            errors.entry((0, hi)).or_default().extend(row.errors);
        }
        out.push(Assembled {
            reference,
            household_row: hi,
            families: layout,
            request: Some(request),
        });
    }
    // Rows that belong to no household of the file.
    let known: std::collections::HashSet<&str> = out.iter().map(|a| a.reference.as_str()).collect();
    for (t, table) in [(1usize, families), (2, persons)] {
        for (i, (_, cells)) in table.rows.iter().enumerate() {
            let reference = Row::new(table, cells).text("household_ref");
            if !known.contains(reference.as_str()) {
                errors.entry((t, i)).or_default().push(format!(
                    "household_ref: {reference:?} is not in the households table"
                ));
            }
        }
    }
    // A household with any problem in its own rows is not sent.
    for a in &mut out {
        let rows =
            std::iter::once((0, a.household_row)).chain(a.families.iter().flat_map(|(f, ps)| {
                f.map(|f| (1, f))
                    .into_iter()
                    .chain(ps.iter().map(|p| (2, *p)))
            }));
        if rows.into_iter().any(|k| errors.contains_key(&k)) {
            a.request = None;
        }
    }
    Ok(out)
}

fn household(row: &mut Row<'_>, families: Vec<pb::Family>) -> pb::Household {
    let (lat, lon) = (row.text("latitude"), row.text("longitude"));
    let location = if lat.is_empty() && lon.is_empty() {
        None
    } else {
        Some(pb::GeoPoint {
            latitude: row.number("latitude"),
            longitude: row.number("longitude"),
        })
    };
    let mut assistance_history = Vec::new();
    for entry in row.list("assistance_history") {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let parsed = match parts.as_slice() {
            [programme, period, amount] => period
                .split_once('-')
                .and_then(|(y, m)| Some((y.parse().ok()?, m.parse().ok()?)))
                .zip(amount.parse().ok())
                .map(|((year, month), amount)| pb::AssistanceRecord {
                    programme_code: (*programme).to_owned(),
                    period: Some(pb::Period { year, month }),
                    amount,
                }),
            _ => None,
        };
        match parsed {
            Some(record) => assistance_history.push(record),
            None => row.fail(
                "assistance_history",
                format!("{entry:?} is not PROGRAMME:YYYY-MM:AMOUNT"),
            ),
        }
    }
    pb::Household {
        household_id: row.text("household_id"),
        address: Some(pb::Address {
            village_code: row.text("village_code"),
            rt: row.text("rt"),
            rw: row.text("rw"),
            street: row.text("street"),
            postal_code: row.text("postal_code"),
        }),
        location,
        families,
        dwelling: Some(pb::Dwelling {
            tenure: row.code("tenure"),
            floor_area_m2: row.number("floor_area_m2"),
            floor: row.code("floor"),
            wall: row.code("wall"),
            roof: row.code("roof"),
            water: row.code("water"),
            sanitation: row.code("sanitation"),
            electricity: row.code("electricity"),
        }),
        assets: Some(pb::Assets {
            land_m2: row.number("land_m2"),
            house_elsewhere: row.flag("house_elsewhere"),
            motorcycles: row.number("motorcycles"),
            cars: row.number("cars"),
            livestock: row.number("livestock"),
            refrigerator: row.flag("refrigerator"),
            productive_business: row.flag("productive_business"),
            savings: row.number("savings"),
        }),
        assistance_history,
        psks_potential: row.list("psks_potential"),
    }
}

fn person(table: &Table, cells: &[String]) -> (pb::Person, Vec<String>) {
    let mut row = Row::new(table, cells);
    let nik = row.text("nik");
    if !nik.is_empty() && nik.contains(['E', 'e', '.']) {
        row.fail(
            "nik",
            "looks like a number a spreadsheet rounded: store the NIK as text",
        );
    }
    let special_groups = row
        .list("special_groups")
        .iter()
        .map(|g| row.code_of("special_groups", g))
        .collect::<Vec<_>>();
    let person = pb::Person {
        nik,
        full_name: row.text("full_name"),
        birth_place: row.text("birth_place"),
        birth_date: row.date("birth_date"),
        sex: row.code("sex"),
        marital_status: row.code("marital_status"),
        relationship: row.code("relationship"),
        education: row.code("education"),
        school_status: row.code("school_status"),
        work_status: row.code("work_status"),
        occupation: row.text("occupation"),
        sector: row.text("sector"),
        monthly_income: row.number("monthly_income"),
        health: Some(pb::Health {
            chronic_illness: row.flag("chronic_illness"),
            disability: row.code("disability"),
            has_health_insurance: row.flag("has_health_insurance"),
            pregnant: row.flag("pregnant"),
            undernourished: row.flag("undernourished"),
        }),
        special_groups,
        skills: row.list("skills"),
        deceased: row.flag("deceased"),
    };
    (person, row.errors)
}

/// Puts an error intake named by field path onto the row it concerns.
pub(super) fn place(a: &Assembled, field: &str, description: &str, errors: &mut Errors) {
    let index = |s: &str, key: &str| -> Option<(usize, usize)> {
        let rest = s.strip_prefix(key)?.strip_prefix('[')?;
        let (n, _) = rest.split_once(']')?;
        Some((n.parse().ok()?, key.len() + 1 + n.len() + 1))
    };
    let path = field.strip_prefix("household.").unwrap_or(field);
    if let Some((fi, used)) = index(path, "families") {
        let tail = path[used..].trim_start_matches('.');
        if let Some((f_row, members)) = a.families.get(fi) {
            if let Some((mi, used)) = index(tail, "members") {
                if let Some(&p) = members.get(mi) {
                    let column = tail[used..].trim_start_matches('.');
                    errors
                        .entry((2, p))
                        .or_default()
                        .push(format!("{column}: {description}"));
                    return;
                }
            }
            if let Some(f) = f_row {
                let column = if tail.is_empty() { "family" } else { tail };
                errors
                    .entry((1, *f))
                    .or_default()
                    .push(format!("{column}: {description}"));
                return;
            }
        }
    }
    errors
        .entry((0, a.household_row))
        .or_default()
        .push(format!("{path}: {description}"));
}
