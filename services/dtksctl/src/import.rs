//! `dtksctl import FILE` and `dtksctl template FILE`: proposal files as regions send
//! them. Households, families and persons are joined by `household_ref` and
//! `family_no`; each household becomes one proposal sent through intake's bulk path.
//! Refused households — by this tool (a cell that is not a date, an unknown code) or by
//! intake (every field it names) — are written to a rejected-rows file in the same
//! format, with an `errors` column on the very row each problem concerns, so a village
//! operator can fix the rows and import that file again.

use std::collections::HashMap;
use std::path::PathBuf;

use dtks_proto::common::v1 as pb;
use dtks_proto::events::v1 as ev;
use dtks_proto::intake::v1::{Minutes, SubmitProposalRequest};

use dtksctl::sheet::{self, ERRORS, Format, Table};

#[derive(clap::Args)]
pub struct ImportArgs {
    /// An .xlsx workbook (sheets households, families, persons) or a directory holding
    /// households.csv, families.csv and persons.csv.
    file: PathBuf,
    /// The channel the proposals come through: musdes or ministry.
    #[arg(long, default_value = "musdes")]
    channel: String,
    /// Where refused rows go; defaults to NAME.rejected.xlsx or DIR.rejected/.
    #[arg(long)]
    rejected: Option<PathBuf>,
    #[arg(
        long,
        env = "DTKS_INTAKE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    intake: String,
    /// The officer's token (`dtksctl token --role village_operator --region …`).
    #[arg(long, env = "DTKS_TOKEN", hide_env_values = true)]
    token: String,
    /// Import streams in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Show the progress line even when standard error is not a terminal.
    #[arg(long)]
    progress: bool,
}

#[derive(clap::Args)]
pub struct TemplateArgs {
    /// Output: an .xlsx workbook, or a directory for three CSV files.
    file: PathBuf,
}

/// The columns of each table, with what goes in them (the template's `columns` sheet).
pub const HOUSEHOLD_COLUMNS: &[(&str, &str)] = &[
    (
        "household_ref",
        "your reference for the household, unique in the file (e.g. the SIKS-NG row id); required",
    ),
    (
        "kind",
        "ADD (new household), CHANGE or REMOVE; ADD when empty",
    ),
    (
        "change_type",
        "for CHANGE: NEW_MEMBER, DEATH, MOVED or CORRECTION",
    ),
    (
        "household_id",
        "for CHANGE and REMOVE: the DTKS household id",
    ),
    ("reason", "for CHANGE and REMOVE: why"),
    (
        "village_code",
        "Kemendagri village code, e.g. 32.04.05.2001; required",
    ),
    ("rt", "RT"),
    ("rw", "RW"),
    ("street", "street and house number"),
    ("postal_code", "postal code"),
    ("latitude", "decimal degrees, e.g. -6.9412"),
    ("longitude", "decimal degrees, e.g. 107.7573"),
    (
        "minutes_number",
        "musdes/muskel minutes (berita acara) number; required for musdes",
    ),
    (
        "minutes_date",
        "date of the deliberation, YYYY-MM-DD; required for musdes",
    ),
    (
        "minutes_attendees",
        "number of attendees; required for musdes",
    ),
    ("tenure", "status of the dwelling: see codes"),
    ("floor_area_m2", "floor area in m²"),
    ("floor", "floor material: see codes"),
    ("wall", "wall material: see codes"),
    ("roof", "roof material: see codes"),
    ("water", "drinking water source: see codes"),
    ("sanitation", "sanitation: see codes"),
    ("electricity", "electricity: see codes"),
    ("land_m2", "land owned, m²"),
    ("house_elsewhere", "owns a house elsewhere: 1/0"),
    ("motorcycles", "number of motorcycles"),
    ("cars", "number of cars"),
    ("livestock", "number of large livestock"),
    ("refrigerator", "owns a refrigerator: 1/0"),
    ("productive_business", "runs a productive business: 1/0"),
    ("savings", "savings in rupiah"),
    ("psks_potential", "PSKS potential, separated by ;"),
    (
        "assistance_history",
        "assistance received: PROGRAMME:YYYY-MM:AMOUNT, separated by ;",
    ),
];

pub const FAMILY_COLUMNS: &[(&str, &str)] = &[
    ("household_ref", "the household this family (KK) lives in"),
    ("family_no", "1, 2, … within the household"),
    ("kk_number", "16-digit family card (KK) number, as text"),
];

