//! `dtksctl audit verify`: checks a service's audit log (its hash chain, numbering and
//! links) straight from the database, optionally against a head kept elsewhere, and
//! prints the log's head to keep for the next check.

use clap::Args as ClapArgs;
use sea_orm::Database;

#[derive(ClapArgs)]
pub struct Args {
    /// The service whose log to check (its schema): intake, matching, verivali,
    /// determination, distribution, reporting.
    #[arg(long)]
    service: String,
    /// A head kept from an earlier check, `<seq>:<hash hex>`: the log must still reach it
    /// unchanged (entries cut from the end are found this way).
    #[arg(long)]
    head: Option<String>,
    /// The database; defaults to DTKS_DATABASE__URL.
    #[arg(long, env = "DTKS_DATABASE__URL", hide_env_values = true)]
    database_url: String,
}

/// Exit status: 0 intact, 1 broken (the first break printed).
pub async fn run(args: Args) -> anyhow::Result<i32> {
    anyhow::ensure!(
        !args.service.is_empty()
            && args
                .service
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'),
        "--service must be a service name such as verivali"
    );
    let head = match &args.head {
        None => None,
        Some(text) => {
            let (seq, hash) = text
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--head must be <seq>:<hash hex>"))?;
            Some((seq.parse::<i64>()?, hex::decode(hash)?))
        }
    };
    let db = Database::connect(&args.database_url).await?;
    let entries = dtks_platform::audit::read(&db, &args.service).await?;
    let count = entries.len();
    match dtks_platform::audit::verify(entries, head.as_ref().map(|(s, h)| (*s, h.as_slice()))) {
        Ok(Some((seq, hash))) => {
            println!(
                "audit log of {}: intact, {count} entries; head {seq}:{}",
                args.service,
                hex::encode(hash)
            );
            Ok(0)
        }
        Ok(None) => {
            println!("audit log of {}: empty", args.service);
            Ok(0)
        }
        Err(broken) => {
            println!("audit log of {}: BROKEN: {broken}", args.service);
            Ok(1)
        }
    }
}
