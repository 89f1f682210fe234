//! `dtksctl registry`: the master registry for officers — a household's history
//! (*riwayat perubahan*), version by version with who, when, why and each field that
//! changed; and the households behind a month's diff, by name, with the changes that
//! made each.

use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::determination_service_client::DeterminationServiceClient;
use dtks_proto::determination::v1::*;
use dtks_proto::events::v1::{ChangeType, ProposalKind};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[arg(
        long,
        env = "DTKS_DETERMINATION_URL",
        default_value = "http://127.0.0.1:50054"
    )]
    determination: String,
    /// The officer's token (`dtksctl token --role regency_officer --region 32.04`).
    #[arg(long, env = "DTKS_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Every version of a household, oldest first, with what each changed.
    History { household_id: String },
    /// The households added, removed or changed between two determined months
    /// (`--from 2026-01 --to 2026-02`), with the accepted changes behind each.
    Changes {
        #[arg(long, value_parser = period)]
        from: pb::Period,
        #[arg(long, value_parser = period)]
        to: pb::Period,
        /// Region code; empty for your own scope.
        #[arg(long, default_value = "")]
        region: String,
        /// Also the households whose decile alone moved.
        #[arg(long)]
        decile_moves: bool,
    },
}

fn period(text: &str) -> Result<pb::Period, String> {
    let (year, month) = text
        .split_once('-')
        .ok_or_else(|| format!("{text}: a month is written YYYY-MM"))?;
    let number = |s: &str| s.parse::<i32>().map_err(|_| format!("{text}: not YYYY-MM"));
    Ok(pb::Period {
        year: number(year)?,
        month: number(month)?,
    })
}

/// `CHANGE NEW_MEMBER`, `REMOVE`, or `-` before the history was kept.
fn why(v: &HouseholdVersion) -> String {
    let kind = ProposalKind::try_from(v.kind).unwrap_or_default();
    let kind = kind.as_str_name().trim_start_matches("PROPOSAL_KIND_");
    let change = ChangeType::try_from(v.change_type).unwrap_or_default();
    match (kind, change) {
        ("UNSPECIFIED", _) if v.removed => "REMOVED".to_owned(),
        ("UNSPECIFIED", _) => "-".to_owned(),
        (kind, ChangeType::Unspecified) => kind.to_owned(),
        (kind, change) => format!(
            "{kind} {}",
            change.as_str_name().trim_start_matches("CHANGE_TYPE_")
        ),
    }
}

fn when(v: &HouseholdVersion) -> String {
    v.valid_from
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let channel = crate::cycle::channel(&args.determination, &args.token).await?;
    let mut client = DeterminationServiceClient::new(channel);
    match args.command {
        Command::History { household_id } => {
            let history = client
                .get_household_history(GetHouseholdHistoryRequest { household_id })
                .await?
                .into_inner();
            for v in &history.versions {
                println!(
                    "version {}\t{}\t{}\t{}\tby {}\tproposal {}\t{}",
                    v.version,
                    when(v),
                    v.region_code,
                    why(v),
                    v.decided_by,
                    v.proposal_id,
                    v.reason
                );
                for c in &v.changes {
                    println!("  {}: {:?} -> {:?}", c.field, c.before, c.after);
                }
            }
        }
        Command::Changes {
            from,
            to,
            region,
            decile_moves,
        } => {
            let asked = StreamSnapshotChangesRequest {
                from: Some(from),
                to: Some(to),
                region_code: region,
                decile_moves,
                batch_size: 1000,
            };
            let mut pages = client.stream_snapshot_changes(asked).await?.into_inner();
            println!("household_id\tregion\tchange\tdecile\tversions");
            while let Some(page) = pages.message().await? {
                for c in page.changes {
                    let change = ChangeKind::try_from(c.change).unwrap_or_default();
                    let versions: Vec<String> = c
                        .versions
                        .iter()
                        .map(|v| format!("{} {} ({})", why(v), v.proposal_id, v.reason))
                        .collect();
                    println!(
                        "{}\t{}\t{}\t{}->{}\t{}",
                        c.household_id,
                        c.region_code,
                        change.as_str_name().trim_start_matches("CHANGE_KIND_"),
                        c.decile_before,
                        c.decile_after,
                        versions.join("; ")
                    );
                }
            }
        }
    }
    Ok(())
}
