//! Reports as files for officers: CSV or an XLSX workbook (one sheet, bold frozen
//! header, numbers as numbers), each row with its region's code and name from the
//! reference data.

use dtks_platform::fault::Fault;
use dtks_proto::common::v1::Region;
use dtks_proto::reporting::v1::*;

use crate::error::Result;

/// A cell of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Count(u64),
    Share(f64),
}

/// A report as a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// A report that can be written as a table.
pub trait Tabular {
    fn table(&self) -> Table;
}

fn place(region: &Option<Region>) -> [Cell; 2] {
    let r = region.clone().unwrap_or_default();
    [Cell::Text(r.code), Cell::Text(r.name)]
}

/// One row per item: its region's code and name, then `cells`.
fn rows<T>(
    items: &[T],
    region: impl Fn(&T) -> &Option<Region>,
    cells: impl Fn(&T) -> Vec<Cell>,
) -> Vec<Vec<Cell>> {
    items
        .iter()
        .map(|x| {
            let mut row = place(region(x)).to_vec();
            row.extend(cells(x));
            row
        })
        .collect()
}

/// A report of one row per item of its `items`, each placed in its region, then one
/// cell per field: `Report, "name", items: Kind(field) [as "header"], …` (the header is
/// the field's name unless given).
macro_rules! tabular {
    ($report:ty, $name:literal, $items:ident: $($kind:ident($field:ident) $(as $header:literal)?),+) => {
        impl Tabular for $report {
            fn table(&self) -> Table {
                Table {
                    name: $name,
                    headers: headers(&[$(tabular!(@header $field $($header)?)),+]),
                    rows: rows(&self.$items, |x| &x.region, |x| {
                        vec![$(Cell::$kind(Clone::clone(&x.$field))),+]
                    }),
                }
            }
        }
    };
    (@header $field:ident) => { stringify!($field) };
    (@header $field:ident $header:literal) => { $header };
}

tabular!(MatchOutcomes, "match_outcomes", regions: Count(proposals), Count(persons), Share(match_rate));
tabular!(
    UpdateRates, "update_rates",
    regions: Count(records), Count(updated) as "updated_last_6_months", Share(rate) as "update_rate",
        Count(changed) as "changed_last_6_months", Count(confirmed) as "confirmed_last_6_months"
);
tabular!(
    ProgrammeCoverage, "programme_coverage",
    rows: Text(programme_code) as "programme", Count(eligible), Count(selected), Count(quota)
);
tabular!(
    Reverifications, "reverifications",
    regions: Count(complaints), Count(life_events), Count(open), Count(overdue)
);
tabular!(
    Removals, "removals",
    regions: Count(not_eligible), Count(moved_away), Count(duplicate), Count(all_deceased),
        Count(not_found), Count(unspecified), Count(total)
);

fn headers(names: &[&str]) -> Vec<String> {
    ["region_code", "region_name"]
        .iter()
        .chain(names)
        .map(|h| (*h).to_owned())
        .collect()
}

impl Tabular for InactiveRegions {
    fn table(&self) -> Table {
        Table {
            name: "inactive_regions",
            headers: headers(&[]),
            rows: self
                .regions
                .iter()
                .map(|x| place(&Some(x.clone())).to_vec())
                .collect(),
        }
    }
}

impl Tabular for Funnel {
    fn table(&self) -> Table {
        let mut rows = Vec::new();
        for region in &self.regions {
            for s in &region.stages {
                let mut row = place(&region.region).to_vec();
                row.extend([
                    Cell::Text(s.state.clone()),
                    Cell::Count(s.cases),
                    Cell::Share(s.mean_age_days),
                    Cell::Share(s.max_age_days),
                ]);
                rows.push(row);
            }
        }
        Table {
            name: "funnel",
            headers: headers(&["state", "cases", "mean_age_days", "max_age_days"]),
            rows,
        }
    }
}

