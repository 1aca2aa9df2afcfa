//! WaylineJobController writes (reference `http-api.md` §2): create flight tasks (immediate, timed,
//! conditional), cancel them, pause and resume a running one, and put a job's media first in the
//! dock's upload queue. What the dock says about its jobs is in [`from_dock`]; timed and
//! conditional jobs are started by the [`scheduler`].
//!
//! A job's life: created → prepared on its dock (`flighttask_prepare`, `bid` = job id, with the
//! wayline file's link and MD5) → executed once (`flighttask_execute`): at once (immediate), at its
//! time (timed) or on the dock's `flighttask_ready` (conditional) → moved by `flighttask_progress`
//! → succeeded, failed (with the device's code) or cancelled. Every step goes through the one
//! device path ([`crate::device_service`]) and every decision is taken on the job's aggregate.

pub mod from_dock;
pub mod scheduler;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::auth::{Auth, Claims};
use shared::domain::wayline_job::{self as job, task_type, JobPlan, WaylineJobCommand};
use shared::error::ok_empty;
use shared::event_store::{execute, execute_new, load, metadata};
use shared::http::DjiJson;
use shared::protocol::codes;
use shared::{ApiError, ApiResult};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::device_service::{self, Call};
use crate::{command_error, AppState};

/// Most jobs one request may create (`task_days` × `task_periods`).
const MAX_JOBS_PER_REQUEST: usize = 1000;
const DAY_SECS: i64 = 86_400;
/// Conditional jobs are prepared on their dock this long before their window opens (as DJI's backend).
pub const CONDITIONAL_PREPARE_AHEAD_MS: i64 = 24 * 3_600 * 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(cancel))
        .routes(routes!(media_highest))
        .routes(routes!(update_status))
}

/// CreateJobParam (§2.1). Every field is optional on the wire so that what is missing or out of
/// range gets a message naming it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateJob {
    pub name: String,
    pub file_id: String,
    pub dock_sn: String,
    pub wayline_type: Option<i32>,
    pub task_type: Option<i32>,
    pub rth_altitude: Option<i32>,
    pub out_of_control_action: Option<i32>,
    pub min_battery_capacity: Option<i32>,
    pub min_storage_capacity: Option<i32>,
    /// Epoch seconds, each naming a day.
    pub task_days: Vec<i64>,
    /// `[begin]` or `[begin, end]`, epoch seconds; only their time of day counts.
    pub task_periods: Vec<Vec<i64>>,
}

fn required(v: Option<i32>, name: &str, range: std::ops::RangeInclusive<i32>) -> ApiResult<i32> {
    match v {
        None => Err(ApiError::failed(format!("{name} is required."))),
        Some(n) if !range.contains(&n) => {
            Err(ApiError::failed(format!("{name} must be between {} and {}.", range.start(), range.end())))
        }
        Some(n) => Ok(n),
    }
}

impl CreateJob {
    /// The plan every job of this request shares (times are set per job) and the checked values.
    fn validate(&self, workspace_id: &str, username: &str) -> ApiResult<JobPlan> {
        for (name, v) in [("name", &self.name), ("file_id", &self.file_id), ("dock_sn", &self.dock_sn)] {
            if v.trim().is_empty() {
                return Err(ApiError::failed(format!("{name} must not be blank.")));
            }
        }
        let task_type = required(self.task_type, "task_type", 0..=2)?;
        let plan = JobPlan {
            workspace_id: workspace_id.to_string(),
            name: self.name.trim().to_string(),
            file_id: self.file_id.clone(),
            file_name: String::new(),
            dock_sn: self.dock_sn.clone(),
            wayline_type: required(self.wayline_type, "wayline_type", 0..=3)?,
            task_type,
            begin_time_ms: 0,
            end_time_ms: None,
            rth_altitude: required(self.rth_altitude, "rth_altitude", 20..=500)?,
            out_of_control_action: required(self.out_of_control_action, "out_of_control_action", 0..=2)?,
            min_battery_capacity: match self.min_battery_capacity {
                Some(_) => Some(required(self.min_battery_capacity, "min_battery_capacity", 50..=90)?),
                None => None,
            },
            min_storage_capacity: match self.min_storage_capacity {
                Some(_) => Some(required(self.min_storage_capacity, "min_storage_capacity", 0..=i32::MAX)?),
                None => None,
            },
            username: username.to_string(),
            parent_id: None,
        };
        if task_type != task_type::IMMEDIATE {
            if self.task_days.is_empty() || self.task_periods.is_empty() {
                return Err(ApiError::failed(
                    "task_days and task_periods are required for timed and conditional tasks.",
                ));
            }
            if self.task_periods.iter().any(|p| p.is_empty() || p.len() > 2) {
                return Err(ApiError::failed("Each of task_periods must be [begin] or [begin, end]."));
            }
            if self.task_days.len() * self.task_periods.len() > MAX_JOBS_PER_REQUEST {
                return Err(ApiError::failed(format!("At most {MAX_JOBS_PER_REQUEST} jobs can be created at once.")));
            }
        }
        Ok(plan)
    }
}

