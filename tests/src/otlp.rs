//! An OTLP collector of the tests' own: the spans and metrics the services export.

/// One span an OTLP receiver was sent: the service that made it, its trace, its name and
/// its attributes as text.
#[derive(Debug, Clone)]
pub struct SpanSeen {
    pub service: String,
    pub trace_id: String,
    pub name: String,
    pub attributes: Vec<(String, String)>,
}

/// An OpenTelemetry collector's trace and metrics endpoints (OTLP over gRPC) inside the
/// test, keeping every span and the name of every metric the services export.
#[derive(Clone, Default)]
pub struct OtlpReceiver {
    spans: std::sync::Arc<std::sync::Mutex<Vec<SpanSeen>>>,
    /// (service, metric name) of every metric exported.
    metrics: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

fn service_name(resource: &Option<opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
        .map(|a| any_text(&a.value))
        .unwrap_or_default()
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsService
    for OtlpReceiver
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse,
        >,
        tonic::Status,
    > {
        let mut seen = Vec::new();
        for resource in request.into_inner().resource_metrics {
            let service = service_name(&resource.resource);
            for scope in resource.scope_metrics {
                seen.extend(scope.metrics.into_iter().map(|m| (service.clone(), m.name)));
            }
        }
        self.metrics.lock().expect("metrics").extend(seen);
        Ok(tonic::Response::new(
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse {
                partial_success: None,
            },
        ))
    }
}

fn any_text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for OtlpReceiver
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut seen = Vec::new();
        for resource in request.into_inner().resource_spans {
            let service = service_name(&resource.resource);
            for scope in resource.scope_spans {
                for span in scope.spans {
                    seen.push(SpanSeen {
                        service: service.clone(),
                        trace_id: span.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                        name: span.name,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), any_text(&a.value)))
                            .collect(),
                    });
                }
            }
        }
        self.spans.lock().expect("spans").extend(seen);
        Ok(tonic::Response::new(
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse {
                partial_success: None,
            },
        ))
    }
}

impl OtlpReceiver {
    /// Listens on a free port; answers the receiver and its endpoint URL.
    pub async fn start() -> anyhow::Result<(Self, String)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let receiver = Self::default();
        let traces = opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(receiver.clone());
        let metrics = opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer::new(receiver.clone());
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(traces)
                .add_service(metrics)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Ok((receiver, endpoint))
    }

    pub fn spans(&self) -> Vec<SpanSeen> {
        self.spans.lock().expect("spans").clone()
    }

    /// (service, metric name) of every metric exported so far.
    pub fn metrics(&self) -> Vec<(String, String)> {
        self.metrics.lock().expect("metrics").clone()
    }
}
