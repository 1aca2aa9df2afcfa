//! Two bridge replicas on one broker share the device traffic through session slots; one killed
//! for good (SIGKILL, no MQTT DISCONNECT) strands no device: the other takes its slot over.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{consumer, kv};
use hangar::Components;
use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::devices::{device_client, prefix};
use crate::helpers::*;

const SLOTS: usize = 2;

/// A second Hangar process running only the bridge, on the same share group and slots.
fn bridge_process(app: &TestApp, client_id: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hangar"))
        .arg("serve")
        .env("HANGAR_COMPONENTS", "bridge")
        .env("HANGAR_LISTEN", "127.0.0.1:0")
        .env("HANGAR_DATABASE_URL", &app.config.database_url)
        .env("HANGAR_NATS_PREFIX", &app.config.nats_prefix)
        .env("HANGAR_JWT_SECRET", &app.config.jwt_secret)
        .env("HANGAR_STORAGE_DIR", &app.config.storage_dir)
        .env("HANGAR_MQTT_SHARE_GROUP", &app.config.mqtt_share_group)
        .env("HANGAR_MQTT_CLIENT_ID", client_id)
        .env("HANGAR_MQTT_SLOTS", SLOTS.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the second bridge process")
}

/// Who holds each slot's lease (`None` when free).
pub(crate) async fn holders(app: &TestApp, slots: usize) -> Vec<Option<String>> {
    let Ok(store) = app.js.get_key_value(mqtt_bridge::slots::bucket(&app.config.nats_prefix)).await else {
        return vec![None; slots];
    };
    let mut out = Vec::new();
    for i in 0..slots {
        let entry = store.entry(format!("{}.slot.{i}", app.config.mqtt_share_group)).await.ok().flatten();
        out.push(
            entry.filter(|e| e.operation == kv::Operation::Put).map(|e| String::from_utf8_lossy(&e.value).into_owned()),
        );
    }
    out
}

/// Messages stored under `filter` in `stream`.
async fn count(app: &TestApp, stream: String, filter: String) -> u64 {
    let stream = app.js.get_stream(stream).await.unwrap();
    let c: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: filter,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .unwrap();
    c.cached_info().num_pending
}

/// One `update_topo` stored and one reply sent by this installation. (The docks may hear more
/// than one reply: Hangars of tests running in parallel on the shared broker answer them too.)
async fn assert_handled_once(app: &TestApp, sn: &str) {
    let stored = count(app, app.names.device_in_stream(), app.names.device_in_subject(sn, "status")).await;
    assert_eq!(stored, 1, "{sn}: update_topo stored once");
    let replied = count(app, app.names.device_out_stream(), app.names.device_out_filter(Some(sn))).await;
    assert_eq!(replied, 1, "{sn}: answered once");
}

fn topo(sn: &str) -> Value {
    json!({"tid": format!("{sn}-topo"), "bid": "b", "timestamp": 1, "method": "update_topo",
        "data": {"domain": 3, "type": 2, "sub_type": 0, "thing_version": "1.2.0", "device_secret": "s", "nonce": "n",
            "sub_devices": []}})
}

/// A raw dock: its client, what arrives on its `status_reply`, when it sent `update_topo`.
struct Dock {
    sn: String,
    client: AsyncClient,
    replies: mpsc::UnboundedReceiver<(String, Value)>,
}

async fn docks(p: &str, from: usize, n: usize) -> Vec<Dock> {
    let mut out = Vec::new();
    for i in from..from + n {
        let sn = format!("{p}D{i:03}");
        let (client, replies) = device_client(&[format!("sys/product/{sn}/status_reply")]).await;
        out.push(Dock { sn, client, replies });
    }
    out
}

/// Publishes `update_topo` from every dock and returns how long each waited for its reply.
async fn announce(docks: &mut [Dock], within: Duration) -> Vec<Duration> {
    let started = Instant::now();
    for d in docks.iter() {
        d.client
            .publish(format!("sys/product/{}/status", d.sn), QoS::AtLeastOnce, false, topo(&d.sn).to_string())
            .await
            .unwrap();
    }
    let mut waited = Vec::new();
    for d in docks.iter_mut() {
        let left = within.saturating_sub(started.elapsed());
        let (_, reply) = tokio::time::timeout(left, d.replies.recv())
            .await
            .unwrap_or_else(|_| panic!("{} got no status_reply within {within:?}", d.sn))
            .unwrap();
        assert_eq!(reply["method"], "update_topo");
        waited.push(started.elapsed());
    }
    waited
}

#[tokio::test]
async fn a_bridge_replica_killed_for_good_strands_no_device() {
    let mut c = test_config();
    c.mqtt_client_id = format!("{}-bridge-a", c.nats_prefix);
    c.mqtt_share_group = c.nats_prefix.clone();
    c.mqtt_slots = SLOTS as u16;
    let app = TestApp::spawn_with(c, Components::ALL).await;
    let other = format!("{}-bridge-b", app.config.nats_prefix);
    let mut child = bridge_process(&app, &other);
    let mine = app.config.mqtt_client_id.clone();

    // They end with one slot each.
    wait_for("one slot each", Duration::from_secs(30), || async {
        let h = holders(&app, SLOTS).await;
        h.contains(&Some(mine.clone())) && h.contains(&Some(other.clone()))
    })
    .await;
    // The second process's slot is subscribed once its connection is up; give it a moment.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // While both run: every dock answered, exactly once.
    let p = prefix();
    let mut before = docks(&p, 0, 8).await;
    let waited = announce(&mut before, Duration::from_secs(5)).await;
    eprintln!("both replicas: status_reply after {waited:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for d in &before {
        assert_handled_once(&app, &d.sn).await;
    }

    // Killed for good: no DISCONNECT, its leases and its session stay behind.
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();

    // Eight new docks at once, then OSD through the failover: all answered, nothing lost.
    let mut after = docks(&p, 100, 8).await;
    const OSD: usize = 10;
    let osd = {
        let clients: Vec<(String, AsyncClient)> = after.iter().map(|d| (d.sn.clone(), d.client.clone())).collect();
        tokio::spawn(async move {
            for k in 0..OSD {
                for (sn, client) in &clients {
                    let body =
                        json!({"tid": format!("{sn}-osd-{k}"), "bid": "b", "timestamp": 1, "data": {"mode_code": 0}});
                    client
                        .publish(format!("thing/product/{sn}/osd"), QoS::AtLeastOnce, false, body.to_string())
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        })
    };
    let waited = announce(&mut after, Duration::from_secs(8)).await;
    let slowest = waited.iter().max().copied().unwrap_or_default();
    eprintln!("after the kill (+{:?}): status_reply after {waited:?}", killed.elapsed());
    osd.await.unwrap();

    wait_for("the survivor holds both slots", Duration::from_secs(10), || async {
        holders(&app, SLOTS).await.iter().all(|h| h.as_deref() == Some(mine.as_str()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for d in &after {
        assert_handled_once(&app, &d.sn).await;
        let osd = count(&app, app.names.telemetry_stream(), app.names.telemetry_subject(&d.sn, "osd")).await;
        assert_eq!(osd, OSD as u64, "{}: every OSD published through the failover stored once", d.sn);
    }
    assert!(slowest < Duration::from_secs(6), "slowest status_reply after the kill: {slowest:?}");

    // (stop also ends the slots' sessions on the broker and removes the lease bucket)
    app.stop().await;
}

/// An installation made by a bridge with other lease times (or the 30 s ack wait of older
/// versions) is brought to this one's on start, so that a dead replica's work is handed over in
/// the lease time and not in the old one.
#[tokio::test]
async fn a_bridge_brings_older_lease_and_ack_wait_settings_to_its_own() {
    let mut c = test_config();
    c.mqtt_client_id = format!("{}-bridge", c.nats_prefix);
    c.mqtt_share_group = c.nats_prefix.clone();
    let names = shared::nats::Names::new(&c.nats_prefix);
    let js = async_nats::jetstream::new(shared::nats::connect(&c).await.unwrap());
    shared::nats::ensure_streams(&js, &names, &c).await.unwrap();
    let old = Duration::from_secs(30);
    let out = js.get_stream(names.device_out_stream()).await.unwrap();
    let _: consumer::PullConsumer = out
        .create_consumer(consumer::pull::Config {
            durable_name: Some(names.consumer("mqtt_bridge_out")),
            description: Some("mqtt-bridge: publishes device messages to the broker".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: old,
            deliver_policy: consumer::DeliverPolicy::All,
            filter_subject: names.device_out_filter(None),
            max_ack_pending: 256,
            ..Default::default()
        })
        .await
        .unwrap();
    let bucket = mqtt_bridge::slots::bucket(&c.nats_prefix);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: Duration::from_secs(3),
        duplicate_window: Duration::from_secs(3),
        storage: async_nats::jetstream::stream::StorageType::Memory,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .unwrap();

    let app = TestApp::spawn_with(c, Components::ALL).await;
    let lease = Duration::from_millis(app.config.mqtt_slot_lease_ms);
    wait_for("the lease time and the outbound ack wait follow the configuration", Duration::from_secs(30), || async {
        let kv = app.js.get_stream(format!("KV_{bucket}")).await.unwrap().info().await.unwrap().config.max_age;
        let mut c: consumer::PullConsumer = out.get_consumer(&app.names.consumer("mqtt_bridge_out")).await.unwrap();
        let ack_wait = c.info().await.unwrap().config.ack_wait;
        kv == lease && ack_wait == lease
    })
    .await;
    app.stop().await;
}
