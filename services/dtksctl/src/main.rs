//! `dtksctl`: the operator's command line. Issues development tokens (the local issuer),
//! generates a synthetic population for any regency, imports proposal files (XLSX/CSV)
//! and writes their template, drives a monthly cycle through the running services, and
//! gives officers their verivali work queue and batch steps.

mod audit;
mod bulk;
mod cycle;
mod import;
mod model;
mod names;
mod officers;
mod population;
mod registry;
mod verivali;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "dtksctl", about = "Operate the DTKS platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a signed development token (local issuer; HS256 with DTKS_AUTH__JWT_SECRET).
    Token {
        #[arg(long, default_value = "pusdatin_admin")]
        role: String,
        /// Region scope; empty for national.
        #[arg(long, default_value = "")]
        region: String,
        #[arg(long, default_value = "dtksctl")]
        sub: String,
    },
    /// Generate a synthetic population: registry.csv (the civil registry), proposals.jsonl
    /// (with controlled corruption) and truth.csv (what each corruption was).
    Gen(population::Args),
    /// Submit proposals, wait for verivali, determine the month, build a list, report.
    Cycle(cycle::Args),
    /// Import a proposal file (XLSX, or a directory of CSV files) through intake's bulk
    /// path; refused rows go to a file of the same format with the reason on each row.
    /// Exit status 3 when some rows were refused.
    Import(import::ImportArgs),
    /// Write the proposal-file template (XLSX or a directory of CSV files) with one
    /// example household, the meaning of every column and the codes.
    Template(import::TemplateArgs),
    /// Print a new Ed25519 key pair for signed DCI messages: the private seed, then the
    /// public key (base64, space-separated). The seed goes to the signer
    /// (`DTKS_DCI__SIGNING_KEY` or `DTKS_REGISTRY_SIGNING_KEY`), the public key to the
    /// other side's trusted keys.
    DciKeygen,
    /// The linkage model: `train` learns one from a registry extract and a wave of
    /// proposals and prints its weights; `show` prints a model's (the shipped one by
    /// default).
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Signs a DCI message read from standard input (`{"header": …, "message": …}`) with
    /// the seed in `DTKS_DCI__SIGNING_KEY` and prints the `signature` value: how a
    /// conformance run signs what it generates.
    DciSign {
        /// The signer's sender id (the key ring names the key `sender|key_id`).
        #[arg(long, default_value = "dtks-matching")]
        sender: String,
        #[arg(long, default_value = "k1")]
        key_id: String,
        /// Print instead a bearer token for calling this audience (the registry's id),
        /// valid `--secs` seconds (at most an hour); nothing is read.
        #[arg(long)]
        bearer: Option<String>,
        #[arg(long, default_value_t = 900)]
        secs: i64,
    },
    /// Dead-lettered events of a service: `dtksctl dead-letters list --service verivali`,
    /// and `replay` to send them back to it once the cause is fixed.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// A new key that seals personal data at rest, as `id:base64` for `DTKS_DATA_KEYS`
    /// (put a new key first to rotate; keep the old ones listed while rows still use them).
    DataKey {
        #[arg(long, default_value = "k1")]
        id: String,
    },
    /// Verivali for officers: the work queue, case listings and files, batch sign-off,
    /// forwarding, assessment and returns, and the six-monthly due list.
    Verivali(verivali::Args),
    /// The audit log of a service: `dtksctl audit verify --service verivali
    /// [--checkpoint <size>:<root>] [--public-key <hex>]` checks its Merkle tree, signed
    /// heads, inclusion and consistency (exit 1 at the first alteration found) and prints
    /// the checkpoint to keep.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Officers: `dtksctl officer register|reassign|deactivate|list` (verivali's
    /// registry), and `revoke <subject>` straight through Redis in an emergency.
    #[command(subcommand)]
    Officer(OfficerCommand),
    /// The master registry: `dtksctl registry history <household>` (its versions, who
    /// decided each, when, why and what changed) and `changes --from YYYY-MM --to
    /// YYYY-MM` (the households behind a month's diff).
    Registry(registry::Args),
}

#[derive(Subcommand)]
enum OfficerCommand {
    /// Revoke every token of an officer (replaced, moved or deactivated): every service
    /// refuses them within a second; tokens issued afterwards are accepted.
    Revoke {
        /// The officer's token subject.
        subject: String,
        #[arg(long, env = "DTKS_REDIS__URL", hide_env_values = true)]
        redis_url: String,
        #[arg(long, env = "DTKS_REDIS__NAMESPACE", default_value = "dtks")]
        redis_namespace: String,
    },
    #[command(flatten)]
    Registry(officers::Change),
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    /// The dead-lettered events waiting for a service (left where they are).
    List(DeadLetterArgs),
    /// Send the dead-lettered events back to the service that failed them.
    Replay {
        #[command(flatten)]
        args: DeadLetterArgs,
        /// Only this event.
        #[arg(long)]
        event_id: Option<String>,
    },
}

