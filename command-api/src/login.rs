//! LoginController: `POST /manage/api/v1/login` and `POST /manage/api/v1/token/refresh`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use shared::auth::{verify_password, TOKEN_HEADER};
use shared::error::ok;
use shared::http::DjiJson;
use shared::{ApiError, ApiResult};
use sqlx::{FromRow, PgPool};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    username: Option<String>,
    password: Option<String>,
    flag: Option<i32>,
}

/// DJI's UserDTO as login and refresh answer it.
#[derive(Debug, Serialize)]
pub struct UserDto {
    pub user_id: String,
    pub username: String,
    pub workspace_id: String,
    pub user_type: i32,
    pub mqtt_username: String,
    pub mqtt_password: String,
    pub mqtt_addr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

#[derive(Debug, FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub username: String,
    pub password_hash: String,
    pub workspace_id: String,
    pub user_type: i32,
    pub mqtt_username: String,
    pub mqtt_password: String,
}

const USER_COLUMNS: &str = "user_id, username, password_hash, workspace_id, user_type, mqtt_username, mqtt_password";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login)).routes(routes!(refresh))
}

pub async fn user_by_name(pool: &PgPool, username: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM rm_users WHERE username = $1"))
        .bind(username)
        .fetch_optional(pool)
        .await
}

pub async fn user_by_id(pool: &PgPool, user_id: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM rm_users WHERE user_id = $1"))
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

fn dto(u: UserRow, mqtt_addr: &str, token: Option<String>) -> UserDto {
    UserDto {
        user_id: u.user_id,
        username: u.username,
        workspace_id: u.workspace_id,
        user_type: u.user_type,
        mqtt_username: u.mqtt_username,
        mqtt_password: u.mqtt_password,
        mqtt_addr: mqtt_addr.to_string(),
        access_token: token,
    }
}

/// `flag` must equal the account's type: 1 for DJI's web client, 2 for Pilot 2's H5 page.
#[tracing::instrument(skip_all, fields(username))]
#[utoipa::path(
    post,
    path = "/manage/api/v1/login",
    tag = "LoginController",
    summary = "login",
    security(()),
)]
pub async fn login(State(s): State<AppState>, DjiJson(req): DjiJson<LoginRequest>) -> ApiResult<Response> {
    let username =
        req.username.filter(|u| !u.is_empty()).ok_or_else(|| ApiError::failed("username must not be empty."))?;
    let password = req.password.ok_or_else(|| ApiError::failed("password must not be empty."))?;
    let flag = req.flag.ok_or_else(|| ApiError::failed("flag must be 1 (web) or 2 (pilot)."))?;
    tracing::Span::current().record("username", username.as_str());
    let user = user_by_name(&s.pool, &username).await?.ok_or_else(|| ApiError::code(401, "invalid username"))?;
    if user.user_type != flag {
        return Err(ApiError::failed("The account type does not match."));
    }
    let hash = user.password_hash.clone();
    let good = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    if !good {
        return Err(ApiError::code(401, "invalid password"));
    }
    let workspace_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rm_workspaces WHERE workspace_id = $1)")
            .bind(&user.workspace_id)
            .fetch_one(&s.pool)
            .await?;
    if !workspace_exists {
        return Err(ApiError::code(401, "invalid workspace id"));
    }
    let token = s.jwt.issue(&user.user_id, &user.username, user.user_type, &user.workspace_id)?;
    Ok(ok(dto(user, &s.config.mqtt_public_addr, Some(token))))
}

/// A new token for one this installation signed, even expired (reference §8.2: DJI Pilot 2
/// refreshes after sleeping), within `HANGAR_JWT_REFRESH_GRACE_SECS` of its expiry. Unsigned,
/// tampered and foreign tokens, and tokens expired longer than that, are refused (HTTP 401,
/// `{code: -1, message: "token is null"}`), so a stolen old token cannot be renewed forever.
#[utoipa::path(
    post,
    path = "/manage/api/v1/token/refresh",
    tag = "LoginController",
    summary = "refreshToken",
    security(()),
)]
pub async fn refresh(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let token = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()).ok_or(ApiError::RefreshRefused)?;
    let claims = s
        .jwt
        .verify_for_refresh(token.trim(), s.config.jwt_refresh_grace_secs)
        .map_err(|_| ApiError::RefreshRefused)?;
    let user = user_by_id(&s.pool, &claims.id).await?.ok_or(ApiError::RefreshRefused)?;
    let token = s.jwt.issue(&user.user_id, &user.username, user.user_type, &claims.workspace_id)?;
    let mut d = dto(user, &s.config.mqtt_public_addr, Some(token));
    d.workspace_id = claims.workspace_id;
    Ok(ok(d))
}
