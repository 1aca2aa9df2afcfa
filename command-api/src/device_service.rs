//! The one path by which Hangar asks something of a device (`services`, `property/set`), used by
//! every feature that talks to one:
//!
//! 1. the gateway is checked on its aggregate: bound to the caller's workspace and online;
//! 2. the caller subscribes to the command's reply subject (core NATS, keyed by `tid`);
//! 3. the command is recorded as a `CommandSent` event; its MQTT message is part of that event, so
//!    the outbox relay publishes it to DEVICE_OUT with the event. This process also publishes the
//!    same message at once under the same `Nats-Msg-Id`, so the device gets it without waiting for
//!    the relay, and JetStream keeps one copy;
//! 4. the device inbox (in whichever command-api process reads the reply) records the reply and
//!    announces it on the reply subject; the caller answers with the device's result;
//! 5. without an answer in time the command is marked `ReplyMissing`, unless the aggregate shows a
//!    reply whose announcement was lost; a late reply is still recorded.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::auth::Claims;
use shared::domain::device::Device;
use shared::domain::device_command::{DeviceCommandCommand, Outcome, Sent};
use shared::event_store::{execute, execute_new, load, metadata};
use shared::protocol::codes;
use shared::protocol::services::CommandTopic;
use shared::{ApiError, ApiResult};

use crate::AppState;

/// What to ask of which gateway.
#[derive(Debug, Clone)]
pub struct Call {
    pub gateway_sn: String,
    pub topic: CommandTopic,
    pub method: Option<String>,
    pub data: Value,
    /// The business id; a fresh one unless the command belongs to a job (flight tasks use the job id).
    pub bid: Option<String>,
    /// How long to wait; the configured default otherwise.
    pub timeout: Option<Duration>,
}

impl Call {
    /// A `services` method.
    pub fn service(gateway_sn: &str, method: &str, data: Value) -> Self {
        Self {
            gateway_sn: gateway_sn.to_string(),
            topic: CommandTopic::Services,
            method: Some(method.to_string()),
            data,
            bid: None,
            timeout: None,
        }
    }

    /// A `property/set` with this data.
    pub fn property_set(gateway_sn: &str, data: Value) -> Self {
        Self {
            gateway_sn: gateway_sn.to_string(),
            topic: CommandTopic::PropertySet,
            method: None,
            data,
            bid: None,
            timeout: None,
        }
    }
}

/// The announcement of a reply on the command's reply subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announced {
    pub result: Option<i64>,
    pub output: Value,
}

/// The gateway the caller may command: known to the caller's workspace and online. A device of
/// another workspace answers exactly like one that does not exist.
pub async fn commandable(s: &AppState, sn: &str, workspace_id: &str) -> ApiResult<Device> {
    let device = load(&s.devices, sn).await.map_err(crate::command_error)?;
    if !device.is_known() || device.workspace_id() != Some(workspace_id) {
        return Err(ApiError::code(codes::DEVICE_NOT_REGISTERED, "The device is not bound to this workspace."));
    }
    if !device.is_online() {
        return Err(ApiError::code(codes::DEVICE_OFFLINE, "The device is offline."));
    }
    Ok(device)
}

/// Sends a command to a device the caller may command and waits for its answer: `Ok(output)` when
/// the device answered result 0; the device's code with its text otherwise; 211001 without an
/// answer in time.
#[tracing::instrument(skip_all, fields(sn = %call.gateway_sn, method = call.method.as_deref().unwrap_or("property/set")))]
pub async fn call(s: &AppState, claims: &Claims, call: Call) -> ApiResult<Value> {
    commandable(s, &call.gateway_sn, &claims.workspace_id).await?;
    send_and_wait(s, claims, call).await
}

/// [`call`] for a gateway already checked.
pub async fn send_and_wait(s: &AppState, claims: &Claims, call: Call) -> ApiResult<Value> {
    let started = std::time::Instant::now();
    let timeout = call.timeout.unwrap_or(Duration::from_millis(s.config.device_reply_timeout_ms));
    let tid = uuid::Uuid::new_v4().to_string();
    let mut replies =
        s.js.client()
            .subscribe(s.names.command_reply_subject(&tid))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!(e).context("subscribing to the reply subject")))?;
    let now = chrono::Utc::now().timestamp_millis();
    let sent = Sent {
        gateway_sn: call.gateway_sn.clone(),
        topic: call.topic,
        method: call.method.clone(),
        bid: call.bid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        data: call.data,
        sent_at_ms: now,
        expires_at_ms: now + timeout.as_millis() as i64,
    };
    let outbound = sent.outbound(&tid);
    let mut meta = metadata(&claims.username, &claims.workspace_id, "http");
    meta.insert("instance".into(), s.instance.clone());
    execute_new(&s.device_commands, &tid, DeviceCommandCommand::Send(sent), meta)
        .await
        .map_err(crate::command_error)?;
    // The relay sends it too; this copy only saves the device the relay's polling delay.
    match shared::nats::publish_outbound(&s.js, &s.names, &outbound).await {
        Ok(ack) => {
            if let Err(e) = ack.await {
                tracing::debug!(error = %e, "early copy of a command not acknowledged; the relay sends it");
            }
        }
        Err(e) => tracing::debug!(error = %e, "early copy of a command not published; the relay sends it"),
    }
    let deadline = tokio::time::Instant::from_std(started) + timeout;
    let answer = match tokio::time::timeout_at(deadline, replies.next()).await {
        Ok(Some(m)) => serde_json::from_slice::<Announced>(&m.payload).ok(),
        _ => None,
    };
    drop(replies);
    let outcome = match answer {
        Some(a) => Outcome::Replied { result: a.result, output: a.output },
        None => {
            // The announcement is at most once; the record is not.
            let mut meta = metadata(&claims.username, &claims.workspace_id, "http");
            meta.insert("instance".into(), s.instance.clone());
            execute(&s.device_commands, &tid, DeviceCommandCommand::Expire, meta)
                .await
                .map_err(crate::command_error)?;
            load(&s.device_commands, &tid).await.map_err(crate::command_error)?.outcome()
        }
    };
    shared::metrics::summary("hangar_device_command_seconds", &[]).observe(started.elapsed());
    let label = match &outcome {
        Outcome::Replied { result: Some(0), .. } => "ok",
        Outcome::Replied { .. } => "device_error",
        _ => "no_reply",
    };
    shared::metrics::counter("hangar_device_commands_total", &[("outcome", label)])
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match outcome {
        Outcome::Replied { result: Some(codes::OK), output } => Ok(output),
        Outcome::Replied { result: Some(code), .. } => Err(ApiError::code(
            code,
            match call.topic {
                CommandTopic::PropertySet => codes::property_set_text(code),
                CommandTopic::Services => codes::device_error_text(code),
            },
        )),
        Outcome::Replied { result: None, .. } => {
            Err(ApiError::code(codes::FAILED, "The device answered without a result."))
        }
        Outcome::Waiting | Outcome::Missing => Err(ApiError::code(
            codes::NO_REPLY,
            format!("No message reply received: the device did not answer within {} ms.", timeout.as_millis()),
        )),
    }
}
