//! Observability: the Prometheus series move with real requests, the outbox and WebSocket
//! sessions; one trace follows a request across the boundaries between processes (the context
//! travelling in event metadata and NATS headers, read back with an in-memory exporter); a request
//! in flight when shutdown begins is still answered.

use std::sync::OnceLock;
use std::time::Duration;

use hangar::Components;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use reqwest::StatusCode;
use rumqttc::QoS;
use serde_json::{json, Value};
use sqlx::Connection as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::*;

/// This process's span exporter. The subscriber is global, so it is installed once, before any
/// Hangar of the process starts (nextest runs each test in a process of its own).
fn exporter() -> InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    let exporter = EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
            // exports as each span ends, for the life of the process
            std::mem::forget(shared::telemetry::install(Some(provider), shared::telemetry::LogFormat::Text));
            exporter
        })
        .clone();
    assert!(shared::telemetry::enabled(), "another subscriber was installed first");
    exporter
}

fn attr(s: &SpanData, key: &str) -> Option<String> {
    s.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

fn one<'a>(spans: &'a [SpanData], trace: TraceId, what: &str, f: impl Fn(&SpanData) -> bool) -> &'a SpanData {
    let found: Vec<&SpanData> = spans.iter().filter(|s| s.span_context.trace_id() == trace && f(s)).collect();
    assert_eq!(found.len(), 1, "{what} in trace {trace}: {found:#?}");
    found[0]
}

fn traceparent(trace: TraceId, span: SpanId) -> String {
    format!("00-{trace}-{span}-01")
}