/// Each job's `(begin, end)` in epoch milliseconds: the date of every day combined with the time of
/// day of every period, both read in the server's time zone, as DJI's backend does (its web client
/// sends the picked dates and times as timestamps, with whatever time of day the picker kept).
pub fn occurrences(days: &[i64], periods: &[Vec<i64>]) -> Vec<(i64, Option<i64>)> {
    occurrences_in(&chrono::Local, days, periods)
}

fn occurrences_in<Tz: chrono::TimeZone>(tz: &Tz, days: &[i64], periods: &[Vec<i64>]) -> Vec<(i64, Option<i64>)> {
    let at = |date: chrono::NaiveDate, secs: i64| -> Option<i64> {
        let time = tz.timestamp_opt(secs, 0).earliest()?.naive_local().time();
        Some(tz.from_local_datetime(&date.and_time(time)).earliest()?.timestamp())
    };
    let mut out: Vec<(i64, Option<i64>)> = Vec::new();
    for &day in days {
        let Some(date) = tz.timestamp_opt(day, 0).earliest().map(|d| d.naive_local().date()) else { continue };
        for p in periods {
            let Some(begin) = p.first().and_then(|&b| at(date, b)) else { continue };
            let end = p.get(1).and_then(|&e| at(date, e)).map(|end| if end < begin { end + DAY_SECS } else { end });
            out.push((begin * 1000, end.map(|e| e * 1000)));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Hangar itself acting in a workspace (the scheduler, a dock's `flighttask_ready`).
pub(crate) fn system(workspace_id: &str) -> Claims {
    Claims {
        iss: String::new(),
        sub: String::new(),
        iat: 0,
        nbf: 0,
        exp: 0,
        id: String::new(),
        username: "hangar".into(),
        user_type: "0".into(),
        workspace_id: workspace_id.to_string(),
    }
}

/// The code and message of an error, as a job records it.
fn code_of(e: &ApiError) -> (i64, String) {
    match e {
        ApiError::Code { code, message } => (*code, message.clone()),
        ApiError::Failed(m) => (job::code::EXECUTION_FAILED, m.clone()),
        other => (job::code::EXECUTION_FAILED, other.to_string()),
    }
}

async fn exec(s: &AppState, actor: &Claims, job_id: &str, cmd: WaylineJobCommand) -> ApiResult<()> {
    execute(&s.wayline_jobs, job_id, cmd, metadata(&actor.username, &actor.workspace_id, "http"))
        .await
        .map_err(command_error)
}

/// Records a job's failure; one already ended stays as it ended.
pub(crate) async fn fail(s: &AppState, actor: &Claims, job_id: &str, code: i64, reason: &str) {
    let cmd = WaylineJobCommand::Fail { code, reason: reason.to_string(), at_ms: shared::time::now_ms() };
    if let Err(e) = exec(s, actor, job_id, cmd).await {
        tracing::warn!(job_id, error = %e, "job failure not recorded");
    }
}

/// The link and MD5 the dock downloads the job's wayline file with (`file {url, fingerprint}`).
pub(crate) async fn file_for(s: &AppState, plan: &JobPlan) -> ApiResult<Value> {
    let file = load(&s.wayline_files, &plan.file_id).await.map_err(command_error)?;
    let f = file
        .file()
        .filter(|f| f.workspace_id == plan.workspace_id)
        .ok_or_else(|| ApiError::code(codes::ILLEGAL_ARGUMENT, "Wayline file doesn't exist."))?;
    let url = s
        .storage
        .download_url(&f.object_key)
        .await
        .map_err(|e| ApiError::code(codes::SYSTEM_ERROR, format!("The wayline file cannot be linked: {e}")))?;
    Ok(json!({"url": url, "fingerprint": f.sign}))
}

/// `flighttask_prepare` data (§5.6 of the MQTT reference): `execute_time` for immediate and timed
/// jobs, the ready and executable conditions for conditional ones.
fn prepare_data(job_id: &str, plan: &JobPlan, file: Value) -> Value {
    let mut data = json!({
        "flight_id": job_id,
        "execute_time": plan.begin_time_ms,
        "task_type": plan.task_type,
        "wayline_type": plan.wayline_type,
        "file": file,
        "rth_altitude": plan.rth_altitude,
        "out_of_control_action": plan.out_of_control_action,
        "exit_wayline_when_rc_lost": 1,
    });
    if plan.task_type == task_type::CONDITIONAL {
        let mut ready = json!({"begin_time": plan.begin_time_ms});
        if let Some(end) = plan.end_time_ms {
            ready["end_time"] = json!(end);
        }
        if let Some(b) = plan.min_battery_capacity {
            ready["battery_capacity"] = json!(b);
        }
        data["ready_conditions"] = ready;
        if let Some(st) = plan.min_storage_capacity {
            data["executable_conditions"] = json!({"storage_capacity": st});
        }
    }
    data
}

/// Prepares a job on its dock; a refusal fails the job with the device's code.
pub(crate) async fn prepare(s: &AppState, actor: &Claims, job_id: &str) -> ApiResult<()> {
    let state = load(&s.wayline_jobs, job_id).await.map_err(command_error)?;
    let Some(plan) = state.plan().cloned() else { return Err(ApiError::failed("The wayline job does not exist.")) };
    if state.is_prepared() {
        return Ok(());
    }
    let result = async {
        let file = file_for(s, &plan).await?;
        let call = Call {
            bid: Some(job_id.to_string()),
            ..Call::service(&plan.dock_sn, "flighttask_prepare", prepare_data(job_id, &plan, file))
        };
        device_service::call(s, actor, call).await
    }
    .await;
    match result {
        Ok(_) => exec(s, actor, job_id, WaylineJobCommand::RecordPrepared).await,
        Err(e) => {
            let (code, message) = code_of(&e);
            fail(s, actor, job_id, code, &format!("prepare: {message}")).await;
            Err(e)
        }
    }
}

/// Decides to execute a job now (once: only a pending, prepared job executes), then sends
/// `flighttask_execute`; a refusal or silence fails the job with that code.
pub(crate) async fn execute_now(s: &AppState, actor: &Claims, job_id: &str) -> ApiResult<()> {
    start(s, actor, job_id).await?;
    send_execute(s, actor, job_id).await
}

/// The once-only decision of [`execute_now`], recorded before anything is sent.
pub(crate) async fn start(s: &AppState, actor: &Claims, job_id: &str) -> ApiResult<()> {
    exec(s, actor, job_id, WaylineJobCommand::Execute { at_ms: shared::time::now_ms() }).await
}

/// The `flighttask_execute` of a job [`start`]ed.
pub(crate) async fn send_execute(s: &AppState, actor: &Claims, job_id: &str) -> ApiResult<()> {
    let state = load(&s.wayline_jobs, job_id).await.map_err(command_error)?;
    let Some(plan) = state.plan() else { return Err(ApiError::failed("The wayline job does not exist.")) };
    let call = Call {
        bid: Some(job_id.to_string()),
        ..Call::service(&plan.dock_sn, "flighttask_execute", json!({"flight_id": job_id}))
    };
    match device_service::call(s, actor, call).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let (code, message) = code_of(&e);
            fail(s, actor, job_id, code, &format!("execute: {message}")).await;
            Err(e)
        }
    }
}

/// `POST …/flight-tasks`: one job per day × period (or one immediate job), each prepared on the dock;
/// an immediate job is executed at once.
#[tracing::instrument(skip_all, fields(workspace_id, dock_sn = %body.dock_sn))]
#[utoipa::path(
    post,
    path = "/wayline/api/v1/workspaces/{workspace_id}/flight-tasks",
    tag = "WaylineJobController",
    summary = "Create a wayline task for the Dock.",
    params(("workspace_id" = String, Path)),
)]
pub async fn create(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    DjiJson(body): DjiJson<CreateJob>,
) -> ApiResult<Response> {
    let mut plan = body.validate(&workspace_id, &claims.username)?;
    let file = load(&s.wayline_files, &plan.file_id).await.map_err(command_error)?;
    let Some(file) = file.file().filter(|f| f.workspace_id == workspace_id) else {
        return Err(ApiError::failed("Wayline file doesn't exist."));
    };
    plan.file_name = file.name.clone();
    device_service::commandable(&s, &plan.dock_sn, &workspace_id).await?;
    let now = shared::time::now_ms();
    let grace = s.config.job_start_grace_ms as i64;
    let times = if plan.task_type == task_type::IMMEDIATE {
        vec![(now, None)]
    } else {
        occurrences(&body.task_days, &body.task_periods)
            .into_iter()
            .filter(|(b, e)| e.unwrap_or(b + grace) > now)
            .collect()
    };
    if times.is_empty() {
        return Err(ApiError::failed("Every time of this task has already passed."));
    }
    let mut actor = claims.clone();
    actor.workspace_id = workspace_id.clone();
    for (begin, end) in times {
        let job_id = uuid::Uuid::new_v4().to_string();
        let plan = JobPlan { begin_time_ms: begin, end_time_ms: end, ..plan.clone() };
        let prepare_now = plan.task_type != task_type::CONDITIONAL || begin - now <= CONDITIONAL_PREPARE_AHEAD_MS;
        let immediate = plan.task_type == task_type::IMMEDIATE;
        let meta = metadata(&claims.username, &workspace_id, "http");
        execute_new(&s.wayline_jobs, &job_id, WaylineJobCommand::Create(plan), meta).await.map_err(command_error)?;
        if prepare_now {
            prepare(&s, &actor, &job_id).await?;
        }
        if immediate {
            execute_now(&s, &actor, &job_id).await?;
        }
    }
    Ok(ok_empty())
}

