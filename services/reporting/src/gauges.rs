//! The business gauges dashboards show beside the operational metrics, read from the
//! read models every few seconds: DTKS households and their update rate per province,
//! verivali cases and their backlog age per state, households per decile of the newest
//! determined month, recipients per programme, overdue re-verifications per province.
//! Labels are region codes, states, deciles and programme codes.

use dtks_proto::common::v1::RegionLevel;
use opentelemetry::KeyValue;
use sea_orm::DatabaseConnection;

use crate::error::Result;
use crate::store::reports::{Report, Scope};
use dtks_proto::reporting::v1::*;

/// How often the gauges are read again: every `DTKS_REPORTING_GAUGE_SECONDS` (60 unless
/// set; the update-rate query reads every DTKS household).
fn every() -> std::time::Duration {
    let seconds = std::env::var("DTKS_REPORTING_GAUGE_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(60);
    std::time::Duration::from_secs(seconds)
}

fn code(region: &Option<dtks_proto::common::v1::Region>) -> String {
    region.as_ref().map(|r| r.code.clone()).unwrap_or_default()
}

async fn refresh(db: &DatabaseConnection) -> Result<()> {
    let meter = opentelemetry::global::meter("dtks");
    let gauge = |name: &'static str, description: &'static str| {
        meter.f64_gauge(name).with_description(description).build()
    };
    let now = dtks_platform::clock::now();
    let provinces = Scope::national(RegionLevel::Province);
    let households = gauge(
        "dtks.registry.households",
        "DTKS households not removed, by province",
    );
    let rate = gauge(
        "dtks.registry.update_rate",
        "share of DTKS households verified in the last six months, by province",
    );
    for r in UpdateRates::query(db, &provinces, now).await?.regions {
        let province = [KeyValue::new("province", code(&r.region))];
        households.record(r.records as f64, &province);
        rate.record(r.rate, &province);
    }
    let cases = gauge("dtks.verivali.cases", "verivali cases by state");
    let age = gauge(
        "dtks.verivali.backlog_age_days",
        "mean days cases have waited, by state",
    );
    for s in Funnel::query(db, &provinces, now).await?.stages {
        let state = [KeyValue::new("state", s.state.clone())];
        cases.record(s.cases as f64, &state);
        age.record(s.mean_age_days, &state);
    }
    let deciles = gauge(
        "dtks.determination.households",
        "households per decile of the newest determined month",
    );
    let national_total = Scope::national(RegionLevel::National);
    for r in DecileDistribution::query(db, &national_total, now)
        .await?
        .regions
    {
        for (d, n) in r.households_per_decile.iter().enumerate() {
            deciles.record(*n as f64, &[KeyValue::new("decile", (d + 1) as i64)]);
        }
    }
    let recipients = gauge(
        "dtks.programme.recipients",
        "recipients of the newest fixed lists, by programme",
    );
    for c in ProgrammeCoverage::query(db, &national_total, now)
        .await?
        .rows
    {
        recipients.record(
            c.selected as f64,
            &[KeyValue::new("programme", c.programme_code.clone())],
        );
    }
    let overdue = gauge(
        "dtks.reverification.overdue",
        "re-verification tasks past their deadline, by province",
    );
    for r in Reverifications::query(db, &provinces, now).await?.regions {
        overdue.record(
            r.overdue as f64,
            &[KeyValue::new("province", code(&r.region))],
        );
    }
    Ok(())
}

/// Refreshes the gauges until shutdown.
pub async fn run(db: DatabaseConnection, shutdown: dtks_platform::shutdown::Shutdown) {
    while !shutdown.is_triggered() {
        if let Err(error) = refresh(&db).await {
            tracing::warn!(%error, "refreshing the business gauges failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every()) => {}
            _ = shutdown.clone().wait() => {}
        }
    }
}
