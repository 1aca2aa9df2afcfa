//! Projectors: the processes that move events out of Postgres and turn them into read models.
//!
//! - [`relay`]: drains the transactional outbox into the JetStream stream `ES`, exactly once per
//!   event, with one active relay across replicas; the outbox's depth and oldest age as metrics.
//! - [`runner`]: the projection framework. Durable pull consumers per projection (one per aggregate
//!   type it reads); the read-model write and a per-aggregate checkpoint commit in one transaction;
//!   acks only after commit; rebuild from the start of the stream; lag as a metric.
//! - [`device_logs`], [`devices`], [`firmwares`], [`flight_areas`], [`live_streams`], [`map_elements`], [`media`], [`users`],
//!   [`wayline_files`], [`wayline_jobs`], [`workspaces`]: the read models the query
//!   API serves.

pub mod device_logs;
pub mod devices;
pub mod firmwares;
pub mod flight_areas;
pub mod live_streams;
pub mod map_elements;
pub mod media;
pub mod relay;
pub mod runner;
pub mod users;
pub mod wayline_files;
pub mod wayline_jobs;
pub mod workspaces;

use std::sync::Arc;

use anyhow::Context as _;
use shared::nats::Names;
use shared::{Config, Shutdown};
use sqlx::PgPool;

pub use runner::Projection;

/// Every projection of the product.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(workspaces::Workspaces),
        Arc::new(users::Users),
        Arc::new(media::MediaFiles),
        Arc::new(devices::Devices),
        Arc::new(wayline_files::WaylineFiles),
        Arc::new(wayline_jobs::WaylineJobs),
        Arc::new(map_elements::MapElements),
        Arc::new(flight_areas::FlightAreas),
        Arc::new(firmwares::Firmwares),
        Arc::new(device_logs::DeviceLogs),
        Arc::new(live_streams::LiveStreams),
    ]
}

/// Runs the relay and every projection until `shutdown`, and waits for all of them to stop.
pub async fn run(config: Config, pool: PgPool, nats: async_nats::Client, shutdown: Shutdown) -> anyhow::Result<()> {
    let names = Names::new(&config.nats_prefix);
    let js = async_nats::jetstream::new(nats);
    shared::nats::ensure_streams(&js, &names, &config).await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(relay::run(config.clone(), pool.clone(), js.clone(), names.clone(), shutdown.clone()));
    tasks.spawn(relay::outbox_gauges(pool.clone(), shutdown.clone()));
    for p in all_projections() {
        tasks.spawn(runner::run(p, pool.clone(), js.clone(), names.clone(), shutdown.clone()));
    }
    let mut result = Ok(());
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.context("projector task panicked").and_then(|r| r) {
            tracing::error!(error = ?e, "projector task failed");
            shutdown.cancel();
            result = Err(e);
        }
    }
    result
}

/// Runs the projectors as their own process, with `/healthz`, `/readyz` and `/metrics` on
/// `config.listen`.
pub async fn run_standalone(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = shared::db::prepare(&config.database_url, config.database_pool).await?;
    let nats = shared::nats::connect(&config).await?;
    let ready = shared::health::Readiness::new().postgres(pool.clone()).nats(nats.clone());
    shared::health::serve_alongside(config.listen, ready, shutdown.clone(), run(config, pool, nats, shutdown)).await
}
