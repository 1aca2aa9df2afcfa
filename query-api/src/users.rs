//! UserController reads and WorkspaceController.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Serialize;
use shared::auth::Auth;
use shared::error::ok;
use shared::http::{DjiQuery, PageQuery, Paginated};
use shared::time::datetime_string;
use shared::{ApiError, ApiResult};
use sqlx::FromRow;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

/// UserDTO without the token (`GET /manage/api/v1/users/current`).
#[derive(Debug, Serialize, FromRow)]
pub struct CurrentUser {
    user_id: String,
    username: String,
    workspace_id: String,
    user_type: i32,
    mqtt_username: String,
    mqtt_password: String,
    #[sqlx(default)]
    mqtt_addr: String,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(current)).routes(routes!(list)).routes(routes!(current_workspace))
}

#[utoipa::path(
    get,
    path = "/manage/api/v1/users/current",
    tag = "UserController",
    summary = "Query the information of the current user."
)]
pub async fn current(State(s): State<AppState>, Auth(claims): Auth) -> ApiResult<Response> {
    let mut user: CurrentUser = sqlx::query_as(
        "SELECT user_id, username, workspace_id, user_type, mqtt_username, mqtt_password FROM rm_users WHERE username = $1",
    )
    .bind(&claims.username)
    .fetch_optional(&s.pool)
    .await?
    .ok_or_else(|| ApiError::code(401, "invalid username"))?;
    user.workspace_id = claims.workspace_id;
    user.mqtt_addr = s.config.mqtt_public_addr.clone();
    Ok(ok(user))
}

#[derive(Debug, Serialize)]
pub struct UserListItem {
    user_id: String,
    username: String,
    workspace_name: String,
    user_type: &'static str,
    mqtt_username: String,
    mqtt_password: String,
    create_time: String,
}

#[derive(FromRow)]
struct UserListRow {
    user_id: String,
    username: String,
    workspace_name: Option<String>,
    user_type: i32,
    mqtt_username: String,
    mqtt_password: String,
    create_time: chrono::DateTime<chrono::Utc>,
}

/// `GET /manage/api/v1/users/{workspace_id}/users?page=1&page_size=50`.
#[utoipa::path(
    get,
    path = "/manage/api/v1/users/{workspace_id}/users",
    tag = "UserController",
    summary = "Paging to query all users in a workspace.",
    params(("workspace_id" = String, Path)),
)]
pub async fn list(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    DjiQuery(q): DjiQuery<PageQuery>,
) -> ApiResult<Response> {
    let (page, size) = q.resolve(50);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_users WHERE workspace_id = $1")
        .bind(&workspace_id)
        .fetch_one(&s.pool)
        .await?;
    let rows: Vec<UserListRow> = sqlx::query_as(
        "SELECT u.user_id, u.username, w.workspace_name, u.user_type, u.mqtt_username, u.mqtt_password, u.create_time \
         FROM rm_users u LEFT JOIN rm_workspaces w ON w.workspace_id = u.workspace_id \
         WHERE u.workspace_id = $1 ORDER BY u.create_time, u.user_id LIMIT $2 OFFSET $3",
    )
    .bind(&workspace_id)
    .bind(size)
    .bind((page - 1) * size)
    .fetch_all(&s.pool)
    .await?;
    let list = rows
        .into_iter()
        .map(|r| UserListItem {
            user_id: r.user_id,
            username: r.username,
            workspace_name: r.workspace_name.unwrap_or_default(),
            user_type: match r.user_type {
                1 => "Web",
                2 => "Pilot",
                _ => "Unknown",
            },
            mqtt_username: r.mqtt_username,
            mqtt_password: r.mqtt_password,
            create_time: datetime_string(r.create_time),
        })
        .collect();
    Ok(ok(Paginated::new(list, page, size, total)))
}

#[derive(Debug, Serialize, FromRow)]
pub struct WorkspaceDto {
    id: i64,
    workspace_id: String,
    workspace_name: String,
    workspace_desc: String,
    platform_name: String,
    bind_code: String,
}

/// `GET /manage/api/v1/workspaces/current`: the token's workspace.
#[utoipa::path(
    get,
    path = "/manage/api/v1/workspaces/current",
    tag = "WorkspaceController",
    summary = "Gets information about the workspace that the current user is in."
)]
pub async fn current_workspace(State(s): State<AppState>, Auth(claims): Auth) -> ApiResult<Response> {
    let w: WorkspaceDto = sqlx::query_as(
        "SELECT id, workspace_id, workspace_name, workspace_desc, platform_name, bind_code FROM rm_workspaces WHERE workspace_id = $1",
    )
    .bind(&claims.workspace_id)
    .fetch_optional(&s.pool)
    .await?
    .ok_or_else(|| ApiError::failed("The workspace does not exist."))?;
    Ok(ok(w))
}
