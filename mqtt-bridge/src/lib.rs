//! mqtt-bridge: the MQTT ⇄ JetStream protocol adapter between DJI devices and Hangar.
//!
//! Not built yet: device traffic (topology, telemetry, events, requests) arrives with the devices
//! work. Until then `run` only waits for shutdown so that the process layout, the all-in-one binary
//! and the Kubernetes manifests are already in their final shape.

use shared::{Config, Shutdown};

pub async fn run(_config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::warn!("mqtt-bridge does not handle device traffic yet");
    shutdown.cancelled().await;
    Ok(())
}
