//! Logs, traces and the process-wide shutdown signal shared by every binary.
//!
//! - Logs go to stderr, filtered by `RUST_LOG` (default `info,sqlx=warn`), as text or, with
//!   `HANGAR_LOG_FORMAT=json` (`Config::log_format`), one JSON object per line.
//! - Traces are OpenTelemetry spans made through `tracing`, exported over OTLP/HTTP (protobuf) when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, under the service
//!   name `OTEL_SERVICE_NAME` (default: the binary's name); the standard `OTEL_TRACES_SAMPLER`,
//!   `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*` variables apply as usual.
//! - A trace crosses processes as W3C trace context (`traceparent`): in an event's metadata (the
//!   relay continues the trace of the command that recorded it, however much later it publishes)
//!   and in the headers of NATS messages (ES, DEVICE_IN, DEVICE_OUT).
//!
//! Without an exporter the spans Hangar adds are never made ([`span!`](crate::span) yields
//! `Span::none()`) and nothing is injected: one relaxed atomic load per would-be span.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::Shutdown;

/// The target of every span Hangar makes for traces; the exporter takes these and nothing else.
pub const TARGET: &str = "hangar";
/// The W3C trace-context field, in event metadata and NATS headers alike.
pub const TRACEPARENT: &str = "traceparent";

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROPAGATOR: LazyLock<TraceContextPropagator> = LazyLock::new(TraceContextPropagator::new);

/// Whether spans are being exported.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// An INFO span of target [`TARGET`] while traces are exported, else `Span::none()` (nothing is
/// recorded, formatted or allocated). Same syntax as `tracing::info_span!` after the name.
#[macro_export]
macro_rules! span {
    ($name:literal $(, $($fields:tt)*)?) => {
        if $crate::telemetry::enabled() {
            ::tracing::info_span!(target: "hangar", $name $(, $($fields)*)?)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// What `main` keeps until the end: flushes the spans not yet exported.
#[must_use = "call shutdown() when the process ends, or spans still queued are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is queued and stops the exporter (within its timeout).
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5)) {
                eprintln!("trace exporter did not shut down cleanly: {e}");
            }
        }
    }
}

/// How log lines are written (`HANGAR_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sets up logs and, when an OTLP endpoint is configured, trace export, for the binary `service`.
/// Call at the start of `main`, inside the Tokio runtime (the exporter sends through it).
pub fn init(service: &str, format: LogFormat) -> Telemetry {
    let provider = match otlp_provider(service) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("traces are not exported: {e:#}");
            None
        }
    };
    install(provider, format)
}

/// Text logs only (`RUST_LOG`), for tools that are not Hangar's services.
pub fn init_logs() {
    let _ = install(None, LogFormat::Text);
}

/// Installs the global subscriber: logs in `format` and, with a provider, its spans of target
/// [`TARGET`]. (Tests pass a provider with an in-memory exporter.)
pub fn install(provider: Option<SdkTracerProvider>, format: LogFormat) -> Telemetry {
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("hangar"))
            .with_filter(tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO))
    });
    let installed = tracing_subscriber::registry().with(log_layer(format, std::io::stderr)).with(traces).try_init();
    if installed.is_ok() && provider.is_some() {
        ENABLED.store(true, Ordering::Relaxed);
    }
    Telemetry { provider }
}

/// The log layer: `RUST_LOG` (default `info,sqlx=warn`), text or JSON lines, to `writer`.
pub fn log_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).with_filter(filter).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(writer).with_filter(filter).boxed(),
    }
}

/// A tracer provider exporting over OTLP/HTTP, or `None` when no endpoint is configured.
pub fn otlp_provider(service: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    use opentelemetry_otlp::WithHttpConfig as _;
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| anyhow::anyhow!("telemetry::init must run inside the Tokio runtime"))?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpClient { client, runtime })
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service.to_string());
    }
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build()))
}

/// The OTLP exporter's HTTP client: the workspace's reqwest, run on the process's Tokio runtime
/// (the SDK's batch processor exports from a thread of its own, outside the runtime).
#[derive(Debug)]
struct OtlpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<opentelemetry_http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let response = self
            .runtime
            .spawn(async move {
                let res = client.execute(request).await?;
                let mut out = opentelemetry_http::Response::builder().status(res.status());
                if let Some(h) = out.headers_mut() {
                    *h = res.headers().clone();
                }
                let body = res.bytes().await?;
                Ok::<_, opentelemetry_http::HttpError>(out.body(body)?)
            })
            .await??;
        Ok(response)
    }
}

