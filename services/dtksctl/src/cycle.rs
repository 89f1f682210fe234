//! Drives one monthly cycle through the running services over gRPC.

use std::io::BufRead;

use std::time::{Duration, Instant};

use dtks_platform::auth::{BearerToken, Role};
use dtks_proto::common::v1 as pb;
use dtks_proto::determination::v1::{
    DetermineRequest, determination_service_client::DeterminationServiceClient,
};
use dtks_proto::distribution::v1::{
    ApproveListRequest, BuildListRequest, distribution_service_client::DistributionServiceClient,
};
use dtks_proto::intake::v1::{SubmitProposalRequest, intake_service_client::IntakeServiceClient};
use dtks_proto::reporting::v1::{
    PipelineSummary, RegionQuery, reporting_service_client::ReportingServiceClient,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel as GrpcChannel;

#[derive(clap::Args)]
pub struct Args {
    /// proposals.jsonl written by `dtksctl gen`.
    #[arg(long, default_value = "target/dtks-gen/proposals.jsonl")]
    proposals: std::path::PathBuf,
    /// Period to determine, YYYY-MM; the current month of the services' clock when left out.
    #[arg(long)]
    period: Option<dtks_domain::Period>,
    #[arg(long, default_value = "DTKS-D1-4")]
    programme: String,
    #[arg(
        long,
        env = "DTKS_INTAKE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    intake: String,
    #[arg(
        long,
        env = "DTKS_DETERMINATION_URL",
        default_value = "http://127.0.0.1:50054"
    )]
    determination: String,
    #[arg(
        long,
        env = "DTKS_DISTRIBUTION_URL",
        default_value = "http://127.0.0.1:50055"
    )]
    distribution: String,
    #[arg(
        long,
        env = "DTKS_REPORTING_URL",
        default_value = "http://127.0.0.1:50056"
    )]
    reporting: String,
}

fn auth_config() -> anyhow::Result<dtks_platform::config::AuthConfig> {
    let secret = std::env::var("DTKS_AUTH__JWT_SECRET")
        .map_err(|_| anyhow::anyhow!("DTKS_AUTH__JWT_SECRET is required"))?;
    Ok(dtks_platform::config::AuthConfig::local(&secret))
}

pub fn token(role: &str, region: &str, sub: &str) -> anyhow::Result<String> {
    let role: Role = serde_json::from_value(serde_json::Value::String(role.to_owned()))?;
    dtks_platform::auth::issue(&auth_config()?, sub, role, region, 12 * 3600)
}

type Reporting = ReportingServiceClient<InterceptedService<GrpcChannel, BearerToken>>;

