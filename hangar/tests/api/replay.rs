//! The analysts' replay, projection rebuilds, and the lag metric.

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use hangar::replay::{replay, Filter};
use serde_json::{json, Value};

use crate::helpers::*;

async fn lines(app: &TestApp, filter: Filter) -> Vec<Value> {
    let mut out = Vec::new();
    replay(&app.js, &app.names, &filter, &mut out).await.unwrap();
    String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn replay_writes_json_lines_filtered_by_type_id_and_time_in_order() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    app.upload_callback(&token, callback_body("r-a")).await;
    app.upload_callback(&token, callback_body("r-b")).await;
    for uploaded in [1, 2] {
        let body = json!({"file_group_id": "g1", "file_count": 2, "file_uploaded_count": uploaded});
        app.post(&format!("/media/api/v1/workspaces/{WS}/group-upload-callback"), &token, body).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mid = Utc::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.upload_callback(&token, callback_body("r-c")).await;
    app.wait_for("published", || async {
        app.count("event_outbox").await == 0 && app.count("rm_media_files").await == 3
    })
    .await;

    let all = lines(&app, Filter::default()).await;
    assert_eq!(all.len(), 3 + 3 + 2, "seed (workspace, 2 users), 3 files, 2 group reports");
    let seqs: Vec<u64> = all.iter().map(|l| l["stream_sequence"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "stream order");
    assert_eq!(all[0]["aggregate_type"], "workspace");
    assert_eq!(all[0]["event_type"], "WorkspaceCreated");

    let media = lines(&app, Filter { aggregate_type: Some("media_file".into()), ..Default::default() }).await;
    let fps: Vec<&str> =
        media.iter().map(|l| l["payload"]["MediaFileUploaded"]["fingerprint"].as_str().unwrap()).collect();
    assert_eq!(fps, ["r-a", "r-b", "r-c"]);
    for l in &media {
        for k in ["aggregate_id", "sequence", "event_version", "metadata", "recorded_at", "global_position"] {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
        assert_eq!(l["metadata"]["user"], "pilot");
    }

    let group = shared::domain::file_group::group_id(WS, "g1");
    let g = lines(
        &app,
        Filter { aggregate_type: Some("file_group".into()), aggregate_id: Some(group), ..Default::default() },
    )
    .await;
    assert_eq!(g.iter().map(|l| l["sequence"].as_i64().unwrap()).collect::<Vec<_>>(), [1, 2]);

    let after =
        lines(&app, Filter { aggregate_type: Some("media_file".into()), from: Some(mid), ..Default::default() }).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["payload"]["MediaFileUploaded"]["fingerprint"], "r-c");
    let before =
        lines(&app, Filter { aggregate_type: Some("media_file".into()), to: Some(mid), ..Default::default() }).await;
    assert_eq!(before.len(), 2);
    let none = lines(&app, Filter { aggregate_type: Some("no_such_type".into()), ..Default::default() }).await;
    assert!(none.is_empty());

    // the same through the command analysts run
    let out = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["replay", "--aggregate-type", "media_file", "--from", &mid.to_rfc3339()])
        .env("HANGAR_NATS_PREFIX", &app.config.nats_prefix)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"r-c\""));
    app.stop().await;
}

async fn snapshot(app: &TestApp) -> String {
    let mut s = String::new();
    for (table, key) in [
        ("rm_workspaces", "workspace_id"),
        ("rm_users", "user_id"),
        ("rm_media_files", "file_id"),
        ("rm_media_groups", "file_group_id"),
        ("rm_map_elements", "element_id"),
    ] {
        let t: Option<String> = sqlx::query_scalar(&format!("SELECT json_agg(t ORDER BY {key})::text FROM {table} t"))
            .fetch_one(&app.pool)
            .await
            .unwrap();
        s.push_str(&t.unwrap_or_default());
        s.push('\n');
    }
    s
}

