//! query-api: every GET endpoint and the WebSocket. Reads read models only (and, for [`history`], the
//! event store); never writes events.
//!
//! - [`files`]: FileController (the workspace's media library, download links) and the signed links
//!   of the local object store.
//! - [`users`]: UserController reads (current user, a workspace's users) and WorkspaceController.
//! - [`device_logs`]: DeviceLogsController reads (a dock's log uploads, download links of their files).
//! - [`devices`]: DeviceController, TopologyController and DeviceHmsController reads.
//! - [`history`]: an aggregate, or a workspace's device list, as it was at a past time (from events).
//! - [`wayline_file`]: WaylineFileController reads (list, duplicate names, download links, JSON).
//! - [`wayline_job`]: WaylineJobController reads (the job list) and the pushes of jobs.
//! - [`firmware`]: DeviceFirmwareController reads (firmware packages, latest release per model).
//! - [`flight_area`]: FlightAreaController and DeviceDataController reads (areas, docks' sync state).
//! - [`live`]: LiveStreamController reads (which cameras can stream).
//! - [`map_element`]: WorkspaceElementController reads (element groups and their map elements).
//! - [`weather`]: WeatherController (a provider's weather, else the nearest online dock's sensors).
//! - [`push`]: what the WebSocket pushes (telemetry and device facts), and from where.
//! - [`ws`]: the WebSocket `/api/v1/ws` and its per-workspace fan-out hub.

pub mod device_logs;
pub mod devices;
pub mod files;
pub mod firmware;
pub mod flight_area;
pub mod history;
pub mod live;
pub mod map_element;
pub mod push;
pub mod users;
pub mod wayline_file;
pub mod wayline_job;
pub mod weather;
pub mod ws;

use std::sync::Arc;

use axum::middleware::{from_fn, from_fn_with_state};
use shared::auth::{require_token, workspace_guard, Jwt};
use shared::storage::Storage;
use shared::Config;
use sqlx::PgPool;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub jwt: Jwt,
    pub storage: Storage,
    pub hub: ws::Hub,
    pub nats: async_nats::Client,
    pub names: shared::nats::Names,
}

impl AppState {
    pub fn new(config: Config, pool: PgPool, storage: Storage, hub: ws::Hub, nats: async_nats::Client) -> Self {
        Self {
            jwt: Jwt::new(&config),
            names: shared::nats::Names::new(&config.nats_prefix),
            config: Arc::new(config),
            pool,
            storage,
            hub,
            nats,
        }
    }
}

/// The routes of query-api and their OpenAPI description, registered together through `routes!` (see
/// `command_api::router`).
pub fn router(state: AppState) -> OpenApiRouter {
    let protected = OpenApiRouter::new()
        .merge(users::router())
        .merge(files::router())
        .merge(devices::router())
        .merge(history::router())
        .merge(wayline_file::router())
        .merge(wayline_job::router())
        .merge(map_element::router())
        .merge(live::router())
        .merge(flight_area::router())
        .merge(firmware::router())
        .merge(device_logs::router())
        .merge(weather::router())
        .route_layer(from_fn(workspace_guard))
        .route_layer(from_fn_with_state(state.jwt.clone(), require_token));
    let public = OpenApiRouter::new()
        // the WebSocket checks its `?x-auth-token=` itself, to answer the handshake properly
        .routes(routes!(ws::upgrade))
        .merge(files::public_router());
    protected.merge(public).with_state(state)
}

/// The background work of query-api (the WebSocket pushes), for [`run`] and for the all-in-one
/// binary alike.
pub fn spawn_tasks(
    state: &AppState,
    shutdown: &shared::Shutdown,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) {
    tasks.spawn(push::run(state.clone(), shutdown.clone()));
    tasks.spawn(wayline_job::push(state.clone(), shutdown.clone()));
}

/// Runs query-api alone on `config.listen` until `shutdown`.
pub async fn run(config: Config, shutdown: shared::Shutdown) -> anyhow::Result<()> {
    let pool = shared::db::prepare(&config.database_url, config.database_pool).await?;
    let storage = Storage::new(&config)?;
    let nats = shared::nats::connect(&config).await?;
    let state = AppState::new(config.clone(), pool, storage, ws::Hub::new(shutdown.clone()), nats);
    let mut tasks = tokio::task::JoinSet::new();
    spawn_tasks(&state, &shutdown, &mut tasks);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "query-api listening");
    let ready = shared::health::Readiness::new().postgres(state.pool.clone()).nats(state.nats.clone());
    shared::http::serve(listener, shared::http::finish(router(state), ready), shutdown).await?;
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
