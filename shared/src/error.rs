//! DJI's response envelope and the one error type every HTTP handler returns.
//!
//! Every JSON answer is `{code, message, data}` with HTTP 200, business errors included (reference
//! §0.3); only authentication (401), the workspace guard (403) and redirects step outside that.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

/// `{code: 0, message: "success", data}`.
pub fn ok<T: Serialize>(data: T) -> Response {
    match serde_json::to_value(data) {
        Ok(v) => Json(json!({"code": 0, "message": "success", "data": strip_nulls(v)})).into_response(),
        Err(e) => ApiError::Internal(anyhow::anyhow!(e).context("serialising a response")).into_response(),
    }
}

/// `{code: 0, message: "success", data: ""}`: DJI's answer when there is no payload.
pub fn ok_empty() -> Response {
    Json(json!({"code": 0, "message": "success", "data": ""})).into_response()
}

/// DJI's serializer omits null fields (NON_NULL) and writes a null inside a list as `""`.
pub fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| if v.is_null() { Value::String(String::new()) } else { strip_nulls(v) })
                .collect(),
        ),
        other => other,
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

/// The DJI `code` a domain error is answered with (reference §0.5); `-1` unless an error says
/// otherwise.
pub trait DjiCode: std::error::Error {
    fn dji_code(&self) -> i64 {
        crate::protocol::codes::FAILED
    }
}

/// Errors as clients see them.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// HTTP 200, `code: -1`: the request cannot be served as asked (bad body, unknown id, …).
    #[error("{0}")]
    Failed(String),
    /// HTTP 200 with DJI's own code (e.g. 401 for a bad login, 210002 for an invalid parameter).
    #[error("{message}")]
    Code { code: i64, message: String },
    /// HTTP 401, empty body: no or invalid `x-auth-token` (reference §1.3).
    #[error("unauthorized")]
    Unauthorized,
    /// HTTP 401 with `{code: -1, message: "token is null"}`: token refresh refused (reference §8.2).
    #[error("token is null")]
    RefreshRefused,
    /// HTTP 403, `code: 403`: the path names a workspace that is not the token's.
    #[error("{0}")]
    Forbidden(String),
    /// HTTP 200, `code: -1` with a generic message; the cause is logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
    pub fn code(code: i64, message: impl Into<String>) -> Self {
        Self::Code { code, message: message.into() }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Failed(message) => (StatusCode::OK, json!({"code": -1, "message": message})),
            ApiError::Code { code, message } => (StatusCode::OK, json!({"code": code, "message": message})),
            ApiError::Unauthorized => return StatusCode::UNAUTHORIZED.into_response(),
            ApiError::RefreshRefused => (StatusCode::UNAUTHORIZED, json!({"code": -1, "message": "token is null"})),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, json!({"code": 403, "message": message})),
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                (
                    StatusCode::OK,
                    json!({"code": -1, "message": "The server could not complete the request; it has been logged."}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