impl Tabular for DecileDistribution {
    fn table(&self) -> Table {
        let mut names: Vec<String> = (1..=10).map(|d| format!("decile_{d}")).collect();
        names.push("households".into());
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Table {
            name: "deciles",
            headers: headers(&names),
            rows: rows(
                &self.regions,
                |x| &x.region,
                |x| {
                    let mut cells: Vec<Cell> = x
                        .households_per_decile
                        .iter()
                        .map(|n| Cell::Count(*n))
                        .collect();
                    cells.push(Cell::Count(x.households_per_decile.iter().sum()));
                    cells
                },
            ),
        }
    }
}

fn text(cell: &Cell) -> String {
    match cell {
        Cell::Text(t) => t.clone(),
        Cell::Count(n) => n.to_string(),
        Cell::Share(x) => format!("{x:.4}"),
    }
}

/// The table as file bytes.
pub fn render(table: &Table, format: ExportFormat) -> Result<Vec<u8>> {
    let internal = |e: &dyn std::fmt::Display| Fault::Other(format!("export: {e}"));
    match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(&table.headers).map_err(|e| internal(&e))?;
            for row in &table.rows {
                w.write_record(row.iter().map(text))
                    .map_err(|e| internal(&e))?;
            }
            Ok(w.into_inner().map_err(|e| internal(&e))?)
        }
        ExportFormat::Xlsx => {
            let mut book = rust_xlsxwriter::Workbook::new();
            let bold = rust_xlsxwriter::Format::new().set_bold();
            let sheet = book.add_worksheet();
            sheet.set_name(table.name).map_err(|e| internal(&e))?;
            for (c, header) in table.headers.iter().enumerate() {
                let c = c as u16;
                sheet
                    .set_column_width(c, (header.len() as f64 + 2.0).max(12.0))
                    .map_err(|e| internal(&e))?;
                sheet
                    .write_string_with_format(0, c, header, &bold)
                    .map_err(|e| internal(&e))?;
            }
            for (r, row) in table.rows.iter().enumerate() {
                let r = (r + 1) as u32;
                for (c, cell) in row.iter().enumerate() {
                    let c = c as u16;
                    match cell {
                        Cell::Text(t) => sheet.write_string(r, c, t),
                        Cell::Count(n) => sheet.write_number(r, c, *n as f64),
                        Cell::Share(x) => sheet.write_number(r, c, *x),
                    }
                    .map_err(|e| internal(&e))?;
                }
            }
            sheet.set_freeze_panes(1, 0).map_err(|e| internal(&e))?;
            Ok(book.save_to_buffer().map_err(|e| internal(&e))?)
        }
        ExportFormat::Unspecified => {
            Err(dtks_platform::grpc::invalid_field("format", "must be CSV or XLSX").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        UpdateRates {
            regions: vec![RegionRate {
                region: Some(Region {
                    code: "32.04".into(),
                    name: "KAB. BANDUNG".into(),
                    level: 3,
                }),
                records: 10,
                updated: 4,
                rate: 0.4,
                changed: 3,
                confirmed: 1,
            }],
        }
        .table()
    }

    #[test]
    fn csv_has_the_headers_and_the_rows() {
        let bytes = render(&sample(), ExportFormat::Csv).expect("csv");
        let text = String::from_utf8(bytes).expect("utf-8");
        assert_eq!(
            text,
            "region_code,region_name,records,updated_last_6_months,update_rate,\
             changed_last_6_months,confirmed_last_6_months\n\
             32.04,KAB. BANDUNG,10,4,0.4000,3,1\n"
        );
    }

    #[test]
    fn xlsx_is_a_zip_workbook() {
        let bytes = render(&sample(), ExportFormat::Xlsx).expect("xlsx");
        assert_eq!(&bytes[..2], b"PK");
        assert!(render(&sample(), ExportFormat::Unspecified).is_err());
    }
}