/// `DELETE …/jobs?job_id=…`: pending jobs only; each dock is told once (`flighttask_undo` with its
/// jobs' ids), then the jobs are cancelled. A dock that is offline has nothing to undo.
#[tracing::instrument(skip_all, fields(workspace_id))]
#[utoipa::path(
    delete,
    path = "/wayline/api/v1/workspaces/{workspace_id}/jobs",
    tag = "WaylineJobController",
    summary = "Send the command to cancel the jobs.",
    params(("workspace_id" = String, Path)),
)]
pub async fn cancel(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path(workspace_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let ids = crate::wayline_file::query_ids(&q, "job_id");
    if ids.is_empty() {
        return Err(ApiError::failed("job_id is required."));
    }
    let mut by_dock: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut wrong = Vec::new();
    for id in &ids {
        let state = load(&s.wayline_jobs, id).await.map_err(command_error)?;
        match state.in_workspace(&workspace_id) {
            Some(p) if state.status() == job::status::PENDING => {
                by_dock.entry(p.dock_sn.clone()).or_default().push(id.clone())
            }
            _ => wrong.push(id.clone()),
        }
    }
    if !wrong.is_empty() {
        return Err(ApiError::failed(format!(
            "These tasks have an incorrect status and cannot be canceled. {wrong:?}"
        )));
    }
    let mut actor = claims.clone();
    actor.workspace_id = workspace_id.clone();
    for (dock, jobs) in by_dock {
        match device_service::commandable(&s, &dock, &workspace_id).await {
            Ok(_) => {
                let call = Call::service(&dock, "flighttask_undo", json!({"flight_ids": jobs}));
                device_service::send_and_wait(&s, &actor, call).await?;
            }
            Err(e) => tracing::info!(dock, error = %e, "jobs cancelled without telling their dock"),
        }
        for id in jobs {
            exec(&s, &actor, &id, WaylineJobCommand::Cancel { at_ms: shared::time::now_ms() }).await?;
        }
    }
    Ok(ok_empty())
}

/// `POST …/jobs/{job_id}/media-highest`: the dock uploads this job's media first.
#[utoipa::path(
    post,
    path = "/wayline/api/v1/workspaces/{workspace_id}/jobs/{job_id}/media-highest",
    tag = "WaylineJobController",
    summary = "Set the media files for this job to upload immediately.",
    params(("workspace_id" = String, Path), ("job_id" = String, Path)),
)]
pub async fn media_highest(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, job_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let state = load(&s.wayline_jobs, &job_id).await.map_err(command_error)?;
    let Some(plan) = state.in_workspace(&workspace_id) else {
        return Err(ApiError::failed("The wayline job does not exist."));
    };
    if state.is_prioritized() {
        return Ok(ok_empty());
    }
    let call = Call::service(&plan.dock_sn, "upload_flighttask_media_prioritize", json!({"flight_id": job_id}));
    device_service::call(&s, &claims, call).await?;
    exec(&s, &claims, &job_id, WaylineJobCommand::RecordMediaPrioritized).await?;
    Ok(ok_empty())
}

