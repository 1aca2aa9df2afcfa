//! State messages (`thing/product/{sn}/state`, from TELEMETRY): firmware version changes, the
//! live-stream capacity (`live_capacity`), and who controls the aircraft and its payloads
//! (`control_source`, `payloads`), which the Dock controller reads before grabbing authority and
//! the web client gets as `control_source_change`.

use serde_json::Value;
use shared::domain::device::DeviceCommand;
use shared::protocol::topology::ControlState;
use shared::protocol::Envelope;

use super::exec;
use crate::AppState;

pub async fn state(s: &AppState, sn: &str, env: &Envelope) -> anyhow::Result<()> {
    if let Some(v) = env.data.get("firmware_version").and_then(Value::as_str) {
        exec(s, sn, DeviceCommand::ReportFirmware { firmware_version: v.to_string() }).await?;
    }
    // `live_capacity` (docks, remote controllers): what the live-stream endpoints offer
    if let Some(capacity) = env.data.get("live_capacity").filter(|c| c.is_object()) {
        exec(s, sn, DeviceCommand::ReportLiveCapacity { capacity: capacity.clone() }).await?;
    }
    let control = ControlState::parse(&env.data);
    if !control.is_empty() {
        exec(s, sn, DeviceCommand::ReportControl { flight: control.control_source, payloads: control.payloads })
            .await?;
    }
    Ok(())
}
