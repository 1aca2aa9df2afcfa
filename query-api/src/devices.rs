//! DeviceController reads, the product's device statistics, TopologyController (DJI Pilot 2's
//! topology) and DeviceHmsController reads.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use shared::auth::{url_pairs, Auth};
use shared::error::ok;
use shared::http::{PageQuery, Paginated};
use shared::time::datetime_string;
use shared::{ApiError, ApiResult};
use sqlx::FromRow;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;

/// Columns of a device with its model name and workspace name.
pub const DEVICE_SELECT: &str =
    "SELECT d.device_sn, d.workspace_id, d.user_id, d.nickname, d.device_desc, d.domain, d.type, \
    d.sub_type, d.thing_version, d.firmware_version, d.parent_sn, d.child_sn, d.control_source, d.online, d.bound, \
    d.bound_time, d.login_time, dict.device_name AS model_name, w.workspace_name \
    FROM rm_devices d \
    LEFT JOIN device_dictionary dict ON dict.domain = d.domain AND dict.type = d.type AND dict.sub_type = d.sub_type \
    LEFT JOIN rm_workspaces w ON w.workspace_id = d.workspace_id";

#[derive(Debug, Clone, FromRow)]
pub struct DeviceRow {
    pub device_sn: String,
    pub workspace_id: String,
    pub user_id: String,
    pub nickname: String,
    pub device_desc: String,
    pub domain: i32,
    pub r#type: i32,
    pub sub_type: i32,
    pub thing_version: String,
    pub firmware_version: String,
    pub parent_sn: String,
    pub child_sn: String,
    pub control_source: String,
    pub online: bool,
    pub bound: bool,
    pub bound_time: Option<DateTime<Utc>>,
    pub login_time: Option<DateTime<Utc>>,
    pub model_name: Option<String>,
    pub workspace_name: Option<String>,
}

impl DeviceRow {
    pub fn model_key(&self) -> String {
        format!("{}-{}-{}", self.domain, self.r#type, self.sub_type)
    }
    /// The dictionary's name, or "Unknown device d-t-s" for a model the dictionary does not know yet.
    pub fn device_name(&self) -> String {
        self.model_name.clone().unwrap_or_else(|| format!("Unknown device {}", self.model_key()))
    }
    pub fn callsign(&self) -> String {
        if self.nickname.is_empty() {
            self.device_name()
        } else {
            self.nickname.clone()
        }
    }
    fn icons(&self) -> Value {
        // DJI Pilot 2's TSA icons: docks are equipment, announced gateways people
        let kind = if self.domain == 3 { "equipment" } else { "person" };
        json!({"normal_icon_url": format!("resource://pilot/drawable/tsa_{kind}_normal"),
               "selected_icon_url": format!("resource://pilot/drawable/tsa_{kind}_select")})
    }
}

/// DeviceDTO (reference §21.1).
#[derive(Debug, Serialize)]
pub struct DeviceDto {
    device_sn: String,
    device_name: String,
    nickname: String,
    workspace_id: String,
    workspace_name: String,
    user_id: String,
    control_source: String,
    device_desc: String,
    child_device_sn: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    parent_sn: String,
    domain: i32,
    #[serde(rename = "type")]
    kind: i32,
    sub_type: i32,
    thing_version: String,
    icon_url: Value,
    status: bool,
    bound_status: bool,
    login_time: Option<String>,
    bound_time: Option<String>,
    firmware_version: String,
    firmware_status: i32,
    payloads_list: Vec<Value>,
    children: Option<Box<DeviceDto>>,
}

pub fn dto(r: &DeviceRow, child: Option<&DeviceRow>) -> DeviceDto {
    DeviceDto {
        device_sn: r.device_sn.clone(),
        device_name: r.device_name(),
        nickname: r.callsign(),
        workspace_id: r.workspace_id.clone(),
        workspace_name: r.workspace_name.clone().unwrap_or_default(),
        user_id: r.user_id.clone(),
        control_source: r.control_source.clone(),
        device_desc: r.device_desc.clone(),
        child_device_sn: r.child_sn.clone(),
        parent_sn: r.parent_sn.clone(),
        domain: r.domain,
        kind: r.r#type,
        sub_type: r.sub_type,
        thing_version: r.thing_version.clone(),
        icon_url: r.icons(),
        status: r.online,
        bound_status: r.bound,
        login_time: r.login_time.map(datetime_string),
        bound_time: r.bound_time.map(datetime_string),
        firmware_version: r.firmware_version.clone(),
        // firmware upgrades (OTA) are not tracked yet: DJI's "unknown"
        firmware_status: -1,
        payloads_list: vec![],
        children: child.map(|c| Box::new(dto(c, None))),
    }
}

async fn devices_where(s: &AppState, condition: &str, binds: &[&str]) -> ApiResult<Vec<DeviceRow>> {
    let sql = format!("{DEVICE_SELECT} WHERE {condition} ORDER BY d.domain DESC, d.device_sn");
    let mut q = sqlx::query_as::<_, DeviceRow>(&sql);
    for b in binds {
        q = q.bind(*b);
    }
    Ok(q.fetch_all(&s.pool).await?)
}

/// Gateways with their aircraft, as the web map and Pilot 2 show them.
async fn with_children(s: &AppState, parents: &[DeviceRow]) -> ApiResult<Vec<DeviceDto>> {
    let child_sns: Vec<String> = parents.iter().map(|p| p.child_sn.clone()).filter(|c| !c.is_empty()).collect();
    let children: Vec<DeviceRow> = if child_sns.is_empty() {
        vec![]
    } else {
        sqlx::query_as(&format!("{DEVICE_SELECT} WHERE d.device_sn = ANY($1)"))
            .bind(&child_sns)
            .fetch_all(&s.pool)
            .await?
    };
    Ok(parents.iter().map(|p| dto(p, children.iter().find(|c| c.device_sn == p.child_sn && c.online))).collect())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(bound))
        .routes(routes!(type_counts))
        .routes(routes!(domain_stats))
        .routes(routes!(hms))
        .routes(routes!(hms_unread))
        .routes(routes!(one))
        .routes(routes!(type_counts_all))
        .routes(routes!(topologies))
}

