//! The dock simulator against the real Mosquitto on this machine, with a raw MQTT client playing
//! the cloud: it sends commands and reads replies, progress events and binding requests.
//!
//! Every test has its own serial-number prefix and client id, so tests running at the same time
//! never see each other's docks. Flight tasks are in `sim/flight.rs`.

#[path = "sim/flight.rs"]
mod flight;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mqtt_bridge::sim::{Answer, Fleet, FleetConfig, SimDock};
use mqtt_bridge::MAX_PACKET_BYTES;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

fn prefix() -> String {
    format!("TS{}", &uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase())
}

/// The cloud side: one MQTT connection that publishes commands and collects what docks send.
struct Cloud {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<(String, Value)>,
    subacks: mpsc::UnboundedReceiver<()>,
    task: JoinHandle<()>,
}

impl Cloud {
    async fn connect(topics: &[String]) -> Self {
        let mut options = MqttOptions::new(format!("cloud-{}", uuid::Uuid::new_v4().simple()), "127.0.0.1", 1883);
        options.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        options.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, incoming) = mpsc::unbounded_channel();
        let (suback_tx, subacks) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let body = serde_json::from_slice(&p.payload).expect("docks publish JSON");
                        let _ = tx.send((p.topic, body));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = suback_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let mut cloud = Self { client, incoming, subacks, task };
        for t in topics {
            cloud.client.subscribe(t, QoS::AtLeastOnce).await.unwrap();
            tokio::time::timeout(WAIT, cloud.subacks.recv()).await.expect("SubAck in time");
        }
        cloud
    }

    async fn send(&self, topic: &str, body: Value) {
        self.client.publish(topic, QoS::AtLeastOnce, false, body.to_string()).await.unwrap();
    }

    /// The next message whose topic ends with `suffix`, skipping others; `None` after `within`.
    async fn next(&mut self, suffix: &str, within: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Ok(Some((topic, body))) if topic.ends_with(suffix) => return Some((topic, body)),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn expect(&mut self, suffix: &str) -> Value {
        self.next(suffix, WAIT).await.unwrap_or_else(|| panic!("no {suffix} in time")).1
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(prefix: &str) -> FleetConfig {
    FleetConfig { docks: 1, osd_hz: 5.0, sn_prefix: prefix.into(), hms_every: None, ..FleetConfig::default() }
}

fn topics(dock: &SimDock, kinds: &[&str]) -> Vec<String> {
    kinds.iter().map(|k| format!("thing/product/{}/{k}", dock.dock_sn)).collect()
}

fn command(method: &str, tid: &str, bid: &str, data: Value) -> Value {
    json!({"tid": tid, "bid": bid, "timestamp": 1, "method": method, "data": data})
}

#[tokio::test]
async fn cover_open_is_replied_then_reported_in_two_progress_events() {
    let p = prefix();
    let dock = SimDock::new(&p, 1);
    let mut cloud = Cloud::connect(&topics(&dock, &["services_reply", "events"])).await;
    let fleet = Fleet::start(config(&p)).await.unwrap();
    fleet.ready(WAIT).await.unwrap();

    cloud
        .send(&format!("thing/product/{}/services", dock.dock_sn), command("cover_open", "t-1", "b-1", json!("")))
        .await;
    let reply = cloud.expect("/services_reply").await;
    assert_eq!((reply["tid"].as_str(), reply["bid"].as_str()), (Some("t-1"), Some("b-1")));
    assert_eq!((reply["method"].as_str(), reply["data"]["result"].as_i64()), (Some("cover_open"), Some(0)));
    let first = cloud.expect("/events").await;
    let second = cloud.expect("/events").await;
    for e in [&first, &second] {
        assert_eq!((e["method"].as_str(), e["bid"].as_str()), (Some("cover_open"), Some("b-1")));
        assert_eq!((e["need_reply"].as_i64(), e["gateway"].as_str()), (Some(1), Some(dock.dock_sn.as_str())));
    }
    assert_eq!(first["data"]["output"]["status"], "in_progress");
    assert_eq!(second["data"]["output"]["status"], "ok");
    assert_eq!(second["data"]["output"]["progress"]["percent"], 100);

    let received = fleet.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0].dock_sn.as_str(), received[0].method.as_str(), received[0].tid.as_str(), &received[0].data),
        (dock.dock_sn.as_str(), "cover_open", "t-1", &json!(""))
    );
    let stats = fleet.stop().await;
    assert_eq!((stats.commands, stats.replies, stats.events, stats.errors), (1, 1, 2, 0));
}

