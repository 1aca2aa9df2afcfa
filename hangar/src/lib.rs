//! Hangar in one process: command-api and query-api on one port, the projectors (outbox relay and
//! projections) and the mqtt-bridge, sharing one Postgres pool and one NATS connection. Also the
//! operator and analyst commands: [`replay`], [`export`], `state-at` ([`shared::history`]),
//! [`rebuild`](projectors::runner::rebuild) and [`bench`] (with [`bench_replicas`]: one against three
//! processes of each service).
//! With the local object store it also serves the S3-compatible endpoint devices upload to
//! (`command_api::s3_endpoint`).

pub mod bench;
pub mod bench_devices;
pub mod bench_jobs;
pub mod bench_replay;
pub mod bench_replicas;
pub mod bench_services;
pub mod bench_storage;
pub mod bench_wpml;
pub mod export;
pub mod replay;

use std::net::SocketAddr;

use anyhow::Context as _;
use shared::storage::Storage;
use shared::{Config, Shutdown};
use tokio::task::JoinSet;

/// Which parts run in this process. command-api and query-api together share one port (the
/// `api` component); either alone serves only its own routes on `HANGAR_LISTEN`, as its own
/// Deployment does in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Components {
    pub command: bool,
    pub query: bool,
    pub projectors: bool,
    pub bridge: bool,
}

impl Components {
    pub const ALL: Self = Self { command: true, query: true, projectors: true, bridge: true };
    pub const NONE: Self = Self { command: false, query: false, projectors: false, bridge: false };

    /// Parses `api,command,query,projectors,bridge` (any subset; `api` is command and query).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut c = Self::NONE;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "api" => (c.command, c.query) = (true, true),
                "command" => c.command = true,
                "query" => c.query = true,
                "projectors" => c.projectors = true,
                "bridge" => c.bridge = true,
                "all" => c = Self::ALL,
                other => {
                    anyhow::bail!("unknown component {other:?}: use api, command, query, projectors, bridge or all")
                }
            }
        }
        Ok(c)
    }
}

/// A started system.
pub struct Running {
    /// Where the HTTP API listens (when command-api or query-api runs).
    pub addr: Option<SocketAddr>,
    /// Where the S3-compatible endpoint listens (when command-api runs on the local object folder).
    pub s3_addr: Option<SocketAddr>,
    pub shutdown: Shutdown,
    pub tasks: JoinSet<anyhow::Result<()>>,
}

impl Running {
    /// Waits until the shutdown signal (or the first task failing), then stops everything.
    pub async fn stop_when_done(mut self) -> anyhow::Result<()> {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            Some(r) = self.tasks.join_next() => {
                if let Err(e) = r.context("task panicked").and_then(|r| r) {
                    self.shutdown.cancel();
                    let _ = self.stop().await;
                    return Err(e);
                }
            }
        }
        self.stop().await
    }

    /// Stops everything and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut result = Ok(());
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r.context("task panicked").and_then(|r| r) {
                result = Err(e);
            }
        }
        result
    }
}

/// Prepares Postgres (database, migrations) and JetStream (streams), then starts the components.
pub async fn start(mut config: Config, components: Components, shutdown: Shutdown) -> anyhow::Result<Running> {
    if config.jwt_secret == shared::config::DEFAULT_JWT_SECRET {
        tracing::warn!("HANGAR_JWT_SECRET is DJI's sample secret; set your own outside a laboratory");
    }
    let pool = shared::db::prepare(&config.database_url, config.database_pool).await?;
    let nats = shared::nats::connect(&config).await?;
    let names = shared::nats::Names::new(&config.nats_prefix);
    let js = async_nats::jetstream::new(nats.clone());
    shared::nats::ensure_streams(&js, &names, &config).await?;
    let mut tasks = JoinSet::new();
    let mut addr = None;
    let mut s3_addr = None;
    let mut ready = shared::health::Readiness::new().postgres(pool.clone()).nats(nats.clone());
    if components.bridge {
        let bridge = mqtt_bridge::Bridge::start(config.clone(), shutdown.clone()).await?;
        ready = ready.mqtt(bridge.subscribed());
        tasks.spawn(bridge.join());
    }
    if components.command || components.query {
        // The S3 endpoint is command-api's; binding it may settle the public address in `config`.
        let s3_listener = if components.command { command_api::s3_endpoint::bind(&mut config).await? } else { None };
        let storage = Storage::new(&config)?;
        if let Some(l) = s3_listener {
            s3_addr = Some(l.local_addr()?);
            tasks.spawn(command_api::s3_endpoint::serve(l, storage.clone(), shutdown.clone()));
        }
        let mut app = utoipa_axum::router::OpenApiRouter::new();
        if components.command {
            let commands = command_api::AppState::new(config.clone(), pool.clone(), storage.clone(), js.clone());
            command_api::spawn_tasks(&commands, &shutdown, &mut tasks);
            app = app.merge(command_api::router(commands));
        }
        if components.query {
            let hub = query_api::ws::Hub::new(shutdown.clone());
            let queries = query_api::AppState::new(config.clone(), pool.clone(), storage, hub, nats.clone());
            query_api::spawn_tasks(&queries, &shutdown, &mut tasks);
            app = app.merge(query_api::router(queries));
        }
        let app = shared::http::finish(app, ready);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        addr = Some(listener.local_addr()?);
        tracing::info!(addr = %listener.local_addr()?, ?components, "Hangar API listening");
        let sd = shutdown.clone();
        tasks.spawn(async move { shared::http::serve(listener, app, sd).await.context("HTTP server") });
    }
    if components.projectors {
        tasks.spawn(projectors::run(config.clone(), pool.clone(), nats.clone(), shutdown.clone()));
    }
    Ok(Running { addr, s3_addr, shutdown, tasks })
}

/// Loads HMS texts (DJI's hms.json: `{"<key>": {"en": "...", "zh": "..."}}`) into the dictionary
/// the HMS endpoints read; returns how many keys were loaded. Existing texts are replaced.
pub async fn hms_import(pool: &sqlx::PgPool, json: &str) -> anyhow::Result<usize> {
    let map: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_str(json).context("the HMS file must be a JSON object of key -> {en, zh}")?;
    let (mut keys, mut en, mut zh) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in map {
        let text = |lang: &str| v.get(lang).and_then(|t| t.as_str()).unwrap_or_default().to_string();
        keys.push(k.to_ascii_lowercase());
        en.push(text("en"));
        zh.push(text("zh"));
    }
    sqlx::query(
        "INSERT INTO hms_dictionary (hms_key, message_en, message_zh) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
         ON CONFLICT (hms_key) DO UPDATE SET message_en = EXCLUDED.message_en, message_zh = EXCLUDED.message_zh",
    )
    .bind(&keys)
    .bind(&en)
    .bind(&zh)
    .execute(pool)
    .await?;
    Ok(keys.len())
}