#[derive(clap::Args)]
struct DeadLetterArgs {
    #[arg(long)]
    service: String,
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    #[arg(long, env = "DTKS_BUS__URL", hide_env_values = true)]
    bus_url: String,
    #[arg(long, env = "DTKS_BUS__NAMESPACE", default_value = "dtks")]
    bus_namespace: String,
}

impl DeadLetterArgs {
    async fn bus(&self) -> anyhow::Result<dtks_platform::bus::Bus> {
        let config: dtks_platform::config::BusConfig = serde_json::from_value(serde_json::json!({
            "url": self.bus_url,
            "namespace": self.bus_namespace,
        }))?;
        dtks_platform::bus::Bus::connect(&config).await
    }
}

fn print_dead_letters(letters: &[dtks_platform::deadletters::DeadLetter]) {
    println!("event_id\tevent_type\treason");
    for l in letters {
        println!("{}\t{}\t{}", l.event_id, l.event_type, l.reason);
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check a service's audit log.
    Verify(audit::Args),
}

/// A refusal is the officer's to read, not a crash: its message, and exit 2.
fn refusal_exits(result: anyhow::Result<()>) -> anyhow::Result<()> {
    let Err(error) = result else { return Ok(()) };
    match error.downcast_ref::<tonic::Status>() {
        Some(status) => eprintln!("{:?}: {}", status.code(), status.message()),
        None => eprintln!("{error:#}"),
    }
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Token { role, region, sub } => {
            println!("{}", cycle::token(&role, &region, &sub)?);
            Ok(())
        }
        Command::Gen(args) => population::run(args),
        Command::Cycle(args) => cycle::run(args).await,
        Command::Import(args) => {
            let code = import::run(args).await?;
            std::process::exit(code)
        }
        Command::Template(args) => import::template(args),
        Command::Verivali(args) => refusal_exits(verivali::run(args).await),
        Command::Registry(args) => refusal_exits(registry::run(args).await),
        Command::Audit(AuditCommand::Verify(args)) => {
            let code = audit::run(args).await?;
            std::process::exit(code)
        }
        Command::Officer(OfficerCommand::Revoke {
            subject,
            redis_url,
            redis_namespace,
        }) => {
            let config = dtks_platform::config::RedisConfig {
                url: redis_url.into(),
                namespace: redis_namespace,
            };
            let at = dtks_platform::revocation::revoke(&config, &subject).await?;
            println!("revoked every token of {subject} issued up to {at}");
            Ok(())
        }
        Command::Officer(OfficerCommand::Registry(change)) => {
            refusal_exits(officers::run(change).await)
        }
        Command::DeadLetters(DeadLetterCommand::List(args)) => {
            let letters = args
                .bus()
                .await?
                .peek_dead_letters(&args.service, args.limit)
                .await?;
            print_dead_letters(&letters);
            Ok(())
        }
        Command::DeadLetters(DeadLetterCommand::Replay { args, event_id }) => {
            let letters = args
                .bus()
                .await?
                .replay_dead_letters(&args.service, args.limit, event_id.as_deref())
                .await?;
            print_dead_letters(&letters);
            eprintln!("replayed {} events to {}", letters.len(), args.service);
            Ok(())
        }
        Command::DataKey { id } => {
            println!("{}", dtks_platform::sealed::KeyRing::generate(&id));
            Ok(())
        }
        Command::Model(command) => model::run(command),
        Command::DciKeygen => {
            let (seed, public) = dtks_platform::dci::generate_key();
            println!("{seed} {public}");
            Ok(())
        }
        Command::DciSign {
            sender,
            key_id,
            bearer,
            secs,
        } => {
            let seed = std::env::var("DTKS_DCI__SIGNING_KEY").map_err(|_| {
                anyhow::anyhow!("DTKS_DCI__SIGNING_KEY (the signing seed) is required")
            })?;
            let signer = dtks_platform::dci::Signer::new(&sender, &key_id, &seed)?;
            if let Some(audience) = bearer {
                println!("{}", signer.bearer(&audience, secs));
                return Ok(());
            }
            let body: serde_json::Value = serde_json::from_reader(std::io::stdin().lock())?;
            println!("{}", signer.sign(&body["header"], &body["message"]));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