#[tokio::test]
async fn scripted_errors_silence_and_delays() {
    let p = prefix();
    let dock = SimDock::new(&p, 1);
    let mut cloud = Cloud::connect(&topics(&dock, &["services_reply", "property/set_reply", "events"])).await;
    let fleet = Fleet::start(FleetConfig {
        answers: HashMap::from([("drone_open".to_string(), Answer::error(514301))]),
        ..config(&p)
    })
    .await
    .unwrap();
    fleet.ready(WAIT).await.unwrap();
    let services = format!("thing/product/{}/services", dock.dock_sn);

    // An error code, and no progress events after it.
    cloud.send(&services, command("drone_open", "t-err", "b-err", json!(""))).await;
    let reply = cloud.expect("/services_reply").await;
    assert_eq!((reply["tid"].as_str(), reply["data"]["result"].as_i64()), (Some("t-err"), Some(514301)));
    assert!(cloud.next("/events", Duration::from_millis(500)).await.is_none(), "no progress after an error");

    // Silent, scripted while running: nothing at all, though the dock did receive it.
    fleet.set_answer("return_home", Answer::silent());
    cloud.send(&services, command("return_home", "t-silent", "b-silent", json!(""))).await;
    assert!(cloud.next("", Duration::from_secs(1)).await.is_none(), "a silent method gets no reply");
    assert!(fleet.received().iter().any(|c| c.tid == "t-silent" && c.method == "return_home"));

    // Delayed: the reply waits, while the dock's OSD keeps flowing meanwhile.
    let delay = Duration::from_millis(1500);
    fleet.set_default_answer(Answer::delayed(delay));
    let mut osd = Cloud::connect(&[format!("thing/product/{}/osd", dock.dock_sn)]).await;
    cloud.send(&services, command("supplement_light_open", "t-late", "b-late", json!(""))).await;
    let early = cloud.next("/services_reply", delay - Duration::from_millis(300)).await;
    assert!(early.is_none(), "replied before the delay");
    let reply = cloud.expect("/services_reply").await;
    assert_eq!((reply["tid"].as_str(), reply["data"]["result"].as_i64()), (Some("t-late"), Some(0)));
    let mut osd_during_delay = 0;
    while osd.incoming.try_recv().is_ok() {
        osd_during_delay += 1;
    }
    assert!(osd_during_delay >= 3, "OSD went on during the delay: {osd_during_delay}");

    // Property sets: scripted by property name.
    fleet.set_answer("height_limit", Answer::error(1));
    cloud
        .send(
            &format!("thing/product/{}/property/set", dock.dock_sn),
            json!({"tid": "t-set", "bid": "b-set", "timestamp": 1, "data": {"height_limit": 200}}),
        )
        .await;
    let reply = cloud.expect("/property/set_reply").await;
    assert_eq!((reply["tid"].as_str(), &reply["data"]), (Some("t-set"), &json!({"height_limit": {"result": 1}})));
    let set = fleet.received().into_iter().find(|c| c.tid == "t-set").unwrap();
    assert_eq!((set.method.as_str(), &set.data), ("property/set", &json!({"height_limit": 200})));
    fleet.stop().await;
}

#[tokio::test]
async fn authority_grab_and_fly_to_point_report_state_and_progress() {
    let p = prefix();
    let dock = SimDock::new(&p, 1);
    let mut cloud = Cloud::connect(&topics(&dock, &["services_reply", "events", "state"])).await;
    let fleet = Fleet::start(FleetConfig { progress_interval: Duration::from_millis(50), ..config(&p) }).await.unwrap();
    fleet.ready(WAIT).await.unwrap();
    let services = format!("thing/product/{}/services", dock.dock_sn);

    cloud.send(&services, command("flight_authority_grab", "t-a", "b-a", json!(""))).await;
    // the dock's own state on connecting (its live capacity) may come first
    let mut state = cloud.expect("/state").await;
    if state["data"].get("live_capacity").is_some() {
        state = cloud.expect("/state").await;
    }
    assert_eq!(state["data"], json!({"control_source": "A"}));

    let data = json!({"fly_to_id": "fly-1", "max_speed": 10, "points": [{"latitude": 22.5, "longitude": 113.9, "height": 100}]});
    cloud.send(&services, command("fly_to_point", "t-f", "b-f", data)).await;
    let statuses: Vec<Value> = [cloud.expect("/events").await, cloud.expect("/events").await]
        .iter()
        .map(|e| {
            assert_eq!((e["method"].as_str(), e["bid"].as_str()), (Some("fly_to_point_progress"), Some("b-f")));
            assert_eq!(e["data"]["fly_to_id"], "fly-1");
            e["data"]["status"].clone()
        })
        .collect();
    assert_eq!(statuses, [json!("wayline_progress"), json!("wayline_ok")]);
    fleet.stop().await;
}

