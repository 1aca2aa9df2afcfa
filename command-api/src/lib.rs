//! command-api: every endpoint that changes something (all non-GET routes of DJI's API).
//!
//! A request becomes a command on an aggregate (cqrs-es, persisted by postgres-es); its events and
//! their outbox rows commit together, and the projectors take it from there. Handlers answer in
//! DJI's envelope as soon as the events are committed.
//!
//! - [`device_logs`]: DeviceLogsController (a dock's log files: listed live, uploaded, cancelled,
//!   deleted from the history).
//! - [`drc`]: DRC controller (credentials on the DRC broker, entering and leaving DRC mode, and
//!   the broker's question whether a client may use a DRC topic).
//! - [`firmware`]: DeviceFirmwareController writes (import a firmware package, enable or disable it).
//! - [`flight_area`]: FlightAreaController writes, and the docks' fetching and syncing of the areas.
//! - [`live`]: LiveStreamController writes (start, stop, quality and lens of a live stream).
//! - [`login`]: LoginController (login, token refresh).
//! - [`users`]: UserController writes (MQTT credentials).
//! - [`map_element`]: WorkspaceElementController writes (map elements).
//! - [`media`]: MediaController (fast-upload, tiny-fingerprints, upload-callback, group-upload-callback).
//! - [`storage`]: StorageController (upload credentials, also for docks' `storage_config_get`).
//! - [`s3_endpoint`]: the S3-compatible endpoint over the local object folder (default run).
//! - [`devices`]: DeviceController and DeviceHmsController writes (bind, unbind, update, property set).
//! - [`control`]: the Dock controller (remote debugging, fly-to, takeoff, authority, payload).
//! - [`device_service`]: the one path of every command to a device and its answer.
//! - [`device_inbox`]: device messages that change domain state or need an answer.
//! - [`wayline_file`]: WaylineFileController writes (import, Pilot 2's upload callback, favorites,
//!   delete).
//! - [`wayline_job`]: WaylineJobController writes (flight tasks, cancel, pause and resume, media
//!   first), what docks report about their jobs, and the job scheduler.

pub mod control;
pub mod device_inbox;
pub mod device_logs;
pub mod device_service;
pub mod devices;
pub mod drc;
pub mod firmware;
pub mod flight_area;
pub mod live;
pub mod login;
pub mod map_element;
pub mod media;
pub mod s3_endpoint;
pub mod storage;
pub mod users;
pub mod wayline_file;
pub mod wayline_job;

use std::sync::Arc;

use axum::middleware::{from_fn, from_fn_with_state};
use cqrs_es::AggregateError;
use shared::auth::{require_token, workspace_guard, Jwt};
use shared::domain::device_command::DeviceCommand;
use shared::domain::device_logs::DeviceLogs;
use shared::domain::device_progress::DeviceProgress;
use shared::domain::drc::DrcSession;
use shared::domain::firmware::Firmware;
use shared::domain::flight_area::FlightArea;
use shared::domain::live_stream::LiveStream;
use shared::domain::map_element::MapElement;
use shared::domain::wayline_file::WaylineFile;
use shared::domain::wayline_job::WaylineJob;
use shared::domain::{device::Device, file_group::FileGroup, media::MediaFile, user::User};
use shared::error::DjiCode;
use shared::event_store::{cqrs, Appender, Cqrs};
use shared::nats::Names;
use shared::storage::Storage;
use shared::{ApiError, Config};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub jwt: Jwt,
    pub storage: Storage,
    pub media: Arc<Cqrs<MediaFile>>,
    pub file_groups: Arc<Cqrs<FileGroup>>,
    pub users: Arc<Cqrs<User>>,
    pub devices: Arc<Cqrs<Device>>,
    pub device_commands: Arc<Cqrs<DeviceCommand>>,
    pub device_progress: Arc<Cqrs<DeviceProgress>>,
    pub wayline_files: Arc<Cqrs<WaylineFile>>,
    pub wayline_jobs: Arc<Cqrs<WaylineJob>>,
    pub map_elements: Arc<Cqrs<MapElement>>,
    pub flight_areas: Arc<Cqrs<FlightArea>>,
    pub firmwares: Arc<Cqrs<Firmware>>,
    pub device_logs: Arc<Cqrs<DeviceLogs>>,
    pub drc: Arc<Cqrs<DrcSession>>,
    pub live_streams: Arc<Cqrs<LiveStream>>,
    /// This process's id, recorded with the commands it sends and the replies it reads.
    pub instance: String,
    pub js: async_nats::jetstream::Context,
    pub names: Names,
}

