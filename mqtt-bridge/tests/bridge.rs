//! mqtt-bridge against the real Mosquitto and NATS JetStream on this machine.
//!
//! Every test has its own NATS prefix (streams `TB<hex>…`), MQTT client id, shared-subscription
//! group and serial numbers, and removes its streams and MQTT session at the end, pass or fail.
//! Bridges of tests running at the same time all see every device topic (each through its own
//! group), so assertions look only at the test's own serial numbers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use mqtt_bridge::sim::{Fleet, FleetConfig};
use mqtt_bridge::{Bridge, H_ANOMALY, H_CHUNK, H_MQTT_TOPIC, H_RECEIVED_AT, MAX_PACKET_BYTES};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::{json, Value};
use shared::nats::Names;
use shared::{Config, Shutdown};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

/// One test's world: configuration, names, JetStream, and a serial-number prefix.
#[derive(Clone)]
struct Env {
    config: Config,
    names: Names,
    js: jetstream::Context,
    /// Upper-case tag for serial numbers, e.g. `TB1A2B3C4D`.
    sn: String,
}

/// Runs `body` in a fresh environment and cleans up afterwards even if it panics.
async fn with_env<F, Fut>(adjust: impl FnOnce(&mut Config), body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tag = format!("tb{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut config = Config::defaults();
    config.nats_prefix = tag.clone();
    config.mqtt_client_id = format!("{tag}-bridge");
    config.mqtt_share_group = tag.clone();
    adjust(&mut config);
    let nats = shared::nats::connect(&config).await.expect("NATS");
    let env = Env { names: Names::new(&tag), js: jetstream::new(nats), sn: tag.to_ascii_uppercase(), config };

    let outcome = tokio::spawn(body(env.clone())).await;

    for s in [
        env.names.es_stream(),
        env.names.device_in_stream(),
        env.names.device_out_stream(),
        env.names.telemetry_stream(),
    ] {
        let _ = env.js.delete_stream(&s).await;
    }
    // The bridge's persistent session would otherwise keep queueing every device topic forever.
    forget_session(&mqtt_bridge::slots::client_id(&env.config.mqtt_share_group, 0)).await;
    let _ = env.js.delete_key_value(mqtt_bridge::slots::bucket(&env.config.nats_prefix)).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A bridge running in its own task, as the real process would.
struct Running {
    task: JoinHandle<anyhow::Result<()>>,
    shutdown: Shutdown,
}

impl Env {
    /// Starts a bridge and waits until its subscriptions are in place.
    async fn start_bridge(&self) -> Running {
        let shutdown = Shutdown::new();
        let bridge = Bridge::start(self.config.clone(), shutdown.clone()).await.expect("bridge starts");
        let mut subscribed = bridge.subscribed();
        tokio::time::timeout(WAIT, subscribed.wait_for(|s| *s)).await.expect("bridge subscribed in time").unwrap();
        Running { task: tokio::spawn(bridge.join()), shutdown }
    }

    fn topic(&self, sn: &str, kind: &str) -> String {
        format!("thing/product/{sn}/{kind}")
    }

    /// Messages of `stream` under `filter`, waiting until there are at least `at_least` (or the
    /// wait runs out), then a little longer so that extra messages would be seen too.
    async fn read(&self, stream: &str, filter: &str, at_least: usize) -> Vec<jetstream::Message> {
        let stream = self.js.get_stream(stream).await.expect("stream exists");
        let consumer: consumer::PullConsumer = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: filter.to_string(),
                ack_policy: consumer::AckPolicy::None,
                deliver_policy: consumer::DeliverPolicy::All,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .expect("ephemeral consumer");
        let mut out = Vec::new();
        let deadline = Instant::now() + WAIT * 2;
        let mut settle_until: Option<Instant> = None;
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_millis(300))
                .messages()
                .await
                .expect("fetch");
            while let Some(m) = batch.next().await {
                out.push(m.expect("message"));
            }
            let now = Instant::now();
            if out.len() >= at_least && settle_until.is_none() {
                settle_until = Some(now + Duration::from_millis(700));
            }
            if settle_until.is_some_and(|t| now >= t) || now >= deadline {
                return out;
            }
        }
    }

    async fn put_device_out(&self, gateway: &str, kind: &str, topic: Option<&str>, body: &[u8]) {
        let mut headers = HeaderMap::new();
        if let Some(t) = topic {
            headers.insert(H_MQTT_TOPIC, t);
        }
        self.js
            .publish_with_headers(self.names.device_out_subject(gateway, kind), headers, Bytes::copy_from_slice(body))
            .await
            .expect("publish")
            .await
            .expect("JetStream ack");
    }
}

