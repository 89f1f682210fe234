//! `dtksctl audit verify`: checks a service's audit log straight from the database — each
//! leaf against its entry, each signed tree head against the leaves before it and its
//! signature, consistency between heads, every leaf's inclusion in the newest head, and
//! optionally the log's consistency with a checkpoint kept elsewhere (the one a monthly
//! determination published, or one this command printed before). It prints the newest
//! head as a checkpoint to keep.

use clap::Args as ClapArgs;
use sea_orm::{AccessMode, Database, IsolationLevel, TransactionTrait};

#[derive(ClapArgs)]
pub struct Args {
    /// The service whose log to check (its schema): intake, matching, verivali,
    /// determination, distribution, reporting.
    #[arg(long)]
    service: String,
    /// A checkpoint kept from earlier, `<size>:<root hex>`: the log must extend it
    /// (history rewritten or cut from the end is found this way).
    #[arg(long)]
    checkpoint: Option<String>,
    /// The service's public signing key (hex): every head must be signed with it.
    /// Without it, each head's own key is checked, and the key is printed to pin.
    #[arg(long)]
    public_key: Option<String>,
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
    let kept = args
        .checkpoint
        .as_deref()
        .map(dtks_platform::audit::parse_checkpoint)
        .transpose()?;
    let key = args
        .public_key
        .as_deref()
        .map(|k| hex::decode(k.trim()))
        .transpose()
        .map_err(|_| anyhow::anyhow!("--public-key is hex"))?;
    let db = Database::connect(&args.database_url).await?;
    // One snapshot for every table read: a sequencer round committed between reading the
    // leaves and the heads would otherwise look like a log cut short.
    let snapshot = db
        .begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await?;
    let log = dtks_platform::audit::read(&snapshot, &args.service).await?;
    snapshot.rollback().await?;
    let service = &args.service;
    match dtks_platform::audit::verify(&log, key.as_deref(), kept) {
        Ok(verified) => {
            let waiting = match verified.queued {
                0 => String::new(),
                n => format!(", {n} queued for the sequencer"),
            };
            match verified.head {
                Some(head) => println!(
                    "audit log of {service}: intact, {} entries{waiting}; checkpoint {}; key {}",
                    verified.leaves,
                    dtks_platform::audit::checkpoint_text(head.size, &head.root),
                    hex::encode(&head.public_key)
                ),
                None => println!("audit log of {service}: empty{waiting}"),
            }
            Ok(0)
        }
        Err(broken) => {
            println!("audit log of {service}: BROKEN: {broken}");
            Ok(1)
        }
    }
}
