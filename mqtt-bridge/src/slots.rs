//! Session slots: how bridge replicas divide the device traffic so that none of it is stranded.
//!
//! Device messages reach the bridge through one MQTT shared subscription (`$share/<group>/…`). A
//! member of the group is a *session*, not a process: Mosquitto 2.0 keeps handing a persistent
//! session that is disconnected its round-robin share and queues it there until the session's
//! client comes back. A replica removed for good under its own client id would strand its share.
//!
//! So the group has a fixed number of members, the slots (`HANGAR_MQTT_SLOTS`): slot `i` is the
//! persistent session [`client_id`] `<group>-slot-<i>`, and whichever process holds the slot's
//! lease runs its connection (the inbound link of [`crate::inbound`]). Leases are entries of a
//! JetStream key-value bucket ([`bucket`]) whose entries expire after the lease time
//! (`HANGAR_MQTT_SLOT_LEASE_MS`, 1 s): a holder renews its leases every
//! `HANGAR_MQTT_SLOT_RENEW_MS` (250 ms) with a compare-and-set on the revision, and a free slot is
//! claimed with `create`, which fails while anyone holds it. When a process dies its leases
//! expire, the survivors claim its slots and resume the sessions: the broker delivers what it
//! queued meanwhile and redelivers the QoS 1 messages the dead process had not acked (JetStream's
//! duplicate window absorbs the copies it had already stored). Nothing is stranded, nothing lost.
//!
//! Balance: each process keeps a member entry alive, and holds at most `ceil(slots / members)`
//! slots. A process above its share lets a slot go: it drains and disconnects it (the session, and
//! whatever the broker queues for it, stays) and only then deletes the lease; a process below its
//! share claims free slots. A clean shutdown releases every slot the same way, so another process
//! takes over at once instead of after the lease expired. Leases carry the replica's name
//! (`HANGAR_MQTT_CLIENT_ID`): a replica restarted under the same name takes back the slots it
//! still holds without waiting for them to expire.
//!
//! If two processes ever run one slot at once (a lease expired during a long pause), the broker
//! keeps only the newest connection of a client id, and the older process learns at its next
//! renewal that the lease is gone; what it had not acked is redelivered to the newer one.
//!
//! EMQX (production) does the same as Mosquitto while a persistent member is disconnected: its
//! documentation says such a session keeps receiving its share of a shared subscription, queued
//! in the session (up to `mqueue` limits). What EMQX adds is redispatch: when a member's session
//! *ends* (its expiry interval passes, or a clean-start connect replaces it) the shared messages
//! still queued or in flight in it are dispatched to the other members instead of dropped. Slots
//! work unchanged on EMQX: a slot's session does not end, it is resumed by whoever takes the slot,
//! so the session expiry (`mqtt.session_expiry_interval`, 2 h by default) only has to outlast a
//! takeover, and the session queue (`mqtt.max_mqueue_len`) a few seconds of a slot's traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::TryStreamExt as _;
use shared::nats::Names;
use shared::{Config, Shutdown};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::inbound;
use crate::mqtt::BrokerUrl;

/// How long a lease lives without renewal: the longest a dead process's slots stay unserved.
fn lease_ttl(config: &Config) -> Duration {
    Duration::from_millis(config.mqtt_slot_lease_ms)
}

/// How often a holder renews its leases and looks for slots to claim or release.
fn renew_every(config: &Config) -> Duration {
    Duration::from_millis(config.mqtt_slot_renew_ms)
}
/// How often the slots' subscription state is folded into the bridge's.
const POLL: Duration = Duration::from_millis(50);

/// The key-value bucket of the slot leases of an installation (its NATS prefix).
pub fn bucket(nats_prefix: &str) -> String {
    let prefix = key_token(nats_prefix);
    if prefix.is_empty() {
        "hangar_bridge_slots".into()
    } else {
        format!("{prefix}_bridge_slots")
    }
}

/// The MQTT client id of slot `i` of a share group: the same in every replica, so that whoever
/// holds the slot resumes the one session the broker keeps for it.
pub fn client_id(share_group: &str, i: usize) -> String {
    format!("{share_group}-slot-{i}")
}

