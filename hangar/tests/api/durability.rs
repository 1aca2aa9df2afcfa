//! Nothing accepted is lost or doubled when the relay, the projectors or NATS die under load.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hangar::Components;
use serde_json::json;

use crate::helpers::*;

/// Keeps `clients` loops sending distinct upload-callbacks until stopped; counts accepted ones.
struct Load {
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(app: &Arc<TestApp>, token: &str, clients: usize) -> Self {
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (app, token, accepted, stop, next) =
                    (app.clone(), token.to_string(), accepted.clone(), stop.clone(), next.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let (_, r) = app.upload_callback(&token, callback_body(&format!("load-{n}"))).await;
                        if r["code"] == 0 {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Self { accepted, stop, tasks }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.accepted.load(Ordering::Relaxed)
    }
}

/// After the dust settles: one event, one JetStream message and one read-model row per accepted
/// command.
async fn assert_exactly_once(app: &TestApp, accepted: u64) {
    assert!(accepted > 50, "the load should have been accepted throughout, got {accepted}");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'media_file'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events as u64, accepted, "one event per accepted command");
    wait_for("read model complete", Duration::from_secs(90), || async {
        app.count("rm_media_files").await as u64 >= accepted && app.count("event_outbox").await == 0
    })
    .await;
    assert_eq!(app.count("rm_media_files").await as u64, accepted, "one row per accepted command");
    let msgs = app.stream_messages(&app.names.es_filter(Some("media_file"), None)).await;
    let ids: HashSet<String> = msgs.iter().map(|m| header(m, "Nats-Msg-Id").expect("message id")).collect();
    assert_eq!(msgs.len() as u64, accepted, "one JetStream message per event");
    assert_eq!(ids.len(), msgs.len(), "no event published twice");
}

fn projector_process(app: &TestApp) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hangar"))
        .arg("serve")
        .env("HANGAR_COMPONENTS", "projectors")
        .env("HANGAR_DATABASE_URL", &app.config.database_url)
        .env("HANGAR_NATS_PREFIX", &app.config.nats_prefix)
        .env("HANGAR_JWT_SECRET", &app.config.jwt_secret)
        .env("HANGAR_STORAGE_DIR", &app.config.storage_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the projector process")
}

#[tokio::test]
async fn killing_the_relay_and_projector_process_under_load_loses_and_doubles_nothing() {
    // The API runs here; relay and projections run in a child process that is SIGKILLed mid-stream.
    let app = Arc::new(
        TestApp::spawn_with(test_config(), Components { command: true, query: true, projectors: false, bridge: false })
            .await,
    );
    let mut child = projector_process(&app);
    app.wait_for("seed users", || async { app.count("rm_users").await == 2 }).await;
    let token = app.pilot_token().await;
    let load = Load::start(&app, &token, 4);
    for pause_ms in [700u64, 400, 1100] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        child.kill().unwrap(); // SIGKILL: no chance to finish the batch in hand
        child.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        child = projector_process(&app);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted = load.finish().await;
    assert_exactly_once(&app, accepted).await;
    child.kill().unwrap();
    child.wait().unwrap();
    Arc::into_inner(app).unwrap().stop().await;
}

#[tokio::test]
async fn two_relays_never_publish_twice() {
    // A second process with its own relay competes for leadership with the in-process one.
    let app = Arc::new(TestApp::spawn().await);
    let mut child = projector_process(&app);
    let token = app.pilot_token().await;
    let load = Load::start(&app, &token, 4);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let accepted = load.finish().await;
    assert_exactly_once(&app, accepted).await;
    Arc::into_inner(app).unwrap().stop().await;
}

fn nats(action: &str) {
    let status = match action {
        "stop" => Command::new("start-stop-daemon")
            .args(["--stop", "--oknodo", "--retry", "10", "--exec", "/usr/sbin/nats-server"])
            .status(),
        _ => Command::new("start-stop-daemon")
            .args(["--start", "--oknodo", "--background", "--exec", "/usr/sbin/nats-server", "--"])
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                "4222",
                "-js",
                "-sd",
                "/var/lib/nats-server",
                "-l",
                "/var/log/nats-server.log",
            ])
            .status(),
    };
    assert!(status.expect("start-stop-daemon").success(), "nats-server {action}");
}

#[tokio::test]
#[ignore = "restarts the machine's nats-server; scripts/test runs it alone after the other tests"]
async fn restarting_nats_under_load_loses_and_doubles_nothing() {
    let app = Arc::new(TestApp::spawn().await);
    let token = app.pilot_token().await;
    let load = Load::start(&app, &token, 4);
    tokio::time::sleep(Duration::from_millis(800)).await;
    nats("stop");
    // commands are still accepted while NATS is down: they only need Postgres
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats("start");
    wait_for("nats back", Duration::from_secs(20), || async { std::net::TcpStream::connect("127.0.0.1:4222").is_ok() })
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let accepted = load.finish().await;
    assert_exactly_once(&app, accepted).await;
    let (_, r) = app.get(&format!("/media/api/v1/files/{WS}/files?page=1&page_size=1"), &token).await;
    assert_eq!(r["data"]["pagination"]["total"], json!(accepted));
    Arc::into_inner(app).unwrap().stop().await;
}
