//! query-api: every GET endpoint and the WebSocket. Reads read models only; never writes events.
//!
//! - [`files`]: FileController (the workspace's media library, download links) and the signed links
//!   of the local object store.
//! - [`users`]: UserController reads (current user, a workspace's users) and WorkspaceController.
//! - [`ws`]: the WebSocket `/api/v1/ws` and its per-workspace fan-out hub.
//! - `/metrics` (Prometheus text) and `/healthz`, without a token.

pub mod files;
pub mod users;
pub mod ws;

use std::sync::Arc;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use shared::auth::{require_token, workspace_guard, Jwt};
use shared::storage::Storage;
use shared::Config;
use sqlx::PgPool;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub jwt: Jwt,
    pub storage: Storage,
    pub hub: ws::Hub,
}

impl AppState {
    pub fn new(config: Config, pool: PgPool, storage: Storage, hub: ws::Hub) -> Self {
        Self { jwt: Jwt::new(&config), config: Arc::new(config), pool, storage, hub }
    }
}

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/manage/api/v1/users/current", get(users::current))
        .route("/manage/api/v1/users/{workspace_id}/users", get(users::list))
        .route("/manage/api/v1/workspaces/current", get(users::current_workspace))
        .route("/media/api/v1/files/{workspace_id}/files", get(files::list))
        .route("/media/api/v1/files/{workspace_id}/file/{file_id}/url", get(files::url))
        .route_layer(from_fn(workspace_guard))
        .route_layer(from_fn_with_state(state.jwt.clone(), require_token));
    let public = Router::new()
        // the WebSocket checks its `?x-auth-token=` itself, to answer the handshake properly
        .route("/api/v1/ws", get(ws::upgrade))
        .route("/storage/api/v1/objects/{*key}", get(files::local_object))
        .route("/metrics", get(|| async { shared::metrics::render() }))
        .route("/healthz", get(|| async { "ok".into_response() }));
    protected.merge(public).with_state(state)
}

/// Runs query-api alone on `config.listen` until `shutdown`.
pub async fn run(config: Config, shutdown: shared::Shutdown) -> anyhow::Result<()> {
    let pool = shared::db::prepare(&config.database_url, config.database_pool).await?;
    let storage = Storage::new(&config)?;
    let state = AppState::new(config.clone(), pool, storage, ws::Hub::new(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "query-api listening");
    axum::serve(listener, shared::http::finish(router(state)))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