pub const PERSON_COLUMNS: &[(&str, &str)] = &[
    ("household_ref", "the household"),
    ("family_no", "the family (KK) within the household"),
    (
        "nik",
        "16-digit NIK as text; empty when the person has none yet",
    ),
    ("full_name", "full name; required"),
    ("birth_place", "place of birth"),
    ("birth_date", "YYYY-MM-DD; required"),
    ("sex", "MALE or FEMALE (or 1/2)"),
    (
        "relationship",
        "to the head of household: see codes; exactly one HEAD",
    ),
    ("marital_status", "see codes; required"),
    ("education", "highest level: see codes; required"),
    ("school_status", "see codes"),
    ("work_status", "see codes; required"),
    ("occupation", "occupation"),
    ("sector", "sector of work"),
    ("monthly_income", "monthly income in rupiah"),
    ("disability", "see codes; NONE when none; required"),
    ("chronic_illness", "1/0"),
    ("has_health_insurance", "1/0"),
    ("pregnant", "1/0"),
    (
        "undernourished",
        "child under five with a nutrition problem: 1/0",
    ),
    ("special_groups", "see codes, separated by ;"),
    ("skills", "skills (PSKS), separated by ;"),
    (
        "deceased",
        "1 when the person has died (for a DEATH change)",
    ),
];

type NameOf = fn(i32) -> Option<&'static str>;

macro_rules! names {
    ($t:ty) => {
        (|code| <$t>::try_from(code).ok().map(|e| e.as_str_name())) as NameOf
    };
}

/// Coded columns: the column, the enum's name prefix and its names.
fn coded_columns() -> Vec<(&'static str, &'static str, NameOf)> {
    vec![
        ("kind", "PROPOSAL_KIND_", names!(ev::ProposalKind)),
        ("change_type", "CHANGE_TYPE_", names!(ev::ChangeType)),
        ("tenure", "TENURE_", names!(pb::Tenure)),
        ("floor", "FLOOR_MATERIAL_", names!(pb::FloorMaterial)),
        ("wall", "WALL_MATERIAL_", names!(pb::WallMaterial)),
        ("roof", "ROOF_MATERIAL_", names!(pb::RoofMaterial)),
        ("water", "WATER_SOURCE_", names!(pb::WaterSource)),
        ("sanitation", "SANITATION_", names!(pb::Sanitation)),
        ("electricity", "ELECTRICITY_", names!(pb::Electricity)),
        ("sex", "SEX_", names!(pb::Sex)),
        ("relationship", "RELATIONSHIP_", names!(pb::Relationship)),
        (
            "marital_status",
            "MARITAL_STATUS_",
            names!(pb::MaritalStatus),
        ),
        ("education", "EDUCATION_LEVEL_", names!(pb::EducationLevel)),
        ("school_status", "SCHOOL_STATUS_", names!(pb::SchoolStatus)),
        ("work_status", "WORK_STATUS_", names!(pb::WorkStatus)),
        ("disability", "DISABILITY_", names!(pb::Disability)),
        ("special_groups", "SPECIAL_GROUP_", names!(pb::SpecialGroup)),
    ]
}

/// Every (code, short name) of a coded column, 1 upwards.
fn codes_of(name_of: NameOf, prefix: &str) -> Vec<(i32, String)> {
    (1..64)
        .filter_map(|c| name_of(c).map(|n| (c, n.trim_start_matches(prefix).to_owned())))
        .collect()
}

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
struct Assembled {
    reference: String,
    household_row: usize,
    /// Per family (in family_no order): its families-table row (if any) and persons rows.
    families: Vec<(Option<usize>, Vec<usize>)>,
    request: Option<SubmitProposalRequest>,
}

/// Errors by (table index, row index).
type Errors = HashMap<(usize, usize), Vec<String>>;