impl Running {
    /// A crash: every task of the bridge is dropped where it stands.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task).await.expect("bridge stops in time").unwrap().expect("clean stop");
    }
}

/// A plain MQTT client, as a device or a test would use.
struct Device {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Publish>,
    acked: Arc<AtomicU64>,
    subacks: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Device {
    async fn connect(id: &str) -> Self {
        Self::connect_with(id, true).await
    }

    /// `clean_session = false`: the broker keeps the subscriptions and queues QoS 1 messages
    /// while the client is away, as it does for the bridge's slots.
    async fn connect_persistent(id: &str) -> Self {
        Self::connect_with(id, false).await
    }

    async fn connect_with(id: &str, clean_session: bool) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", 1883);
        options.set_clean_session(clean_session);
        options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_inflight(100);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, incoming) = mpsc::unbounded_channel();
        let acked = Arc::new(AtomicU64::new(0));
        let subacks = Arc::new(AtomicU64::new(0));
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let mut connected_tx = Some(connected_tx);
        let (counter, suback_counter) = (acked.clone(), subacks.clone());
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        suback_counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, connected_rx).await.expect("MQTT connect in time").unwrap();
        Self { client, incoming, acked, subacks, task }
    }

    async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("queue publish");
    }

    /// Waits until the broker acked `n` publishes of this client.
    async fn wait_acked(&self, n: u64) {
        let deadline = Instant::now() + WAIT * 3;
        while self.acked.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "broker acked {} of {n}", self.acked.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn subscribe(&mut self, filter: &str) {
        let before = self.subacks.load(Ordering::Relaxed);
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let deadline = Instant::now() + WAIT;
        while self.subacks.load(Ordering::Relaxed) == before {
            assert!(Instant::now() < deadline, "no SubAck");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn next_message(&mut self) -> Publish {
        tokio::time::timeout(WAIT, self.incoming.recv()).await.expect("MQTT message in time").expect("connection task")
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Removes a persistent session from the broker: a clean-session connect replaces it.
async fn forget_session(client_id: &str) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", 1883);
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_disconnect();
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn header(m: &jetstream::Message, name: &str) -> Option<String> {
    m.headers.as_ref()?.get(name).map(|v| v.as_str().to_string())
}

fn msg_id(m: &jetstream::Message) -> Option<String> {
    m.headers.as_ref()?.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_string())
}

fn envelope(tid: &str, extra: Value) -> Vec<u8> {
    let mut v =
        json!({"tid": tid, "bid": uuid::Uuid::new_v4().to_string(), "timestamp": Utc::now().timestamp_millis()});
    if let (Value::Object(base), Value::Object(more)) = (&mut v, extra) {
        base.extend(more);
    }
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn osd_reaches_telemetry_with_topic_time_and_exact_bytes() {
    with_env(|_| {}, |env| async move {
        let bridge = env.start_bridge().await;
        let device = Device::connect(&format!("{}-dev", env.sn)).await;
        let sn = format!("{}DOCK0001", env.sn);
        let topic = env.topic(&sn, "osd");
        // Deliberately unusual formatting: the bridge must not re-serialise.
        let body = format!(
            "{{ \"tid\" : \"{}\", \"bid\":\"b\", \"timestamp\": 1700000000000, \"gateway\":\"{sn}\", \"data\": {{\"mode_code\": 0, \"latitude\": 22.5}} }}",
            uuid::Uuid::new_v4()
        );
        let before = Utc::now();
        device.publish(&topic, body.clone()).await;

        let got = env.read(&env.names.telemetry_stream(), &env.names.telemetry_filter(Some(&sn)), 1).await;
        assert_eq!(got.len(), 1);
        let m = &got[0];
        assert_eq!(m.subject.as_str(), env.names.telemetry_subject(&sn, "osd"));
        assert_eq!(m.payload.as_ref(), body.as_bytes());
        assert_eq!(header(m, H_MQTT_TOPIC).as_deref(), Some(topic.as_str()));
        assert_eq!(header(m, H_ANOMALY), None);
        let at = header(m, H_RECEIVED_AT).expect("received-at header");
        assert!(at.ends_with('Z') && at.split('.').nth(1).map(|f| f.len()) == Some(7), "micros, UTC: {at}");
        let at: DateTime<Utc> = DateTime::parse_from_rfc3339(&at).unwrap().into();
        assert!(at >= before - chrono::Duration::milliseconds(1) && at <= Utc::now(), "{at}");
        assert!(msg_id(m).unwrap().starts_with(&format!("{topic}/")));
        // telemetry does not also land in DEVICE_IN
        assert!(env.read(&env.names.device_in_stream(), &env.names.device_in_filter(Some(&sn)), 0).await.is_empty());
        bridge.stop().await;
    })
    .await;
}

#[tokio::test]
async fn events_reach_device_in() {
    with_env(|_| {}, |env| async move {
        let bridge = env.start_bridge().await;
        let device = Device::connect(&format!("{}-dev", env.sn)).await;
        let sn = format!("{}DOCK0001", env.sn);
        let body = envelope(
            "ev-1",
            json!({"gateway": sn, "method": "cover_open", "need_reply": 1, "data": {"result": 0, "output": {"status": "in_progress", "progress": {"percent": 40}}}}),
        );
        device.publish(&env.topic(&sn, "events"), body.clone()).await;
        device.publish(&format!("sys/product/{sn}/status"), envelope("topo-1", json!({"method": "update_topo", "data": {}}))).await;
        device.publish(&env.topic(&sn, "requests"), envelope("req-1", json!({"method": "config", "data": {}}))).await;
        device.publish(&env.topic(&sn, "services_reply"), envelope("sr-1", json!({"method": "cover_open", "data": {"result": 0}}))).await;
        device.publish(&env.topic(&sn, "property/set_reply"), envelope("ps-1", json!({"data": {"height_limit": {"result": 0}}}))).await;

        let got = env.read(&env.names.device_in_stream(), &env.names.device_in_filter(Some(&sn)), 5).await;
        let subjects: Vec<&str> = got.iter().map(|m| m.subject.as_str()).collect();
        let kinds = ["events", "status", "requests", "services_reply", "property_set_reply"];
        assert_eq!(subjects, kinds.map(|k| env.names.device_in_subject(&sn, k)).iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(got[0].payload.as_ref(), body.as_slice());
        assert_eq!(msg_id(&got[0]).as_deref(), Some(format!("{}/ev-1", env.topic(&sn, "events")).as_str()));
        bridge.stop().await;
    })
    .await;
}

#[tokio::test]
async fn odd_messages_are_kept_raw_and_the_next_one_still_goes_through() {
    with_env(
        |c| c.mqtt_extra_subscriptions = vec!["thing/product/+/brand_new_kind".into()],
        |env| async move {
            let bridge = env.start_bridge().await;
            let device = Device::connect(&format!("{}-dev", env.sn)).await;
            let sn = format!("{}DOCK0001", env.sn);

            let invalid = b"{\"tid\": \"x\", oops".to_vec();
            let big = envelope("big-1", json!({"data": {"padding": "x".repeat(200 * 1024)}}));
            let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
            let unknown = envelope("new-1", json!({"method": "something_new", "data": {}}));
            let normal = envelope("after-1", json!({"method": "hms", "data": {"list": []}}));

            device.publish(&env.topic(&sn, "events"), invalid.clone()).await;
            device.publish(&env.topic(&sn, "osd"), big.clone()).await;
            device.publish(&env.topic(&sn, "state"), binary.clone()).await;
            device.publish(&env.topic(&sn, "brand_new_kind"), unknown.clone()).await;
            device.publish(&env.topic(&sn, "events"), normal.clone()).await;

            let inn = env.read(&env.names.device_in_stream(), &env.names.device_in_filter(Some(&sn)), 4).await;
            assert_eq!(inn.len(), 4, "{:?}", inn.iter().map(|m| &m.subject).collect::<Vec<_>>());
            let expect = [
                ("events", &invalid, Some("invalid_json")),
                ("state", &binary, Some("invalid_json")),
                ("unknown", &unknown, Some("unknown_topic")),
                ("events", &normal, None),
            ];
            for (m, (kind, body, anomaly)) in inn.iter().zip(expect) {
                assert_eq!(m.subject.as_str(), env.names.device_in_subject(&sn, kind));
                assert_eq!(m.payload.as_ref(), body.as_slice(), "{kind}");
                assert_eq!(header(m, H_ANOMALY).as_deref(), anomaly, "{kind}");
                assert!(header(m, H_MQTT_TOPIC).is_some());
            }

            let tm = env.read(&env.names.telemetry_stream(), &env.names.telemetry_filter(Some(&sn)), 1).await;
            assert_eq!(tm.len(), 1);
            assert!(big.len() > 200 * 1024);
            assert_eq!(tm[0].payload.as_ref(), big.as_slice());
            bridge.stop().await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_message_larger_than_nats_allows_is_kept_in_chunks() {
    with_env(
        |_| {},
        |env| async move {
            let bridge = env.start_bridge().await;
            let device = Device::connect(&format!("{}-dev", env.sn)).await;
            let sn = format!("{}DOCK0001", env.sn);
            let max_payload = env.js.client().server_info().max_payload;
            let huge = envelope("huge-1", json!({"data": {"padding": "y".repeat(max_payload + max_payload / 2)}}));
            device.publish(&env.topic(&sn, "events"), huge.clone()).await;
            device.publish(&env.topic(&sn, "events"), envelope("after-1", json!({"method": "hms"}))).await;

            let got = env.read(&env.names.device_in_stream(), &env.names.device_in_filter(Some(&sn)), 3).await;
            assert_eq!(got.len(), 3);
            assert_eq!(header(&got[0], H_CHUNK).as_deref(), Some("1/2"));
            assert_eq!(header(&got[1], H_CHUNK).as_deref(), Some("2/2"));
            assert_eq!(header(&got[0], H_ANOMALY).as_deref(), Some("too_large"));
            let joined: Vec<u8> = got[..2].iter().flat_map(|m| m.payload.to_vec()).collect();
            assert_eq!(joined, huge);
            assert_eq!(header(&got[2], H_CHUNK), None);
            bridge.stop().await;
        },
    )
    .await;
}

#[tokio::test]
async fn device_out_messages_reach_their_mqtt_topic() {
    with_env(
        |_| {},
        |env| async move {
            let bridge = env.start_bridge().await;
            let sn = format!("{}DOCK0001", env.sn);
            let topic = env.topic(&sn, "services");
            let mut device = Device::connect(&format!("{}-dev", env.sn)).await;
            device.subscribe(&topic).await;

            env.put_device_out(&sn, "services", None, b"{\"no\":\"topic\"}").await;
            env.put_device_out(&sn, "services", Some("thing/product/+/services"), b"{\"wildcard\":1}").await;
            let body = envelope("cmd-1", json!({"method": "cover_open", "data": ""}));
            env.put_device_out(&sn, "services", Some(&topic), &body).await;

            let m = device.next_message().await;
            assert_eq!(m.topic, topic);
            assert_eq!(m.payload.as_ref(), body.as_slice());
            assert_eq!(m.qos, QoS::AtLeastOnce);

            // all three settled: one delivered, two terminated
            let stream = env.js.get_stream(env.names.device_out_stream()).await.unwrap();
            let mut consumer: consumer::PullConsumer =
                stream.get_consumer(&env.names.consumer("mqtt_bridge_out")).await.expect("durable consumer");
            let deadline = Instant::now() + WAIT;
            loop {
                let info = consumer.info().await.unwrap();
                if info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence == 3 {
                    break;
                }
                assert!(Instant::now() < deadline, "outbound messages not settled: {info:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(device.incoming.try_recv().is_err(), "nothing else was published");
            bridge.stop().await;
        },
    )
    .await;
}

#[tokio::test]
async fn device_out_messages_wait_for_a_bridge_that_is_down() {
    with_env(
        |_| {},
        |env| async move {
            let sn = format!("{}DOCK0001", env.sn);
            let topic = env.topic(&sn, "events_reply");
            let mut device = Device::connect(&format!("{}-dev", env.sn)).await;
            device.subscribe(&topic).await;
            // The streams exist before any bridge ran (command-api creates them too).
            shared::nats::ensure_streams(&env.js, &env.names, &env.config).await.unwrap();
            let bodies: Vec<Vec<u8>> =
                (0..20).map(|i| envelope(&format!("r-{i}"), json!({"method": "hms", "data": {"result": 0}}))).collect();
            for b in &bodies {
                env.put_device_out(&sn, "events_reply", Some(&topic), b).await;
            }

            let bridge = env.start_bridge().await;
            for b in &bodies {
                let m = device.next_message().await;
                assert_eq!(m.payload.as_ref(), b.as_slice(), "in order, exactly as stored");
            }
            bridge.stop().await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_redelivered_tid_is_stored_once() {
    with_env(
        |_| {},
        |env| async move {
            let bridge = env.start_bridge().await;
            let device = Device::connect(&format!("{}-dev", env.sn)).await;
            let sn = format!("{}DOCK0001", env.sn);
            let body = envelope("same-tid", json!({"method": "flighttask_progress", "data": {"result": 0}}));
            device.publish(&env.topic(&sn, "events"), body.clone()).await;
            device.publish(&env.topic(&sn, "events"), body.clone()).await;
            device.publish(&env.topic(&sn, "osd"), envelope("osd-tid", json!({"data": {}}))).await;
            device.publish(&env.topic(&sn, "osd"), envelope("osd-tid", json!({"data": {}}))).await;
            device.publish(&env.topic(&sn, "events"), envelope("other-tid", json!({"method": "hms"}))).await;

            let inn = env.read(&env.names.device_in_stream(), &env.names.device_in_filter(Some(&sn)), 2).await;
            let tids: Vec<String> = inn
                .iter()
                .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap()["tid"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(tids, ["same-tid", "other-tid"]);
            let tm = env.read(&env.names.telemetry_stream(), &env.names.telemetry_filter(Some(&sn)), 1).await;
            assert_eq!(tm.len(), 1);
            bridge.stop().await;
        },
    )
    .await;
}

/// The broker is the bridge's buffer while the bridge restarts, so the broker every run and CI use
/// must queue far more than Mosquitto's default of 1,000 messages for an absent persistent
/// session (`scripts/services.sh` installs `mqtt-bridge/mosquitto.conf` for the local one). A
/// broker with the default limits keeps 1,000 of these 5,000 and drops the rest.
#[tokio::test]
async fn the_broker_queues_thousands_of_messages_for_an_absent_session() {
    const TOTAL: u64 = 5000;
    let id = format!("tq{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let topic = format!("{id}/queue");
    let mut session = Device::connect_persistent(&id).await;
    session.subscribe(&topic).await;
    drop(session);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let device = Device::connect(&format!("{id}-dev")).await;
    for i in 0..TOTAL {
        device.publish(&topic, format!("{i}")).await;
    }
    device.wait_acked(TOTAL).await;

    let mut session = Device::connect_persistent(&id).await;
    let mut received = 0u64;
    while received < TOTAL {
        match tokio::time::timeout(Duration::from_secs(3), session.incoming.recv()).await {
            Ok(Some(_)) => received += 1,
            _ => break,
        }
    }
    drop(session);
    forget_session(&id).await;
    assert_eq!(
        received, TOTAL,
        "the broker dropped messages queued for an absent session: is it configured with mqtt-bridge/mosquitto.conf?"
    );
}

/// Mosquitto keeps at most `max_queued_messages` (1000 by default) QoS 1 messages for a
/// disconnected session and drops the rest silently. The publisher here is paced (about one
/// message per millisecond) and each outage lasts a few hundred milliseconds, so the queue stays
/// well under that limit; `mqtt-bridge/mosquitto.conf` raises it for deployments.
#[tokio::test]
async fn a_bridge_killed_under_load_loses_and_duplicates_nothing() {
    const TOTAL: u64 = 2000;
    with_env(
        |_| {},
        |env| async move {
            let mut bridge = env.start_bridge().await;
            let device = Arc::new(Device::connect(&format!("{}-dev", env.sn)).await);
            let sn = format!("{}DOCK0001", env.sn);
            let topic = env.topic(&sn, "events");
            let sent = Arc::new(AtomicU64::new(0));
            let publisher = {
                let (device, sent, sn) = (device.clone(), sent.clone(), sn.clone());
                tokio::spawn(async move {
                    for i in 0..TOTAL {
                        let body = envelope(&format!("{sn}-{i:05}"), json!({"method": "hms", "data": {"list": []}}));
                        device.publish(&topic, body).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            };

            // A crash at about a quarter, a clean stop at about two thirds; each time a new bridge
            // with the same client id takes over the session.
            for (at, crash) in [(TOTAL / 4, true), (TOTAL * 2 / 3, false)] {
                while sent.load(Ordering::Relaxed) < at {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if crash {
                    bridge.kill().await;
                } else {
                    bridge.stop().await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                bridge = env.start_bridge().await;
            }
            publisher.await.unwrap();
            device.wait_acked(TOTAL).await;

            let got =
                env.read(&env.names.device_in_stream(), &env.names.device_in_filter(Some(&sn)), TOTAL as usize).await;
            let mut per_tid: HashMap<String, u32> = HashMap::new();
            for m in &got {
                let v: Value = serde_json::from_slice(&m.payload).unwrap();
                *per_tid.entry(v["tid"].as_str().unwrap().to_string()).or_default() += 1;
            }
            let duplicated: Vec<_> = per_tid.iter().filter(|(_, n)| **n > 1).collect();
            assert!(duplicated.is_empty(), "stored more than once: {duplicated:?}");
            let missing: Vec<u64> = (0..TOTAL).filter(|i| !per_tid.contains_key(&format!("{sn}-{i:05}"))).collect();
            assert!(missing.is_empty(), "{} missing, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]);
            assert_eq!(got.len() as u64, TOTAL);
            bridge.stop().await;
        },
    )
    .await;
}

/// Takes the bridge's session over for a moment, as a network blip or a broker failover would
/// end its connection: the bridge reconnects in place, subscribes again, and the messages it had
/// not acked come back to it once.
#[tokio::test]
async fn a_bridge_that_loses_its_connection_resumes_without_loss_or_duplicates() {
    const TOTAL: u64 = 1000;
    with_env(
        |_| {},
        |env| async move {
            let bridge = env.start_bridge().await;
            let device = Arc::new(Device::connect(&format!("{}-dev", env.sn)).await);
            let sn = format!("{}DOCK0001", env.sn);
            let topic = env.topic(&sn, "osd");
            let sent = Arc::new(AtomicU64::new(0));
            let publisher = {
                let (device, sent, sn) = (device.clone(), sent.clone(), sn.clone());
                tokio::spawn(async move {
                    for i in 0..TOTAL {
                        device
                            .publish(&topic, envelope(&format!("{sn}-{i:05}"), json!({"data": {"mode_code": 0}})))
                            .await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            };
            for at in [TOTAL / 3, TOTAL * 2 / 3] {
                while sent.load(Ordering::Relaxed) < at {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // Same client id, persistent session, never acks: the broker moves the session to it
                // and back to the bridge when the bridge reconnects.
                let session = mqtt_bridge::slots::client_id(&env.config.mqtt_share_group, 0);
                let mut options = MqttOptions::new(session, "127.0.0.1", 1883);
                options.set_clean_session(false);
                options.set_manual_acks(true);
                let (client, mut eventloop) = AsyncClient::new(options, 10);
                tokio::time::timeout(WAIT, async {
                    loop {
                        match eventloop.poll().await {
                            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                                let _ = client.try_disconnect();
                            }
                            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                })
                .await
                .expect("session takeover");
            }
            publisher.await.unwrap();
            device.wait_acked(TOTAL).await;

            let got =
                env.read(&env.names.telemetry_stream(), &env.names.telemetry_filter(Some(&sn)), TOTAL as usize).await;
            let mut tids: Vec<String> = got
                .iter()
                .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap()["tid"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(tids.len() as u64, TOTAL, "exactly one copy each");
            tids.sort();
            tids.dedup();
            assert_eq!(tids.len() as u64, TOTAL);
            bridge.stop().await;
        },
    )
    .await;
}

#[tokio::test]
async fn simulated_docks_report_and_answer_commands() {
    with_env(
        |_| {},
        |env| async move {
            let bridge = env.start_bridge().await;
            let fleet = Fleet::start(FleetConfig {
                docks: 3,
                osd_hz: 5.0,
                sn_prefix: env.sn.clone(),
                docks_per_connection: 2,
                hms_every: Some(Duration::from_millis(500)),
                ..FleetConfig::default()
            })
            .await
            .unwrap();
            fleet.ready(WAIT).await.unwrap();
            let dock = fleet.docks()[2].clone();

            let status =
                env.read(&env.names.device_in_stream(), &env.names.device_in_subject(&dock.dock_sn, "status"), 1).await;
            let topo: Value = serde_json::from_slice(&status[0].payload).unwrap();
            assert_eq!(topo["method"], "update_topo");
            assert_eq!(topo["data"]["sub_devices"][0]["sn"], dock.drone_sn.as_str());
            let osd =
                env.read(&env.names.telemetry_stream(), &env.names.telemetry_filter(Some(&dock.drone_sn)), 3).await;
            assert!(osd.len() >= 3);
            let hms =
                env.read(&env.names.device_in_stream(), &env.names.device_in_subject(&dock.dock_sn, "events"), 1).await;
            assert_eq!(serde_json::from_slice::<Value>(&hms[0].payload).unwrap()["method"], "hms");

            let command = json!({"tid": "svc-1", "bid": "bid-1", "timestamp": 1, "method": "cover_open", "data": ""});
            let topic = env.topic(&dock.dock_sn, "services");
            env.put_device_out(&dock.dock_sn, "services", Some(&topic), command.to_string().as_bytes()).await;
            let set = json!({"tid": "set-1", "bid": "bid-2", "timestamp": 1, "data": {"height_limit": 200}});
            let topic = env.topic(&dock.dock_sn, "property/set");
            env.put_device_out(&dock.dock_sn, "property_set", Some(&topic), set.to_string().as_bytes()).await;

            let replies = env
                .read(&env.names.device_in_stream(), &env.names.device_in_subject(&dock.dock_sn, "services_reply"), 1)
                .await;
            let reply: Value = serde_json::from_slice(&replies[0].payload).unwrap();
            assert_eq!(
                (reply["tid"].as_str(), reply["bid"].as_str(), reply["method"].as_str()),
                (Some("svc-1"), Some("bid-1"), Some("cover_open"))
            );
            assert_eq!(reply["data"], json!({"result": 0, "output": {"status": "ok"}}));
            let replies = env
                .read(
                    &env.names.device_in_stream(),
                    &env.names.device_in_subject(&dock.dock_sn, "property_set_reply"),
                    1,
                )
                .await;
            let reply: Value = serde_json::from_slice(&replies[0].payload).unwrap();
            assert_eq!(reply["tid"], "set-1");
            assert_eq!(reply["data"], json!({"height_limit": {"result": 0}}));

            let stats = fleet.stop().await;
            assert_eq!((stats.topo, stats.commands, stats.replies, stats.errors), (3, 2, 2, 0));
            assert!(stats.osd >= 6 && stats.hms >= 1, "{stats:?}");
            bridge.stop().await;
        },
    )
    .await;
}
