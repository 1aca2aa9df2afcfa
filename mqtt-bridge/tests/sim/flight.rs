//! Flight tasks against the simulator: the cloud side prepares and executes over MQTT, serves the
//! wayline file and plays the object storage over HTTP on port 0, and answers the dock's
//! requests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use md5::Digest as _;
use mqtt_bridge::sim::{FlightOutcome, FlightStatus, NOTHING_TO_PAUSE, TASK_NOT_PREPARED, WAYLINE_UNUSABLE};

use super::*;

const WAYLINE: &[u8] = b"PK\x03\x04 a wayline file, as far as the dock simulator cares";

/// What the fake object storage does with uploads.
#[derive(Clone, Copy, PartialEq)]
enum Uploads {
    Accept,
    Reject,
}

#[derive(Clone)]
struct ServerState {
    uploads: Uploads,
    /// Paths of the PUTs received.
    puts: Arc<Mutex<Vec<String>>>,
}

/// A tiny HTTP server on port 0: `GET /wayline.kmz` the file, `GET /moved` a redirect to it,
/// and any `PUT` an S3 upload, accepted or refused.
struct FileServer {
    addr: SocketAddr,
    puts: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl FileServer {
    async fn start(uploads: Uploads) -> Self {
        let puts = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route("/wayline.kmz", get(|| async { WAYLINE }))
            .route("/moved", get(|| async { Redirect::temporary("/wayline.kmz") }))
            .fallback(s3_put)
            .with_state(ServerState { uploads, puts: puts.clone() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { addr, puts, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn puts(&self) -> Vec<String> {
        self.puts.lock().unwrap().clone()
    }

    /// A `storage_config_get` answer pointing at this server.
    fn storage(&self) -> Value {
        json!({"result": 0, "output": {
            "bucket": "media", "endpoint": self.url(""), "object_key_prefix": "hangar/ws-1",
            "provider": "minio", "region": "us-east-1",
            "credentials": {"access_key_id": "AK", "access_key_secret": "SK", "security_token": "TOKEN", "expire": 3600},
        }})
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn s3_put(State(s): State<ServerState>, method: Method, uri: Uri, _body: Bytes) -> Response {
    if method != Method::PUT {
        return StatusCode::NOT_FOUND.into_response();
    }
    s.puts.lock().unwrap().push(uri.path().to_string());
    match s.uploads {
        Uploads::Accept => ([(header::ETAG, "\"0123456789abcdef\"")], "").into_response(),
        Uploads::Reject => {
            (StatusCode::FORBIDDEN, "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>")
                .into_response()
        }
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(md5::Md5::digest(bytes))
}

fn flight_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn flight_config(prefix: &str) -> FleetConfig {
    FleetConfig {
        progress_interval: Duration::from_millis(50),
        cycle_flights: false,
        media_per_flight: 0,
        ..config(prefix)
    }
}

/// A flight task's dock and the cloud's MQTT connection, subscribed to what the dock says.
struct Mission {
    dock: SimDock,
    cloud: Cloud,
    fleet: Fleet,
}

impl Mission {
    async fn start(config: FleetConfig, extra_topics: &[&str]) -> Self {
        let dock = SimDock::new(&config.sn_prefix, 1);
        let mut kinds = vec!["services_reply", "events", "requests"];
        kinds.extend_from_slice(extra_topics);
        let cloud = Cloud::connect(&topics(&dock, &kinds)).await;
        let fleet = Fleet::start(config).await.unwrap();
        fleet.ready(WAIT).await.unwrap();
        Self { dock, cloud, fleet }
    }

    /// Sends a `services` command whose `bid` is the flight id and returns the reply's result.
    async fn call(&mut self, method: &str, bid: &str, data: Value) -> i64 {
        let tid = uuid::Uuid::new_v4().to_string();
        self.cloud
            .send(&format!("thing/product/{}/services", self.dock.dock_sn), command(method, &tid, bid, data))
            .await;
        let reply = self.cloud.expect("/services_reply").await;
        assert_eq!((reply["tid"].as_str(), reply["method"].as_str()), (Some(tid.as_str()), Some(method)));
        reply["data"]["result"].as_i64().unwrap()
    }

    async fn prepare(&mut self, id: &str, task_type: i64, url: &str, fingerprint: &str) -> i64 {
        let data = json!({
            "flight_id": id, "task_type": task_type, "execute_time": shared::time::now_ms(), "wayline_type": 0,
            "file": {"url": url, "fingerprint": fingerprint}, "rth_altitude": 100, "out_of_control_action": 0,
            "exit_wayline_when_rc_lost": 1,
        });
        self.call("flighttask_prepare", id, data).await
    }

    /// Prepares `id` with the server's file and waits until the dock has checked it.
    async fn prepare_checked(&mut self, id: &str, server: &FileServer) {
        assert_eq!(self.prepare(id, 0, &server.url("/wayline.kmz"), &md5_hex(WAYLINE)).await, 0);
        let record = self.fleet.wait_for_flight(id, WAIT, |r| r.file_matched.is_some()).await.unwrap();
        assert_eq!(record.file_matched, Some(true), "{:?}", record.file_error);
    }

    async fn execute(&mut self, id: &str) -> i64 {
        self.call("flighttask_execute", id, json!({"flight_id": id})).await
    }

    /// The next `flighttask_progress` (other events skipped), checked to be `id`'s.
    async fn progress(&mut self, id: &str) -> Value {
        loop {
            let e = self.cloud.expect("/events").await;
            if e["method"] == "flighttask_progress" {
                assert_eq!((e["bid"].as_str(), e["gateway"].as_str()), (Some(id), Some(self.dock.dock_sn.as_str())));
                assert_eq!(
                    (e["need_reply"].as_i64(), e["data"]["output"]["ext"]["flight_id"].as_str()),
                    (Some(1), Some(id))
                );
                return e;
            }
        }
    }

    /// `id`'s progress up to and including its terminal status, as (status, percent, result).
    async fn progress_to_end(&mut self, id: &str) -> Vec<(String, i64, i64)> {
        let mut seen = Vec::new();
        loop {
            let s = summary(&self.progress(id).await);
            let terminal = !["in_progress", "paused"].contains(&s.0.as_str());
            seen.push(s);
            if terminal {
                return seen;
            }
        }
    }

    /// The dock's next request, checked to be `method`.
    async fn request(&mut self, method: &str) -> Value {
        let r = self.cloud.expect("/requests").await;
        assert_eq!((r["method"].as_str(), r["gateway"].as_str()), (Some(method), Some(self.dock.dock_sn.as_str())));
        r
    }

    async fn answer(&self, request: &Value, data: Value) {
        answer_request(&self.cloud, &self.dock, request, data).await;
    }
}

fn summary(progress: &Value) -> (String, i64, i64) {
    let d = &progress["data"];
    (
        d["output"]["status"].as_str().unwrap().to_string(),
        d["output"]["progress"]["percent"].as_i64().unwrap(),
        d["result"].as_i64().unwrap(),
    )
}

fn s(status: &str, percent: i64, result: i64) -> (String, i64, i64) {
    (status.to_string(), percent, result)
}

#[tokio::test]
#[ignore = "the dock's requests are answered by every Hangar on the broker too; scripts/test runs it alone after the other tests"]
async fn a_prepared_task_flies_with_progress_then_uploads_and_reports_its_photos() {
    let server = FileServer::start(Uploads::Accept).await;
    let config =
        FleetConfig { progress_interval: Duration::from_millis(150), media_per_flight: 2, ..flight_config(&prefix()) };
    let mut m = Mission::start(config, &["osd"]).await;
    let id = flight_id();
    m.prepare_checked(&id, &server).await;
    assert_eq!(m.execute(&id).await, 0);

    // Progress (bid = flight id) rising in four steps to ok; the dock works while it flies.
    let mut seen = Vec::new();
    let mut modes_in_flight = Vec::new();
    let dock_osd = format!("thing/product/{}/osd", m.dock.dock_sn);
    let last = loop {
        let (topic, body) = m.cloud.next("", WAIT).await.expect("progress in time");
        if topic == dock_osd && !seen.is_empty() {
            modes_in_flight.push(body["data"]["mode_code"].as_i64().unwrap());
        } else if topic.ends_with("/events") && body["method"] == "flighttask_progress" {
            assert_eq!(body["bid"], id.as_str());
            seen.push(summary(&body));
            if seen.last().unwrap().0 == "ok" {
                break body;
            }
        }
    };
    assert_eq!(
        seen,
        [
            s("in_progress", 0, 0),
            s("in_progress", 25, 0),
            s("in_progress", 50, 0),
            s("in_progress", 75, 0),
            s("ok", 100, 0)
        ]
    );
    assert_eq!(last["data"]["output"]["ext"]["media_count"], 2);
    assert!(modes_in_flight.contains(&4), "dock mode_code while flying: {modes_in_flight:?}");

    // The photos: credentials, two uploads under the prefix and flight, two callbacks.
    let request = m.request("storage_config_get").await;
    assert_eq!(request["data"], json!({"module": 0}));
    m.answer(&request, server.storage()).await;
    for n in 1..=2 {
        let e = loop {
            let e = m.cloud.expect("/events").await;
            if e["method"] == "file_upload_callback" {
                break e;
            }
        };
        assert_eq!((e["bid"].as_str(), e["need_reply"].as_i64()), (Some(id.as_str()), Some(1)));
        let file = &e["data"]["file"];
        let key = file["object_key"].as_str().unwrap();
        assert!(key.starts_with(&format!("hangar/ws-1/{id}/DJI_")), "{key}");
        assert!(key.ends_with(&format!("_{n:04}_W.jpeg")), "{key}");
        assert_eq!((file["ext"]["flight_id"].as_str(), file["path"].as_str()), (Some(id.as_str()), Some(id.as_str())));
        assert_eq!(e["data"]["result"], 0);
        assert!(server.puts().contains(&format!("/media/{key}")), "uploaded before reported: {:?}", server.puts());
    }
    let record = m.fleet.wait_for_flight(&id, WAIT, |r| r.settled()).await.unwrap();
    assert_eq!(record.status, FlightStatus::Ok);
    assert_eq!((record.media_count, record.media_uploaded, record.media_reported, record.media_failed), (2, 2, 2, 0));
    assert!(record.executed_at.is_some() && !record.resource_requested);
    assert!(m.fleet.received().iter().any(|c| c.method == "flighttask_execute" && c.bid == id));
    let stats = m.fleet.stop().await;
    assert_eq!((stats.uploads, stats.upload_errors), (2, 0));
}

#[tokio::test]
async fn a_wayline_file_that_does_not_match_its_fingerprint_ends_the_flight_failed() {
    let server = FileServer::start(Uploads::Accept).await;
    let mut m = Mission::start(flight_config(&prefix()), &[]).await;
    let id = flight_id();
    let wrong = md5_hex(b"another file").to_uppercase();
    assert_eq!(m.prepare(&id, 0, &server.url("/wayline.kmz"), &wrong).await, 0);
    let record = m.fleet.wait_for_flight(&id, WAIT, |r| r.file_matched.is_some()).await.unwrap();
    assert_eq!(record.file_matched, Some(false));
    assert!(record.file_error.unwrap().contains("fingerprint"));

    assert_eq!(m.execute(&id).await, 0, "accepted, then failed");
    assert_eq!(m.progress_to_end(&id).await, [s("failed", 0, WAYLINE_UNUSABLE)]);
    let record = m.fleet.wait_for_flight(&id, WAIT, |r| r.status.is_terminal()).await.unwrap();
    assert_eq!(record.status, FlightStatus::Failed(WAYLINE_UNUSABLE));
    m.fleet.stop().await;
}

#[tokio::test]
async fn the_fingerprint_matches_in_any_case_through_a_redirect() {
    let server = FileServer::start(Uploads::Accept).await;
    let mut m = Mission::start(flight_config(&prefix()), &[]).await;
    let id = flight_id();
    assert_eq!(m.prepare(&id, 0, &server.url("/moved"), &md5_hex(WAYLINE).to_uppercase()).await, 0);
    let record = m.fleet.wait_for_flight(&id, WAIT, |r| r.file_matched.is_some()).await.unwrap();
    assert_eq!(record.file_matched, Some(true), "{:?}", record.file_error);
    m.fleet.stop().await;
}

#[tokio::test]
async fn pause_holds_a_flight_and_recovery_finishes_it() {
    let server = FileServer::start(Uploads::Accept).await;
    let config = FleetConfig { progress_interval: Duration::from_millis(200), ..flight_config(&prefix()) };
    let mut m = Mission::start(config, &[]).await;
    assert_eq!(m.call("flighttask_pause", &flight_id(), json!("")).await, NOTHING_TO_PAUSE, "nothing flies");
    let id = flight_id();
    m.prepare_checked(&id, &server).await;
    assert_eq!(m.execute(&id).await, 0);
    let first = summary(&m.progress(&id).await);
    assert_eq!(first, s("in_progress", 0, 0));

    assert_eq!(m.call("flighttask_pause", &flight_id(), json!("")).await, 0);
    let paused = summary(&m.progress(&id).await);
    assert_eq!(paused.0, "paused");
    assert_eq!(m.fleet.flight(&id).unwrap().status, FlightStatus::Paused);
    assert!(m.cloud.next("/events", Duration::from_millis(700)).await.is_none(), "no progress while paused");

    assert_eq!(m.call("flighttask_recovery", &flight_id(), json!("")).await, 0);
    let rest = m.progress_to_end(&id).await;
    assert_eq!(rest[0], s("in_progress", paused.1, 0), "resumes where it stopped");
    assert_eq!(rest.last().unwrap(), &s("ok", 100, 0));
    let percents: Vec<i64> = rest.iter().map(|p| p.1).collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    m.fleet.stop().await;
}

#[tokio::test]
async fn execute_is_refused_for_a_task_never_prepared_refused_or_undone() {
    let server = FileServer::start(Uploads::Accept).await;
    let mut m = Mission::start(flight_config(&prefix()), &[]).await;
    let url = server.url("/wayline.kmz");
    let fingerprint = md5_hex(WAYLINE);

    let never = flight_id();
    assert_eq!(m.execute(&never).await, TASK_NOT_PREPARED);

    // A prepare the dock is scripted to refuse, or to ignore, leaves nothing to fly.
    let refused = flight_id();
    m.fleet.set_answer("flighttask_prepare", Answer::error(316002));
    assert_eq!(m.prepare(&refused, 0, &url, &fingerprint).await, 316002);
    assert_eq!(m.execute(&refused).await, TASK_NOT_PREPARED);
    let ignored = flight_id();
    m.fleet.set_answer("flighttask_prepare", Answer::silent());
    let tid = "t-silent-prepare";
    m.cloud
        .send(
            &format!("thing/product/{}/services", m.dock.dock_sn),
            command("flighttask_prepare", tid, &ignored, json!({"flight_id": ignored, "file": {"url": url}})),
        )
        .await;
    assert!(m.cloud.next("/services_reply", Duration::from_millis(500)).await.is_none(), "no reply");
    assert_eq!(m.execute(&ignored).await, TASK_NOT_PREPARED);
    m.fleet.set_answer("flighttask_prepare", Answer::ok());

    // Undone before it flew.
    let undone = flight_id();
    let kept = flight_id();
    m.prepare_checked(&undone, &server).await;
    m.prepare_checked(&kept, &server).await;
    assert_eq!(m.call("flighttask_undo", &flight_id(), json!({"flight_ids": [undone]})).await, 0);
    assert_eq!(m.fleet.flight(&undone).unwrap().status, FlightStatus::Undone);
    assert_eq!(m.execute(&undone).await, TASK_NOT_PREPARED);
    assert!(m.cloud.next("/events", Duration::from_millis(500)).await.is_none(), "nothing flew");
    assert_eq!(m.execute(&kept).await, 0, "the other task is still there");
    assert_eq!(m.progress_to_end(&kept).await.last().unwrap(), &s("ok", 100, 0));
    assert!(m.fleet.flight(&never).is_none() && m.fleet.flight(&refused).is_none());
    m.fleet.stop().await;
}

#[tokio::test]
async fn a_scripted_outcome_fails_the_next_flight_only() {
    let server = FileServer::start(Uploads::Accept).await;
    let mut m = Mission::start(flight_config(&prefix()), &[]).await;
    m.fleet.queue_flight_outcome(FlightOutcome::Failed(321004));
    for expected in [s("failed", 75, 321004), s("ok", 100, 0)] {
        let id = flight_id();
        m.prepare_checked(&id, &server).await;
        assert_eq!(m.execute(&id).await, 0);
        let seen = m.progress_to_end(&id).await;
        assert_eq!(seen.len(), 5);
        assert_eq!(seen.last().unwrap(), &expected);
    }
    m.fleet.stop().await;
}

#[tokio::test]
async fn a_conditional_task_reports_ready_when_its_conditions_hold() {
    let server = FileServer::start(Uploads::Accept).await;
    let mut m = Mission::start(flight_config(&prefix()), &[]).await;
    let now = shared::time::now_ms();
    let (ready, later) = (flight_id(), flight_id());
    // The later one first: the cloud's helper skips events while it waits for a reply.
    for (id, begin) in [(&later, now + 3_600_000), (&ready, now - 1_000)] {
        let data = json!({
            "flight_id": id, "task_type": 2, "execute_time": now, "file": {"url": server.url("/wayline.kmz"), "fingerprint": md5_hex(WAYLINE)},
            "ready_conditions": {"battery_capacity": 90, "begin_time": begin, "end_time": now + 7_200_000},
        });
        assert_eq!(m.call("flighttask_prepare", id, data).await, 0);
    }
    let e = m.cloud.expect("/events").await;
    assert_eq!(
        (e["method"].as_str(), e["need_reply"].as_i64(), &e["data"]),
        (Some("flighttask_ready"), Some(1), &json!({"flight_ids": [ready]}))
    );
    assert!(m.cloud.next("/events", Duration::from_millis(2_500)).await.is_none(), "once, and not the later one");
    assert!(m.fleet.flight(&ready).unwrap().ready_at.is_some());
    assert!(m.fleet.flight(&later).unwrap().ready_at.is_none());

    assert_eq!(m.execute(&ready).await, 0);
    assert_eq!(m.progress_to_end(&ready).await.last().unwrap(), &s("ok", 100, 0));
    m.fleet.stop().await;
}

#[tokio::test]
#[ignore = "the dock's requests are answered by every Hangar on the broker too; scripts/test runs it alone after the other tests"]
async fn a_task_without_url_asks_for_its_resource_before_flying() {
    let server = FileServer::start(Uploads::Accept).await;
    let mut m = Mission::start(flight_config(&prefix()), &[]).await;

    let id = flight_id();
    assert_eq!(m.prepare(&id, 1, "", "").await, 0);
    assert_eq!(m.execute(&id).await, 0);
    let request = m.request("flighttask_resource_get").await;
    assert_eq!(request["data"], json!({"flight_id": id}));
    let file = json!({"url": server.url("/moved"), "fingerprint": md5_hex(WAYLINE)});
    m.answer(&request, json!({"result": 0, "output": {"file": file}})).await;
    assert_eq!(m.progress_to_end(&id).await.last().unwrap(), &s("ok", 100, 0));
    let record = m.fleet.flight(&id).unwrap();
    assert_eq!((record.resource_requested, record.file_matched), (true, Some(true)));

    // Refused: the flight fails.
    let id = flight_id();
    assert_eq!(m.prepare(&id, 1, "", "").await, 0);
    assert_eq!(m.execute(&id).await, 0);
    let request = m.request("flighttask_resource_get").await;
    m.answer(&request, json!({"result": 200001, "output": {}})).await;
    assert_eq!(m.progress_to_end(&id).await, [s("failed", 0, WAYLINE_UNUSABLE)]);
    assert!(m.fleet.flight(&id).unwrap().file_error.unwrap().contains("200001"));
    m.fleet.stop().await;
}

#[tokio::test]
#[ignore = "the dock's requests are answered by every Hangar on the broker too; scripts/test runs it alone after the other tests"]
async fn photos_the_storage_refuses_are_counted_and_never_reported() {
    let server = FileServer::start(Uploads::Reject).await;
    let config = FleetConfig { media_per_flight: 2, ..flight_config(&prefix()) };
    let mut m = Mission::start(config, &[]).await;

    // The upload is refused.
    let id = flight_id();
    m.prepare_checked(&id, &server).await;
    assert_eq!(m.execute(&id).await, 0);
    assert_eq!(m.progress_to_end(&id).await.last().unwrap(), &s("ok", 100, 0));
    let request = m.request("storage_config_get").await;
    m.answer(&request, server.storage()).await;
    let record = m.fleet.wait_for_flight(&id, WAIT, |r| r.settled()).await.unwrap();
    assert_eq!((record.media_uploaded, record.media_reported, record.media_failed), (0, 0, 2));
    assert!(!server.puts().is_empty(), "the dock tried");

    // No credentials at all.
    let id2 = flight_id();
    m.prepare_checked(&id2, &server).await;
    assert_eq!(m.execute(&id2).await, 0);
    assert_eq!(m.progress_to_end(&id2).await.last().unwrap(), &s("ok", 100, 0));
    let request = m.request("storage_config_get").await;
    m.answer(&request, json!({"result": 600500, "output": {}})).await;
    let record = m.fleet.wait_for_flight(&id2, WAIT, |r| r.settled()).await.unwrap();
    assert_eq!(record.media_failed, 2);

    while let Some((_, e)) = m.cloud.next("/events", Duration::from_millis(500)).await {
        assert_ne!(e["method"], "file_upload_callback", "nothing uploaded, nothing reported");
    }
    let stats = m.fleet.stop().await;
    assert_eq!((stats.uploads, stats.upload_errors), (0, 4));
}

#[tokio::test]
async fn media_priority_is_answered_with_its_event() {
    let mut m = Mission::start(flight_config(&prefix()), &[]).await;
    let id = flight_id();
    assert_eq!(m.call("upload_flighttask_media_prioritize", "b-prio", json!({"flight_id": id})).await, 0);
    let e = m.cloud.expect("/events").await;
    assert_eq!(
        (e["method"].as_str(), e["need_reply"].as_i64(), &e["data"]),
        (Some("highest_priority_upload_flighttask_media"), Some(1), &json!({"flight_id": id}))
    );
    m.fleet.set_answer("upload_flighttask_media_prioritize", Answer::error(324032));
    assert_eq!(m.call("upload_flighttask_media_prioritize", "b-prio-2", json!({"flight_id": id})).await, 324032);
    assert!(m.cloud.next("/events", Duration::from_millis(500)).await.is_none());
    m.fleet.stop().await;
}
