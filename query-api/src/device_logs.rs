//! DeviceLogsController reads: a dock's log upload history (with each upload's progress while it
//! runs and its files once uploaded), and download links of uploaded log files.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use shared::domain::device_logs::{status_of, FileProgress, LogFile, DONE, UPLOADING};
use shared::error::ok;
use shared::http::{DjiQuery, Paginated};
use shared::time::datetime_string;
use shared::{ApiError, ApiResult};
use sqlx::FromRow;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::devices::{topology, DeviceRow, DEVICE_SELECT};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(uploaded)).routes(routes!(download_url))
}

#[derive(Debug, Deserialize)]
pub struct UploadedQuery {
    page: Option<i64>,
    page_size: Option<i64>,
    status: Option<i32>,
    /// Epoch ms, on the upload's creation time.
    begin_time: Option<i64>,
    end_time: Option<i64>,
    logs_information: Option<String>,
}

#[derive(Debug, FromRow)]
struct LogsRow {
    logs_id: String,
    username: String,
    logs_information: String,
    happen_time: Option<DateTime<Utc>>,
    status: i32,
    files: sqlx::types::Json<Vec<LogFile>>,
    progress: sqlx::types::Json<Vec<FileProgress>>,
    create_time: DateTime<Utc>,
}

impl LogsRow {
    fn progress_of(&self, module: &str) -> Option<&FileProgress> {
        self.progress.iter().find(|p| p.module == module)
    }

    /// DeviceLogsDTO.
    fn dto(&self, device_topo: &Value) -> Value {
        let logs_progress: Vec<Value> = if self.status == UPLOADING {
            self.progress
                .iter()
                .map(|p| {
                    json!({"device_sn": p.device_sn, "device_model_domain": p.module, "progress": p.progress,
                        "result": p.result, "upload_rate": p.upload_rate, "status": status_of(&p.status)})
                })
                .collect()
        } else {
            Vec::new()
        };
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|f| {
                let mut file = json!({"file_id": f.file_id, "device_sn": f.device_sn, "module": f.module,
                    "object_key": f.object_key, "list": f.list});
                if let Some(p) = self.progress_of(&f.module) {
                    file["result"] = json!(p.result);
                }
                file
            })
            .collect();
        json!({
            "logs_id": self.logs_id,
            "happen_time": self.happen_time.map(datetime_string),
            "user_name": self.username,
            "logs_information": self.logs_information,
            "create_time": datetime_string(self.create_time),
            "status": self.status,
            "device_topo": device_topo,
            "logs_progress": logs_progress,
            "device_logs": {"files": files},
        })
    }
}

const LOGS_SELECT: &str = "SELECT logs_id, username, logs_information, happen_time, status, files, \
    progress, create_time FROM rm_device_logs";

/// `{hosts: [the dock's aircraft], parents: [the dock]}`, as the web client shows whose logs these are.
async fn device_topo(s: &AppState, sn: &str) -> ApiResult<Value> {
    let dock: Option<DeviceRow> =
        sqlx::query_as(&format!("{DEVICE_SELECT} WHERE d.device_sn = $1")).bind(sn).fetch_optional(&s.pool).await?;
    let Some(dock) = dock else { return Ok(json!({"hosts": [], "parents": []})) };
    let child: Option<DeviceRow> = if dock.child_sn.is_empty() {
        None
    } else {
        sqlx::query_as(&format!("{DEVICE_SELECT} WHERE d.device_sn = $1"))
            .bind(&dock.child_sn)
            .fetch_optional(&s.pool)
            .await?
    };
    Ok(json!({"hosts": child.iter().map(topology).collect::<Vec<_>>(), "parents": [topology(&dock)]}))
}

/// `GET …/devices/{device_sn}/logs-uploaded?page=&page_size=&status=&begin_time=&end_time=&logs_information=`:
/// the dock's log uploads, newest first.
#[utoipa::path(
    get,
    path = "/manage/api/v1/workspaces/{workspace_id}/devices/{device_sn}/logs-uploaded",
    tag = "DeviceLogsController",
    summary = "Obtain the device upload log list by paging according to the query parameters.",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path)),
)]
pub async fn uploaded(
    State(s): State<AppState>,
    Path((workspace_id, sn)): Path<(String, String)>,
    DjiQuery(q): DjiQuery<UploadedQuery>,
) -> ApiResult<Response> {
    let (page, size) = shared::http::PageQuery { page: q.page, page_size: q.page_size }.resolve(10);
    let ms = |t: Option<i64>| t.and_then(DateTime::<Utc>::from_timestamp_millis);
    let information = q.logs_information.filter(|t| !t.trim().is_empty());
    let filter = "workspace_id = $1 AND device_sn = $2 AND ($3::int IS NULL OR status = $3) \
        AND ($4::timestamptz IS NULL OR create_time >= $4) AND ($5::timestamptz IS NULL OR create_time <= $5) \
        AND ($6::text IS NULL OR strpos(logs_information, $6) > 0)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM rm_device_logs WHERE {filter}"))
        .bind(&workspace_id)
        .bind(&sn)
        .bind(q.status)
        .bind(ms(q.begin_time))
        .bind(ms(q.end_time))
        .bind(&information)
        .fetch_one(&s.pool)
        .await?;
    let rows: Vec<LogsRow> =
        sqlx::query_as(&format!("{LOGS_SELECT} WHERE {filter} ORDER BY create_time DESC, logs_id LIMIT $7 OFFSET $8"))
            .bind(&workspace_id)
            .bind(&sn)
            .bind(q.status)
            .bind(ms(q.begin_time))
            .bind(ms(q.end_time))
            .bind(&information)
            .bind(size)
            .bind((page - 1) * size)
            .fetch_all(&s.pool)
            .await?;
    let topo = device_topo(&s, &sn).await?;
    let list: Vec<Value> = rows.iter().map(|r| r.dto(&topo)).collect();
    Ok(ok(Paginated::new(list, page, size, total)))
}

/// `GET …/logs/{logs_id}/url/{file_id}`: a link that downloads an uploaded log file (a JSON string,
/// not a redirect).
#[utoipa::path(
    get,
    path = "/manage/api/v1/workspaces/{workspace_id}/logs/{logs_id}/url/{file_id}",
    tag = "DeviceLogsController",
    summary = "Query the download address of the file according to the wayline file id,",
    params(("workspace_id" = String, Path), ("logs_id" = String, Path), ("file_id" = String, Path)),
)]
pub async fn download_url(
    State(s): State<AppState>,
    Path((workspace_id, logs_id, file_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let failed = || ApiError::failed("Failed to get the logs file download address.");
    let row: Option<LogsRow> = sqlx::query_as(&format!("{LOGS_SELECT} WHERE logs_id = $1 AND workspace_id = $2"))
        .bind(&logs_id)
        .bind(&workspace_id)
        .fetch_optional(&s.pool)
        .await?;
    let row = row.ok_or_else(failed)?;
    let file = row.files.iter().find(|f| f.file_id == file_id).ok_or_else(failed)?;
    // only a file the dock said it uploaded is there to download
    let uploaded = row.progress_of(&file.module).is_some_and(|p| p.status == "ok") || row.status == DONE;
    if !uploaded {
        return Err(failed());
    }
    let url = s.storage.download_url(&file.object_key).await.map_err(|e| {
        tracing::warn!(error = %e, logs_id, file_id, "no link for a log file");
        failed()
    })?;
    Ok(ok(url))
}
