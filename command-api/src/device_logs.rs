//! DeviceLogsController: a dock's log files, listed live (`fileupload_list`), uploaded into the
//! workspace's folder of the object store (`fileupload_start`, progress by `fileupload_progress`),
//! cancelled (`fileupload_update`), and uploads deleted from the history. Each upload is a
//! [`shared::domain::device_logs`] aggregate whose id is the `bid` of its `fileupload_start`.
//!
//! The live list is a GET that asks the dock, so it is served here, not by query-api (the k8s
//! HTTPRoute sends it to command-api).

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::auth::{url_pairs, Auth};
use shared::domain::device_logs::{DeviceLogsCommand, LogFile, UploadRequest};
use shared::error::{ok, ok_empty};
use shared::event_store::{execute, execute_new, load, metadata};
use shared::http::DjiJson;
use shared::protocol::codes;
use shared::{ApiError, ApiResult};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::device_service::{self, Call};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live_list, upload, cancel)).routes(routes!(delete))
}

/// A log module as the web client and the dock name it: `"0"` the aircraft, `"3"` the dock (a
/// number is read as its text).
fn module(v: &Value) -> ApiResult<String> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    match text.as_str() {
        "0" | "3" => Ok(text),
        _ => Err(ApiError::failed("module must be \"0\" (aircraft) or \"3\" (dock).")),
    }
}

fn modules(list: &[Value]) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    for m in list {
        let m = module(m)?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(ApiError::failed("At least one module (\"0\" aircraft, \"3\" dock) is needed."));
    }
    Ok(out)
}

/// The dock, bound to the caller's workspace and online; DJI's own words when it is offline.
async fn dock(s: &AppState, sn: &str, workspace_id: &str) -> ApiResult<()> {
    match device_service::commandable(s, sn, workspace_id).await {
        Err(ApiError::Code { code: codes::DEVICE_OFFLINE, .. }) => Err(ApiError::failed("Device is offline.")),
        other => other.map(|_| ()),
    }
}

/// `GET …/devices/{device_sn}/logs?domain_list=0,3`: the log files the dock holds now, asked with
/// `fileupload_list`: `{files: [{device_sn, module, result, list: [{boot_index, start_time,
/// end_time, size}]}]}`.
#[utoipa::path(
    get,
    path = "/manage/api/v1/workspaces/{workspace_id}/devices/{device_sn}/logs",
    tag = "DeviceLogsController",
    summary = "Get a list of log files that can be uploaded in real time.",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path)),
)]
pub async fn live_list(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, sn)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let asked: Vec<Value> = url_pairs(query.as_deref().unwrap_or_default())
        .filter(|(k, _)| k == "domain_list" || k == "domain_list[]" || k == "domain")
        .flat_map(|(_, v)| v.split(',').map(|m| Value::String(m.trim().to_string())).collect::<Vec<_>>())
        .filter(|m| m.as_str() != Some(""))
        .collect();
    let module_list = if asked.is_empty() { vec!["0".to_string(), "3".to_string()] } else { modules(&asked)? };
    dock(&s, &sn, &workspace_id).await?;
    let output = device_service::send_and_wait(
        &s,
        &claims,
        Call::service(&sn, "fileupload_list", json!({ "module_list": module_list })),
    )
    .await?;
    Ok(ok(json!({ "files": listed_files(&output) })))
}

/// The files of a `fileupload_list` answer, modules as text: the web client compares them with
/// `"0"` and `"3"`, so a dock that sends numbers still shows its files.
fn listed_files(output: &Value) -> Value {
    let mut files = output.get("files").cloned().filter(Value::is_array).unwrap_or_else(|| json!([]));
    for file in files.as_array_mut().into_iter().flatten() {
        if let Some(m) = file.get_mut("module").filter(|m| m.is_number()) {
            *m = Value::String(m.to_string());
        }
    }
    files
}

#[derive(Debug, Deserialize)]
pub struct UploadBody {
    #[serde(default)]
    logs_information: Option<String>,
    /// Epoch ms; DJI's web client may send it as text or not at all.
    #[serde(default)]
    happen_time: Option<Value>,
    #[serde(default)]
    files: Vec<UploadFile>,
}

#[derive(Debug, Deserialize)]
pub struct UploadFile {
    #[serde(default)]
    device_sn: String,
    #[serde(default)]
    module: Value,
    #[serde(default)]
    list: Vec<Value>,
}

fn happen_time(v: Option<&Value>) -> ApiResult<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => shared::protocol::as_i64(v)
            .map(Some)
            .ok_or_else(|| ApiError::failed("happen_time must be a time in milliseconds since 1970.")),
    }
}