/// Answers one binding request the way the cloud would.
async fn answer_request(cloud: &Cloud, dock: &SimDock, request: &Value, data: Value) {
    let reply = json!({
        "tid": request["tid"], "bid": request["bid"], "timestamp": 1, "method": request["method"], "data": data,
    });
    cloud.send(&format!("thing/product/{}/requests_reply", dock.dock_sn), reply).await;
}

#[tokio::test]
#[ignore = "every Hangar on the broker answers binding requests; scripts/test runs it alone after the other tests"]
async fn a_dock_with_a_binding_code_binds_itself_and_retries_after_a_refusal() {
    let p = prefix();
    let dock = SimDock::new(&p, 1);
    let mut cloud = Cloud::connect(&topics(&dock, &["requests"])).await;
    let fleet = Fleet::start(FleetConfig {
        binding_code: Some("qwe".into()),
        binding_retry: Duration::from_millis(500),
        ..config(&p)
    })
    .await
    .unwrap();
    fleet.ready(WAIT).await.unwrap();
    let not_bound = json!({"result": 0, "output": {"bind_status": [
        {"sn": dock.dock_sn, "is_device_bind_organization": false},
        {"sn": dock.drone_sn, "is_device_bind_organization": false},
    ]}});

    // First round: the code is refused.
    let status = cloud.expect("/requests").await;
    assert_eq!(status["method"], "airport_bind_status");
    assert_eq!(status["gateway"], dock.dock_sn.as_str());
    assert_eq!(status["data"], json!({"devices": [{"sn": dock.dock_sn}, {"sn": dock.drone_sn}]}));
    answer_request(&cloud, &dock, &status, not_bound.clone()).await;
    let get = cloud.expect("/requests").await;
    assert_eq!(get["method"], "airport_organization_get");
    assert_eq!(get["data"], json!({"device_binding_code": "qwe", "organization_id": ""}));
    answer_request(&cloud, &dock, &get, json!({"result": 210230, "output": {}})).await;

    // Second round, after the retry delay: accepted and bound.
    let status = cloud.expect("/requests").await;
    assert_eq!(status["method"], "airport_bind_status");
    answer_request(&cloud, &dock, &status, not_bound).await;
    let get = cloud.expect("/requests").await;
    answer_request(&cloud, &dock, &get, json!({"result": 0, "output": {"organization_name": "Test Group One"}})).await;
    let bind = cloud.expect("/requests").await;
    assert_eq!(bind["method"], "airport_organization_bind");
    let devices = &bind["data"]["bind_devices"];
    assert_eq!(
        (devices[0]["sn"].as_str(), devices[0]["device_model_key"].as_str()),
        (Some(dock.dock_sn.as_str()), Some("3-2-0"))
    );
    assert_eq!(
        (devices[1]["sn"].as_str(), devices[1]["device_model_key"].as_str()),
        (Some(dock.drone_sn.as_str()), Some("0-91-0"))
    );
    assert_eq!(devices[1]["device_binding_code"], "qwe");
    assert_eq!(fleet.bound(), 0);
    let ok = json!({"result": 0, "output": {"err_infos": [
        {"sn": dock.dock_sn, "err_code": 0}, {"sn": dock.drone_sn, "err_code": 0},
    ]}});
    answer_request(&cloud, &dock, &bind, ok).await;

    let deadline = Instant::now() + WAIT;
    while fleet.bound() < 1 {
        assert!(Instant::now() < deadline, "dock never counted as bound");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cloud.next("/requests", Duration::from_secs(1)).await.is_none(), "nothing more once bound");
    let stats = fleet.stop().await;
    assert_eq!((stats.requests, stats.errors), (5, 0));
}
