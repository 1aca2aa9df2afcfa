//! mqtt-bridge: the MQTT ⇄ JetStream protocol adapter between DJI devices and Hangar. It knows
//! DJI's topics and envelope, not the domain: it keeps every device message exactly as it
//! arrived, and publishes what the rest of Hangar wants to say to devices.
//!
//! ```text
//! dock ─MQTT─► broker ─► inbound ─► DEVICE_IN  dev.in.<gateway_sn>.<kind>
//!                                └► TELEMETRY tm.<sn>.<osd|state>
//! DEVICE_OUT dev.out.<gateway_sn>.<kind> ─► outbound ─► broker ─MQTT─► dock
//! ```
//!
//! Nothing is lost between the two: a device's QoS 1 publish is acked to the broker only after
//! JetStream stored it, and a JetStream message is acked only after the broker's PubAck. Either
//! side redelivers what the bridge did not confirm, and JetStream's duplicate window (keyed on
//! `<topic>/<tid>`) absorbs MQTT redeliveries.
//!
//! Replicas share the device traffic through one MQTT shared-subscription group of a fixed
//! number of persistent sessions, the slots (`HANGAR_MQTT_SLOTS`); each replica runs the slots it
//! holds a lease on in NATS, and the slots of a replica that is gone are taken over by the others
//! within seconds, with everything the broker queued for them (see [`slots`]).
//!
//! - [`topic`]: the DJI topics: subscriptions, what a topic says about device and kind.
//! - [`slots`]: which replica runs which slot's session: leases, balance, takeover.
//! - `inbound`: MQTT → JetStream for one slot (event-loop task and publishing worker).
//! - `outbound`: JetStream → MQTT (pull consumer and its own MQTT connection).
//! - [`mqtt`]: broker URLs, client options (TCP_NODELAY on), reconnect backoff.
//! - [`sim`]: a fleet of simulated docks for tests, demos and benchmarks (binary `dock-sim`).
//!
//! Metrics: `hangar_bridge_inbound_total{kind}`, `hangar_bridge_outbound_total{kind}`,
//! `hangar_bridge_jetstream_errors_total`, `hangar_bridge_connected{link}` (1 while an inbound
//! (slot) or the outbound connection is up).

mod inbound;
pub mod mqtt;
mod outbound;
pub mod sim;
pub mod slots;
pub mod topic;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use shared::nats::Names;
use shared::{Config, Shutdown};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use mqtt::{BrokerUrl, MAX_PACKET_BYTES};

/// Header: the MQTT topic a message came from (inbound) or goes to (outbound, required); and when
/// the bridge received it (RFC 3339, microseconds, UTC). Shared with the device inbox.
pub use shared::protocol::{H_MQTT_TOPIC, H_RECEIVED_AT};
/// Header: why an inbound message is unusual (`invalid_json`, `not_an_object`, `too_large`,
/// `unknown_topic`); absent on normal messages.
pub const H_ANOMALY: &str = "Hangar-Anomaly";
/// Header: `<i>/<n>` on the pieces of a message too large for one NATS message (1-based); the
/// pieces share subject and topic and are published in order.
pub const H_CHUNK: &str = "Hangar-Chunk";

/// A running bridge: its tasks, and whether its subscriptions are in place.
pub struct Bridge {
    tasks: JoinSet<anyhow::Result<()>>,
    subscribed: watch::Receiver<bool>,
    stop: Shutdown,
    nats: async_nats::Client,
}

impl Bridge {
    /// Connects to NATS, creates the streams and starts the inbound and outbound links. The MQTT
    /// connections are made in the background and retried forever, so a broker that is down does
    /// not keep the bridge (or the all-in-one binary) from starting.
    pub async fn start(config: Config, shutdown: Shutdown) -> anyhow::Result<Self> {
        let url = BrokerUrl::parse(&config.mqtt_url)?;
        let stop = shutdown.child_token();
        let (subscribed_tx, subscribed) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let nats = shared::nats::connect(&config).await?;
        let js = jetstream::new(nats.clone());
        let names = Names::new(&config.nats_prefix);
        let mut backoff = mqtt::Backoff::default();
        while let Err(e) = shared::nats::ensure_streams(&js, &names, &config).await {
            let delay = backoff.next_delay().max(Duration::from_millis(500));
            tracing::warn!(error = ?e, "mqtt-bridge cannot create its streams yet; retrying");
            tokio::select! {
                _ = stop.cancelled() => return Ok(Self { tasks, subscribed, stop, nats }),
                _ = tokio::time::sleep(delay) => {}
            }
        }

        let filters = topic::subscriptions(&config.mqtt_share_group, &config.mqtt_extra_subscriptions);
        let links =
            slots::Links { config: config.clone(), url: url.clone(), js: js.clone(), names: names.clone(), filters };
        tasks.spawn(slots::run(links, subscribed_tx, stop.clone()));

        let outbound = outbound::Outbound::new(&config, &url);
        let (ids_tx, ids_rx) = mpsc::unbounded_channel();
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let (link_tx, link_rx) = watch::channel(false);
        tasks.spawn(outbound::mqtt_loop(outbound.eventloop, ids_rx, outcomes_tx, link_tx, stop.clone()));
        let ack_wait = Duration::from_millis(config.mqtt_slot_lease_ms);
        tasks.spawn(outbound::feeder(js, names, ack_wait, outbound.client, ids_tx, outcomes_rx, link_rx, stop.clone()));

        tracing::info!(
            broker = %config.mqtt_url,
            client_id = %config.mqtt_client_id,
            slots = config.mqtt_slots,
            "mqtt-bridge started"
        );
        Ok(Self { tasks, subscribed, stop, nats })
    }

    /// Turns true once the broker confirmed the subscriptions, false while disconnected. Devices'
    /// messages published before the first subscription are not for this bridge to see.
    pub fn subscribed(&self) -> watch::Receiver<bool> {
        self.subscribed.clone()
    }

    /// What `/readyz` checks for the bridge: NATS with JetStream, and the broker's subscriptions.
    pub fn readiness(&self) -> shared::health::Readiness {
        shared::health::Readiness::new().nats(self.nats.clone()).mqtt(self.subscribed())
    }

    /// Waits until every task finished (after shutdown). If one fails, the others are stopped
    /// and its error is returned.
    pub async fn join(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.context("mqtt-bridge task panicked").and_then(|r| r);
            if let Err(e) = result {
                tracing::error!(error = ?e, "mqtt-bridge task failed; stopping the bridge");
                self.stop.cancel();
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Runs the bridge until `shutdown`, then finishes the messages in hand and disconnects.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    Bridge::start(config, shutdown).await?.join().await
}

/// Runs the bridge as its own process, with `/healthz`, `/readyz` and `/metrics` on `config.listen`.
pub async fn run_standalone(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let bridge = Bridge::start(config.clone(), shutdown.clone()).await?;
    shared::health::serve_alongside(config.listen, bridge.readiness(), shutdown, bridge.join()).await
}
