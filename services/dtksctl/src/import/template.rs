//! `dtksctl template FILE`: an empty proposal file with an example household and the
//! columns explained.

use std::path::PathBuf;

use dtksctl::sheet::{self, Format, Table};

use super::columns::*;

#[derive(clap::Args)]
pub struct TemplateArgs {
    /// Output: an .xlsx workbook, or a directory for three CSV files.
    file: PathBuf,
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