/// `GET /manage/api/v1/devices/{workspace_id}/devices`: the workspace's gateways (docks and remote
/// controllers) with their aircraft.
#[utoipa::path(
    get,
    path = "/manage/api/v1/devices/{workspace_id}/devices",
    tag = "DeviceController",
    summary = "在一个工作区中获取所有在线设备的拓扑列表。",
    params(("workspace_id" = String, Path)),
)]
pub async fn list(State(s): State<AppState>, Path(workspace_id): Path<String>) -> ApiResult<Response> {
    let gateways = devices_where(&s, "d.workspace_id = $1 AND d.domain IN (2, 3)", &[&workspace_id]).await?;
    Ok(ok(with_children(&s, &gateways).await?))
}

/// `GET /manage/api/v1/devices/{workspace_id}/devices/{device_sn}`.
#[utoipa::path(
    get,
    path = "/manage/api/v1/devices/{workspace_id}/devices/{device_sn}",
    tag = "DeviceController",
    summary = "根据设备 sn 获取设备信息。",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path)),
)]
pub async fn one(State(s): State<AppState>, Path((workspace_id, sn)): Path<(String, String)>) -> ApiResult<Response> {
    let rows = devices_where(&s, "d.workspace_id = $1 AND d.device_sn = $2", &[&workspace_id, &sn]).await?;
    let row = rows.first().ok_or_else(|| ApiError::failed("device not found."))?;
    Ok(ok(with_children(&s, std::slice::from_ref(row)).await?.pop()))
}

pub(crate) fn query_values(query: &Option<String>, key: &str) -> Vec<String> {
    // `?k=a&k=b` and `?k=a,b` both mean [a, b]
    url_pairs(query.as_deref().unwrap_or_default())
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

pub(crate) fn query_value<T: std::str::FromStr>(query: &Option<String>, key: &str) -> Result<Option<T>, ApiError> {
    match query_values(query, key).first() {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ApiError::failed(format!("Invalid query parameter {key}: {v:?}"))),
    }
}

/// `page` and `page_size` of a query that also carries repeated or comma-separated parameters.
pub(crate) fn page_query(q: &Option<String>) -> Result<PageQuery, ApiError> {
    Ok(PageQuery { page: query_value(q, "page")?, page_size: query_value(q, "page_size")? })
}

