//! `dtksctl template` and `dtksctl import` against a running intake, in both formats:
//! good households are taken; refused ones — by the tool or by intake — come back in a
//! rejected-rows file with the reason on the row it concerns, which imports once fixed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dtks_e2e::Stack;
use dtks_platform::auth::Role;

use super::{REGISTRY, count};

type Tables = HashMap<String, Vec<Vec<String>>>;
const TABLES: [&str; 3] = ["households", "families", "persons"];

async fn dtksctl(stack: &Stack, token: &str, args: &[&str]) -> anyhow::Result<(i32, String)> {
    let (code, stdout, stderr) = stack.dtksctl(token, args).await?;
    anyhow::ensure!(
        code == 0 || code == 3,
        "dtksctl {args:?} failed ({code}): {stdout}{stderr}"
    );
    Ok((code, stdout))
}

fn read_csv_dir(dir: &Path) -> anyhow::Result<Tables> {
    let mut tables = Tables::new();
    for name in TABLES {
        let mut reader = csv::Reader::from_path(dir.join(format!("{name}.csv")))?;
        let mut rows = vec![reader.headers()?.iter().map(str::to_owned).collect()];
        for record in reader.records() {
            rows.push(record?.iter().map(str::to_owned).collect());
        }
        tables.insert(name.to_owned(), rows);
    }
    Ok(tables)
}

fn write_csv_dir(dir: &Path, tables: &Tables) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for name in TABLES {
        let mut w = csv::Writer::from_path(dir.join(format!("{name}.csv")))?;
        for row in &tables[name] {
            w.write_record(row)?;
        }
        w.flush()?;
    }
    Ok(())
}

fn write_xlsx(path: &Path, tables: &Tables) -> anyhow::Result<()> {
    let mut book = rust_xlsxwriter::Workbook::new();
    for name in TABLES {
        let sheet = book.add_worksheet();
        sheet.set_name(name)?;
        for (r, row) in tables[name].iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                // Numbers as numbers, as a spreadsheet user types them; codes as words.
                match value.parse::<f64>() {
                    Ok(n) if value.len() < 15 && c > 0 => {
                        sheet.write_number(r as u32, c as u16, n)?;
                    }
                    _ => {
                        sheet.write_string(r as u32, c as u16, value)?;
                    }
                }
            }
        }
    }
    book.save(path)?;
    Ok(())
}

fn read_xlsx(path: &Path) -> anyhow::Result<Tables> {
    use calamine::Reader;
    let mut book = calamine::open_workbook_auto(path)?;
    let mut tables = Tables::new();
    for name in TABLES {
        let range = book.worksheet_range(name)?;
        tables.insert(
            name.to_owned(),
            range
                .rows()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect(),
        );
    }
    Ok(tables)
}

fn column(tables: &Tables, table: &str, name: &str) -> usize {
    tables[table][0]
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("{table} has no {name}"))
}

/// The template's household three times over: 0002 with a NIK intake refuses, 0003 with a
/// birth date the tool cannot read, and a person row belonging to no household.
fn with_problems(template: &Tables) -> Tables {
    let mut t = template.clone();
    let nik = column(&t, "persons", "nik");
    let born = column(&t, "persons", "birth_date");
    for (reference, table_rows) in [("DESA-2001-0002", 0), ("DESA-2001-0003", 1)] {
        for table in TABLES {
            let copies: Vec<Vec<String>> = template[table][1..]
                .iter()
                .map(|row| {
                    let mut row = row.clone();
                    row[0] = reference.to_owned();
                    row
                })
                .collect();
            for (i, mut row) in copies.into_iter().enumerate() {
                if table == "persons" && i == 0 {
                    if table_rows == 0 {
                        row[nik] = "320405120380000".into();
                    } else {
                        row[born] = "12/03/1980".into();
                    }
                }
                t.get_mut(table).expect("table").push(row);
            }
        }
    }
    let mut stray = template["persons"][1].clone();
    stray[0] = "NOWHERE-1".into();
    t.get_mut("persons").expect("persons").push(stray);
    t
}