impl AppState {
    pub fn new(config: Config, pool: PgPool, storage: Storage, js: async_nats::jetstream::Context) -> Self {
        let appender = Appender::new(pool.clone());
        Self {
            jwt: Jwt::new(&config),
            media: cqrs(&appender),
            file_groups: cqrs(&appender),
            users: cqrs(&appender),
            devices: cqrs(&appender),
            device_commands: cqrs(&appender),
            device_progress: cqrs(&appender),
            wayline_files: cqrs(&appender),
            wayline_jobs: cqrs(&appender),
            map_elements: cqrs(&appender),
            flight_areas: cqrs(&appender),
            firmwares: cqrs(&appender),
            device_logs: cqrs(&appender),
            drc: cqrs(&appender),
            live_streams: cqrs(&appender),
            instance: uuid::Uuid::new_v4().to_string(),
            names: Names::new(&config.nats_prefix),
            js,
            config: Arc::new(config),
            pool,
            storage,
        }
    }
}

/// The routes of command-api, with authentication and the workspace guard applied, and their OpenAPI
/// description: every route is registered through `routes!` from its handler's `#[utoipa::path]`,
/// so the document and the router cannot name different routes ([`shared::http::finish`] serves it).
pub fn router(state: AppState) -> OpenApiRouter {
    let protected = OpenApiRouter::new()
        .merge(users::router())
        .merge(media::router())
        .merge(storage::router())
        .merge(devices::router())
        .merge(control::router())
        .merge(wayline_file::router())
        .merge(wayline_job::router())
        .merge(map_element::router())
        .merge(live::router())
        .merge(flight_area::router())
        .merge(firmware::router())
        .merge(device_logs::router())
        .merge(drc::router())
        .route_layer(from_fn(workspace_guard))
        .route_layer(from_fn_with_state(state.jwt.clone(), require_token));
    // login and token refresh check their credentials themselves
    protected.merge(login::router()).merge(drc::broker_router()).with_state(state)
}

/// How a failed command reads to the client.
pub fn command_error<E: DjiCode + Send + Sync + 'static>(e: AggregateError<E>) -> ApiError {
    match e {
        AggregateError::UserError(e) => ApiError::code(e.dji_code(), e.to_string()),
        AggregateError::AggregateConflict => {
            ApiError::failed("The resource is being changed by many requests at once; please retry.")
        }
        other => ApiError::Internal(anyhow::anyhow!("{other}").context("executing a command")),
    }
}

/// The background work of command-api (the device inbox, liveness and the job scheduler), for [`run`] and for the
/// all-in-one binary alike.
pub fn spawn_tasks(
    state: &AppState,
    shutdown: &shared::Shutdown,
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) {
    tasks.spawn(device_inbox::run(state.clone(), shutdown.clone()));
    tasks.spawn(wayline_job::scheduler::run(state.clone(), shutdown.clone()));
}

/// Runs command-api alone on `config.listen` until `shutdown`.
pub async fn run(mut config: Config, shutdown: shared::Shutdown) -> anyhow::Result<()> {
    let pool = shared::db::prepare(&config.database_url, config.database_pool).await?;
    let s3_listener = s3_endpoint::bind(&mut config).await?;
    let storage = Storage::new(&config)?;
    let nats = shared::nats::connect(&config).await?;
    let js = async_nats::jetstream::new(nats);
    shared::nats::ensure_streams(&js, &Names::new(&config.nats_prefix), &config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "command-api listening");
    let state = AppState::new(config, pool, storage, js);
    let mut tasks = tokio::task::JoinSet::new();
    spawn_tasks(&state, &shutdown, &mut tasks);
    if let Some(l) = s3_listener {
        tasks.spawn(s3_endpoint::serve(l, state.storage.clone(), shutdown.clone()));
    }
    let ready = shared::health::Readiness::new().postgres(state.pool.clone()).nats(state.js.client());
    let app = shared::http::finish(router(state), ready);
    shared::http::serve(listener, app, shutdown).await?;
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}
