//! The three tables of a proposal file — households, families, persons — as regions
//! send them: an XLSX workbook with one sheet per table, or a directory of three CSV
//! files. Cells are read as text; writing keeps every cell text, so a 16-digit NIK is
//! never turned into a number (a spreadsheet keeps only 15 significant digits).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub const TABLES: [&str; 3] = ["households", "families", "persons"];
/// The column a rejected-rows file adds: what is wrong with the row.
pub const ERRORS: &str = "errors";

/// One table: its header and its rows, each with the line (or spreadsheet row) it came
/// from, counting the header as line 1.
pub struct Table {
    pub name: &'static str,
    pub headers: Vec<String>,
    pub rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }
}

/// The file's format, by its path: `*.xlsx` or a directory of CSV files.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Xlsx,
    CsvDir,
}

impl Format {
    pub fn of(path: &Path) -> Self {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"))
        {
            Self::Xlsx
        } else {
            Self::CsvDir
        }
    }
}

/// Where the rejected rows of `input` go: `name.rejected.xlsx`, or `dir.rejected/`.
pub fn rejected_path(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "proposals".into());
    match Format::of(input) {
        Format::Xlsx => input.with_file_name(format!("{stem}.rejected.xlsx")),
        Format::CsvDir => {
            let name = input
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or(stem);
            input.with_file_name(format!("{name}.rejected"))
        }
    }
}

pub fn read(path: &Path) -> anyhow::Result<Vec<Table>> {
    match Format::of(path) {
        Format::Xlsx => read_xlsx(path),
        Format::CsvDir => read_csv_dir(path),
    }
}

fn read_csv_dir(dir: &Path) -> anyhow::Result<Vec<Table>> {
    // A path to households.csv stands for its directory.
    let dir = if dir.is_file() {
        dir.parent().unwrap_or(Path::new("."))
    } else {
        dir
    };
    TABLES
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}.csv"));
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_path(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let headers = reader
                .headers()?
                .iter()
                .map(|h| h.trim().to_owned())
                .collect();
            let mut rows = Vec::new();
            for (i, record) in reader.records().enumerate() {
                let record =
                    record.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
                if record.iter().all(|c| c.trim().is_empty()) {
                    continue;
                }
                rows.push((i + 2, record.iter().map(|c| c.trim().to_owned()).collect()));
            }
            Ok(Table {
                name,
                headers,
                rows,
            })
        })
        .collect()
}

fn cell_text(cell: &calamine::Data) -> String {
    use calamine::Data;
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.trim().to_owned(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => (if *b { "1" } else { "0" }).to_owned(),
        Data::DateTime(d) => {
            let (y, m, day, ..) = d.to_ymd_hms_milli();
            format!("{y:04}-{m:02}-{day:02}")
        }
        Data::Error(e) => format!("#ERROR {e:?}"),
    }
}

fn read_xlsx(path: &Path) -> anyhow::Result<Vec<Table>> {
    use calamine::Reader;
    let mut book = calamine::open_workbook_auto(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    TABLES
        .iter()
        .map(|name| {
            let range = book
                .worksheet_range(name)
                .with_context(|| format!("{}: no sheet named {name}", path.display()))?;
            let start = range.start().map(|(r, _)| r as usize).unwrap_or(0);
            let mut rows = range.rows();
            let headers = rows
                .next()
                .map(|r| r.iter().map(cell_text).collect())
                .unwrap_or_default();
            let rows = rows
                .enumerate()
                .map(|(i, r)| (start + i + 2, r.iter().map(cell_text).collect::<Vec<_>>()))
                .filter(|(_, r)| r.iter().any(|c| !c.is_empty()))
                .collect();
            Ok(Table {
                name,
                headers,
                rows,
            })
        })
        .collect()
}

/// Writes `tables` to `path` in `format`, every cell as text.
pub fn write(path: &Path, format: Format, tables: &[Table]) -> anyhow::Result<()> {
    match format {
        Format::CsvDir => {
            std::fs::create_dir_all(path)?;
            for table in tables {
                let mut w = csv::Writer::from_path(path.join(format!("{}.csv", table.name)))?;
                w.write_record(&table.headers)?;
                for (_, row) in &table.rows {
                    w.write_record(row)?;
                }
                w.flush()?;
            }
        }
        Format::Xlsx => {
            let mut book = rust_xlsxwriter::Workbook::new();
            let bold = rust_xlsxwriter::Format::new().set_bold();
            let text = rust_xlsxwriter::Format::new().set_num_format("@");
            for table in tables {
                let sheet = book.add_worksheet();
                sheet.set_name(table.name)?;
                for (c, header) in table.headers.iter().enumerate() {
                    let c = c as u16;
                    sheet.set_column_format(c, &text)?;
                    sheet.set_column_width(c, (header.len() as f64 + 2.0).max(12.0))?;
                    sheet.write_string_with_format(0, c, header, &bold)?;
                }
                for (r, (_, row)) in table.rows.iter().enumerate() {
                    for (c, value) in row.iter().enumerate() {
                        if !value.is_empty() {
                            sheet.write_string((r + 1) as u32, c as u16, value)?;
                        }
                    }
                }
                sheet.set_freeze_panes(1, 0)?;
            }
            book.save(path)?;
        }
    }
    Ok(())
}
