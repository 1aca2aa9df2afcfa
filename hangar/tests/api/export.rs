//! The analysts' export (`hangar export`), read back by an independent reader: DuckDB, through
//! `export_read.py` beside this file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hangar::export::telemetry::Filter as TmFilter;
use hangar::export::{export, Filter, Format};
use hangar::Components;
use serde_json::{json, Value};
use shared::es::StoredEvent;

use crate::helpers::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/export_read.py")
}

/// Runs `export_read.py` and parses what it prints.
fn duckdb(args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3 with duckdb (scripts/test-deps.sh installs it)");
    assert!(out.status.success(), "export_read.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every event in the table matching `keep`, by position, in the shape `export_read.py read` prints.
async fn table(app: &TestApp, keep: impl Fn(&str, DateTime<Utc>) -> bool) -> Vec<Value> {
    let rows: Vec<StoredEvent> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
                global_position, recorded_at FROM events ORDER BY global_position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    rows.into_iter()
        .filter(|e| keep(&e.aggregate_type, e.recorded_at))
        .map(|e| {
            json!({"global_position": e.global_position, "recorded_us": e.recorded_at.timestamp_micros(),
                   "aggregate_type": e.aggregate_type, "aggregate_id": e.aggregate_id, "sequence": e.sequence,
                   "event_type": e.event_type, "event_version": e.event_version, "payload": e.payload,
                   "metadata": e.metadata})
        })
        .collect()
}

/// Exports with `filter` to a new file in `dir`; returns the file and how many events it holds.
async fn export_file(app: &TestApp, dir: &Path, filter: &Filter, format: Format) -> (PathBuf, u64) {
    let path = dir.join(format!("{}.{format:?}", uuid::Uuid::new_v4().simple()));
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let n = export(&app.pool, filter, format, file, |_| {}).await.unwrap();
    (path, n)
}

/// Exports with `filter` and reads the file back with DuckDB; payload and metadata parsed.
async fn exported(app: &TestApp, dir: &Path, filter: Filter, format: Format) -> Vec<Value> {
    let (path, n) = export_file(app, dir, &filter, format).await;
    let kind = if format == Format::Parquet { "parquet" } else { "jsonl" };
    let Value::Array(mut rows) = duckdb(&["read", path.to_str().unwrap(), kind]) else { panic!("not a list") };
    assert_eq!(rows.len() as u64, n, "what the export counted is what the file holds");
    for r in &mut rows {
        for k in ["payload", "metadata"] {
            r[k] = serde_json::from_str(r[k].as_str().unwrap()).unwrap();
        }
    }
    rows
}

fn keys(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|r| format!("{}/{}/{}", r["aggregate_type"], r["aggregate_id"], r["sequence"])).collect()
}

#[tokio::test]
async fn export_holds_every_event_once_in_stream_order_with_its_fields_and_filters_work() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    app.upload_callback(&token, callback_body("x-a")).await;
    app.upload_callback(&token, callback_body("x-b")).await;
    for uploaded in [1, 2] {
        let body = json!({"file_group_id": "g1", "file_count": 2, "file_uploaded_count": uploaded});
        app.post(&format!("/media/api/v1/workspaces/{WS}/group-upload-callback"), &token, body).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mid = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.put(&format!("/manage/api/v1/users/{WS}/users/{PILOT_ID}"), &token, json!({"mqtt_password": "p2"})).await;
    app.upload_callback(&token, callback_body("x-c")).await;
    app.wait_for("published", || async { app.count("event_outbox").await == 0 }).await;
    let dir = std::env::temp_dir().join(format!("{}-export", app.config.nats_prefix));
    std::fs::create_dir_all(&dir).unwrap();

    let all = table(&app, |_, _| true).await;
    assert_eq!(all.len(), 3 + 3 + 2 + 1, "seed (workspace, 2 users), 3 files, 2 group reports, 1 user change");
    for format in [Format::Parquet, Format::Jsonl] {
        let rows = exported(&app, &dir, Filter::default(), format).await;
        // every field of every event, as the event store holds it, in position order
        assert_eq!(rows, all, "{format:?}");
        let mut unique = keys(&rows);
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), rows.len(), "every event once");
    }
    // the ES stream holds them in the same order
    let stream: Vec<String> = app
        .stream_messages(&app.names.es_filter(None, None))
        .await
        .iter()
        .map(|m| header(m, "Nats-Msg-Id").unwrap())
        .collect();
    let ids: Vec<String> = all
        .iter()
        .map(|r| {
            format!(
                "{}/{}/{}",
                r["aggregate_type"].as_str().unwrap(),
                r["aggregate_id"].as_str().unwrap(),
                r["sequence"]
            )
        })
        .collect();
    assert_eq!(ids, stream, "stream order");
    let (path, _) = export_file(&app, &dir, &Filter::default(), Format::Parquet).await;
    assert_eq!(
        duckdb(&["schema", path.to_str().unwrap()]),
        json!([
            ["global_position", "BIGINT"],
            ["recorded_at", "TIMESTAMP WITH TIME ZONE"],
            ["aggregate_type", "VARCHAR"],
            ["aggregate_id", "VARCHAR"],
            ["sequence", "BIGINT"],
            ["event_type", "VARCHAR"],
            ["event_version", "VARCHAR"],
            ["payload", "VARCHAR"],
            ["metadata", "VARCHAR"]
        ])
    );

    // filters: aggregate types, a time range, both
    let media_and_groups = |t: &str| t == "media_file" || t == "file_group";
    let filter = Filter { aggregate_types: vec!["media_file".into(), "file_group".into()], ..Default::default() };
    let want = table(&app, |t, _| media_and_groups(t)).await;
    assert_eq!(want.len(), 5);
    for format in [Format::Parquet, Format::Jsonl] {
        assert_eq!(exported(&app, &dir, filter.clone(), format).await, want, "{format:?}");
    }
    let after = Filter { from: Some(mid), ..Default::default() };
    let want = table(&app, |_, at| at >= mid).await;
    assert_eq!(keys(&want).len(), 2, "the user change and x-c");
    assert_eq!(exported(&app, &dir, after, Format::Parquet).await, want);
    let before = Filter { to: Some(mid), ..Default::default() };
    assert_eq!(exported(&app, &dir, before, Format::Jsonl).await, table(&app, |_, at| at <= mid).await);
    let both = Filter { from: Some(mid), aggregate_types: vec!["media_file".into()], ..Default::default() };
    let rows = exported(&app, &dir, both, Format::Parquet).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["payload"]["MediaFileUploaded"]["fingerprint"], "x-c");
    let none = Filter { aggregate_types: vec!["no_such_type".into()], ..Default::default() };
    assert!(exported(&app, &dir, none, Format::Parquet).await.is_empty());

    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}

