//! What a dock says about its jobs (MQTT reference §8, §5.6): `flighttask_progress` moves a job,
//! `flighttask_ready` starts a conditional job, `file_upload_callback` adds a media file to the
//! library and to its job's count, `highest_priority_upload_flighttask_media` marks whose media go
//! first, and the request `flighttask_resource_get` gets a fresh link to the job's wayline file.
//!
//! These run in the device inbox's lanes, which must never wait for a device's answer (the answer
//! arrives through the same lanes): a job the dock says is ready is started here and its
//! `flighttask_execute` is sent from a task of its own.

use serde_json::{json, Value};
use shared::domain::media::{self, MediaCommand, MediaUpload};
use shared::domain::wayline_job::{task_type, Progress, WaylineJob, WaylineJobCommand};
use shared::event_store::{execute, execute_new, load, metadata};
use shared::protocol::{as_i64, codes, truthy, Envelope};

use crate::AppState;

/// A job of this gateway, by id (the `bid` or `flight_id` the dock sends).
async fn job_of(s: &AppState, gateway_sn: &str, job_id: &str) -> anyhow::Result<Option<WaylineJob>> {
    if job_id.is_empty() {
        return Ok(None);
    }
    let job = load(&s.wayline_jobs, job_id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(job).filter(|j| j.plan().is_some_and(|p| p.dock_sn == gateway_sn)))
}