/// Makes `span` continue the trace whose context `carrier` holds (no-op when the span is not
/// recorded or the carrier holds none).
pub fn follow(span: &Span, carrier: &dyn Extractor) {
    if span.is_none() {
        return;
    }
    let cx = PROPAGATOR.extract(carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Writes `span`'s trace context into `carrier` (nothing when the span is not recorded).
pub fn inject(span: &Span, carrier: &mut dyn Injector) {
    if !enabled() || span.is_none() {
        return;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        PROPAGATOR.inject_context(&cx, carrier);
    }
}

/// Adds the current span's trace context to a command's event metadata.
pub fn inject_metadata(metadata: &mut HashMap<String, String>) {
    if enabled() {
        inject(&Span::current(), metadata);
    }
}

/// Adds the current span's trace context to the headers of a NATS message about to be published.
pub fn inject_current(headers: &mut async_nats::HeaderMap) {
    if enabled() {
        inject(&Span::current(), &mut NatsHeaders(headers));
    }
}

/// Reads trace context from an event's metadata (a JSON object).
pub struct JsonCarrier<'a>(pub &'a serde_json::Value);

impl Extractor for JsonCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
    }
}

/// Reads or writes trace context in NATS message headers.
pub struct NatsHeaders<'a>(pub &'a mut async_nats::HeaderMap);

impl Injector for NatsHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

/// Reads trace context from NATS message headers (none when the message has no headers).
pub struct NatsHeadersRef<'a>(pub Option<&'a async_nats::HeaderMap>);

impl Extractor for NatsHeadersRef<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0?.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.map(|h| h.iter().map(|(k, _)| k.as_ref()).collect()).unwrap_or_default()
    }
}

/// Reads trace context from HTTP request headers.
pub struct HttpHeaders<'a>(pub &'a axum::http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A shutdown token cancelled on SIGINT or SIGTERM (Kubernetes stops pods with SIGTERM).
pub fn shutdown_on_signal() -> Shutdown {
    let token = Shutdown::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_logs_are_one_object_per_line() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(log_layer(LogFormat::Json, buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("inbox", sn = "4TADK\"1");
            let _entered = span.enter();
            tracing::info!(topic = "thing/product/x/status", "update_topo\nanswered");
            tracing::warn!(bytes = 3, "second line");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["fields"]["message"], "update_topo\nanswered");
        assert_eq!(lines[0]["fields"]["topic"], "thing/product/x/status");
        assert_eq!(lines[0]["span"]["sn"], "4TADK\"1");
        assert_eq!(lines[1]["fields"]["bytes"], 3);
    }

    #[test]
    fn trace_context_round_trips_through_nats_headers_and_metadata() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let sc = SpanContext::new(
            TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
            SpanId::from(0xb7ad6b7169203331_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(sc);
        let mut meta = HashMap::new();
        PROPAGATOR.inject_context(&cx, &mut meta);
        assert_eq!(meta[TRACEPARENT], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let json = serde_json::to_value(&meta).unwrap();
        let back = PROPAGATOR.extract(&JsonCarrier(&json));
        assert_eq!(back.span().span_context().trace_id(), cx.span().span_context().trace_id());

        let mut headers = async_nats::HeaderMap::new();
        PROPAGATOR.inject_context(&cx, &mut NatsHeaders(&mut headers));
        let back = PROPAGATOR.extract(&NatsHeadersRef(Some(&headers)));
        assert_eq!(back.span().span_context().span_id(), SpanId::from(0xb7ad6b7169203331_u64));
        assert!(!PROPAGATOR.extract(&NatsHeadersRef(None)).span().span_context().is_valid());
    }

    #[test]
    fn nothing_is_made_or_injected_without_an_exporter() {
        assert!(!enabled());
        let span = crate::span!("relay.publish", subject = "x");
        assert!(span.is_none());
        let mut meta = HashMap::new();
        inject_metadata(&mut meta);
        assert!(meta.is_empty());
    }
}
