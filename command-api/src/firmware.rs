//! DeviceFirmwareController writes: a firmware package imported from the web client (streamed to a
//! temporary file while its MD5 is taken, checked as DJI packages are, then stored in object
//! storage) and switched on or off.

use std::io::Write as _;

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::response::Response;
use md5::Digest as _;
use object_store::{ObjectStore as _, WriteMultipart};
use serde::Deserialize;
use shared::auth::Auth;
use shared::domain::firmware::{self, FirmwareCommand, NewFirmware};
use shared::error::ok_empty;
use shared::event_store::{execute, execute_new, load, metadata};
use shared::http::DjiJson;
use shared::protocol::codes;
use shared::{ApiError, ApiResult};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::{command_error, AppState};

/// Largest package accepted (DJI's dock and aircraft packages run to a few hundred MiB).
const MAX_FIRMWARE_BYTES: usize = 2 << 30;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload).layer(DefaultBodyLimit::max(MAX_FIRMWARE_BYTES + (1 << 20))))
        .routes(routes!(set_status))
        .routes(routes!(ota))
}

fn format_error() -> ApiError {
    ApiError::failed("The file format is incorrect.")
}

/// A file of this process's, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn create() -> std::io::Result<(Self, std::fs::File)> {
        let path = std::env::temp_dir().join(format!("hangar-firmware-{}.zip", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&path)?;
        Ok((Self(path), file))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The form of an import, the file already on disk.
struct Form {
    file_name: String,
    file: TempFile,
    size: u64,
    md5: String,
    release_note: Option<String>,
    status: Option<bool>,
    device_names: Vec<String>,
}

async fn read_form(mut form: Multipart) -> ApiResult<Form> {
    let invalid =
        |e: axum::extract::multipart::MultipartError| ApiError::failed(format!("Invalid multipart body: {e}"));
    let mut file = None;
    let (mut release_note, mut status, mut device_names) = (None, None, Vec::new());
    while let Some(mut field) = form.next_field().await.map_err(invalid)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let name = field.file_name().unwrap_or_default().to_string();
                let (tmp, mut out) = TempFile::create().map_err(|e| ApiError::Internal(e.into()))?;
                let (mut md5, mut size) = (md5::Md5::new(), 0u64);
                while let Some(chunk) = field.chunk().await.map_err(invalid)? {
                    md5.update(&chunk);
                    size += chunk.len() as u64;
                    out.write_all(&chunk).map_err(|e| ApiError::Internal(e.into()))?;
                }
                file = Some((name, tmp, size, hex::encode(md5.finalize())));
            }
            "release_note" => release_note = Some(field.text().await.map_err(invalid)?),
            "status" => status = field.text().await.map_err(invalid)?.trim().parse::<bool>().ok(),
            "device_name" => {
                // repeated, or one comma-separated value
                let text = field.text().await.map_err(invalid)?;
                device_names.extend(text.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned));
            }
            _ => {}
        }
    }
    let Some((file_name, file, size, md5)) = file else { return Err(ApiError::failed("file is required.")) };
    Ok(Form { file_name, file, size, md5, release_note, status, device_names })
}

/// The `.cfg.sig` entry at the top of the package: `(product_version, released yyyy-MM-dd)`.
fn package_version(file: &std::fs::File) -> Option<(String, String)> {
    let zip = zip::ZipArchive::new(file).ok()?;
    let names: Vec<String> = zip.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect();
    names.iter().filter(|n| !n.contains('/')).find_map(|n| firmware::parse_cfg_sig(n))
}

/// `POST …/firmwares/file/upload` (multipart: `file` (.zip), `release_note`, `status`,
/// `device_name`…): the package is stored as `<workspace folder>/firmwares/<firmware_id>.zip`.
#[utoipa::path(
    post,
    path = "/manage/api/v1/workspaces/{workspace_id}/firmwares/file/upload",
    tag = "DeviceFirmwareController",
    summary = "Import firmware file for device upgrades.",
    params(("workspace_id" = String, Path)),
)]
pub async fn upload(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    form: Multipart,
) -> ApiResult<Response> {
    let form = read_form(form).await?;
    if !form.file_name.to_ascii_lowercase().ends_with(".zip") {
        return Err(format_error());
    }
    let release_note = form
        .release_note
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| ApiError::failed("release_note is required."))?;
    let enabled = form.status.ok_or_else(|| ApiError::failed("status (true or false) is required."))?;
    if form.device_names.is_empty() {
        return Err(ApiError::failed("device_name is required."));
    }
    let file = std::fs::File::open(&form.file.0).map_err(|e| ApiError::Internal(e.into()))?;
    let (product_version, released_time) = tokio::task::spawn_blocking(move || package_version(&file))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or_else(format_error)?;

    let id = firmware::id(&workspace_id, &form.md5);
    // a file imported already is refused before it is copied again (the import below still decides)
    if load(&s.firmwares, &id).await.map_err(command_error)?.exists() {
        return Err(ApiError::failed("The file already exists."));
    }
    let object_key = format!("{}/firmwares/{id}.zip", s.storage.workspace_prefix(&workspace_id));
    store(&s, &object_key, &form.file.0).await.map_err(ApiError::Internal)?;
    let new = NewFirmware {
        workspace_id: workspace_id.clone(),
        file_name: form.file_name,
        product_version,
        released_time,
        object_key,
        file_size: form.size as i64,
        file_md5: form.md5,
        device_names: form.device_names,
        release_note,
        enabled,
        username: claims.username.clone(),
    };
    let meta = metadata(&claims.username, &workspace_id, "http");
    execute_new(&s.firmwares, &id, FirmwareCommand::Import(Box::new(new)), meta).await.map_err(command_error)?;
    Ok(ok_empty())
}