/// `GET /manage/api/v1/devices/{workspace_id}/devices/bound?domain=&page=&page_size=`.
#[utoipa::path(
    get,
    path = "/manage/api/v1/devices/{workspace_id}/devices/bound",
    tag = "DeviceController",
    summary = "在一个工作区中获取绑定设备列表。",
    params(("workspace_id" = String, Path)),
)]
pub async fn bound(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let (page, size) = page_query(&q)?.resolve(50);
    let domain = query_value::<i32>(&q, "domain")?;
    let filter = "d.workspace_id = $1 AND d.bound AND ($2::int IS NULL OR d.domain = $2)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM rm_devices d WHERE {filter}"))
        .bind(&workspace_id)
        .bind(domain)
        .fetch_one(&s.pool)
        .await?;
    let rows: Vec<DeviceRow> = sqlx::query_as(&format!(
        "{DEVICE_SELECT} WHERE {filter} ORDER BY d.bound_time DESC NULLS LAST, d.device_sn LIMIT $3 OFFSET $4"
    ))
    .bind(&workspace_id)
    .bind(domain)
    .bind(size)
    .bind((page - 1) * size)
    .fetch_all(&s.pool)
    .await?;
    let list = with_children(&s, &rows).await?;
    Ok(ok(Paginated::new(list, page, size, total)))
}

#[derive(Debug, Serialize, FromRow)]
pub struct TypeCount {
    domain: i32,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    kind: i32,
    sub_type: i32,
    device_name: String,
    count: i64,
}

const TYPE_COUNTS: &str = "SELECT d.domain, d.type, d.sub_type, \
      COALESCE(dict.device_name, 'Unknown device ' || d.domain || '-' || d.type || '-' || d.sub_type) AS device_name, \
      count(*) AS count \
    FROM rm_devices d \
    LEFT JOIN device_dictionary dict ON dict.domain = d.domain AND dict.type = d.type AND dict.sub_type = d.sub_type \
    WHERE d.bound AND ($1::text IS NULL OR d.workspace_id = $1) \
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3";

/// `GET /manage/api/v1/devices/{workspace_id}/devices/type-counts`.
#[utoipa::path(
    get,
    path = "/manage/api/v1/devices/{workspace_id}/devices/type-counts",
    tag = "DeviceController",
    summary = "获取当前工作空间下设备类型数量。",
    params(("workspace_id" = String, Path)),
)]
pub async fn type_counts(State(s): State<AppState>, Path(workspace_id): Path<String>) -> ApiResult<Response> {
    let rows: Vec<TypeCount> = sqlx::query_as(TYPE_COUNTS).bind(Some(workspace_id)).fetch_all(&s.pool).await?;
    Ok(ok(rows))
}

/// `GET /manage/api/v1/devices/type-counts`: every workspace; web users only.
#[utoipa::path(
    get,
    path = "/manage/api/v1/devices/type-counts",
    tag = "DeviceController",
    summary = "获取所有工作空间下设备类型数量。"
)]
pub async fn type_counts_all(State(s): State<AppState>, Auth(claims): Auth) -> ApiResult<Response> {
    if claims.user_type() != 1 {
        return Err(ApiError::Forbidden("Only web users can see every workspace's devices.".into()));
    }
    let rows: Vec<TypeCount> = sqlx::query_as(TYPE_COUNTS).bind(None::<String>).fetch_all(&s.pool).await?;
    Ok(ok(rows))
}

#[derive(Debug, Serialize, FromRow)]
pub struct DomainStat {
    domain: i32,
    total: i64,
    online: i64,
}

/// `GET /manage/api/v1/devices/{workspace_id}/devices/domain-stats`.
#[utoipa::path(
    get,
    path = "/manage/api/v1/devices/{workspace_id}/devices/domain-stats",
    tag = "DeviceController",
    summary = "查询每个 domain 下设备总数与在线数",
    params(("workspace_id" = String, Path)),
)]
pub async fn domain_stats(State(s): State<AppState>, Path(workspace_id): Path<String>) -> ApiResult<Response> {
    let rows: Vec<DomainStat> = sqlx::query_as(
        "SELECT domain, count(*) AS total, count(*) FILTER (WHERE online) AS online FROM rm_devices \
         WHERE workspace_id = $1 AND bound GROUP BY domain ORDER BY domain",
    )
    .bind(&workspace_id)
    .fetch_all(&s.pool)
    .await?;
    Ok(ok(rows))
}