#[derive(Debug, Deserialize)]
pub struct UpdateStatus {
    pub status: Option<i32>,
}

/// `PUT …/jobs/{job_id}` `{status}`: 0 pauses a job in progress (`flighttask_pause`), 1 resumes a
/// paused one (`flighttask_recovery`).
#[utoipa::path(
    put,
    path = "/wayline/api/v1/workspaces/{workspace_id}/jobs/{job_id}",
    tag = "WaylineJobController",
    summary = "updateJobStatus",
    params(("workspace_id" = String, Path), ("job_id" = String, Path)),
)]
pub async fn update_status(
    State(s): State<AppState>,
    Auth(claims): Auth,
    Path((workspace_id, job_id)): Path<(String, String)>,
    DjiJson(body): DjiJson<UpdateStatus>,
) -> ApiResult<Response> {
    let state = load(&s.wayline_jobs, &job_id).await.map_err(command_error)?;
    let Some(plan) = state.in_workspace(&workspace_id) else {
        return Err(ApiError::failed("The wayline job does not exist."));
    };
    let (method, wanted, record) = match body.status {
        Some(0) => ("flighttask_pause", job::status::IN_PROGRESS, WaylineJobCommand::RecordPaused),
        Some(1) => ("flighttask_recovery", job::status::PAUSED, WaylineJobCommand::RecordResumed),
        _ => return Err(ApiError::failed("status must be 0 (pause) or 1 (resume).")),
    };
    if state.status() != wanted {
        return Err(ApiError::failed("The wayline job status does not match, and the operation cannot be performed."));
    }
    let call = Call { bid: Some(job_id.clone()), ..Call::service(&plan.dock_sn, method, json!("")) };
    device_service::call(&s, &claims, call).await?;
    exec(&s, &claims, &job_id, record).await?;
    Ok(ok_empty())
}

