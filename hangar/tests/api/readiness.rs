//! `/readyz` follows the dependencies: 503 naming the one that is down while PostgreSQL, NATS or
//! (for the bridge) the MQTT broker is stopped, 200 again once it is back; `/healthz` (liveness)
//! stays 200 throughout. Each test stops and starts a PostgreSQL cluster, nats-server or Mosquitto
//! of its own (real servers, on free ports), so no other test sees them go away; a guard removes
//! them even when an assertion fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hangar::Components;
use serde_json::Value;

use crate::helpers::{test_config, TestApp};

/// Long enough for a loaded two-core machine; the checks themselves answer within a second.
const WITHIN: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL cluster of this test (Debian's postgresql-common), dropped with the guard.
struct OwnPostgres {
    version: String,
    name: String,
    port: u16,
}

impl OwnPostgres {
    fn create() -> Self {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("PostgreSQL from Debian's packages (/etc/postgresql)")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .max()
            .expect("a PostgreSQL version");
        let name = format!("readyz_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let port = free_port();
        let pg = Self { version, name, port };
        run(Command::new("pg_createcluster").args([
            &pg.version,
            &pg.name,
            "-p",
            &port.to_string(),
            "--",
            "--auth-host=trust",
            "--auth-local=trust",
        ]));
        pg.ctl("start");
        pg
    }

    fn ctl(&self, action: &str) {
        run(Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", &self.version, &self.name, action]));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster").args(["--stop", &self.version, &self.name]).output();
    }
}

/// A server of this test (nats-server, Mosquitto) on a free port, killed with the guard.
struct OwnServer {
    program: &'static str,
    args: Vec<String>,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnServer {
    /// nats-server with JetStream, its storage in a folder of its own.
    fn nats() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("readyz_nats_{port}"));
        let args = ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd", &dir.to_string_lossy()].map(String::from);
        Self::start("/usr/sbin/nats-server", args.into(), port, dir)
    }

    /// Mosquitto without a configuration file: anonymous clients on loopback.
    fn mosquitto() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("readyz_mosquitto_{port}"));
        Self::start("mosquitto", vec!["-p".into(), port.to_string()], port, dir)
    }

    fn start(program: &'static str, args: Vec<String>, port: u16, dir: PathBuf) -> Self {
        let mut server = Self { program, args, port, dir, child: None };
        server.resume();
        server
    }

    fn resume(&mut self) {
        let child = Command::new(self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.program));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WITHIN;
        while !port_open(self.port) {
            assert!(std::time::Instant::now() < deadline, "{} did not start", self.program);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let res = app.http.get(format!("{}/readyz", app.base)).send().await.expect("GET /readyz");
    (res.status().as_u16(), res.json().await.expect("a JSON body"))
}

async fn healthz(app: &TestApp) -> u16 {
    app.http.get(format!("{}/healthz", app.base)).send().await.expect("GET /healthz").status().as_u16()
}

/// Waits until `/readyz` answers `status`, and returns that answer's body.
async fn wait_readyz(app: &TestApp, status: u16, what: &str) -> Value {
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let (got, body) = readyz(app).await;
        if got == status {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}: /readyz answers {got} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole system in this process (the bridge too, with a broker), on the given PostgreSQL (its
/// port), NATS and MQTT broker, or the machine's.
async fn spawn_on(postgres_port: Option<u16>, nats_url: Option<String>, mqtt_url: Option<String>) -> TestApp {
    let mut config = test_config();
    if let Some(port) = postgres_port {
        config.database_url = config.database_url.replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"));
    }
    if let Some(url) = nats_url {
        config.nats_url = url;
    }
    let bridge = mqtt_url.is_some();
    if let Some(url) = mqtt_url {
        config.mqtt_url = url;
        config.mqtt_client_id = format!("{}-bridge", config.nats_prefix);
        config.mqtt_share_group = config.nats_prefix.clone();
    }
    TestApp::spawn_with(config, Components { command: true, query: true, projectors: true, bridge }).await
}

#[tokio::test]
async fn readyz_is_unready_while_postgres_is_down() {
    let pg = OwnPostgres::create();
    let app = spawn_on(Some(pg.port), None, None).await;

    let ok = wait_readyz(&app, 200, "ready at start").await;
    assert_eq!(ok["status"], "ready");
    assert_eq!((ok["checks"]["postgres"].as_str(), ok["checks"]["nats"].as_str()), (Some("ok"), Some("ok")));

    pg.ctl("stop");
    let down = wait_readyz(&app, 503, "unready without PostgreSQL").await;
    assert_eq!(down["status"], "unready");
    assert_eq!(down["failed"], serde_json::json!(["postgres"]), "{down}");
    assert_ne!(down["checks"]["postgres"], "ok");
    assert_eq!(down["checks"]["nats"], "ok");
    assert_eq!(healthz(&app).await, 200, "liveness does not depend on PostgreSQL");

    pg.ctl("start");
    let back = wait_readyz(&app, 200, "ready again with PostgreSQL back").await;
    assert_eq!(back["checks"]["postgres"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_unready_while_nats_is_down() {
    let mut nats = OwnServer::nats();
    let app = spawn_on(None, Some(format!("nats://127.0.0.1:{}", nats.port)), None).await;

    let ok = wait_readyz(&app, 200, "ready at start").await;
    assert_eq!(ok["checks"]["nats"], "ok");

    nats.stop();
    let down = wait_readyz(&app, 503, "unready without NATS").await;
    assert_eq!(down["failed"], serde_json::json!(["nats"]), "{down}");
    assert_eq!(down["checks"]["postgres"], "ok");
    assert_eq!(healthz(&app).await, 200, "liveness does not depend on NATS");

    nats.resume();
    let back = wait_readyz(&app, 200, "ready again with NATS back").await;
    assert_eq!(back["checks"]["nats"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_unready_while_the_bridge_has_no_broker() {
    let mut broker = OwnServer::mosquitto();
    let app = spawn_on(None, None, Some(format!("mqtt://127.0.0.1:{}", broker.port))).await;

    let ok = wait_readyz(&app, 200, "ready once subscribed").await;
    assert_eq!(ok["checks"]["mqtt"], "ok");

    broker.stop();
    let down = wait_readyz(&app, 503, "unready without the broker").await;
    assert_eq!(down["failed"], serde_json::json!(["mqtt"]), "{down}");
    assert_eq!(healthz(&app).await, 200, "liveness does not depend on the broker");

    broker.resume();
    let back = wait_readyz(&app, 200, "ready again, subscribed again").await;
    assert_eq!(back["checks"]["mqtt"], "ok");
    app.stop().await;
}