#[tokio::test]
async fn rebuilding_every_projection_reproduces_identical_read_models() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    for i in 0..4 {
        app.upload_callback(&token, callback_body(&format!("rb-{i}"))).await;
    }
    // a rebuild loads files in bulk (COPY's text format): characters it escapes, and no sub type
    let mut odd = callback_body("rb-4");
    odd["name"] = json!("tab\there\\back\nline\rreturn \\N ünï 🚁.JPG");
    odd["path"] = json!("a\\b\tc");
    odd["metadata"]["note"] = json!("x\ty\\z\n");
    odd.as_object_mut().unwrap().remove("sub_file_type");
    assert_eq!(app.upload_callback(&token, odd).await.1["code"], 0);
    for uploaded in [1, 3] {
        let body = json!({"file_group_id": "g", "file_count": 3, "file_uploaded_count": uploaded});
        app.post(&format!("/media/api/v1/workspaces/{WS}/group-upload-callback"), &token, body).await;
    }
    app.put(&format!("/manage/api/v1/users/{WS}/users/{PILOT_ID}"), &token, json!({"mqtt_password": "new"})).await;
    let element = json!({"id": "6a1b4c5e-0000-4e2a-9b7c-0d1e2f3a4b5c", "name": "Pad", "resource": {"type": 0,
        "content": {"type": "Feature", "properties": {"color": "#2D8CF0", "clampToGround": true},
                    "geometry": {"type": "Point", "coordinates": [113.94, 22.57, 12.5]}}}});
    let url = format!("/map/api/v1/workspaces/{WS}/element-groups/e3dea0f5-37f2-4d79-ae58-490af3228011/elements");
    assert_eq!(app.post(&url, &token, element).await.1["code"], 0);
    app.wait_for("projected", || async {
        app.count("rm_map_elements").await == 1
            && app.count("rm_media_files").await == 5
            && app.count("event_outbox").await == 0
            && app.login("pilot", "pilot123", 2).await["data"]["mqtt_password"] == "new"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = snapshot(&app).await;
    assert!(before.contains("rb-4") && before.contains("\"new\"") && before.contains("🚁"), "{before}");

    for p in projectors::all_projections() {
        projectors::runner::rebuild(p.as_ref(), &app.pool, &app.js, &app.names).await.unwrap();
    }
    // the running projectors notice, start over and converge on the very same rows
    wait_for("rebuilt", Duration::from_secs(30), || async { snapshot(&app).await == before }).await;
    app.stop().await;
}

#[tokio::test]
async fn a_rebuild_needs_nothing_running_and_the_live_projection_goes_on_after_it_without_repeating_an_event() {
    // The API alone: events are committed, none is published (no relay) and no projection runs.
    let app = TestApp::spawn_with(
        test_config(),
        hangar::Components { command: true, query: true, projectors: false, bridge: false },
    )
    .await;
    let now = Utc::now().timestamp();
    let token = app.sign(json!({"iss": "DJI", "sub": "CloudApiSample", "iat": now, "nbf": now, "exp": now + 3600,
        "id": PILOT_ID, "username": "pilot", "user_type": "2", "workspace_id": WS}));
    for i in 0..3 {
        assert_eq!(app.upload_callback(&token, callback_body(&format!("ra-{i}"))).await.1["code"], 0);
    }
    let group = |uploaded: i32| json!({"file_group_id": "g", "file_count": 4, "file_uploaded_count": uploaded});
    let url = format!("/media/api/v1/workspaces/{WS}/group-upload-callback");
    assert_eq!(app.post(&url, &token, group(3)).await.1["code"], 0);
    assert_eq!(app.count("rm_media_files").await, 0);

    // The rebuild reads the event store itself.
    let all = projectors::all_projections();
    let all: Vec<&dyn projectors::Projection> = all.iter().map(|p| p.as_ref()).collect();
    let applied = projectors::runner::rebuild_all(&all, &app.pool, &app.js, &app.names).await.unwrap();
    assert!(applied >= 4, "{applied}");
    assert_eq!(app.count("rm_media_files").await, 3);
    let reports = || async {
        sqlx::query_scalar::<_, i32>("SELECT reports FROM rm_media_groups").fetch_one(&app.pool).await.unwrap()
    };
    assert_eq!(reports().await, 1);
    assert_eq!(app.login("pilot", "pilot123", 2).await["code"], 0, "the users' read model is there too");

    // Now the relay publishes all of it and the projections read the stream: what the rebuild
    // applied is skipped, what comes after is applied once.
    let projectors = hangar::start(
        app.config.clone(),
        hangar::Components { command: false, query: false, projectors: true, bridge: false },
        shared::Shutdown::new(),
    )
    .await
    .unwrap();
    assert_eq!(app.upload_callback(&token, callback_body("ra-3")).await.1["code"], 0);
    assert_eq!(app.post(&url, &token, group(4)).await.1["code"], 0);
    app.wait_for("the new events projected", || async {
        app.count("rm_media_files").await == 4 && reports().await == 2 && app.count("event_outbox").await == 0
    })
    .await;
    let stream = app.js.get_stream(app.names.es_stream()).await.unwrap();
    let media = projectors::all_projections().into_iter().find(|p| p.name() == "media_files").unwrap();
    wait_for("the consumers drained", Duration::from_secs(10), || async {
        let mut drained = true;
        for name in projectors::runner::consumer_names(media.as_ref(), &app.names) {
            let info = stream.consumer_info(&name).await.unwrap();
            drained &= info.num_pending == 0 && info.num_ack_pending == 0;
        }
        drained
    })
    .await;
    assert_eq!(reports().await, 2, "each group report applied once");
    let live = shared::metrics::counter("hangar_projection_applied_total", &[("projection", "media_files")])
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(live, 2, "the live projection applied only the two events after the rebuild");
    projectors.stop().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn projection_lag_and_backlog_are_exposed_as_metrics() {
    let app = TestApp::spawn().await;
    let token = app.pilot_token().await;
    app.upload_callback(&token, callback_body("m-1")).await;
    app.wait_for("projected", || async { app.count("rm_media_files").await == 1 }).await;
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("hangar_projection_lag_seconds{quantile=\"0.99\",projection=\"media_files\"}"), "{text}");
    assert!(text.contains("hangar_projection_pending{projection=\"media_files\"} 0"), "{text}");
    assert!(text.contains("hangar_relay_leader 1"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn a_projection_reads_each_aggregate_type_through_its_own_consumer() {
    // The API alone first: events pile up on the stream, and the whole-stream consumer an earlier
    // version of the media projection used is there.
    let app = TestApp::spawn_with(
        test_config(),
        hangar::Components { command: true, query: true, projectors: false, bridge: false },
    )
    .await;
    let stream = app.js.get_stream(app.names.es_stream()).await.unwrap();
    let legacy = app.names.consumer("media_files");
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(legacy.clone()),
            filter_subject: app.names.es_filter(None, None),
            ..Default::default()
        })
        .await
        .unwrap();
    // no projections yet, so no login (it reads the users' read model): a token signed here
    let now = Utc::now().timestamp();
    let token = app.sign(json!({"iss": "DJI", "sub": "CloudApiSample", "iat": now, "nbf": now, "exp": now + 3600,
        "id": PILOT_ID, "username": "pilot", "user_type": "2", "workspace_id": WS}));
    for i in 0..3 {
        assert_eq!(app.upload_callback(&token, callback_body(&format!("pt-{i}"))).await.1["code"], 0);
    }
    let body = json!({"file_group_id": "g", "file_count": 3, "file_uploaded_count": 3});
    assert_eq!(
        app.post(&format!("/media/api/v1/workspaces/{WS}/group-upload-callback"), &token, body).await.1["code"],
        0
    );

    let projectors = hangar::start(
        app.config.clone(),
        hangar::Components { command: false, query: false, projectors: true, bridge: false },
        shared::Shutdown::new(),
    )
    .await
    .unwrap();
    app.wait_for("projected", || async {
        app.count("rm_media_files").await == 3 && app.count("rm_media_groups").await == 1
    })
    .await;
    let reports: i32 = sqlx::query_scalar("SELECT reports FROM rm_media_groups").fetch_one(&app.pool).await.unwrap();
    assert_eq!(reports, 1, "the group report is applied once");

    // one consumer per aggregate type, each filtered to its type; the whole-stream one is gone
    let p = projectors::all_projections().into_iter().find(|p| p.name() == "media_files").unwrap();
    let names = projectors::runner::consumer_names(p.as_ref(), &app.names);
    assert_eq!(names.len(), 2, "{names:?}");
    for (name, t) in names.iter().zip(["media_file", "file_group"]) {
        let info = stream.consumer_info(name).await.unwrap();
        assert_eq!(info.config.filter_subject, app.names.es_filter(Some(t), None), "{name}");
    }
    assert!(stream.consumer_info(&legacy).await.is_err(), "the whole-stream consumer is deleted");
    projectors.stop().await.unwrap();
    app.stop().await;
}