fn assemble(
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
fn place(a: &Assembled, field: &str, description: &str, errors: &mut Errors) {
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

pub async fn run(args: ImportArgs) -> anyhow::Result<i32> {
    let channel = match args.channel.to_ascii_lowercase().as_str() {
        "musdes" | "muskel" => ev::Channel::Musdes,
        "ministry" | "kemensos" => ev::Channel::Ministry,
        other => anyhow::bail!("--channel {other}: use musdes or ministry"),
    };
    let started = std::time::Instant::now();
    let tables = sheet::read(&args.file)?;
    let mut errors = Errors::new();
    let mut households = assemble(&tables, channel, &mut errors)?;
    let rows: Vec<(u64, SubmitProposalRequest)> = households
        .iter_mut()
        .enumerate()
        .filter_map(|(i, a)| a.request.take().map(|r| (i as u64, r)))
        .collect();
    let sent = rows.len() as u64;
    let client = dtks_proto::intake::v1::intake_service_client::IntakeServiceClient::new(
        crate::cycle::channel(&args.intake, &args.token).await?,
    );
    let mut progress = crate::bulk::Progress::new(sent, args.progress);
    let outcome = crate::bulk::send(&client, rows, args.concurrency, &mut progress).await?;
    for refused in &outcome.rejected {
        let a = &households[refused.row as usize];
        for e in &refused.errors {
            place(a, &e.field, &e.description, &mut errors);
        }
    }

    // The rejected-rows file: every row of every refused household, and stray rows.
    let refused_households: std::collections::HashSet<usize> = households
        .iter()
        .filter(|a| {
            std::iter::once((0, a.household_row))
                .chain(a.families.iter().flat_map(|(f, ps)| {
                    f.map(|f| (1, f))
                        .into_iter()
                        .chain(ps.iter().map(|p| (2, *p)))
                }))
                .any(|k| errors.contains_key(&k))
        })
        .map(|a| a.household_row)
        .collect();
    let mut keep: std::collections::HashSet<(usize, usize)> = errors.keys().copied().collect();
    for a in households
        .iter()
        .filter(|a| refused_households.contains(&a.household_row))
    {
        keep.insert((0, a.household_row));
        for (f, ps) in &a.families {
            keep.extend(f.map(|f| (1, f)));
            keep.extend(ps.iter().map(|p| (2, *p)));
        }
    }
    let rejected_path = args
        .rejected
        .clone()
        .unwrap_or_else(|| sheet::rejected_path(&args.file));
    if !keep.is_empty() {
        let out: Vec<Table> = tables
            .iter()
            .enumerate()
            .map(|(t, table)| {
                let errors_at = table.column(ERRORS);
                let mut headers: Vec<String> = table
                    .headers
                    .iter()
                    .filter(|h| *h != ERRORS)
                    .cloned()
                    .collect();
                headers.push(ERRORS.into());
                let rows = table
                    .rows
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| keep.contains(&(t, *i)))
                    .map(|(i, (line, cells))| {
                        let mut cells: Vec<String> = cells
                            .iter()
                            .enumerate()
                            .filter(|(c, _)| Some(*c) != errors_at)
                            .map(|(_, v)| v.clone())
                            .collect();
                        cells.resize(headers.len() - 1, String::new());
                        cells.push(
                            errors
                                .get(&(t, i))
                                .map(|e| e.join("; "))
                                .unwrap_or_default(),
                        );
                        (*line, cells)
                    })
                    .collect();
                Table {
                    name: table.name,
                    headers,
                    rows,
                }
            })
            .collect();
        sheet::write(&rejected_path, Format::of(&args.file), &out)?;
    }
    let refused = refused_households.len();
    println!(
        "{} households read: {} accepted ({} already proposed earlier), {} refused ({:.1} s)",
        households.len(),
        outcome.accepted,
        outcome.replayed,
        refused,
        started.elapsed().as_secs_f64()
    );
    if keep.is_empty() {
        return Ok(0);
    }
    println!(
        "refused rows, with the reason on each, are in {}: fix them and import that file again",
        rejected_path.display()
    );
    Ok(3)
}

/// The example household of the template: a village operator's typical proposal.
fn example() -> Vec<Table> {
    let owned = |cols: &[(&str, &str)], values: &[(&str, &str)]| -> Vec<String> {
        cols.iter()
            .map(|(c, _)| {
                values
                    .iter()
                    .find(|(k, _)| k == c)
                    .map(|(_, v)| (*v).to_owned())
                    .unwrap_or_default()
            })
            .collect()
    };
    let today = dtks_platform::clock::today().to_string();
    let household = owned(
        HOUSEHOLD_COLUMNS,
        &[
            ("household_ref", "DESA-2001-0001"),
            ("kind", "ADD"),
            ("village_code", "32.04.05.2001"),
            ("rt", "001"),
            ("rw", "002"),
            ("street", "Jl. Melati 3"),
            ("postal_code", "40393"),
            ("latitude", "-6.9412"),
            ("longitude", "107.7573"),
            ("minutes_number", "BA/MUSDES/2001/001"),
            ("minutes_date", &today),
            ("minutes_attendees", "35"),
            ("tenure", "OWNED"),
            ("floor_area_m2", "36"),
            ("floor", "EARTH"),
            ("wall", "BAMBOO"),
            ("roof", "ZINC"),
            ("water", "UNPROTECTED"),
            ("sanitation", "SHARED"),
            ("electricity", "PLN_450VA"),
            ("motorcycles", "0"),
            ("cars", "0"),
            ("refrigerator", "0"),
            ("assistance_history", "PKH:2026-06:750000"),
        ],
    );
    let family = owned(
        FAMILY_COLUMNS,
        &[
            ("household_ref", "DESA-2001-0001"),
            ("family_no", "1"),
            ("kk_number", "3204050505150001"),
        ],
    );
    let person = |nik: &str, name: &str, born: &str, sex: &str, rel: &str, married: &str| {
        owned(
            PERSON_COLUMNS,
            &[
                ("household_ref", "DESA-2001-0001"),
                ("family_no", "1"),
                ("nik", nik),
                ("full_name", name),
                ("birth_place", "Bandung"),
                ("birth_date", born),
                ("sex", sex),
                ("relationship", rel),
                ("marital_status", married),
                ("education", "PRIMARY"),
                (
                    "school_status",
                    if rel == "CHILD" { "ATTENDING" } else { "LEFT" },
                ),
                (
                    "work_status",
                    if rel == "CHILD" {
                        "NOT_WORKING"
                    } else {
                        "INFORMAL"
                    },
                ),
                ("occupation", if rel == "CHILD" { "" } else { "buruh tani" }),
                (
                    "monthly_income",
                    if rel == "CHILD" { "0" } else { "900000" },
                ),
                ("disability", "NONE"),
            ],
        )
    };
    let table = |name, cols: &[(&str, &str)], rows: Vec<Vec<String>>| Table {
        name,
        headers: cols.iter().map(|(c, _)| (*c).to_owned()).collect(),
        rows: rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i + 2, r))
            .collect(),
    };
    vec![
        table("households", HOUSEHOLD_COLUMNS, vec![household]),
        table("families", FAMILY_COLUMNS, vec![family]),
        table(
            "persons",
            PERSON_COLUMNS,
            vec![
                person(
                    "3204051203800001",
                    "Asep Sunandar",
                    "1980-03-12",
                    "MALE",
                    "HEAD",
                    "MARRIED",
                ),
                person(
                    "3204055708840002",
                    "Siti Aminah",
                    "1984-08-17",
                    "FEMALE",
                    "SPOUSE",
                    "MARRIED",
                ),
                person(
                    "3204050102100003",
                    "Dede Kurnia",
                    "2010-02-01",
                    "MALE",
                    "CHILD",
                    "SINGLE",
                ),
            ],
        ),
    ]
}

