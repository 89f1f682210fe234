//! Tracing and OpenTelemetry. Spans always carry W3C trace context (so it travels through
//! gRPC metadata and AMQP headers); they are exported over OTLP only when an endpoint is
//! configured. Handlers never record whole requests: they hold personal data.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetryConfig;

/// Keeps the tracer and meter providers alive; flushes spans and metrics when dropped.
pub struct TelemetryGuard(SdkTracerProvider, SdkMeterProvider);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
        let _ = self.1.shutdown();
    }
}

/// Panics are logged as events with where they happened and, only when it is the code's
/// own fixed text, what they said: a formatted panic message can carry the values being
/// handled (a NIK, a name), which never reach the logs.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&'static str>()
            .copied()
            .unwrap_or("(message withheld: it may carry personal data)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        eprintln!(
            "{{\"level\":\"ERROR\",\"message\":\"panic\",\"panic\":{:?},\"location\":{:?},\"thread\":{:?}}}",
            message,
            location,
            thread.name().unwrap_or("unnamed")
        );
    }));
}

pub fn init(service: &str, config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    install_panic_hook();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder()
        .with_service_name(format!("dtks-{service}"))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut meters = SdkMeterProvider::builder().with_resource(resource);
    if let Some(endpoint) = config.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        builder = builder.with_batch_exporter(exporter);
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        // Every OTEL_METRIC_EXPORT_INTERVAL milliseconds (60 s unless set).
        meters = meters.with_reader(PeriodicReader::builder(exporter).build());
    }
    let provider = builder.build();
    let meters = meters.build();
    opentelemetry::global::set_meter_provider(meters.clone());
    opentelemetry::global::set_tracer_provider(provider.clone());
    // Spans are exported at `info` whatever the log level: a service that logs only
    // warnings is still traced.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(format!("dtks-{service}")))
        .with_filter(EnvFilter::new(
            "info,sqlx=warn,lapin=warn,sea_orm=warn,h2=warn,hyper=warn,tower=warn",
        ));
    let logs = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,lapin=warn,sea_orm=warn"));
    let registry = tracing_subscriber::registry().with(otel);
    if config.log_format == "json" {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_filter(logs))
            .try_init()?;
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_filter(logs),
            )
            .try_init()?;
    }
    Ok(TelemetryGuard(provider, meters))
}

/// The current span's W3C trace context as `(traceparent, tracestate)`.
pub fn current_trace_context() -> (String, String) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    (
        carrier.remove("traceparent").unwrap_or_default(),
        carrier.remove("tracestate").unwrap_or_default(),
    )
}

/// Records the span's trace id in its `trace_id` field (declared empty), so that log
/// lines inside it carry the id a trace viewer finds them by.
pub fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    let id = context.span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// Makes `span` a child of the remote operation described by the W3C headers.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if traceparent.is_empty() {
        return;
    }
    let mut carrier = std::collections::HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    if !tracestate.is_empty() {
        carrier.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(parent);
}
