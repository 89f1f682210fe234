//! The metrics every stage reports (OpenTelemetry, exported over OTLP with the traces):
//! calls served (`dtks.rpc.server.duration`: a histogram in seconds by method and gRPC
//! status, whose count is the throughput and whose non-zero statuses are the errors),
//! events handled (`dtks.events.handled`: by type and result; `dtks.events.handle.duration`)
//! and the outbox's lag (`dtks.outbox.published`, `dtks.outbox.lag`: seconds from an
//! event's making to its publishing). Queue depths come from RabbitMQ's own Prometheus
//! endpoint. Labels are methods, event types and results — never personal data.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

pub struct Instruments {
    pub rpc_duration: Histogram<f64>,
    pub events_handled: Counter<u64>,
    pub event_duration: Histogram<f64>,
    pub outbox_published: Counter<u64>,
    pub outbox_lag: Histogram<f64>,
}

/// The instruments, made on first use from the global meter provider (which
/// `telemetry::init` sets; before that, and without a collector, they record nowhere).
pub fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("dtks");
        Instruments {
            rpc_duration: meter
                .f64_histogram("dtks.rpc.server.duration")
                .with_unit("s")
                .with_description("gRPC calls served, by method and status")
                .build(),
            events_handled: meter
                .u64_counter("dtks.events.handled")
                .with_description("events consumed, by type and result (ok, refused, retried)")
                .build(),
            event_duration: meter
                .f64_histogram("dtks.events.handle.duration")
                .with_unit("s")
                .with_description("time to handle one event, by type")
                .build(),
            outbox_published: meter
                .u64_counter("dtks.outbox.published")
                .with_description("events published from the outbox")
                .build(),
            outbox_lag: meter
                .f64_histogram("dtks.outbox.lag")
                .with_unit("s")
                .with_description("seconds from an event's making to its publishing")
                .build(),
        }
    })
}

/// Records one call served: its method, its gRPC status code and how long it took.
/// The access guard records every call it stands in front of, refused ones included.
pub fn rpc(method: &str, status: &str, seconds: f64) {
    instruments().rpc_duration.record(
        seconds,
        &[
            KeyValue::new("rpc.method", method.to_owned()),
            KeyValue::new("rpc.grpc.status_code", status.to_owned()),
        ],
    );
}

/// Records one event handled.
pub fn event(event_type: &str, result: &'static str, seconds: f64) {
    let attributes = [
        KeyValue::new("event_type", event_type.to_owned()),
        KeyValue::new("result", result),
    ];
    let i = instruments();
    i.events_handled.add(1, &attributes);
    i.event_duration.record(seconds, &attributes[..1]);
}