/// TopologyDeviceDTO, as DJI Pilot 2 reads it.
pub fn topology(r: &DeviceRow) -> Value {
    json!({
        "sn": r.device_sn,
        "device_callsign": r.callsign(),
        "device_model": {"device_model_key": r.model_key(), "domain": r.domain, "type": r.r#type, "sub_type": r.sub_type},
        "online_status": r.online,
        "user_id": r.user_id,
        "user_callsign": r.callsign(),
        "icon_urls": r.icons(),
        "model": r.device_name(),
        "bound_status": r.bound,
        "gateway_sn": r.parent_sn,
        "domain": r.domain,
    })
}

/// `GET /manage/api/v1/workspaces/{workspace_id}/devices/topologies`: each remote controller of the
/// workspace with its aircraft.
#[utoipa::path(
    get,
    path = "/manage/api/v1/workspaces/{workspace_id}/devices/topologies",
    tag = "TopologyController",
    summary = "obtain device topology list",
    params(("workspace_id" = String, Path)),
)]
pub async fn topologies(State(s): State<AppState>, Path(workspace_id): Path<String>) -> ApiResult<Response> {
    let gateways = devices_where(&s, "d.workspace_id = $1 AND d.domain = 2", &[&workspace_id]).await?;
    let child_sns: Vec<String> = gateways.iter().map(|g| g.child_sn.clone()).collect();
    let children: Vec<DeviceRow> = sqlx::query_as(&format!("{DEVICE_SELECT} WHERE d.device_sn = ANY($1)"))
        .bind(&child_sns)
        .fetch_all(&s.pool)
        .await?;
    let list: Vec<Value> = gateways
        .iter()
        .map(|g| {
            let hosts: Vec<Value> =
                children.iter().filter(|c| c.device_sn == g.child_sn && c.online).map(topology).collect();
            json!({"hosts": hosts, "parents": [topology(g)]})
        })
        .collect();
    Ok(ok(json!({ "list": list })))
}

#[derive(Debug, FromRow)]
pub struct HmsRow {
    hms_id: String,
    tid: String,
    bid: String,
    sn: String,
    level: i32,
    module: i32,
    hms_key: String,
    raw: Value,
    create_time: DateTime<Utc>,
    read_time: Option<DateTime<Utc>>,
    workspace_id: String,
    message_en: Option<String>,
    message_zh: Option<String>,
}

const HMS_SELECT: &str = "SELECT h.hms_id, h.tid, h.bid, h.sn, h.level, h.module, h.hms_key, h.raw, h.create_time, \
    h.read_time, h.workspace_id, t.message_en, t.message_zh FROM rm_device_hms h LEFT JOIN hms_dictionary t ON t.hms_key = h.hms_key";

impl HmsRow {
    pub fn workspace_id(&self) -> &str {
        &self.workspace_id
    }
}

/// Fills DJI's placeholders in an HMS text from the alert's args.
fn render(text: &str, raw: &Value) -> String {
    let args = &raw["args"];
    let idx = |k: &str| args.get(k).and_then(shared::protocol::as_i64);
    let mut out = text.replace("%alarmid", raw.get("code").and_then(Value::as_str).unwrap_or_default());
    if let Some(i) = idx("component_index") {
        out = out.replace("%component_index", &(i + 1).to_string());
    }
    if let Some(i) = idx("sensor_index") {
        out = out.replace("%index", &(i + 1).to_string());
    }
    out
}

/// DeviceHmsDTO. Without a dictionary text the message is the raw key, so nothing is hidden.
pub fn hms_dto(r: &HmsRow) -> Value {
    let en = r.message_en.as_deref().map(|t| render(t, &r.raw)).unwrap_or_else(|| r.hms_key.clone());
    let zh = r.message_zh.as_deref().map(|t| render(t, &r.raw)).unwrap_or_else(|| r.hms_key.clone());
    let mut v = json!({"hms_id": r.hms_id, "tid": r.tid, "bid": r.bid, "sn": r.sn, "level": r.level, "module": r.module,
        "key": r.hms_key, "message_en": en, "message_zh": zh, "create_time": datetime_string(r.create_time)});
    if let Some(t) = r.read_time {
        v["update_time"] = json!(datetime_string(t));
    }
    v
}