/// Ends the persistent sessions of every slot of the configured share group on the broker (a
/// clean-session connect under each slot's client id), so that the broker stops queueing device
/// messages for a group that is gone for good: a group taken down (a test's, a benchmark's, a
/// decommissioned installation's) would otherwise keep a copy of every device message until its
/// sessions expire. Never while a replica of the group runs: it would lose what was queued.
pub async fn forget_sessions(config: &Config) -> anyhow::Result<()> {
    let url = BrokerUrl::parse(&config.mqtt_url)?;
    let credentials =
        (!config.mqtt_username.is_empty()).then_some((config.mqtt_username.as_str(), config.mqtt_password.as_str()));
    for i in 0..usize::from(config.mqtt_slots) {
        let id = client_id(&config.mqtt_share_group, i);
        let options = crate::mqtt::options(&url, &id, Duration::from_secs(30), true, credentials);
        let (client, mut eventloop) = crate::mqtt::client(options, 10);
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = client.try_disconnect();
                    }
                    Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("ending the session {id}: {e}"),
            Err(_) => anyhow::bail!("ending the session {id}: the broker did not answer in 5 s"),
        }
    }
    Ok(())
}

/// Bucket names and keys allow letters, digits, `-` and `_` (and `.` between key tokens).
fn key_token(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn slot_key(group: &str, i: usize) -> String {
    format!("{}.slot.{i}", key_token(group))
}

fn member_prefix(group: &str) -> String {
    format!("{}.member.", key_token(group))
}

/// The most slots one of `members` processes should hold.
fn share(slots: usize, members: usize) -> usize {
    slots.div_ceil(members.max(1))
}

/// What a process does in one round: the slots it lets go and the free ones it tries to claim.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    release: Vec<usize>,
    claim: Vec<usize>,
}

fn plan(slots: usize, members: usize, held: &BTreeSet<usize>, free: &[usize]) -> Plan {
    let share = share(slots, members);
    let release = held.iter().rev().take(held.len().saturating_sub(share)).copied().collect();
    let claim = free.iter().take(share.saturating_sub(held.len())).copied().collect();
    Plan { release, claim }
}