/// Writes the template: the three tables with one example household, and two reference
/// tables (`columns`: what goes in each column; `codes`: the codes and their names).
pub fn template(args: TemplateArgs) -> anyhow::Result<()> {
    let mut tables = example();
    let mut columns = Vec::new();
    for (table, cols) in [
        ("households", HOUSEHOLD_COLUMNS),
        ("families", FAMILY_COLUMNS),
        ("persons", PERSON_COLUMNS),
    ] {
        for (c, what) in cols {
            columns.push(vec![table.to_owned(), (*c).to_owned(), (*what).to_owned()]);
        }
    }
    let mut codes = Vec::new();
    for (column, prefix, name_of) in coded_columns() {
        for (code, name) in codes_of(name_of, prefix) {
            codes.push(vec![column.to_owned(), code.to_string(), name]);
        }
    }
    let numbered = |rows: Vec<Vec<String>>| {
        rows.into_iter()
            .enumerate()
            .map(|(i, r)| (i + 2, r))
            .collect()
    };
    tables.push(Table {
        name: "columns",
        headers: vec!["table".into(), "column".into(), "what goes in it".into()],
        rows: numbered(columns),
    });
    tables.push(Table {
        name: "codes",
        headers: vec!["column".into(), "code".into(), "name".into()],
        rows: numbered(codes),
    });
    sheet::write(&args.file, Format::of(&args.file), &tables)?;
    println!(
        "template written to {} (households, families, persons, columns, codes)",
        args.file.display()
    );
    Ok(())
}