/// Checks the rejected tables: both refused households, the stray row, each reason on
/// its row; then fixes them.
fn check_and_fix(rejected: &mut Tables) {
    let errors = column(rejected, "persons", "errors");
    let nik = column(rejected, "persons", "nik");
    let born = column(rejected, "persons", "birth_date");
    let households: Vec<&str> = rejected["households"][1..]
        .iter()
        .map(|r| r[0].as_str())
        .collect();
    assert_eq!(households, ["DESA-2001-0002", "DESA-2001-0003"]);
    let persons = &rejected["persons"];
    assert_eq!(persons.len(), 1 + 3 + 3 + 1, "{persons:?}");
    let reason = |reference: &str, i: usize| -> String {
        persons[1..]
            .iter()
            .filter(|r| r[0] == reference)
            .nth(i)
            .map(|r| r[errors].clone())
            .unwrap_or_default()
    };
    assert!(
        reason("DESA-2001-0002", 0).starts_with("nik:"),
        "{persons:?}"
    );
    assert!(
        reason("DESA-2001-0002", 1).is_empty(),
        "the spouse's row is fine"
    );
    assert!(
        reason("DESA-2001-0003", 0).starts_with("birth_date:"),
        "{persons:?}"
    );
    assert!(reason("NOWHERE-1", 0).contains("not in the households table"));
    // The operator fixes the two cells and drops the stray row.
    let persons = rejected.get_mut("persons").expect("persons");
    persons.retain(|r| r[0] != "NOWHERE-1");
    for row in persons.iter_mut().skip(1) {
        if row[nik] == "320405120380000" {
            row[nik] = "3204051203800001".into();
        }
        if row[born] == "12/03/1980" {
            row[born] = "1980-03-12".into();
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dtks-import-{}-{name}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_xlsx_files_import_and_refused_rows_come_back_fixable() -> anyhow::Result<()> {
    let stack = Stack::start_services(REGISTRY, &["intake"], &[]).await?;
    let operator = stack.token(Role::VillageOperator, "32.04.05.2001");
    let proposals = || count(&stack, "SELECT count(*)::bigint AS n FROM intake.proposals");

    // CSV: a directory of three files.
    let work = scratch("csv");
    let template_dir = work.join("template");
    dtksctl(
        &stack,
        &operator,
        &["template", template_dir.to_str().unwrap_or_default()],
    )
    .await?;
    let template = read_csv_dir(&template_dir)?;
    let input = work.join("desa-2001");
    write_csv_dir(&input, &with_problems(&template))?;
    let (code, out) = dtksctl(
        &stack,
        &operator,
        &["import", input.to_str().unwrap_or_default()],
    )
    .await?;
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("3 households read: 1 accepted"), "{out}");
    assert_eq!(proposals().await?, 1);
    let rejected_dir = work.join("desa-2001.rejected");
    let mut rejected = read_csv_dir(&rejected_dir)?;
    check_and_fix(&mut rejected);
    write_csv_dir(&rejected_dir, &rejected)?;
    let (code, out) = dtksctl(
        &stack,
        &operator,
        &["import", rejected_dir.to_str().unwrap_or_default()],
    )
    .await?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 households read: 2 accepted"), "{out}");
    assert_eq!(proposals().await?, 3);

    // XLSX: the same file as a workbook typed by hand (numbers as numbers), under new
    // references; the first household of the template is already in and is replayed.
    let work = scratch("xlsx");
    let mut problems = with_problems(&template);
    for table in TABLES {
        for row in problems.get_mut(table).expect("table").iter_mut().skip(1) {
            if row[0] != "DESA-2001-0001" && row[0] != "NOWHERE-1" {
                row[0] = row[0].replace("DESA", "XL");
            }
        }
    }
    let workbook = work.join("desa-2001.xlsx");
    write_xlsx(&workbook, &problems)?;
    let (code, out) = dtksctl(
        &stack,
        &operator,
        &["import", workbook.to_str().unwrap_or_default()],
    )
    .await?;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("3 households read: 1 accepted (1 already proposed earlier)"),
        "{out}"
    );
    assert_eq!(proposals().await?, 3);
    let rejected_book = work.join("desa-2001.rejected.xlsx");
    let mut rejected = read_xlsx(&rejected_book)?;
    for table in TABLES {
        for row in rejected.get_mut(table).expect("table").iter_mut().skip(1) {
            row[0] = row[0].replace("XL", "DESA");
        }
    }
    check_and_fix(&mut rejected);
    for table in TABLES {
        for row in rejected.get_mut(table).expect("table").iter_mut().skip(1) {
            row[0] = row[0].replace("DESA", "XL");
        }
    }
    write_xlsx(&rejected_book, &rejected)?;
    let (code, out) = dtksctl(
        &stack,
        &operator,
        &["import", rejected_book.to_str().unwrap_or_default()],
    )
    .await?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 households read: 2 accepted"), "{out}");
    assert_eq!(proposals().await?, 5);
    for dir in [
        work,
        rejected_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    ] {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}