/// Copies the file to object storage in parts, never holding it in memory.
async fn store(s: &AppState, key: &str, file: &std::path::Path) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt as _;
    let path = object_store::path::Path::parse(key)?;
    let mut upload = WriteMultipart::new(s.storage.store().put_multipart(&path).await?);
    let mut f = tokio::fs::File::open(file).await?;
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        upload.write(&buf[..n]);
    }
    upload.finish().await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct StatusBody {
    status: Option<bool>,
}

/// `PUT …/firmwares/{firmware_id}`: `{status}` enables or disables the package.
#[utoipa::path(
    put,
    path = "/manage/api/v1/workspaces/{workspace_id}/firmwares/{firmware_id}",
    tag = "DeviceFirmwareController",
    summary = "Change the firmware availability status.",
    params(("workspace_id" = String, Path), ("firmware_id" = String, Path)),
)]
pub async fn set_status(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, firmware_id)): Path<(String, String)>,
    DjiJson(body): DjiJson<StatusBody>,
) -> ApiResult<Response> {
    let enabled = body.status.ok_or_else(|| ApiError::failed("status is required."))?;
    let cmd = FirmwareCommand::SetStatus { workspace_id: workspace_id.clone(), enabled };
    execute(&s.firmwares, &firmware_id, cmd, metadata(&claims.username, &workspace_id, "http"))
        .await
        .map_err(command_error)?;
    Ok(ok_empty())
}

#[derive(Debug, Deserialize)]
pub struct Upgrade {
    device_name: String,
    sn: String,
    product_version: String,
    firmware_upgrade_type: Option<i64>,
}

/// `POST /manage/api/v1/devices/{workspace_id}/devices/ota`: upgrades one or two devices (a dock
/// and its aircraft) with an enabled package of the workspace. Each device must be online here;
/// a dock must be idle and its emergency stop released (as its last OSD says). The gateway of each
/// (the dock itself, or the aircraft's dock) gets one `ota_create`; the dock reports `ota_progress`,
/// which the WebSocket carries.
#[utoipa::path(
    post,
    path = "/manage/api/v1/devices/{workspace_id}/devices/ota",
    tag = "DeviceController",
    summary = "提供离线固件升级任务。",
    params(("workspace_id" = String, Path)),
)]
pub async fn ota(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    DjiJson(body): DjiJson<Vec<Upgrade>>,
) -> ApiResult<Response> {
    if body.is_empty() || body.len() > 2 {
        return Err(ApiError::code(codes::INVALID_PARAMETER, "Upgrade one or two devices at a time."));
    }
    let mut by_gateway: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for u in &body {
        let device = crate::device_service::commandable(&s, &u.sn, &workspace_id).await?;
        let upgrade_type = match u.firmware_upgrade_type {
            None => 2,
            Some(t @ (2 | 3)) => t,
            Some(_) => return Err(ApiError::code(codes::INVALID_PARAMETER, "firmware_upgrade_type is 2 or 3.")),
        };
        let firmware: Option<(String, String, i64, String)> = sqlx::query_as(
            "SELECT object_key, file_md5, file_size, file_name FROM rm_firmwares \
             WHERE workspace_id = $1 AND status AND product_version = $2 AND $3 = ANY(device_names) \
             ORDER BY create_time DESC LIMIT 1",
        )
        .bind(&workspace_id)
        .bind(&u.product_version)
        .bind(&u.device_name)
        .fetch_optional(&s.pool)
        .await?;
        let Some((object_key, md5, size, file_name)) = firmware else {
            return Err(ApiError::failed("This firmware version does not exist or is not available."));
        };
        let gateway = match device.parent_sn() {
            Some(p) if !p.is_empty() => p.to_string(),
            _ => u.sn.clone(),
        };
        if device.model().is_some_and(|m| m.domain == 3) {
            dock_may_upgrade(&s, &u.sn).await?;
        }
        let file_url = s.storage.download_url(&object_key).await.map_err(ApiError::Internal)?;
        let entry = serde_json::json!({"sn": u.sn, "product_version": u.product_version, "file_url": file_url,
            "md5": md5, "file_size": size, "file_name": file_name, "firmware_upgrade_type": upgrade_type});
        match by_gateway.iter_mut().find(|(g, _)| *g == gateway) {
            Some((_, devices)) => devices.push(entry),
            None => by_gateway.push((gateway, vec![entry])),
        }
    }
    for (gateway, devices) in by_gateway {
        let call =
            crate::device_service::Call::service(&gateway, "ota_create", serde_json::json!({"devices": devices}));
        crate::device_service::call(&s, &claims, call).await?;
    }
    Ok(ok_empty())
}

/// A dock upgrades only when idle (`mode_code` 0) with its emergency stop released, as far as its
/// latest OSD tells (a dock's partial OSD messages may not say: then it is not held back).
async fn dock_may_upgrade(s: &AppState, dock_sn: &str) -> ApiResult<()> {
    let Ok(stream) = s.js.get_stream(s.names.telemetry_stream()).await else { return Ok(()) };
    let Ok(m) = stream.get_last_raw_message_by_subject(&s.names.telemetry_subject(dock_sn, "osd")).await else {
        return Ok(());
    };
    let osd: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
    let data = &osd["data"];
    if data.get("emergency_stop_state").and_then(serde_json::Value::as_i64) == Some(1) {
        return Err(ApiError::failed("The emergency stop button of the dock is pressed and can't be upgraded."));
    }
    if data.get("mode_code").and_then(serde_json::Value::as_i64).is_some_and(|m| m != 0) {
        return Err(ApiError::failed("The current status of the dock can't be upgraded."));
    }
    Ok(())
}