/// `POST …/devices/{device_sn}/logs`: asks the dock to upload the chosen boots' logs of itself and
/// of its aircraft (one file each, at most two) into the workspace's folder, with temporary
/// credentials for that folder. The upload is recorded first (status uploading), so the dock's
/// progress always has an upload to land on; a dock that refuses makes it failed.
#[utoipa::path(
    post,
    path = "/manage/api/v1/workspaces/{workspace_id}/devices/{device_sn}/logs",
    tag = "DeviceLogsController",
    summary = "Initiate a log upload request to the gateway.",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path)),
)]
pub async fn upload(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, sn)): Path<(String, String)>,
    DjiJson(body): DjiJson<UploadBody>,
) -> ApiResult<Response> {
    if body.files.is_empty() || body.files.len() > 2 {
        return Err(ApiError::failed("files must name one or two devices' logs (the dock's, the aircraft's)."));
    }
    let happen_time = happen_time(body.happen_time.as_ref())?;
    let prefix = s.storage.workspace_prefix(&workspace_id);
    let mut files = Vec::with_capacity(body.files.len());
    for f in body.files {
        let module = module(&f.module)?;
        if f.device_sn.trim().is_empty() {
            return Err(ApiError::failed("Each file needs the device_sn whose logs it holds."));
        }
        if f.list.is_empty() || !f.list.iter().all(Value::is_object) {
            return Err(ApiError::failed("Each file needs a list of the boots to upload ({boot_index, …})."));
        }
        if files.iter().any(|x: &LogFile| x.module == module) {
            return Err(ApiError::failed("One file per module."));
        }
        let file_id = uuid::Uuid::new_v4().to_string();
        let object_key = format!("{prefix}/logs/{file_id}.tar");
        files.push(LogFile { file_id, device_sn: f.device_sn, module, object_key, list: f.list });
    }
    dock(&s, &sn, &workspace_id).await?;
    let storage = s.storage.credentials_for(&workspace_id).await.map_err(|e| {
        tracing::error!(error = ?e, "no upload credentials for a log upload");
        ApiError::failed(format!("Could not obtain temporary credentials from the object store: {e}"))
    })?;
    let logs_id = uuid::Uuid::new_v4().to_string();
    let params: Vec<Value> = files
        .iter()
        .map(|f| json!({"device_sn": f.device_sn, "module": f.module, "object_key": f.object_key, "list": f.list}))
        .collect();
    let request = UploadRequest {
        workspace_id: workspace_id.clone(),
        gateway_sn: sn.clone(),
        username: claims.username.clone(),
        logs_information: body.logs_information.unwrap_or_default(),
        happen_time,
        files,
    };
    let meta = || metadata(&claims.username, &workspace_id, "http");
    execute_new(&s.device_logs, &logs_id, DeviceLogsCommand::Request(Box::new(request)), meta())
        .await
        .map_err(crate::command_error)?;
    let data = json!({
        "bucket": storage.bucket,
        "region": storage.region,
        "credentials": storage.credentials,
        "endpoint": storage.endpoint,
        "provider": storage.provider,
        "file_store_dir": storage.object_key_prefix,
        "file_type": "text_log",
        "params": {"files": params},
    });
    let mut call = Call::service(&sn, "fileupload_start", data);
    call.bid = Some(logs_id.clone());
    if let Err(e) = device_service::send_and_wait(&s, &claims, call).await {
        let result = match &e {
            ApiError::Code { code, .. } => *code,
            _ => codes::FAILED,
        };
        execute(&s.device_logs, &logs_id, DeviceLogsCommand::Refused { result }, meta())
            .await
            .map_err(crate::command_error)?;
        return Err(e);
    }
    Ok(ok_empty())
}

#[derive(Debug, Deserialize)]
pub struct CancelBody {
    #[serde(default)]
    module_list: Vec<Value>,
    #[serde(default)]
    status: Option<String>,
}

/// `DELETE …/devices/{device_sn}/logs` with `{module_list, status: "cancel"}`: `fileupload_update`;
/// the dock then reports the upload canceled.
#[utoipa::path(
    delete,
    path = "/manage/api/v1/workspaces/{workspace_id}/devices/{device_sn}/logs",
    tag = "DeviceLogsController",
    summary = "Cancel logs file upload.",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path)),
)]
pub async fn cancel(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, sn)): Path<(String, String)>,
    DjiJson(body): DjiJson<CancelBody>,
) -> ApiResult<Response> {
    let status = body.status.unwrap_or_else(|| "cancel".into());
    if status != "cancel" {
        return Err(ApiError::failed("status must be \"cancel\"."));
    }
    let module_list =
        if body.module_list.is_empty() { vec!["0".to_string(), "3".to_string()] } else { modules(&body.module_list)? };
    dock(&s, &sn, &workspace_id).await?;
    let data = json!({"module_list": module_list, "status": status});
    device_service::send_and_wait(&s, &claims, Call::service(&sn, "fileupload_update", data)).await?;
    Ok(ok_empty())
}

/// `DELETE …/devices/{device_sn}/logs/{logs_id}`: the upload leaves the history (its files stay in
/// the object store).
#[utoipa::path(
    delete,
    path = "/manage/api/v1/workspaces/{workspace_id}/devices/{device_sn}/logs/{logs_id}",
    tag = "DeviceLogsController",
    summary = "Delete upload history.",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path), ("logs_id" = String, Path)),
)]
pub async fn delete(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, _sn, logs_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let logs = load(&s.device_logs, &logs_id).await.map_err(crate::command_error)?;
    if logs.workspace_id() != Some(workspace_id.as_str()) {
        return Err(ApiError::failed("The log upload does not exist."));
    }
    let meta = metadata(&claims.username, &workspace_id, "http");
    execute(&s.device_logs, &logs_id, DeviceLogsCommand::Delete { workspace_id: workspace_id.clone() }, meta)
        .await
        .map_err(crate::command_error)?;
    Ok(ok_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_modules_read_as_text_and_odd_answers_as_no_files() {
        let output = json!({"files": [{"module": 3, "device_sn": "D"}, {"module": "0"}]});
        assert_eq!(listed_files(&output), json!([{"module": "3", "device_sn": "D"}, {"module": "0"}]));
        assert_eq!(listed_files(&json!({"files": "none"})), json!([]));
        assert_eq!(listed_files(&Value::Null), json!([]));
        assert_eq!(module(&json!(0)).unwrap(), "0");
        assert!(module(&json!("7")).is_err() && module(&json!(null)).is_err());
        assert_eq!(happen_time(Some(&json!("1733000000000"))).unwrap(), Some(1733000000000));
        assert!(happen_time(Some(&json!("yesterday"))).is_err());
    }
}