/// Spans exported so far, once `done` holds for them (spans are exported when they end).
async fn spans_once(exporter: &InMemorySpanExporter, what: &str, done: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans = exporter.get_finished_spans().unwrap();
        if done(&spans) {
            return spans;
        }
        let names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; spans: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_upload_callback_and_its_projection_write_are_one_trace() {
    let exporter = exporter();
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let fingerprint = format!("trace-{}", uuid::Uuid::new_v4().simple());
    let (status, body) = app.upload_callback(&token, callback_body(&fingerprint)).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::OK, json!(0)), "{body}");
    let file_id = shared::domain::media::file_id(WS, &fingerprint);

    let is_command = |s: &SpanData| attr(s, "aggregate_id").as_deref() == Some(file_id.as_str());
    let is_write = |s: &SpanData| attr(s, "projection").as_deref() == Some("media_files");
    let spans = spans_once(&exporter, "the media projection's write of the file", |spans| {
        spans.iter().find(|s| is_command(s)).is_some_and(|c| {
            spans.iter().any(|s| s.span_context.trace_id() == c.span_context.trace_id() && is_write(s))
        })
    })
    .await;
    let command = spans.iter().find(|s| is_command(s)).unwrap();
    let trace = command.span_context.trace_id();

    let route = "/media/api/v1/workspaces/{workspace_id}/upload-callback";
    let http = one(&spans, trace, "the HTTP request", |s| attr(s, "http.route").as_deref() == Some(route));
    assert_eq!(http.name, format!("POST {route}"));
    assert_eq!(attr(http, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(http.parent_span_id, SpanId::INVALID, "the request starts the trace");
    assert_eq!(command.parent_span_id, http.span_context.span_id());
    let relay = one(&spans, trace, "the relay's publish", |s| s.name == "relay.publish");
    assert_eq!(relay.parent_span_id, command.span_context.span_id());
    assert!(relay.parent_span_is_remote, "the relay continues the trace read from the event");
    let write = one(&spans, trace, "the media projection's write", is_write);
    assert_eq!(write.parent_span_id, relay.span_context.span_id());
    assert!(write.parent_span_is_remote, "the projector continues the trace read from the message");

    // the context travelled with the data, not in this process's memory
    let metadata: Value = sqlx::query_scalar("SELECT metadata FROM events WHERE aggregate_id = $1")
        .bind(&file_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(metadata["traceparent"], traceparent(trace, command.span_context.span_id()), "{metadata}");
    let messages = app.stream_messages(&app.names.es_filter(Some("media_file"), Some(&file_id))).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(header(&messages[0], "traceparent"), Some(traceparent(trace, relay.span_context.span_id())));
    app.stop().await;
}

#[tokio::test]
async fn a_docks_update_topo_and_the_status_reply_it_receives_are_one_trace() {
    let exporter = exporter();
    let app = crate::devices::app_with_bridge(60).await;
    app.wait_for("the bridge's subscriptions", || async {
        app.http.get(format!("{}/readyz", app.base)).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    let gw = format!("{}DOCK", crate::devices::prefix());
    let reply_topic = format!("sys/product/{gw}/status_reply");
    let (dock, mut replies) = crate::devices::device_client(std::slice::from_ref(&reply_topic)).await;
    let tid = uuid::Uuid::new_v4().to_string();
    let topo = json!({"tid": tid, "bid": "b", "timestamp": 1, "method": "update_topo",
        "data": {"domain": 3, "type": 2, "sub_type": 0, "thing_version": "1.2.0", "device_secret": "s", "nonce": "n",
            "sub_devices": []}});
    dock.publish(format!("sys/product/{gw}/status"), QoS::AtLeastOnce, false, topo.to_string()).await.unwrap();
    let reply = crate::devices::next_on(&mut replies, &reply_topic, &tid).await;
    assert_eq!(reply["data"]["result"], 0, "{reply}");

    let is_receive = |s: &SpanData| s.name == "mqtt.receive" && attr(s, "tid").as_deref() == Some(tid.as_str());
    let is_send = |s: &SpanData| s.name == "mqtt.publish" && attr(s, "mqtt.topic").as_deref() == Some(&reply_topic);
    let spans = spans_once(&exporter, "the bridge's MQTT publish of the status_reply", |spans| {
        spans
            .iter()
            .find(|s| is_receive(s))
            .is_some_and(|r| spans.iter().any(|s| s.span_context.trace_id() == r.span_context.trace_id() && is_send(s)))
    })
    .await;
    let receive = spans.iter().find(|s| is_receive(s)).unwrap();
    let trace = receive.span_context.trace_id();
    assert_eq!(receive.parent_span_id, SpanId::INVALID, "the device's message starts the trace");
    assert_eq!(attr(receive, "method").as_deref(), Some("update_topo"));
    let to_jetstream = one(&spans, trace, "the publish to DEVICE_IN", |s| s.name == "jetstream.publish");
    assert_eq!(to_jetstream.parent_span_id, receive.span_context.span_id());
    let inbox = one(&spans, trace, "the inbox", |s| s.name == "device_inbox.handle");
    assert_eq!(inbox.parent_span_id, to_jetstream.span_context.span_id());
    assert!(inbox.parent_span_is_remote, "the inbox continues the trace read from the message");
    let commands: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace && attr(s, "aggregate_id").as_deref() == Some(gw.as_str()))
        .collect();
    assert!(!commands.is_empty(), "the gateway's commands are in the trace");
    assert!(commands.iter().all(|c| c.parent_span_id == inbox.span_context.span_id()));
    let reply_publish = one(&spans, trace, "the reply's publish to DEVICE_OUT", |s| s.name == "reply.publish");
    assert_eq!(reply_publish.parent_span_id, inbox.span_context.span_id());
    let send = one(&spans, trace, "the MQTT publish of the reply", is_send);
    assert_eq!(send.parent_span_id, reply_publish.span_context.span_id());
    assert!(send.parent_span_is_remote, "the bridge continues the trace read from the message");

    // MQTT in and out by kind
    let m = app.metrics().await;
    assert!(value(&m, "hangar_bridge_inbound_total{kind=\"status\"}") >= 1.0, "{m}");
    assert!(value(&m, "hangar_bridge_outbound_total{kind=\"status_reply\"}") >= 1.0, "{m}");
    app.stop().await;
}

/// A series' value in a `/metrics` text (0 when absent).
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_follow_requests_the_outbox_and_websocket_sessions() {
    // Seed the installation, then start it again while the test holds the relay's leader lock:
    // what the commands write waits in the outbox until the lock is released.
    let first = TestApp::spawn().await;
    let token = first.pilot_token().await;
    let admin = first.admin_token().await;
    let config = first.config.clone();
    first.halt().await;
    let relay_lock = hold_relay(&config.database_url).await;
    let app =
        TestApp::spawn_with(config, Components { command: true, query: true, projectors: true, bridge: false }).await;

    let route = r#"route="/media/api/v1/workspaces/{workspace_id}/upload-callback",method="POST",status="200""#;
    let unmatched = r#"route="unmatched",method="GET",status="404""#;
    let before = app.metrics().await;
    for i in 0..3 {
        let (status, body) = app.upload_callback(&token, callback_body(&format!("metrics-{i}"))).await;
        assert_eq!((status, body["code"].clone()), (StatusCode::OK, json!(0)), "{body}");
    }
    let (status, _) = app.get(&format!("/no/such/endpoint/{WS}"), &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let m = app.metrics().await;
    let delta = |series: &str| value(&m, series) - value(&before, series);
    assert_eq!(delta(&format!("hangar_http_requests_total{{{route}}}")), 3.0, "{m}");
    assert_eq!(delta(&format!("hangar_http_request_duration_seconds_count{{{route}}}")), 3.0, "{m}");
    assert!(value(&m, &format!("hangar_http_request_duration_seconds{{quantile=\"0.99\",{route}}}")) > 0.0, "{m}");
    assert_eq!(delta(&format!("hangar_http_requests_total{{{unmatched}}}")), 1.0, "{m}");
    assert!(
        !m.lines().any(|l| l.starts_with("hangar_http") && l.contains(WS)),
        "paths are labelled by their template, never as sent: {m}"
    );

    // held back: the seed's events and the three files wait, and the oldest keeps ageing
    app.wait_for("the outbox gauges to show the waiting events", || async {
        let m = app.metrics().await;
        value(&m, "hangar_outbox_depth") >= 3.0 && value(&m, "hangar_outbox_oldest_age_seconds") > 0.0
    })
    .await;
    let applied = value(&app.metrics().await, "hangar_projection_applied_total{projection=\"media_files\"}");
    relay_lock.close().await.unwrap();
    app.wait_for("the relay to drain the outbox and the files to be projected", || async {
        let m = app.metrics().await;
        value(&m, "hangar_outbox_depth") == 0.0
            && value(&m, "hangar_outbox_oldest_age_seconds") == 0.0
            && value(&m, "hangar_projection_applied_total{projection=\"media_files\"}") >= applied + 3.0
    })
    .await;
    let m = app.metrics().await;
    assert!(m.contains("hangar_projection_lag_seconds{quantile=\"0.5\",projection=\"media_files\"}"), "{m}");
    assert!(m.contains("hangar_projection_pending{projection=\"media_files\"}"), "{m}");
    assert_eq!(value(&m, "hangar_relay_leader"), 1.0, "{m}");

    // WebSocket sessions, up and down
    let sessions = value(&m, "hangar_ws_sessions");
    let url = format!("ws://{}/api/v1/ws?x-auth-token={admin}", app.addr);
    let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    app.wait_for("the session to be counted", || async {
        value(&app.metrics().await, "hangar_ws_sessions") == sessions + 1.0
    })
    .await;
    drop(ws);
    app.wait_for("the session to be gone", || async { value(&app.metrics().await, "hangar_ws_sessions") == sessions })
        .await;
    app.stop().await;
}

#[tokio::test]
async fn a_request_in_flight_when_shutdown_begins_is_answered() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    let fingerprint = format!("inflight-{}", uuid::Uuid::new_v4().simple());
    let body = callback_body(&fingerprint).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);

    // a client that has sent half of its request when the process is told to stop
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /media/api/v1/workspaces/{WS}/upload-callback HTTP/1.1\r\nhost: {}\r\nx-auth-token: {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        app.addr,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(first_half.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.begin_shutdown();

    // new connections are refused at once
    wait_for("the listener to close", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(app.addr).await.is_err()
    })
    .await;
    // the request in flight is finished and answered
    conn.write_all(second_half.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut response))
        .await
        .expect("the server answers and closes the connection")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""code":0"#), "{response}");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(shared::domain::media::file_id(WS, &fingerprint))
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(recorded, 1, "the file was recorded");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_sent_over_otlp_http_when_an_endpoint_is_configured() {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    // a collector that keeps what is posted to it
    let (posted_tx, mut posted) = tokio::sync::mpsc::unbounded_channel();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let _ = posted_tx.send((content_type, body));
            async { StatusCode::OK }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await });

    // (only this test reads the OTEL_* variables)
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    let provider = shared::telemetry::otlp_provider("hangar-otlp-check").unwrap();
    std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
    let provider = provider.expect("an endpoint is configured");
    provider.tracer("hangar").in_span("an-exported-span", |_| {});
    // what `main` does when the process stops: the batch is sent before the exporter stops
    provider.shutdown().unwrap();

    let (content_type, body) =
        tokio::time::timeout(Duration::from_secs(5), posted.recv()).await.expect("a POST to /v1/traces").unwrap();
    assert_eq!(content_type, "application/x-protobuf");
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"an-exported-span"), "the span's name is in the request");
    assert!(contains(b"hangar-otlp-check"), "the service name is in the request");
    assert!(shared::telemetry::otlp_provider("x").unwrap().is_none(), "nothing without an endpoint");
}