/// Runs a job command from a device message: what the job refuses is logged, infrastructure
/// errors are retried.
async fn record(s: &AppState, job_id: &str, cmd: WaylineJobCommand) -> anyhow::Result<()> {
    match execute(&s.wayline_jobs, job_id, cmd, metadata("", "", "mqtt")).await {
        Ok(()) => Ok(()),
        Err(cqrs_es::AggregateError::UserError(e)) => {
            tracing::info!(job_id, error = %e, "job report not applied");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// `flighttask_progress`: `bid` is the job id.
pub async fn progress(s: &AppState, sn: &str, env: &Envelope) -> anyhow::Result<()> {
    let gw = env.gateway_or(sn);
    let output = env.data.get("output").cloned().unwrap_or(Value::Null);
    let job_id = if env.bid.is_empty() {
        output.pointer("/ext/flight_id").and_then(Value::as_str).unwrap_or_default().to_string()
    } else {
        env.bid.clone()
    };
    if job_of(s, &gw, &job_id).await?.is_none() {
        tracing::info!(gateway = gw, job_id, "progress of a job Hangar does not know");
        return Ok(());
    }
    let int = |p: &str| output.pointer(p).and_then(as_i64);
    let p = Progress {
        tid: env.tid.clone(),
        result: env.data.get("result").and_then(as_i64).unwrap_or(0),
        status: output.get("status").and_then(Value::as_str).unwrap_or_default().to_string(),
        percent: int("/progress/percent").unwrap_or(0).clamp(0, 100) as i32,
        current_step: int("/progress/current_step").unwrap_or(0) as i32,
        media_count: int("/ext/media_count").map(|n| n.max(0) as i32),
        output,
    };
    record(s, &job_id, WaylineJobCommand::ReportProgress(p)).await
}

/// `flighttask_ready` `{flight_ids}`: the dock's conditions for these conditional jobs hold.
pub async fn ready(s: &AppState, sn: &str, env: &Envelope) -> anyhow::Result<()> {
    let gw = env.gateway_or(sn);
    let ids: Vec<String> = env
        .data
        .get("flight_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    for id in ids {
        let Some(job) = job_of(s, &gw, &id).await? else { continue };
        let Some(plan) = job.plan().filter(|p| p.task_type == task_type::CONDITIONAL) else { continue };
        let actor = super::system(&plan.workspace_id);
        if !job.is_prepared() {
            // a dock that is ready has the task, even if its answer to the prepare is still on
            // its way to the process that sent it
            record(s, &id, WaylineJobCommand::RecordPrepared).await?;
        }
        match super::start(s, &actor, &id).await {
            Ok(()) => {
                let (s, id) = (s.clone(), id.clone());
                tokio::spawn(async move {
                    if let Err(e) = super::send_execute(&s, &actor, &id).await {
                        tracing::warn!(job_id = id, error = %e, "conditional job not executed");
                    }
                });
            }
            Err(shared::ApiError::Internal(e)) => return Err(e),
            Err(e) => tracing::info!(job_id = id, error = %e, "ready job not started"),
        }
    }
    Ok(())
}

/// `highest_priority_upload_flighttask_media` `{flight_id}`.
pub async fn prioritized(s: &AppState, sn: &str, env: &Envelope) -> anyhow::Result<()> {
    let gw = env.gateway_or(sn);
    let id = env.data.get("flight_id").and_then(Value::as_str).unwrap_or_default();
    if job_of(s, &gw, id).await?.is_some() {
        record(s, id, WaylineJobCommand::RecordMediaPrioritized).await?;
    }
    Ok(())
}

/// `file_upload_callback`: the dock uploaded a media file of a job. With result 0 it joins the
/// workspace's media library (its `job_id` is the job's) and counts towards the job.
pub async fn media_uploaded(s: &AppState, sn: &str, env: &Envelope) -> anyhow::Result<()> {
    let gw = env.gateway_or(sn);
    let d = &env.data;
    if d.get("result").and_then(as_i64).unwrap_or(0) != codes::OK {
        tracing::info!(gateway = gw, result = ?d.get("result"), "a dock's media upload failed");
        return Ok(());
    }
    let file = d.get("file").cloned().unwrap_or(Value::Null);
    let text = |p: &str| file.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    let object_key = text("/object_key");
    let flight_id = text("/ext/flight_id");
    let dock = load(&s.devices, &gw).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let job = job_of(s, &gw, &flight_id).await?;
    let workspace_id = match job.as_ref().and_then(WaylineJob::plan) {
        Some(p) => p.workspace_id.clone(),
        None => dock.workspace_id().unwrap_or_default().to_string(),
    };
    if workspace_id.is_empty() {
        tracing::warn!(gateway = gw, "media reported by a dock bound to no workspace");
        return Ok(());
    }
    if let Err(e) = s.storage.check_object_key(&workspace_id, &object_key) {
        tracing::warn!(gateway = gw, object_key, error = %e, "media reported outside the workspace; ignored");
        return Ok(());
    }
    // Docks send no fingerprint: the object's ETag (its MD5) stands in, else the key itself.
    let etag = match s.storage.store().head(&object_store::path::Path::from(object_key.as_str())).await {
        Ok(meta) => meta.e_tag.map(|t| t.trim_matches('"').to_string()),
        Err(e) => {
            tracing::info!(object_key, error = %e, "reported media object not found in storage");
            None
        }
    };
    let fingerprint = etag.filter(|t| !t.is_empty()).unwrap_or_else(|| shared::domain::derived_id(&[&object_key]));
    let file_id = media::file_id(&workspace_id, &fingerprint);
    let is_original = file.pointer("/ext/is_original").is_none_or(truthy);
    let upload = MediaUpload {
        file_id: file_id.clone(),
        workspace_id: workspace_id.clone(),
        name: text("/name"),
        path: text("/path"),
        object_key,
        fingerprint,
        tinny_fingerprint: String::new(),
        sub_file_type: None,
        is_original,
        drone_sn: dock.sub_devices().first().cloned().unwrap_or_default(),
        drone_model_key: text("/ext/drone_model_key"),
        payload_model_key: text("/ext/payload_model_key"),
        file_group_id: flight_id.clone(),
        metadata: file.get("metadata").cloned().unwrap_or_else(|| json!({})),
        username: String::new(),
    };
    match execute_new(&s.media, &file_id, MediaCommand::ReportUpload(upload), metadata("", &workspace_id, "mqtt")).await
    {
        Ok(()) => {}
        Err(cqrs_es::AggregateError::UserError(e)) => {
            tracing::warn!(gateway = gw, error = %e, "a dock's media report refused");
            return Ok(());
        }
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    }
    if job.is_some() {
        record(s, &flight_id, WaylineJobCommand::RecordMediaUploaded { file_id }).await?;
    }
    Ok(())
}

/// `flighttask_resource_get` `{flight_id}`: a fresh link to the job's wayline file.
pub async fn resource(s: &AppState, gw: &str, env: &Envelope) -> anyhow::Result<Value> {
    let id = env.data.get("flight_id").and_then(Value::as_str).unwrap_or_default();
    let Some(plan) = job_of(s, gw, id).await?.and_then(|j| j.plan().cloned()) else {
        return Ok(json!({"result": codes::ILLEGAL_ARGUMENT, "output": {}}));
    };
    Ok(match super::file_for(s, &plan).await {
        Ok(file) => json!({"result": codes::OK, "output": {"file": file}}),
        Err(shared::ApiError::Code { code, message }) => {
            tracing::warn!(gateway = gw, job_id = id, message, "wayline file of a job not linked");
            json!({"result": code, "output": {}})
        }
        Err(e) => {
            tracing::warn!(gateway = gw, job_id = id, error = %e, "wayline file of a job not linked");
            json!({"result": codes::SYSTEM_ERROR, "output": {}})
        }
    })
}