/// Appends bulk events `from..to` of about 2 KiB each (pseudo-random text, so that compression
/// cannot hide their size) straight into the event store: a long history in seconds.
async fn grow(app: &TestApp, from: i64, to: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'bulk', 'b-' || (i % 100), i / 100 + 1, 'Filled', '1.0', \
                jsonb_build_object('Filled', jsonb_build_object('i', i, 'text', \
                  (SELECT string_agg(md5(i::text || '/' || j::text), '') FROM generate_series(1, 64) j))), \
                '{\"source\": \"test\"}' \
         FROM generate_series($1::bigint, $2::bigint - 1) i",
    )
    .bind(from)
    .bind(to)
    .execute(&app.pool)
    .await
    .unwrap();
}

/// Runs `hangar export` as analysts do; returns its peak resident memory (KiB) and its stderr.
fn run_export(app: &TestApp, args: &[&str]) -> (u64, String) {
    let hangar = env!("CARGO_BIN_EXE_hangar");
    let out = Command::new("python3")
        .arg(script())
        .args(["rss", "env", &format!("HANGAR_DATABASE_URL={}", app.config.database_url), "RUST_LOG=warn", hangar])
        .arg("export")
        .args(args)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = r["stderr"].as_str().unwrap().to_string();
    assert_eq!(r["status"], 0, "{stderr}");
    (r["max_rss_kib"].as_u64().unwrap(), stderr)
}

