//! UserController writes: `PUT /manage/api/v1/users/{workspace_id}/users/{user_id}` changes the MQTT
//! credentials a user hands to Pilot 2 (nothing else can be changed).

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use shared::auth::Auth;
use shared::domain::user::UserCommand;
use shared::error::ok_empty;
use shared::event_store::{execute, metadata};
use shared::http::DjiJson;
use shared::ApiResult;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{command_error, AppState};

#[derive(Debug, Deserialize)]
pub struct UpdateUser {
    mqtt_username: Option<String>,
    mqtt_password: Option<String>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(update))
}

#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id, user_id = %user_id))]
#[utoipa::path(
    put,
    path = "/manage/api/v1/users/{workspace_id}/users/{user_id}",
    tag = "UserController",
    summary = "Modify user information. Only mqtt account information is included, nothing else can be modified.",
    params(("workspace_id" = String, Path), ("user_id" = String, Path)),
)]
pub async fn update(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, user_id)): Path<(String, String)>,
    DjiJson(body): DjiJson<UpdateUser>,
) -> ApiResult<Response> {
    let cmd = UserCommand::ChangeMqttCredentials {
        workspace_id: workspace_id.clone(),
        mqtt_username: body.mqtt_username,
        mqtt_password: body.mqtt_password,
    };
    execute(&s.users, &user_id, cmd, metadata(&claims.username, &workspace_id, "http")).await.map_err(command_error)?;
    Ok(ok_empty())
}