/// Pauses the dock's job in progress, if it has one, for someone taking its aircraft over by hand
/// (DRC): `flighttask_pause`, recorded as any pause. Returns the job's id.
pub(crate) async fn pause_for_drc(s: &AppState, claims: &Claims, dock_sn: &str) -> ApiResult<Option<String>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT job_id FROM rm_wayline_jobs WHERE workspace_id = $1 AND dock_sn = $2 AND status = $3",
    )
    .bind(&claims.workspace_id)
    .bind(dock_sn)
    .bind(job::status::IN_PROGRESS)
    .fetch_all(&s.pool)
    .await?;
    for id in ids {
        // the read model may be behind: the job's own state decides
        if load(&s.wayline_jobs, &id).await.map_err(command_error)?.status() != job::status::IN_PROGRESS {
            continue;
        }
        let call = Call { bid: Some(id.clone()), ..Call::service(dock_sn, "flighttask_pause", json!("")) };
        device_service::send_and_wait(s, claims, call).await?;
        exec(s, claims, &id, WaylineJobCommand::RecordPaused).await?;
        return Ok(Some(id));
    }
    Ok(None)
}

/// Resumes a job [`pause_for_drc`] paused (`flighttask_recovery`), if it is still paused.
pub(crate) async fn resume_after_drc(s: &AppState, claims: &Claims, job_id: &str) -> ApiResult<()> {
    let state = load(&s.wayline_jobs, job_id).await.map_err(command_error)?;
    let Some(plan) = state.in_workspace(&claims.workspace_id).filter(|_| state.status() == job::status::PAUSED) else {
        return Ok(());
    };
    let call = Call { bid: Some(job_id.to_string()), ..Call::service(&plan.dock_sn, "flighttask_recovery", json!("")) };
    device_service::send_and_wait(s, claims, call).await?;
    exec(s, claims, job_id, WaylineJobCommand::RecordResumed).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn days_and_periods_combine_as_date_and_time_of_day_in_the_servers_zone() {
        let tz = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        let local = |d: u32, h: u32, m: u32| tz.with_ymd_and_hms(2026, 12, d, h, m, 0).unwrap().timestamp();
        // dates picked at 15:23 and 05:00 local; a period picked today at 10:00, one from 23:30 to 00:30
        let days = [local(2, 15, 23), local(3, 5, 0)];
        let periods = [vec![local(1, 10, 0)], vec![local(1, 23, 30), local(1, 0, 30)]];
        let got = occurrences_in(&tz, &days, &periods);
        assert_eq!(
            got,
            vec![
                (local(2, 10, 0) * 1000, None),
                (local(2, 23, 30) * 1000, Some(local(3, 0, 30) * 1000)),
                (local(3, 10, 0) * 1000, None),
                (local(3, 23, 30) * 1000, Some(local(4, 0, 30) * 1000)),
            ]
        );
    }

    #[test]
    fn validation_names_the_field() {
        let body = CreateJob { name: "n".into(), file_id: "f".into(), dock_sn: "d".into(), ..Default::default() };
        let e = body.validate("w", "u").unwrap_err();
        assert_eq!(e.to_string(), "task_type is required.");
        let body = CreateJob {
            task_type: Some(1),
            wayline_type: Some(0),
            rth_altitude: Some(10),
            out_of_control_action: Some(0),
            ..body
        };
        assert_eq!(body.validate("w", "u").unwrap_err().to_string(), "rth_altitude must be between 20 and 500.");
        let body = CreateJob { rth_altitude: Some(100), ..body };
        assert!(body.validate("w", "u").unwrap_err().to_string().contains("task_days"));
        let body = CreateJob { task_days: vec![1], task_periods: vec![vec![1, 2, 3]], ..body };
        assert!(body.validate("w", "u").unwrap_err().to_string().contains("[begin]"));
    }

    #[test]
    fn conditional_jobs_carry_their_conditions() {
        let plan = JobPlan {
            task_type: task_type::CONDITIONAL,
            begin_time_ms: 10,
            end_time_ms: Some(20),
            min_battery_capacity: Some(60),
            min_storage_capacity: Some(500),
            ..JobPlan::default()
        };
        let d = prepare_data("j", &plan, json!({"url": "u", "fingerprint": "f"}));
        assert_eq!(d["ready_conditions"], json!({"begin_time": 10, "end_time": 20, "battery_capacity": 60}));
        assert_eq!(d["executable_conditions"], json!({"storage_capacity": 500}));
        assert_eq!(d["flight_id"], "j");
        let timed = prepare_data("j", &JobPlan { task_type: task_type::TIMED, ..plan }, json!({}));
        assert!(timed.get("ready_conditions").is_none());
        assert_eq!(timed["execute_time"], 10);
    }
}