#[tokio::test]
async fn export_memory_stays_flat_as_the_history_grows() {
    // the API only: nothing relays or projects the bulk history
    let app =
        TestApp::spawn_with(test_config(), Components { command: true, query: true, projectors: false, bridge: false })
            .await;
    let dir = std::env::temp_dir().join(format!("{}-export", app.config.nats_prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = app.count("events").await;
    let mut peaks = Vec::new();
    let mut bulk = 0;
    for (size, name) in [(50_000, "small"), (150_000, "large")] {
        grow(&app, bulk, size).await;
        bulk = size;
        let size: i64 = sqlx::query_scalar("SELECT sum(length(payload::text))::bigint FROM events")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        for format in ["parquet", "jsonl"] {
            let path = dir.join(format!("{name}.{format}"));
            let (peak, stderr) = run_export(&app, &["--format", format, "--output", path.to_str().unwrap()]);
            let events = seed + bulk;
            assert!(stderr.contains(&format!("export: {events} events")) && stderr.contains("done"), "{stderr}");
            assert!(!dir.join(format!("{name}.{format}.partial")).exists(), "renamed once complete");
            if format == "parquet" {
                let s = duckdb(&["summary", path.to_str().unwrap()]);
                assert_eq!(s, json!({"rows": events, "distinct_positions": events, "ordered": true}));
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                assert_eq!(text.lines().count() as i64, events);
            }
            eprintln!(
                "{name} history: {events} events, {} MiB of payload; {format} export peak {} MiB",
                size >> 20,
                peak >> 10
            );
            peaks.push((format, size, peak));
        }
    }
    for format in ["parquet", "jsonl"] {
        let [(_, small_size, small), (_, large_size, large)] =
            peaks.iter().filter(|p| p.0 == format).copied().collect::<Vec<_>>()[..]
        else {
            panic!("two sizes")
        };
        let grown_mib = (large_size - small_size) >> 20;
        assert!(grown_mib >= 180, "the history grew by {grown_mib} MiB");
        // holding the history, or any share of it, would grow with it. The margin is for the
        // allocator: pages are allocated by the reading task and freed by the writing one, and on
        // a loaded machine more of them are in flight at the peak (seen: 8 to 33 MiB between runs
        // of 20,000 and 100,000 events, each page ~10 MiB; the small run now starts in the steady state)
        let delta_mib = (large.saturating_sub(small)) >> 10;
        assert!(delta_mib < 48, "{format}: peak {small} KiB -> {large} KiB while the history grew {grown_mib} MiB");
    }
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}

/// A telemetry export with `filter`, read back with DuckDB; payloads parsed.
async fn telemetry_exported(app: &TestApp, filter: &TmFilter, format: Format) -> Vec<Value> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("{}-tm-{}.{format:?}", app.config.nats_prefix, uuid::Uuid::new_v4().simple()));
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let n = hangar::export::telemetry::export(&app.js, &app.names, filter, format, file, |_| {}).await.unwrap();
    let kind = if format == Format::Parquet { "parquet" } else { "jsonl" };
    let Value::Array(mut rows) = duckdb(&["telemetry", path.to_str().unwrap(), kind]) else { panic!("not a list") };
    let _ = std::fs::remove_file(&path);
    assert_eq!(rows.len() as u64, n);
    for r in &mut rows {
        r["payload"] = serde_json::from_str(r["payload"].as_str().unwrap()).unwrap();
    }
    rows
}

