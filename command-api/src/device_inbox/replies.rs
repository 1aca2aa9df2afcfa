//! `services_reply` and `property/set_reply`: the device's answer to a command is recorded on the
//! command (keyed by `tid`) and announced on the command's reply subject, where the process that
//! holds the caller's request waits, whichever process that is. A reply to a command Hangar never
//! sent is logged and kept raw (it stays in DEVICE_IN).

use shared::domain::device_command::{DeviceCommandCommand, DeviceCommandError};
use shared::event_store::{execute, metadata};
use shared::protocol::services::Reply;
use shared::protocol::Envelope;

use crate::device_service::Announced;
use crate::AppState;

pub async fn reply(s: &AppState, gw: &str, env: &Envelope, received_at_ms: i64) -> anyhow::Result<()> {
    if env.tid.is_empty() {
        tracing::warn!(gateway = gw, method = env.method, "reply without tid; kept raw");
        return Ok(());
    }
    let reply = Reply::from_data(&env.data);
    let cmd = DeviceCommandCommand::RecordReply {
        bid: env.bid.clone(),
        result: reply.result,
        output: reply.output.clone(),
        received_at_ms,
    };
    let mut meta = metadata("", "", "mqtt");
    meta.insert("instance".into(), s.instance.clone());
    match execute(&s.device_commands, &env.tid, cmd, meta).await {
        Ok(()) => {}
        Err(cqrs_es::AggregateError::UserError(e @ (DeviceCommandError::Unknown | DeviceCommandError::OtherBid))) => {
            tracing::warn!(gateway = gw, tid = env.tid, error = %e, "reply to no command of Hangar's; kept raw");
            return Ok(());
        }
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    }
    let announced = serde_json::to_vec(&Announced { result: reply.result, output: reply.output })?;
    s.js.client().publish(s.names.command_reply_subject(&env.tid), announced.into()).await?;
    Ok(())
}