/// One slot this process runs: its lease and its connection's tasks.
struct Slot {
    revision: u64,
    renewed: Instant,
    stop: Shutdown,
    /// Let go on purpose: the lease is deleted once the connection has drained.
    releasing: bool,
    /// The lease is gone (expired or taken): the connection stops and the lease is left alone.
    lost: bool,
    subscribed: watch::Receiver<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

/// What every slot connection needs.
pub(crate) struct Links {
    pub config: Config,
    pub url: BrokerUrl,
    pub js: jetstream::Context,
    pub names: Names,
    pub filters: Vec<String>,
}

impl Links {
    /// Starts the inbound link of slot `i`: its MQTT event loop and its JetStream worker.
    fn start(&self, i: usize, stop: Shutdown) -> (JoinSet<anyhow::Result<()>>, watch::Receiver<bool>) {
        let id = client_id(&self.config.mqtt_share_group, i);
        let link = inbound::Inbound::new(&self.config, &self.url, &id);
        let acker = inbound::Acker::new(link.client.clone(), link.generation.clone());
        let (tx, rx) = mpsc::channel(inbound::CHANNEL);
        let (subscribed_tx, subscribed) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(inbound::mqtt_loop(
            link.eventloop,
            link.client,
            link.generation,
            tx,
            self.filters.clone(),
            subscribed_tx,
            stop.clone(),
        ));
        tasks.spawn(inbound::worker(self.js.clone(), self.names.clone(), self.config.clone(), rx, acker, stop));
        (tasks, subscribed)
    }
}

/// Opens (or creates) the lease bucket, retrying until NATS answers or shutdown.
///
/// The bucket's stream is made here as a key-value bucket's would be: async-nats's own
/// `create_key_value` first reads the account's limits in a form nats-server 2.9 does not send.
async fn open_bucket(js: &jetstream::Context, config: &Config, shutdown: &Shutdown) -> Option<kv::Store> {
    let name = bucket(&config.nats_prefix);
    let ttl = lease_ttl(config);
    let mut backoff = crate::mqtt::Backoff::default();
    loop {
        let wanted = jetstream::stream::Config {
            name: format!("KV_{name}"),
            description: Some("mqtt-bridge session slot leases".into()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age: ttl,
            // A lease is only news for its lifetime: a longer duplicate window is refused.
            duplicate_window: ttl,
            storage: jetstream::stream::StorageType::Memory,
            num_replicas: config.nats_stream_replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        };
        let created = js.get_or_create_stream(wanted.clone()).await.map_err(anyhow::Error::from);
        // A bucket made under another lease time expires leases on its own clock: bring it to ours.
        let created = match created {
            Ok(stream) if stream.cached_info().config.max_age != ttl => {
                js.update_stream(wanted).await.map(|_| ()).context("changing the lease time of the slot bucket")
            }
            other => other.map(|_| ()),
        };
        let store = match created {
            Ok(()) => js.get_key_value(&name).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match store {
            Ok(store) => return Some(store),
            Err(e) => {
                tracing::warn!(bucket = %name, error = %e, "mqtt-bridge cannot open its slot leases yet; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff.next_delay().max(Duration::from_millis(500))) => {}
        }
    }
}

/// Holds this process's share of the slots and runs a connection for each, until shutdown; then
/// drains every connection and releases its leases. `subscribed` is true while every slot this
/// process holds has its subscriptions in place (also when it holds none: the others serve them).
#[tracing::instrument(name = "bridge_slots", skip_all, fields(holder = %links.config.mqtt_client_id))]
pub(crate) async fn run(links: Links, subscribed: watch::Sender<bool>, shutdown: Shutdown) -> anyhow::Result<()> {
    let Some(kv) = open_bucket(&links.js, &links.config, &shutdown).await else { return Ok(()) };
    let slots = usize::from(links.config.mqtt_slots);
    let group = links.config.mqtt_share_group.clone();
    let holder = links.config.mqtt_client_id.clone();
    let member_key = format!("{}{}", member_prefix(&group), key_token(&holder));
    let mut held: BTreeMap<usize, Slot> = BTreeMap::new();
    let mut rounds = 0u64;
    let mut next_round = Instant::now();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let outcome = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            _ = tick.tick() => {}
        }
        if let Err(e) = reap(&kv, &group, &mut held).await {
            break Err(e);
        }
        if Instant::now() >= next_round {
            next_round = Instant::now() + renew_every(&links.config);
            let r = round(&kv, &links, slots, &group, &holder, &member_key, &mut held, &shutdown).await;
            match r {
                Ok(()) => rounds += 1,
                Err(e) => tracing::warn!(error = ?e, "mqtt-bridge could not check its slot leases; retrying"),
            }
        }
        let ready = rounds > 0 && held.values().filter(|s| !s.releasing && !s.lost).all(|s| *s.subscribed.borrow());
        subscribed.send_replace(ready);
    };
    subscribed.send_replace(false);

    // Let every slot go at once: drain, disconnect (the sessions stay), then delete the leases so
    // the other replicas take over without waiting for them to expire.
    for slot in held.values_mut() {
        slot.releasing = true;
        slot.stop.cancel();
    }
    let mut first_error = outcome.err();
    for (i, mut slot) in std::mem::take(&mut held) {
        while let Some(joined) = slot.tasks.join_next().await {
            if let Err(e) = joined.context("mqtt-bridge slot task panicked").and_then(|r| r) {
                first_error.get_or_insert(e);
            }
        }
        if !slot.lost {
            if let Err(e) = kv.delete_expect_revision(slot_key(&group, i), Some(slot.revision)).await {
                tracing::warn!(slot = i, error = %e, "could not release a slot lease; it expires on its own");
            }
        }
    }
    let _ = kv.delete(&member_key).await;
    tracing::info!("mqtt-bridge released its slots");
    first_error.map_or(Ok(()), Err)
}

/// Collects slot connections that ended: a released one gives its lease back, a lost one is
/// forgotten, and one that stopped by itself is an error of the bridge.
async fn reap(kv: &kv::Store, group: &str, held: &mut BTreeMap<usize, Slot>) -> anyhow::Result<()> {
    let mut ended = Vec::new();
    for (i, slot) in held.iter_mut() {
        while let Some(joined) = slot.tasks.try_join_next() {
            joined.context("mqtt-bridge slot task panicked").and_then(|r| r)?;
            if !slot.stop.is_cancelled() {
                anyhow::bail!("the connection of mqtt-bridge slot {i} stopped by itself");
            }
        }
        if slot.tasks.is_empty() {
            ended.push(*i);
        }
    }
    for i in ended {
        let Some(slot) = held.remove(&i) else { continue };
        if slot.releasing && !slot.lost {
            match kv.delete_expect_revision(slot_key(group, i), Some(slot.revision)).await {
                Ok(()) => tracing::info!(slot = i, "mqtt-bridge released a slot"),
                Err(e) => tracing::warn!(slot = i, error = %e, "could not release a slot lease; it expires on its own"),
            }
        }
    }
    Ok(())
}

/// One round: renew this process's member entry and leases, then release or claim slots so that
/// it holds its share.
#[allow(clippy::too_many_arguments)]
async fn round(
    kv: &kv::Store,
    links: &Links,
    slots: usize,
    group: &str,
    holder: &str,
    member_key: &str,
    held: &mut BTreeMap<usize, Slot>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let value = Bytes::from(holder.to_string());
    kv.put(member_key, value.clone()).await.context("renewing the member entry")?;

    for (&i, slot) in held.iter_mut().filter(|(_, s)| !s.lost) {
        match kv.update(slot_key(group, i), value.clone(), slot.revision).await {
            Ok(revision) => {
                slot.revision = revision;
                slot.renewed = Instant::now();
            }
            Err(e) => {
                let gone = e.kind() == kv::UpdateErrorKind::WrongLastRevision;
                if gone || slot.renewed.elapsed() >= lease_ttl(&links.config) {
                    // Someone else may run this session by now: stop at once, leave the lease.
                    tracing::warn!(slot = i, error = %e, "mqtt-bridge lost the lease of a slot; letting it go");
                    slot.lost = true;
                    slot.stop.cancel();
                }
            }
        }
    }

    let mut members = 0usize;
    let mut keys = kv.keys().await.context("listing the members")?;
    let prefix = member_prefix(group);
    while let Some(key) = keys.try_next().await.context("listing the members")? {
        members += usize::from(key.starts_with(&prefix));
    }

    let mut free = Vec::new();
    let others: Vec<usize> = (0..slots).filter(|i| !held.contains_key(i)).collect();
    for i in others {
        match kv.entry(slot_key(group, i)).await.context("reading a slot lease")? {
            None => free.push(i),
            Some(e) if e.operation != kv::Operation::Put => free.push(i),
            // Held under this replica's name by a previous run of it: take it back at once.
            Some(e) if e.value == value.as_ref() => {
                if let Ok(revision) = kv.update(slot_key(group, i), value.clone(), e.revision).await {
                    tracing::info!(slot = i, "mqtt-bridge took back a slot it held before a restart");
                    start(links, i, revision, held, shutdown);
                }
            }
            Some(_) => {}
        }
    }

    let mine: BTreeSet<usize> = held.iter().filter(|(_, s)| !s.releasing && !s.lost).map(|(i, _)| *i).collect();
    let Plan { release, claim } = plan(slots, members, &mine, &free);
    for i in release {
        if let Some(slot) = held.get_mut(&i) {
            tracing::info!(slot = i, members, "mqtt-bridge holds more than its share; releasing a slot");
            slot.releasing = true;
            slot.stop.cancel();
        }
    }
    for i in claim {
        match kv.create(slot_key(group, i), value.clone()).await {
            Ok(revision) => {
                tracing::info!(slot = i, members, "mqtt-bridge claimed a slot");
                start(links, i, revision, held, shutdown);
            }
            // Another process was quicker.
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => tracing::debug!(slot = i, error = %e, "could not claim a slot"),
        }
    }
    Ok(())
}

fn start(links: &Links, i: usize, revision: u64, held: &mut BTreeMap<usize, Slot>, shutdown: &Shutdown) {
    let stop = shutdown.child_token();
    let (tasks, subscribed) = links.start(i, stop.clone());
    held.insert(i, Slot { revision, renewed: Instant::now(), stop, releasing: false, lost: false, subscribed, tasks });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[usize]) -> BTreeSet<usize> {
        v.iter().copied().collect()
    }

    #[test]
    fn one_process_takes_every_slot() {
        assert_eq!(plan(1, 1, &set(&[]), &[0]), Plan { release: vec![], claim: vec![0] });
        assert_eq!(plan(4, 1, &set(&[1]), &[0, 2, 3]), Plan { release: vec![], claim: vec![0, 2, 3] });
    }

    #[test]
    fn a_process_above_its_share_releases_its_highest_slots() {
        assert_eq!(plan(2, 2, &set(&[0, 1]), &[]), Plan { release: vec![1], claim: vec![] });
        assert_eq!(plan(4, 3, &set(&[0, 1, 2, 3]), &[]), Plan { release: vec![3, 2], claim: vec![] });
    }

    #[test]
    fn a_process_below_its_share_claims_free_slots() {
        assert_eq!(plan(2, 2, &set(&[]), &[1]), Plan { release: vec![], claim: vec![1] });
        assert_eq!(plan(4, 2, &set(&[0]), &[1, 2, 3]), Plan { release: vec![], claim: vec![1] });
        // more processes than slots: some hold none
        assert_eq!(plan(2, 3, &set(&[]), &[]), Plan { release: vec![], claim: vec![] });
    }

    #[test]
    fn names_are_valid_for_the_bucket_and_the_broker() {
        assert_eq!(bucket("hangar_test_ab12"), "hangar_test_ab12_bridge_slots");
        assert_eq!(bucket(""), "hangar_bridge_slots");
        assert_eq!(bucket("a.b"), "a_b_bridge_slots");
        assert_eq!(slot_key("my group/x", 3), "my_group_x.slot.3");
        assert_eq!(client_id("hangar", 0), "hangar-slot-0");
    }
}
