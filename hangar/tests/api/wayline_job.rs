//! WaylineJobController end to end with the dock simulator: flight tasks prepared and executed
//! with the right parameters, timed jobs executed once and on time across restarts and with two
//! command-api processes, late jobs failed rather than flown, cancel, refusals and bad requests.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hangar::Components;
use mqtt_bridge::sim::{Answer, Fleet, FleetConfig, FlightOutcome, ResourceGet};
use reqwest::Method;
use serde_json::{json, Value};

use crate::devices::{bind, prefix};
use crate::helpers::*;
use crate::wayline_file::{import, mission};

/// Hangar with its bridge, on a port of its own that its links name (the simulated docks download
/// wayline files from the links they are given).
pub(crate) fn bridge_config() -> shared::Config {
    let mut c = test_config();
    c.mqtt_client_id = format!("{}-bridge", c.nats_prefix);
    c.mqtt_share_group = c.nats_prefix.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    c.listen = format!("127.0.0.1:{port}").parse().unwrap();
    c.public_url = format!("http://127.0.0.1:{port}");
    c
}

/// A bound simulated dock and an imported wayline: `(token, fleet, dock_sn, wayline_id, kmz)`.
async fn setup(app: &TestApp) -> (String, Fleet, String, String, Vec<u8>) {
    setup_with(app, |_| {}).await
}

/// [`setup`] with a dock configured by `tune` (its own flights only, no ten-minute rounds).
async fn setup_with(app: &TestApp, tune: impl FnOnce(&mut FleetConfig)) -> (String, Fleet, String, String, Vec<u8>) {
    let token = app.admin_token().await;
    let mut config = FleetConfig {
        docks: 1,
        osd_hz: 2.0,
        sn_prefix: prefix(),
        hms_every: None,
        cycle_flights: false,
        progress_interval: Duration::from_millis(100),
        ..Default::default()
    };
    tune(&mut config);
    let f = Fleet::start(config).await.unwrap();
    f.ready(Duration::from_secs(10)).await.unwrap();
    let dock = f.docks()[0].dock_sn.clone();
    bind(app, &token, &dock).await;
    let kmz = mission("Roof", 5);
    let r = import(app, &token, "Roof.kmz", kmz.clone()).await;
    assert_eq!(r["code"], 0, "{r}");
    app.wait_for("wayline listed", || async {
        let (_, r) = app.get(&format!("/wayline/api/v1/workspaces/{WS}/waylines"), &token).await;
        r["data"]["list"][0]["id"].is_string()
    })
    .await;
    let (_, r) = app.get(&format!("/wayline/api/v1/workspaces/{WS}/waylines"), &token).await;
    let id = r["data"]["list"][0]["id"].as_str().unwrap().to_string();
    (token, f, dock, id, kmz)
}

fn task(file_id: &str, dock: &str, task_type: i32) -> Value {
    json!({"name": "Inspection", "file_id": file_id, "dock_sn": dock, "wayline_type": 0, "task_type": task_type,
           "rth_altitude": 100, "out_of_control_action": 0})
}

/// A timed task at `begin` (epoch seconds).
fn timed(file_id: &str, dock: &str, begin: i64) -> Value {
    let mut t = task(file_id, dock, 1);
    t["task_days"] = json!([begin]);
    t["task_periods"] = json!([[begin]]);
    t
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    app.post(&format!("/wayline/api/v1/workspaces/{WS}/flight-tasks"), token, body).await.1
}

async fn jobs(app: &TestApp, token: &str) -> Vec<Value> {
    let (_, r) = app.get(&format!("/wayline/api/v1/workspaces/{WS}/jobs?page=1&page_size=100"), token).await;
    assert_eq!(r["code"], 0, "{r}");
    r["data"]["list"].as_array().cloned().unwrap_or_default()
}

async fn job(app: &TestApp, token: &str, id: &str) -> Value {
    jobs(app, token).await.into_iter().find(|j| j["job_id"] == id).unwrap_or(Value::Null)
}