pub async fn hms_rows(s: &AppState, condition: &str, hms_ids: &[String]) -> sqlx::Result<Vec<HmsRow>> {
    sqlx::query_as(&format!("{HMS_SELECT} WHERE {condition}")).bind(hms_ids).fetch_all(&s.pool).await
}

/// `GET /manage/api/v1/devices/{workspace_id}/devices/hms?device_sn=…&level=…&begin_time=…&end_time=…
/// &message=…&language=en|zh&update_time=0&page=…&page_size=…`.
#[utoipa::path(
    get,
    path = "/manage/api/v1/devices/{workspace_id}/devices/hms",
    tag = "DeviceHmsController",
    summary = "Page to query the hms information of the device.",
    params(("workspace_id" = String, Path)),
)]
pub async fn hms(
    State(s): State<AppState>,
    Path(workspace_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let sns = query_values(&q, "device_sn");
    let level = query_value::<i32>(&q, "level")?;
    let begin = query_value::<i64>(&q, "begin_time")?;
    let end = query_value::<i64>(&q, "end_time")?;
    let unread_only = query_value::<i64>(&q, "update_time")? == Some(0);
    let message = query_values(&q, "message").into_iter().next();
    let language = query_values(&q, "language").into_iter().next().unwrap_or_else(|| "en".into());
    let paging = page_query(&q)?;
    let filter = "h.workspace_id = $1 AND (cardinality($2::text[]) = 0 OR h.sn = ANY($2)) AND ($3::int IS NULL OR h.level = $3) \
        AND ($4::bigint IS NULL OR h.create_time >= to_timestamp($4 / 1000.0)) \
        AND ($5::bigint IS NULL OR h.create_time <= to_timestamp($5 / 1000.0)) AND (NOT $6 OR h.read_time IS NULL) \
        AND ($7::text IS NULL OR (CASE WHEN $8 = 'zh' THEN COALESCE(t.message_zh, h.hms_key) ELSE COALESCE(t.message_en, h.hms_key) END) ILIKE '%' || $7 || '%')";
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM rm_device_hms h LEFT JOIN hms_dictionary t ON t.hms_key = h.hms_key WHERE {filter}"
    ))
    .bind(&workspace_id)
    .bind(&sns)
    .bind(level)
    .bind(begin)
    .bind(end)
    .bind(unread_only)
    .bind(&message)
    .bind(&language)
    .fetch_one(&s.pool)
    .await?;
    let (page, size) = paging.resolve_or_all(total);
    let rows: Vec<HmsRow> = sqlx::query_as(&format!(
        "{HMS_SELECT} WHERE {filter} ORDER BY h.create_time DESC, h.hms_id LIMIT $9 OFFSET $10"
    ))
    .bind(&workspace_id)
    .bind(&sns)
    .bind(level)
    .bind(begin)
    .bind(end)
    .bind(unread_only)
    .bind(&message)
    .bind(&language)
    .bind(size)
    .bind((page - 1) * size)
    .fetch_all(&s.pool)
    .await?;
    Ok(ok(Paginated::new(rows.iter().map(hms_dto).collect(), page, size, total)))
}

/// `GET /manage/api/v1/devices/{workspace_id}/devices/hms/{device_sn}`: the device's unread alerts.
#[utoipa::path(
    get,
    path = "/manage/api/v1/devices/{workspace_id}/devices/hms/{device_sn}",
    tag = "DeviceHmsController",
    summary = "Get hms messages for a single device.",
    params(("workspace_id" = String, Path), ("device_sn" = String, Path)),
)]
pub async fn hms_unread(
    State(s): State<AppState>,
    Path((workspace_id, sn)): Path<(String, String)>,
) -> ApiResult<Response> {
    let rows: Vec<HmsRow> = sqlx::query_as(&format!(
        "{HMS_SELECT} WHERE h.workspace_id = $1 AND h.sn = $2 AND h.read_time IS NULL ORDER BY h.create_time DESC"
    ))
    .bind(&workspace_id)
    .bind(&sn)
    .fetch_all(&s.pool)
    .await?;
    Ok(ok(rows.iter().map(hms_dto).collect::<Vec<_>>()))
}