#[tokio::test]
async fn telemetry_export_holds_each_message_of_the_range_once_in_stream_order_and_retention_is_configuration() {
    let mut config = test_config();
    config.telemetry_retention_secs = 7200;
    let app = TestApp::spawn_with(
        config.clone(),
        Components { command: true, query: true, projectors: false, bridge: false },
    )
    .await;
    let max_age = || async {
        let mut s = app.js.get_stream(app.names.telemetry_stream()).await.unwrap();
        s.info().await.unwrap().config.max_age
    };
    assert_eq!(max_age().await, Duration::from_secs(7200));

    // osd and state of two devices, as the bridge stores them (one pretty-printed, as some firmware sends)
    let mut expected = Vec::new();
    let mut mid = None;
    for i in 0..6i64 {
        if i == 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            mid = Some(Utc::now());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let sn = if i % 2 == 0 { "TM-A.1" } else { "TM-B" };
        let kind = if i == 4 { "state" } else { "osd" };
        let body =
            json!({"tid": format!("t{i}"), "timestamp": i, "gateway": sn, "data": {"height": i, "note": "a\nb"}});
        let text = if i == 1 { serde_json::to_string_pretty(&body).unwrap() } else { body.to_string() };
        let topic = format!("thing/product/{sn}/{kind}");
        let received = Utc::now();
        let mut h = async_nats::HeaderMap::new();
        h.insert(shared::protocol::H_MQTT_TOPIC, topic.as_str());
        h.insert(
            shared::protocol::H_RECEIVED_AT,
            received.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).as_str(),
        );
        let subject = app.names.telemetry_subject(sn, kind);
        app.js.publish_with_headers(subject, h, text.into()).await.unwrap().await.unwrap();
        expected.push(json!({"stream_sequence": i + 1, "received_us": received.timestamp_micros(), "sn": sn,
                             "kind": kind, "mqtt_topic": topic, "payload": body}));
    }
    let mid = mid.unwrap();
    let strip = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter()
            .map(|mut r| {
                assert!(r["stored_us"].as_i64().unwrap() >= r["received_us"].as_i64().unwrap(), "{r}");
                r.as_object_mut().unwrap().remove("stored_us");
                r
            })
            .collect()
    };
    for format in [Format::Parquet, Format::Jsonl] {
        let all = strip(telemetry_exported(&app, &TmFilter::default(), format).await);
        assert_eq!(all, expected, "{format:?}: every message once, in stream order, every field");
    }
    let pick = |keep: &dyn Fn(usize) -> bool| -> Vec<Value> {
        expected.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, v)| v.clone()).collect()
    };
    let after = TmFilter { from: Some(mid), ..Default::default() };
    assert_eq!(strip(telemetry_exported(&app, &after, Format::Parquet).await), pick(&|i| i >= 3));
    let before = TmFilter { to: Some(mid), ..Default::default() };
    assert_eq!(strip(telemetry_exported(&app, &before, Format::Jsonl).await), pick(&|i| i < 3));
    let one = TmFilter { sn: Some("TM-A.1".into()), ..Default::default() };
    assert_eq!(strip(telemetry_exported(&app, &one, Format::Parquet).await), pick(&|i| i % 2 == 0));
    let state = TmFilter { kind: Some("state".into()), from: Some(mid), ..Default::default() };
    assert_eq!(strip(telemetry_exported(&app, &state, Format::Parquet).await), pick(&|i| i == 4));

    // the command analysts run
    let path = std::env::temp_dir().join(format!("{}-tm.jsonl", app.config.nats_prefix));
    let out = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["export-telemetry", "--format", "jsonl", "--sn", "TM-B", "--output", path.to_str().unwrap()])
        .env("HANGAR_NATS_PREFIX", &app.config.nats_prefix)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("export: 3 messages"));
    let lines: Vec<Value> =
        std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let _ = std::fs::remove_file(&path);
    assert_eq!(lines.iter().map(|l| l["stream_sequence"].as_i64().unwrap()).collect::<Vec<_>>(), [2, 4, 6]);
    assert_eq!(lines[0]["payload"], expected[1]["payload"], "a pretty-printed message is one line of the same JSON");

    // a changed setting applies to the existing stream at the next start
    config.telemetry_retention_secs = 600;
    shared::nats::ensure_streams(&app.js, &app.names, &config).await.unwrap();
    assert_eq!(max_age().await, Duration::from_secs(600));
    app.stop().await;
}
