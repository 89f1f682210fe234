//! `dtksctl import FILE` and `dtksctl template FILE`: proposal files as regions send
//! them. Households, families and persons are joined by `household_ref` and
//! `family_no`; each household becomes one proposal sent through intake's bulk path.
//! Refused households — by this tool (a cell that is not a date, an unknown code) or by
//! intake (every field it names) — are written to a rejected-rows file in the same
//! format, with an `errors` column on the very row each problem concerns, so a village
//! operator can fix the rows and import that file again.

mod assemble;
mod columns;
mod template;

use std::path::PathBuf;

use dtks_proto::events::v1 as ev;
use dtks_proto::intake::v1::SubmitProposalRequest;

use dtksctl::sheet::{self, ERRORS, Format, Table};

use assemble::*;
pub use template::{TemplateArgs, template};

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