/// The national pipeline summary once `done` holds of it, or as it stands after
/// `seconds`; and whether `done` held.
async fn summary_once(
    reporting: &mut Reporting,
    seconds: u64,
    done: impl Fn(&PipelineSummary) -> bool,
) -> anyhow::Result<(PipelineSummary, bool)> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let request = RegionQuery::default();
        let summary = reporting.get_pipeline_summary(request).await?.into_inner();
        if done(&summary) || Instant::now() > deadline {
            let held = done(&summary);
            return Ok((summary, held));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

pub(crate) async fn channel(
    url: &str,
    token: &str,
) -> anyhow::Result<InterceptedService<GrpcChannel, BearerToken>> {
    let channel = dtks_platform::grpc::endpoint(url, &tls_from_env()?)?
        .connect()
        .await?;
    Ok(InterceptedService::new(channel, BearerToken::new(token)?))
}

/// For `https://` URLs: the CA to trust (`DTKS_TLS__CA_FILE`) and, where the services
/// ask for one, the client certificate and key (`DTKS_TLS__CERT_FILE`,
/// `DTKS_TLS__KEY_FILE`), all PEM files.
fn tls_from_env() -> anyhow::Result<dtks_platform::config::TlsConfig> {
    let read = |name: &str| -> anyhow::Result<Option<String>> {
        match std::env::var(name) {
            Ok(path) => Ok(Some(std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!("{name} names a file that cannot be read ({path}): {e}")
            })?)),
            Err(_) => Ok(None),
        }
    };
    Ok(dtks_platform::config::TlsConfig {
        ca: read("DTKS_TLS__CA_FILE")?,
        cert: read("DTKS_TLS__CERT_FILE")?,
        key: read("DTKS_TLS__KEY_FILE")?.map(Into::into),
        ..Default::default()
    })
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let period = match args.period {
        Some(period) => period,
        None => dtks_domain::Period::containing(dtks_platform::clock::now())
            .ok_or_else(|| anyhow::anyhow!("the clock stands outside 2000–2100"))?,
    };
    let label = period.to_string();
    let period = pb::Period {
        year: period.year(),
        month: period.month() as i32,
    };
    let admin = token("pusdatin_admin", "", "dtksctl")?;
    let mut reporting = ReportingServiceClient::new(channel(&args.reporting, &admin).await?);
    let before = reporting
        .get_pipeline_summary(RegionQuery::default())
        .await?
        .into_inner();

    let started = Instant::now();
    // Each regency's officer imports the musdes results of that regency's villages.
    let minutes_date = dtks_platform::clock::today() - chrono::Days::new(7);
    let mut by_regency: std::collections::BTreeMap<String, Vec<(u64, SubmitProposalRequest)>> =
        Default::default();
    let file = std::io::BufReader::new(std::fs::File::open(&args.proposals)?);
    for (i, line) in file.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(&line?)?;
        let household: dtks_domain::Household = serde_json::from_value(value["household"].clone())?;
        let reference = value["external_reference"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let village = household
            .village()
            .map(ToString::to_string)
            .unwrap_or_default();
        let request = dtks_platform::convert::musdes_proposal(
            &household,
            &reference,
            &format!("BA-MUSDES/{village}/{label}"),
            minutes_date,
        );
        by_regency
            .entry(village.get(..5).unwrap_or_default().to_owned())
            .or_default()
            .push((i as u64 + 1, request));
    }
    let total = by_regency.values().map(Vec::len).sum::<usize>() as u64;
    let mut progress = crate::bulk::Progress::new(total, false);
    let (mut submitted, mut refused) = (0u64, 0u64);
    for (regency, rows) in by_regency {
        let officer = token("regency_officer", &regency, "dtksctl-cycle")?;
        let client = IntakeServiceClient::new(channel(&args.intake, &officer).await?);
        let outcome = crate::bulk::send(&client, rows, 2, &mut progress).await?;
        submitted += outcome.accepted - outcome.replayed;
        refused += outcome.rejected.len() as u64;
    }
    println!(
        "intake: {submitted} proposals accepted, {refused} refused with reasons ({:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let expected = before.households_accepted + before.households_returned + submitted;
    let decided = |s: &PipelineSummary| s.households_accepted + s.households_returned >= expected;
    let (summary, done) = summary_once(&mut reporting, 600, decided).await?;
    anyhow::ensure!(done, "verivali did not finish within 10 minutes");
    println!(
        "matching + verivali: {} accepted, {} returned ({:.1} s)",
        summary.households_accepted,
        summary.households_returned,
        started.elapsed().as_secs_f64()
    );

    // Determination reads its registry from events: give the last acceptances a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut determination =
        DeterminationServiceClient::new(channel(&args.determination, &admin).await?);
    let snapshot = determination
        .determine(DetermineRequest {
            period: Some(period),
        })
        .await?
        .into_inner();
    println!(
        "determination {}-{:02}: {} households, {} persons, model {}, hash {}{}",
        period.year,
        period.month,
        snapshot.households,
        snapshot.persons,
        snapshot.model_version,
        &snapshot.content_hash[..16],
        if snapshot.unchanged {
            " (unchanged: last month stands)"
        } else {
            ""
        }
    );
    let mut distribution =
        DistributionServiceClient::new(channel(&args.distribution, &admin).await?);
    let list = distribution
        .build_list(BuildListRequest {
            programme_code: args.programme.clone(),
            period: Some(period),
        })
        .await?
        .into_inner();
    // The programme's Eselon I unit fixes the draft.
    let eselon = token("eselon_i", "", "dtksctl")?;
    let list = DistributionServiceClient::new(channel(&args.distribution, &eselon).await?)
        .approve_list(ApproveListRequest {
            list_id: list.list_id.clone(),
        })
        .await?
        .into_inner();
    println!(
        "distribution: list {} for {} with {} recipients, fixed",
        list.list_id, list.programme_code, list.recipients
    );

    let listed = |s: &PipelineSummary| s.recipients_listed >= list.recipients;
    let (report, _) = summary_once(&mut reporting, 60, listed).await?;
    println!(
        "\nReport (national)\n  proposals submitted   {:>8}\n  proposals matched     {:>8}\n  households accepted   {:>8}\n  households returned   {:>8}\n  households determined {:>8}\n  recipients listed     {:>8}\n  events consumed       {:>8}",
        report.proposals_submitted,
        report.proposals_matched,
        report.households_accepted,
        report.households_returned,
        report.households_determined,
        report.recipients_listed,
        report.events_consumed
    );
    println!("cycle finished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
