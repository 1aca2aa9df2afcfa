//! `update_topo` (status): the gateway and its sub-devices come online, topology and version changes
//! are recorded, sub-devices that left go offline, and a dock's aircraft follows the dock's
//! workspace. Every decision is taken on the aggregates: the read models lag behind them.
//!
//! A malformed message (no `data`, a gateway without its model, no `sub_devices` list) never
//! changes what a gateway is: what is missing keeps its recorded value, and without a list the
//! topology stays as it was.

use shared::domain::device::DeviceCommand;
use shared::event_store::load;
use shared::protocol::topology::UpdateTopo;
use shared::protocol::Envelope;

use super::{exec, LastSeen};
use crate::AppState;

/// Domain of docks in the protocol's model keys.
const DOCK_DOMAIN: i64 = 3;

pub async fn update_topo(s: &AppState, seen: &LastSeen, gw: &str, env: &Envelope) -> anyhow::Result<()> {
    let Some(topo) = UpdateTopo::parse(gw, &env.data) else {
        tracing::warn!(gateway = gw, "update_topo without data; nothing changes");
        return Ok(());
    };
    exec(
        s,
        gw,
        DeviceCommand::ReportOnline {
            model: topo.gateway.model,
            thing_version: topo.gateway.thing_version,
            parent_sn: None,
            control_source: None,
        },
    )
    .await?;
    let Some(subs) = topo.sub_devices else {
        tracing::warn!(gateway = gw, "update_topo without sub_devices; topology unchanged");
        return Ok(());
    };
    let gateway = load(&s.devices, gw).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let before: Vec<String> = gateway.sub_devices().to_vec();
    let mut sns = Vec::with_capacity(subs.len());
    for sub in subs {
        seen.touch(&sub.sn).await;
        let cmd = DeviceCommand::ReportOnline {
            model: sub.model,
            thing_version: sub.thing_version,
            parent_sn: Some(gw.to_string()),
            control_source: sub.index,
        };
        exec(s, &sub.sn, cmd).await?;
        sns.push(sub.sn);
    }
    exec(s, gw, DeviceCommand::ReportTopology { sub_devices: sns.clone() }).await?;
    // sub-devices that left the gateway's topology are offline
    for sn in before.iter().filter(|sn| !sns.contains(sn)) {
        exec(s, sn, DeviceCommand::ReportOffline { reason: "left the gateway's topology".into() }).await?;
    }
    // a dock's aircraft belongs to the dock's workspace
    if let (Some(workspace_id), Some(model)) = (gateway.workspace_id(), gateway.model()) {
        if model.domain == DOCK_DOMAIN {
            for sn in &sns {
                let cmd = DeviceCommand::Bind {
                    workspace_id: workspace_id.to_string(),
                    user_id: String::new(),
                    nickname: None,
                    model: None,
                    by_user: false,
                };
                exec(s, sn, cmd).await?;
            }
        }
    }
    Ok(())
}
