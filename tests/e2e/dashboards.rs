//! The Grafana dashboards in `helm/dtks/dashboards` ask only for metrics that exist:
//! every `dtks_*` series a panel queries is one a service defines (in its Prometheus
//! form: dots become underscores, seconds-histograms gain `_seconds_bucket`/`_count`/
//! `_sum`, counters `_total`), and every `rabbitmq_*` series is one the stack's RabbitMQ
//! serves on the endpoint the collector scrapes.

use std::collections::BTreeSet;

/// The metric names the services define, in Prometheus form.
fn defined() -> anyhow::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for source in [
        "../services/platform/src/runtime/metrics.rs",
        "../services/reporting/src/gauges.rs",
    ] {
        let text = std::fs::read_to_string(source)?;
        for part in text.split('"').skip(1).step_by(2) {
            if part.starts_with("dtks.") && !part.contains(' ') {
                names.insert(part.replace('.', "_"));
            }
        }
    }
    Ok(names)
}

fn series(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("dtks_") || w.starts_with("rabbitmq_"))
        .map(str::to_owned)
        .collect()
}

fn base(name: &str) -> &str {
    let mut name = name;
    for suffix in ["_bucket", "_count", "_sum", "_total"] {
        name = name.strip_suffix(suffix).unwrap_or(name);
    }
    name.strip_suffix("_seconds").unwrap_or(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_queries_metrics_that_exist() -> anyhow::Result<()> {
    let defined = defined()?;
    assert!(defined.contains("dtks_rpc_server_duration"), "{defined:?}");
    let url = std::env::var("DTKS_RABBITMQ_PROMETHEUS_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:15692".into());
    let served = reqwest::get(format!(
        "{url}/metrics/detailed?family=queue_coarse_metrics"
    ))
    .await?
    .text()
    .await?;
    let mut panels = 0;
    for name in ["operations", "ministry"] {
        let path = format!("../helm/dtks/dashboards/{name}.json");
        let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        assert!(
            dashboard["uid"]
                .as_str()
                .is_some_and(|u| u.starts_with("dtks-"))
        );
        for panel in dashboard["panels"].as_array().expect("panels") {
            panels += 1;
            let title = panel["title"].as_str().unwrap_or_default();
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{title}");
            for target in targets {
                let expr = target["expr"].as_str().expect("a PromQL expression");
                let names = series(expr);
                assert!(!names.is_empty(), "{title}: {expr}");
                for series in names {
                    if series.starts_with("rabbitmq_") {
                        assert!(
                            served.contains(&series),
                            "{title}: RabbitMQ serves no {series}"
                        );
                    } else {
                        assert!(
                            defined.contains(base(&series)),
                            "{title}: no service defines {series}"
                        );
                    }
                }
            }
        }
    }
    assert!(panels >= 14, "{panels} panels");
    Ok(())
}
