//! Readiness: whether the dependencies of this process answer, served as `/readyz` for Kubernetes'
//! readiness probes. `/healthz` stays a plain "the process serves HTTP": a dependency that is down
//! must take a pod out of its Service, never get it restarted (restarting would not bring
//! PostgreSQL back, and every replica would restart at once).
//!
//! Checks: PostgreSQL answers `SELECT 1` on a pooled connection; the NATS connection is up and
//! JetStream answers an account-info request; the MQTT broker confirmed the bridge's
//! subscriptions. Each has a short timeout, they run together, and the result is kept for a
//! second, so probes of many kinds (kubelet, a load balancer, a person with curl) cost one round of
//! checks per second at most.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use tokio::sync::{watch, Mutex};

/// Longest wait for one dependency; a slower answer counts as a failure.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a result is reused.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The dependencies of one process, checked on demand.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Check>,
    last: Arc<Mutex<Option<(Instant, Report)>>>,
}

#[derive(Clone)]
enum Check {
    Postgres(PgPool),
    Nats(async_nats::Client),
    Mqtt(watch::Receiver<bool>),
}

/// The outcome of one round of checks: `"ok"` or what went wrong, per dependency.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<&'static str>,
    pub checks: BTreeMap<&'static str, String>,
}

impl Report {
    pub fn ready(&self) -> bool {
        self.failed.is_empty()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// PostgreSQL, through the pool the process uses.
    pub fn postgres(mut self, pool: PgPool) -> Self {
        self.checks.push(Check::Postgres(pool));
        self
    }

    /// NATS with JetStream, through the process's client.
    pub fn nats(mut self, client: async_nats::Client) -> Self {
        self.checks.push(Check::Nats(client));
        self
    }

    /// The MQTT broker: true while the bridge's subscriptions are in place.
    pub fn mqtt(mut self, subscribed: watch::Receiver<bool>) -> Self {
        self.checks.push(Check::Mqtt(subscribed));
        self
    }

    /// Runs the checks, or returns the result of a round less than a second old. Callers that
    /// arrive during a round wait for it instead of starting their own.
    pub async fn check(&self) -> Report {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return report.clone();
            }
        }
        let results = futures::future::join_all(self.checks.iter().map(Check::run)).await;
        let mut report = Report { status: "ready", failed: Vec::new(), checks: BTreeMap::new() };
        for (name, result) in results {
            match result {
                Ok(()) => {
                    report.checks.insert(name, "ok".into());
                }
                Err(e) => {
                    report.failed.push(name);
                    report.checks.insert(name, e);
                }
            }
        }
        if !report.ready() {
            report.status = "unready";
            tracing::warn!(failed = ?report.failed, checks = ?report.checks, "not ready");
        }
        *last = Some((Instant::now(), report.clone()));
        report
    }

    /// `/readyz`: 200 with every check `"ok"`, or 503 naming what failed.
    pub async fn respond(self) -> Response {
        let report = self.check().await;
        let status = if report.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        (status, axum::Json(report)).into_response()
    }
}

impl Check {
    async fn run(&self) -> (&'static str, Result<(), String>) {
        match self {
            Check::Postgres(pool) => ("postgres", within(postgres(pool)).await),
            Check::Nats(client) => ("nats", within(nats(client)).await),
            Check::Mqtt(subscribed) => (
                "mqtt",
                if *subscribed.borrow() { Ok(()) } else { Err("not connected and subscribed to the broker".into()) },
            ),
        }
    }
}

async fn within(check: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())))
}

async fn postgres(pool: &PgPool) -> Result<(), String> {
    let mut conn = pool.acquire().await.map_err(|e| e.to_string())?;
    match sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) => {
            // The pool does not test connections before handing them out: after a restart of
            // PostgreSQL its idle connections are dead. Drop this one so that the next check (and
            // the next request) gets a fresh connection.
            conn.close_on_drop();
            Err(e.to_string())
        }
    }
}

async fn nats(client: &async_nats::Client) -> Result<(), String> {
    match client.connection_state() {
        async_nats::connection::State::Connected => {}
        other => return Err(format!("connection {other}")),
    }
    // The raw account-info request rather than `jetstream::Context::query_account`, whose typed
    // answer does not parse what nats-server 2.9 (Debian's) sends.
    let reply = client.request("$JS.API.INFO", bytes::Bytes::new()).await.map_err(|e| format!("JetStream: {e}"))?;
    let info: serde_json::Value =
        serde_json::from_slice(&reply.payload).map_err(|e| format!("JetStream: unreadable account info: {e}"))?;
    match info.get("error") {
        None => Ok(()),
        Some(e) => Err(format!("JetStream: {}", e.get("description").and_then(|d| d.as_str()).unwrap_or("error"))),
    }
}

/// Serves only `/healthz`, `/readyz` and `/metrics` on `listen` while `work` runs, for the processes
/// without an HTTP API of their own (projectors, mqtt-bridge), so that they are probed and scraped
/// as the APIs are. Returns what `work` returns.
pub async fn serve_alongside(
    listen: std::net::SocketAddr,
    ready: Readiness,
    shutdown: crate::Shutdown,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "health and metrics listening");
    let stop = shutdown.child_token();
    let app = crate::http::finish(utoipa_axum::router::OpenApiRouter::new(), ready);
    let until = stop.clone().cancelled_owned();
    let server = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(until).await });
    let result = work.await;
    stop.cancel();
    server.await.context("health listener panicked")?.context("health listener")?;
    result
}