async fn wait_status(app: &TestApp, token: &str, id: &str, status: i64) -> Value {
    app.wait_for(&format!("job {id} in status {status}"), || async { job(app, token, id).await["status"] == status })
        .await;
    job(app, token, id).await
}

/// Commands of `method` the dock received, as `(bid, data, at)`.
fn got(f: &Fleet, dock: &str, method: &str) -> Vec<(String, Value, Instant)> {
    f.received()
        .into_iter()
        .filter(|c| c.dock_sn == dock && c.method == method)
        .map(|c| (c.bid, c.data, c.at))
        .collect()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn an_immediate_job_is_prepared_with_its_file_then_executed() {
    let app = TestApp::spawn_with(bridge_config(), Components::ALL).await;
    let (token, f, dock, file_id, kmz) = setup(&app).await;
    let r = create(&app, &token, task(&file_id, &dock, 0)).await;
    assert_eq!(r["code"], 0, "{r}");

    let prepares = got(&f, &dock, "flighttask_prepare");
    let executes = got(&f, &dock, "flighttask_execute");
    assert_eq!((prepares.len(), executes.len()), (1, 1));
    let (bid, data, prepared_at) = &prepares[0];
    assert_eq!(&data["flight_id"], bid, "bid is the job id");
    assert_eq!(executes[0].0, *bid);
    assert_eq!(executes[0].1, json!({"flight_id": bid}));
    assert!(executes[0].2 >= *prepared_at, "prepare comes first");
    assert_eq!(
        (&data["task_type"], &data["wayline_type"], &data["rth_altitude"], &data["out_of_control_action"]),
        (&json!(0), &json!(0), &json!(100), &json!(0))
    );
    assert_eq!(data["exit_wayline_when_rc_lost"], 1);
    assert!((data["execute_time"].as_i64().unwrap() - chrono::Utc::now().timestamp_millis()).abs() < 30_000);
    use md5::Digest as _;
    assert_eq!(data["file"]["fingerprint"], hex::encode(md5::Md5::digest(&kmz)));
    // the link the dock gets downloads the file
    let url = data["file"]["url"].as_str().unwrap().replace(&app.config.public_url, &app.base);
    let body = app.http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(body.to_vec(), kmz);

    let j = wait_status(&app, &token, bid, 2).await;
    assert_eq!((j["job_name"].as_str(), j["file_name"].as_str()), (Some("Inspection"), Some("Roof")));
    assert_eq!(
        (j["dock_sn"].as_str(), j["task_type"].as_i64(), j["file_id"].as_str()),
        (Some(dock.as_str()), Some(0), Some(file_id.as_str()))
    );
    assert_eq!(j["username"], "adminPC");
    assert!(j["execute_time"].is_string() && j["begin_time"].is_string() && j.get("completed_time").is_none(), "{j}");
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_timed_job_executes_once_on_time_with_two_processes_and_a_restart_between() {
    let config = bridge_config();
    let first = TestApp::spawn_with(config.clone(), Components::ALL).await;
    let mut other = config.clone();
    other.listen = "127.0.0.1:0".parse().unwrap();
    let second =
        TestApp::spawn_with(other, Components { command: true, query: true, projectors: false, bridge: false }).await;
    let (token, f, dock, file_id, _) = setup(&first).await;
    let begin = now_secs() + 8;
    let r = create(&first, &token, timed(&file_id, &dock, begin)).await;
    assert_eq!(r["code"], 0, "{r}");
    let due = Instant::now() + Duration::from_millis((begin * 1000 - chrono::Utc::now().timestamp_millis()) as u64);
    let prepares = got(&f, &dock, "flighttask_prepare");
    assert_eq!(prepares.len(), 1, "a timed job is prepared when it is created");
    let id = prepares[0].0.clone();
    assert_eq!(prepares[0].1["execute_time"], begin * 1000);
    assert_eq!(prepares[0].1["task_type"], 1);
    assert!(got(&f, &dock, "flighttask_execute").is_empty());

    // the process that created it goes away and comes back; the second one runs throughout
    first.halt().await;
    let third = TestApp::spawn_with(config, Components::ALL).await;

    wait_for("the execute", Duration::from_secs(30), || async { !got(&f, &dock, "flighttask_execute").is_empty() })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let executes = got(&f, &dock, "flighttask_execute");
    assert_eq!(executes.len(), 1, "executed once: {executes:?}");
    assert_eq!(executes[0].0, id);
    let at = executes[0].2;
    assert!(at + Duration::from_millis(50) >= due, "not before its time");
    assert!(at < due + Duration::from_secs(2), "on time: {:?} late", at.duration_since(due));
    third.wait_for("the job under way", || async { job(&third, &token, &id).await["execute_time"].is_string() }).await;
    f.stop().await;
    second.halt().await;
    third.stop().await;
}

#[tokio::test]
async fn a_job_whose_time_passed_while_everything_was_down_fails_with_408_and_never_flies() {
    let mut config = bridge_config();
    config.job_start_grace_ms = 1_000;
    let first = TestApp::spawn_with(config.clone(), Components::ALL).await;
    let (token, f, dock, file_id, _) = setup(&first).await;
    let begin = now_secs() + 6;
    let r = create(&first, &token, timed(&file_id, &dock, begin)).await;
    assert_eq!(r["code"], 0, "{r}");
    let id = got(&f, &dock, "flighttask_prepare")[0].0.clone();
    first.halt().await;
    let wait = begin * 1000 + 3_000 - chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;

    let again = TestApp::spawn_with(config, Components::ALL).await;
    let j = wait_status(&again, &token, &id, 5).await;
    assert_eq!(j["code"], 408, "{j}");
    assert!(j["completed_time"].is_string() && j.get("execute_time").is_none(), "{j}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(got(&f, &dock, "flighttask_execute").is_empty(), "a late job is not flown");
    f.stop().await;
    again.stop().await;
}

#[tokio::test]
async fn cancel_tells_the_dock_once_and_only_pending_jobs_cancel() {
    let app = TestApp::spawn_with(bridge_config(), Components::ALL).await;
    let (token, f, dock, file_id, _) = setup(&app).await;
    let begin = now_secs() + 3_600;
    let mut body = timed(&file_id, &dock, begin);
    body["task_periods"] = json!([[begin], [begin + 600]]);
    let r = create(&app, &token, body).await;
    assert_eq!(r["code"], 0, "{r}");
    let ids: Vec<String> = got(&f, &dock, "flighttask_prepare").into_iter().map(|p| p.0).collect();
    assert_eq!(ids.len(), 2, "one job per period");
    app.wait_for("both jobs listed", || async { jobs(&app, &token).await.len() == 2 }).await;

    let path = format!("/wayline/api/v1/workspaces/{WS}/jobs?job_id={}&job_id={}", ids[0], ids[1]);
    let (status, r) = app.request(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!((status.as_u16(), r["code"].as_i64()), (200, Some(0)), "{r}");
    let undo = got(&f, &dock, "flighttask_undo");
    assert_eq!(undo.len(), 1, "one undo per dock");
    assert_eq!(undo[0].1, json!({"flight_ids": ids}));
    for id in &ids {
        let j = wait_status(&app, &token, id, 4).await;
        assert!(j["completed_time"].is_string());
    }
    let (_, r) = app.request(Method::DELETE, &path, Some(&token), None).await;
    assert_eq!(r["code"], -1);
    assert!(r["message"].as_str().unwrap().contains("cannot be canceled"), "{r}");
    assert_eq!(got(&f, &dock, "flighttask_undo").len(), 1);
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_dock_that_refuses_the_prepare_fails_the_job_with_its_code() {
    let app = TestApp::spawn_with(bridge_config(), Components::ALL).await;
    let (token, f, dock, file_id, _) = setup(&app).await;
    f.set_answer("flighttask_prepare", Answer::error(314001));
    let r = create(&app, &token, task(&file_id, &dock, 0)).await;
    assert_eq!(r["code"], 314001, "{r}");
    let id = got(&f, &dock, "flighttask_prepare")[0].0.clone();
    let j = wait_status(&app, &token, &id, 5).await;
    assert_eq!(j["code"], 314001);
    assert!(got(&f, &dock, "flighttask_execute").is_empty());
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn bad_job_requests_get_clear_errors_and_create_nothing() {
    let app = TestApp::spawn_with(bridge_config(), Components::ALL).await;
    let (token, f, dock, file_id, _) = setup(&app).await;
    let path = format!("/wayline/api/v1/workspaces/{WS}/flight-tasks");
    let mut cases = vec![
        (json!({}), "must not be blank"),
        (json!({"name": "n", "file_id": file_id, "dock_sn": dock}), "task_type is required"),
        (
            {
                let mut t = task(&file_id, &dock, 0);
                t["rth_altitude"] = json!(5);
                t
            },
            "rth_altitude must be between 20 and 500",
        ),
        (
            {
                let mut t = task(&file_id, &dock, 0);
                t["task_type"] = json!(7);
                t
            },
            "task_type must be between 0 and 2",
        ),
        (
            {
                let mut t = task(&file_id, &dock, 0);
                t["rth_altitude"] = json!("high");
                t
            },
            "Invalid request body",
        ),
        (task(&file_id, &dock, 1), "task_days and task_periods are required"),
        (timed(&file_id, &dock, now_secs() - 7_200), "already passed"),
        (task("no-such-file", &dock, 0), "Wayline file doesn't exist."),
    ];
    cases.push((task(&file_id, "UNKNOWNDOCK", 0), "not bound to this workspace"));
    for (body, expected) in cases {
        let (status, r) = app.post(&path, &token, body.clone()).await;
        assert_eq!(status.as_u16(), 200);
        assert_ne!(r["code"], 0, "{body} → {r}");
        assert!(r["message"].as_str().unwrap_or_default().contains(expected), "{body} → {r}");
    }
    let (status, r) = app.post_raw(&path, &token, "{not json").await;
    assert_eq!((status.as_u16(), r["code"].as_i64()), (200, Some(-1)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count("rm_wayline_jobs").await, 0);
    assert!(got(&f, &dock, "flighttask_prepare").is_empty());
    f.stop().await;
    app.stop().await;
}

/// The job id of the dock's only prepared task.
fn only_job(f: &Fleet, dock: &str) -> String {
    let prepares = got(f, dock, "flighttask_prepare");
    assert_eq!(prepares.len(), 1, "{prepares:?}");
    prepares[0].0.clone()
}

#[tokio::test]
#[ignore = "its dock's requests (storage_config_get, flighttask_resource_get) are answered by every Hangar on the broker; scripts/test runs it alone after the other tests"]
async fn an_immediate_job_flies_to_success_and_its_media_join_the_library_and_its_counts() {
    let app = TestApp::spawn_with(bridge_config(), Components::ALL).await;
    let (token, f, dock, file_id, _) = setup(&app).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws?x-auth-token={token}", app.addr)).await.unwrap();
    // the session is registered once it gets pushes
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await else { break };
        if m.to_text().unwrap_or_default().contains("dock_osd") {
            break;
        }
    }
    let r = create(&app, &token, task(&file_id, &dock, 0)).await;
    assert_eq!(r["code"], 0, "{r}");
    let id = only_job(&f, &dock);

    let j = wait_status(&app, &token, &id, 3).await;
    assert_eq!((j["progress"].as_i64(), j["media_count"].as_i64()), (Some(100), Some(2)), "{j}");
    assert!(j["completed_time"].is_string() && j.get("code").is_none(), "{j}");
    app.wait_for("both media counted", || async { job(&app, &token, &id).await["uploaded_count"] == 2 }).await;
    let flight = f.flight(&id).expect("the dock flew it");
    assert_eq!((flight.file_matched, flight.media_reported), (Some(true), 2));

    // the media are in the library, linked to the job, and download
    let files = app.files(&token, 1, 50).await;
    let mine: Vec<&Value> = files["list"].as_array().unwrap().iter().filter(|m| m["job_id"] == id.as_str()).collect();
    assert_eq!(mine.len(), 2, "{files}");
    for m in mine {
        assert!(m["object_key"].as_str().unwrap().contains(&id), "{m}");
        let body =
            app.follow(&format!("/media/api/v1/files/{WS}/file/{}/url", m["file_id"].as_str().unwrap()), &token).await;
        assert!(!body.is_empty());
    }

    // the web client saw the flight and the uploads
    let (mut progress, mut uploads, mut last_percent) = (0, 0, -1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && (uploads < 2 || last_percent < 100) {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await else { continue };
        let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
        match v["biz_code"].as_str() {
            Some("flighttask_progress") if v["data"]["bid"] == id.as_str() => {
                assert_eq!(v["data"]["sn"], dock.as_str());
                progress += 1;
                last_percent = v["data"]["output"]["progress"]["percent"].as_i64().unwrap_or(-1);
            }
            Some("file_upload_callback") if v["data"]["job_id"] == id.as_str() => {
                uploads += 1;
                assert_eq!(v["data"]["media_count"], 2, "{v}");
            }
            _ => {}
        }
    }
    assert!(progress >= 2 && last_percent == 100, "{progress} progress pushes, last at {last_percent}%");
    assert_eq!(uploads, 2);
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
#[ignore = "its dock's requests (storage_config_get, flighttask_resource_get) are answered by every Hangar on the broker; scripts/test runs it alone after the other tests"]
async fn a_conditional_job_executes_when_the_dock_says_it_is_ready_with_a_fresh_file_link() {
    let app = TestApp::spawn_with(bridge_config(), Components::ALL).await;
    let (token, f, dock, file_id, _) = setup_with(&app, |c| c.resource_get = ResourceGet::Always).await;
    let now = now_secs();
    let mut body = task(&file_id, &dock, 2);
    body["task_days"] = json!([now]);
    body["task_periods"] = json!([[now - 60, now + 3_600]]);
    body["min_battery_capacity"] = json!(50);
    body["min_storage_capacity"] = json!(1_000);
    let r = create(&app, &token, body).await;
    assert_eq!(r["code"], 0, "{r}");
    let prepares = got(&f, &dock, "flighttask_prepare");
    let (id, data) = (prepares[0].0.clone(), prepares[0].1.clone());
    assert_eq!(data["task_type"], 2);
    assert_eq!(
        data["ready_conditions"],
        json!({"battery_capacity": 50, "begin_time": (now - 60) * 1000, "end_time": (now + 3_600) * 1000})
    );
    assert_eq!(data["executable_conditions"], json!({"storage_capacity": 1_000}));

    let deadline = Instant::now() + Duration::from_secs(20);
    while !f.flight(&id).is_some_and(|r| r.status.is_terminal()) {
        let seen: Vec<String> = f.received().iter().map(|c| c.method.clone()).collect();
        assert!(
            Instant::now() < deadline,
            "the flight: {:?}, commands {seen:?}, job {}",
            f.flight(&id),
            job(&app, &token, &id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let j = wait_status(&app, &token, &id, 3).await;
    assert_eq!(j["task_type"], 2);
    let flight = f.flight(&id).unwrap();
    assert!(flight.ready_at.is_some() && flight.resource_requested, "{flight:?}");
    assert_eq!(flight.file_matched, Some(true), "the link from flighttask_resource_get downloads the file");
    assert_eq!(got(&f, &dock, "flighttask_execute").len(), 1);
    f.stop().await;
    app.stop().await;
}

/// An immediate job flying slowly (40 steps of 250 ms): `(token, fleet, dock_sn, job_id)`, once
/// it made progress.
async fn job_in_flight(app: &TestApp) -> (String, Fleet, String, String) {
    let (token, f, dock, file_id, _) = setup_with(app, |c| {
        c.flight_steps = 40;
        c.progress_interval = Duration::from_millis(250);
    })
    .await;
    let r = create(app, &token, task(&file_id, &dock, 0)).await;
    assert_eq!(r["code"], 0, "{r}");
    let id = only_job(&f, &dock);
    app.wait_for("progress", || async { job(app, &token, &id).await["progress"].as_i64().unwrap_or(0) > 0 }).await;
    (token, f, dock, id)
}

#[tokio::test]
async fn pause_resume_and_media_first_send_the_right_methods() {
    let app = TestApp::spawn_with(bridge_config(), Components::ALL).await;
    let (token, f, dock, id) = job_in_flight(&app).await;
    let path = format!("/wayline/api/v1/workspaces/{WS}/jobs/{id}");

    let (_, r) = app.put(&path, &token, json!({"status": 1})).await;
    assert_eq!(r["code"], -1, "a running job cannot be resumed: {r}");
    let (_, r) = app.put(&path, &token, json!({"status": 0})).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(got(&f, &dock, "flighttask_pause").len(), 1);
    assert_eq!(got(&f, &dock, "flighttask_pause")[0].0, id, "bid is the job id");
    wait_status(&app, &token, &id, 6).await;
    let (_, r) = app.put(&path, &token, json!({"status": 0})).await;
    assert!(r["message"].as_str().unwrap().contains("does not match"), "{r}");
    let (_, r) = app.put(&path, &token, json!({"status": 1})).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(got(&f, &dock, "flighttask_recovery").len(), 1);
    wait_status(&app, &token, &id, 2).await;

    let (_, r) = app.post(&format!("{path}/media-highest"), &token, json!(null)).await;
    assert_eq!(r["code"], 0, "{r}");
    let first = got(&f, &dock, "upload_flighttask_media_prioritize");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, json!({"flight_id": id}));
    app.wait_for("uploading first", || async { job(&app, &token, &id).await["uploading"] == true }).await;
    let (_, r) = app.post(&format!("{path}/media-highest"), &token, json!(null)).await;
    assert_eq!(r["code"], 0);
    assert_eq!(got(&f, &dock, "upload_flighttask_media_prioritize").len(), 1, "already first: not sent again");
    wait_status(&app, &token, &id, 3).await;
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn flying_by_hand_pauses_the_job_in_progress_and_leaving_resumes_it() {
    let app = TestApp::spawn_with(bridge_config(), Components::ALL).await;
    let (token, f, dock, id) = job_in_flight(&app).await;
    crate::drc::wait_elevation(&app, &f.docks()[0].drone_sn, |e| e > 0.0).await;

    let drc = format!("/control/api/v1/workspaces/{WS}/drc");
    let (_, r) = app.post(&format!("{drc}/connect"), &token, json!({})).await;
    let body = json!({"client_id": r["data"]["client_id"], "dock_sn": dock});
    let (_, r) = app.post(&format!("{drc}/enter"), &token, body.clone()).await;
    assert_eq!(r["code"], 0, "{r}");
    let paused = got(&f, &dock, "flighttask_pause");
    assert_eq!(paused.len(), 1, "the job is paused for the pilot");
    assert_eq!(paused[0].0, id);
    assert!(paused[0].2 <= got(&f, &dock, "drc_mode_enter")[0].2, "paused before the dock enters DRC");
    wait_status(&app, &token, &id, 6).await;

    let (_, r) = app.post(&format!("{drc}/exit"), &token, body).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(got(&f, &dock, "drc_mode_exit").len(), 1);
    let resumed = got(&f, &dock, "flighttask_recovery");
    assert_eq!(resumed.len(), 1, "the job goes on after the pilot leaves");
    assert_eq!(resumed[0].0, id);
    wait_status(&app, &token, &id, 2).await;
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_flight_the_dock_reports_failed_fails_the_job_with_its_code() {
    let app = TestApp::spawn_with(bridge_config(), Components::ALL).await;
    let (token, f, dock, file_id, _) = setup_with(&app, |c| c.flight_outcome = FlightOutcome::Failed(316050)).await;
    let r = create(&app, &token, task(&file_id, &dock, 0)).await;
    assert_eq!(r["code"], 0, "{r}");
    let id = only_job(&f, &dock);
    let j = wait_status(&app, &token, &id, 5).await;
    assert_eq!(j["code"], 316050, "{j}");
    f.stop().await;
    app.stop().await;
}
