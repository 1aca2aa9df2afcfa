//! Devices over MQTT end to end: the dock simulator speaks to Mosquitto, the bridge carries it into
//! JetStream, the device inbox records and answers it, projections and the WebSocket show it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hangar::Components;
use mqtt_bridge::sim::{Fleet, FleetConfig};
use reqwest::StatusCode;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use sqlx::Connection as _;
use tokio::sync::mpsc;

use crate::helpers::*;

/// Hangar with its bridge, on a share group and client id of its own.
pub(crate) async fn app_with_bridge(offline_secs: u64) -> TestApp {
    let mut c = test_config();
    c.mqtt_client_id = format!("{}-bridge", c.nats_prefix);
    c.mqtt_share_group = c.nats_prefix.clone();
    c.device_offline_secs = offline_secs;
    TestApp::spawn_with(c, Components::ALL).await
}

pub(crate) fn prefix() -> String {
    format!("T{}", &uuid::Uuid::new_v4().simple().to_string()[..8].to_uppercase())
}

pub(crate) async fn fleet(prefix: &str, docks: usize, hms_every: Option<Duration>) -> Fleet {
    let f = Fleet::start(FleetConfig { docks, osd_hz: 2.0, sn_prefix: prefix.into(), hms_every, ..Default::default() })
        .await
        .unwrap();
    f.ready(Duration::from_secs(10)).await.unwrap();
    f
}

/// A raw MQTT client playing a device: publishes, and collects what arrives on `subscribe`.
pub(crate) async fn device_client(subscribe: &[String]) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Value)>) {
    let mut o = MqttOptions::new(format!("raw-{}", uuid::Uuid::new_v4().simple()), "127.0.0.1", 1883);
    o.set_keep_alive(Duration::from_secs(10));
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let topics = subscribe.to_vec();
    let c2 = client.clone();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for t in &topics {
                        let _ = c2.subscribe(t, QoS::AtLeastOnce).await;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if tx.send((p.topic.clone(), v)).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    for _ in 0..subscribe.len() {
        tokio::time::timeout(Duration::from_secs(5), ready_rx.recv()).await.expect("suback");
    }
    (client, rx)
}

pub(crate) async fn next_on(rx: &mut mpsc::UnboundedReceiver<(String, Value)>, topic: &str, tid: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (t, v) =
            tokio::time::timeout(left, rx.recv()).await.unwrap_or_else(|_| panic!("nothing on {topic}")).unwrap();
        if t == topic && v["tid"] == tid {
            return v;
        }
    }
}

pub(crate) async fn request(
    client: &AsyncClient,
    rx: &mut mpsc::UnboundedReceiver<(String, Value)>,
    gw: &str,
    method: &str,
    data: Value,
) -> Value {
    let tid = uuid::Uuid::new_v4().to_string();
    let msg = json!({"tid": tid, "bid": tid, "timestamp": 1, "gateway": gw, "method": method, "data": data});
    client.publish(format!("thing/product/{gw}/requests"), QoS::AtLeastOnce, false, msg.to_string()).await.unwrap();
    let reply = next_on(rx, &format!("thing/product/{gw}/requests_reply"), &tid).await;
    assert_eq!(reply["method"], method);
    reply["data"].clone()
}

pub(crate) async fn bind(app: &TestApp, token: &str, sn: &str) {
    app.wait_for("device online", || async { app.online(sn).await == Some(true) }).await;
    let (_, r) = app
        .post(&format!("/manage/api/v1/devices/{sn}/binding"), token, json!({"device_sn": sn, "workspace_id": WS}))
        .await;
    assert_eq!(r["code"], 0, "{r}");
}

#[tokio::test]
async fn simulated_docks_and_aircraft_appear_online_within_a_second() {
    let app = app_with_bridge(60).await;
    let token = app.admin_token().await;
    let p = prefix();
    let started = Instant::now();
    let f = fleet(&p, 2, None).await;
    let (dock, drone) = (f.docks()[0].dock_sn.clone(), f.docks()[0].drone_sn.clone());
    app.wait_for("all four devices online", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rm_devices WHERE device_sn LIKE $1 AND online")
            .bind(format!("{p}%"))
            .fetch_one(&app.pool)
            .await
            .unwrap()
            == 4
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1) + Duration::from_millis(500), "online after {took:?}");

    // the dock binds itself with the workspace's binding code, as a real dock does
    let (client, mut rx) = device_client(&[format!("thing/product/{dock}/requests_reply")]).await;
    let org = request(
        &client,
        &mut rx,
        &dock,
        "airport_organization_get",
        json!({"device_binding_code": "qwe", "organization_id": WS}),
    )
    .await;
    assert_eq!(org, json!({"result": 0, "output": {"organization_name": "Test Group One"}}));
    let bound = request(&client, &mut rx, &dock, "airport_organization_bind", json!({"bind_devices": [
        {"device_binding_code": "qwe", "organization_id": WS, "device_callsign": "Roof dock", "sn": dock, "device_model_key": "3-2-0"},
        {"device_binding_code": "qwe", "organization_id": WS, "device_callsign": "Roof drone", "sn": drone, "device_model_key": "0-91-0"}]})).await;
    assert_eq!(bound["output"]["err_infos"], json!([{"sn": dock, "err_code": 0}, {"sn": drone, "err_code": 0}]));
    app.wait_for("bound", || async {
        let (_, r) = app.get(&format!("/manage/api/v1/devices/{WS}/devices"), &token).await;
        r["data"].as_array().is_some_and(|a| {
            a.iter().any(|d| d["device_sn"] == dock.as_str() && d["children"]["device_sn"] == drone.as_str())
        })
    })
    .await;
    let status =
        request(&client, &mut rx, &dock, "airport_bind_status", json!({"devices": [{"sn": dock}, {"sn": "NOPE"}]}))
            .await;
    assert_eq!(status["output"]["bind_status"][0]["is_device_bind_organization"], true);
    assert_eq!(status["output"]["bind_status"][0]["organization_name"], "Test Group One");
    assert_eq!(status["output"]["bind_status"][0]["device_callsign"], "Roof dock");
    assert_eq!(status["output"]["bind_status"][1], json!({"sn": "NOPE", "is_device_bind_organization": false}));

    // web map: the dock with its aircraft
    let (_, r) = app.get(&format!("/manage/api/v1/devices/{WS}/devices"), &token).await;
    let d = r["data"].as_array().unwrap().iter().find(|d| d["device_sn"] == dock.as_str()).unwrap().clone();
    assert_eq!((d["domain"].clone(), d["type"].clone(), d["sub_type"].clone()), (json!(3), json!(2), json!(0)));
    assert_eq!(d["device_name"], "DJI Dock2");
    assert_eq!(d["nickname"], "Roof dock");
    assert_eq!(d["status"], true);
    assert_eq!(d["bound_status"], true);
    assert_eq!(d["thing_version"], "1.2.0");
    assert_eq!(d["children"]["device_name"], "Matrice 3D");
    assert_eq!(d["children"]["control_source"], "A");

    // one device, bound lists, statistics
    let (_, r) = app.get(&format!("/manage/api/v1/devices/{WS}/devices/{drone}"), &token).await;
    assert_eq!(r["data"]["device_sn"], drone.as_str());
    let (_, r) =
        app.get(&format!("/manage/api/v1/devices/{WS}/devices/bound?domain=0&page=1&page_size=10"), &token).await;
    assert_eq!(r["data"]["pagination"]["total"], 1);
    assert_eq!(r["data"]["list"][0]["device_sn"], drone.as_str());
    let (_, r) = app.get(&format!("/manage/api/v1/devices/{WS}/devices/domain-stats"), &token).await;
    assert_eq!(r["data"], json!([{"domain": 0, "total": 1, "online": 1}, {"domain": 3, "total": 1, "online": 1}]));
    let (_, r) = app.get(&format!("/manage/api/v1/devices/{WS}/devices/type-counts"), &token).await;
    assert!(
        r["data"]
            .as_array()
            .unwrap()
            .contains(&json!({"domain": 3, "type": 2, "sub_type": 0, "device_name": "DJI Dock2", "count": 1})),
        "{r}"
    );
    let (_, r) = app.get("/manage/api/v1/devices/type-counts", &token).await;
    assert_eq!(r["code"], 0);
    let pilot = app.pilot_token().await;
    let (status, _) = app.get("/manage/api/v1/devices/type-counts", &pilot).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "all workspaces: web users only");
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn osd_reaches_websocket_clients_of_that_workspace_only() {
    let app = app_with_bridge(60).await;
    let token = app.admin_token().await;
    let p = prefix();
    let f = fleet(&p, 1, None).await;
    let dock = f.docks()[0].dock_sn.clone();
    bind(&app, &token, &dock).await;

    let now = chrono::Utc::now().timestamp();
    let other = app.sign(json!({"iss": "DJI", "sub": "CloudApiSample", "iat": now, "nbf": now, "exp": now + 600,
        "id": "u-other", "username": "other", "user_type": "1", "workspace_id": "another-workspace"}));
    let url = format!("ws://{}/api/v1/ws?x-auth-token=", app.addr);
    let (mut mine, _) = tokio_tungstenite::connect_async(format!("{url}{token}")).await.unwrap();
    let (mut theirs, _) = tokio_tungstenite::connect_async(format!("{url}{other}")).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = None;
    while Instant::now() < deadline {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), mine.next()).await else { break };
        let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
        if v["biz_code"] == "dock_osd" && v["data"]["sn"] == dock.as_str() {
            got = Some(v);
            break;
        }
    }
    let v = got.expect("dock_osd pushed to the dock's workspace");
    assert_eq!(v["version"], "1.0");
    assert!(v["timestamp"].as_i64().unwrap() > 0);
    assert!(v["data"]["host"]["mode_code"].is_number(), "{v}");
    let leak = tokio::time::timeout(Duration::from_secs(2), theirs.next()).await;
    assert!(leak.is_err(), "another workspace got {leak:?}");
    f.stop().await;
    app.stop().await;
}

/// A dock bound while the projections run behind (here: the relay held back for a few seconds) is
/// projected with the binding's own time, older than the WebSocket's look-ups of recent changes;
/// its telemetry must still be pushed to its new workspace.
#[tokio::test]
async fn a_dock_bound_while_projections_lag_gets_its_osd_pushed() {
    let first = app_with_bridge(60).await;
    let token = first.admin_token().await;
    let p = prefix();
    let f = fleet(&p, 1, None).await;
    let dock = f.docks()[0].dock_sn.clone();
    first.wait_for("dock online", || async { first.online(&dock).await == Some(true) }).await;
    let config = first.config.clone();
    first.halt().await;

    // The same installation again, its relay held back by this test: what the binding writes waits
    // in the outbox until the lock is released.
    let relay_lock = hold_relay(&config.database_url).await;
    let app = TestApp::spawn_with(config, Components::ALL).await;
    let (_, r) = app
        .post(&format!("/manage/api/v1/devices/{dock}/binding"), &token, json!({"device_sn": dock, "workspace_id": WS}))
        .await;
    assert_eq!(r["code"], 0, "{r}");
    let url = format!("ws://{}/api/v1/ws?x-auth-token={token}", app.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    relay_lock.close().await.unwrap();
    app.wait_for("the binding projected", || async {
        sqlx::query_scalar::<_, bool>("SELECT bound FROM rm_devices WHERE device_sn = $1")
            .bind(&dock)
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            == Some(true)
    })
    .await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pushed = false;
    while !pushed && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(m))) = tokio::time::timeout(left, ws.next()).await else { break };
        let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
        pushed = v["biz_code"] == "dock_osd" && v["data"]["sn"] == dock.as_str();
    }
    assert!(pushed, "no dock_osd of {dock} within 10 s of its binding being projected");
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn hms_alerts_appear_and_can_be_marked_read() {
    let app = app_with_bridge(60).await;
    let token = app.admin_token().await;
    let p = prefix();
    let f = fleet(&p, 1, Some(Duration::from_millis(500))).await;
    let dock = f.docks()[0].dock_sn.clone();
    bind(&app, &token, &dock).await;
    let unread = format!("/manage/api/v1/devices/{WS}/devices/hms/{dock}");
    app.wait_for("hms recorded", || async {
        app.get(&unread, &token).await.1["data"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let (_, r) = app.get(&unread, &token).await;
    let h = &r["data"][0];
    for k in ["hms_id", "tid", "bid", "sn", "level", "module", "key", "message_en", "message_zh", "create_time"] {
        assert!(h.get(k).is_some(), "{k} missing in {h}");
    }
    assert!(h.get("update_time").is_none(), "unread has no update_time");
    let key = h["key"].as_str().unwrap();
    assert!(key.starts_with("dock_tip_0x") || key.starts_with("fpv_tip_0x"), "{key}");
    assert_eq!(h["message_en"], key, "without a dictionary text the key itself is shown");

    let (_, r) = app
        .get(
            &format!("/manage/api/v1/devices/{WS}/devices/hms?device_sn={dock}&page=1&page_size=5&language=en"),
            &token,
        )
        .await;
    assert!(r["data"]["pagination"]["total"].as_i64().unwrap() >= 1, "{r}");
    f.stop().await; // no new alerts from here on
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, r) = app.put(&unread, &token, json!({})).await;
    assert_eq!(r["code"], 0);
    app.wait_for("all read", || async { app.get(&unread, &token).await.1["data"] == json!([]) }).await;
    let (_, r) =
        app.get(&format!("/manage/api/v1/devices/{WS}/devices/hms?device_sn={dock}&update_time=0"), &token).await;
    assert_eq!(r["data"]["pagination"]["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_silent_device_goes_offline_and_the_websocket_says_so() {
    let app = app_with_bridge(2).await;
    let token = app.admin_token().await;
    let p = prefix();
    let f = fleet(&p, 1, None).await;
    let dock = f.docks()[0].dock_sn.clone();
    bind(&app, &token, &dock).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws?x-auth-token={token}", app.addr)).await.unwrap();
    f.stop().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
            seen = v["biz_code"] == "device_offline" && v["data"] == json!({"sn": dock, "online_status": false});
        }
    }
    assert!(seen, "device_offline pushed");
    app.wait_for("offline in the read model", || async {
        app.get(&format!("/manage/api/v1/devices/{WS}/devices/{dock}"), &token).await.1["data"]["status"] == false
    })
    .await;
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'DeviceOffline'")
            .bind(&dock)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, 1, "going offline is an event");
    app.stop().await;
}

#[tokio::test]
async fn bind_update_property_set_and_unbind() {
    let app = app_with_bridge(60).await;
    let token = app.admin_token().await;
    let p = prefix();
    let f = fleet(&p, 1, None).await;
    let dock = f.docks()[0].dock_sn.clone();
    let (_, r) = app.post("/manage/api/v1/devices/NO-SUCH-SN/binding", &token, json!({"workspace_id": WS})).await;
    assert_eq!(r, json!({"code": 212015, "message": "The device is offline."}));
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws?x-auth-token={token}", app.addr)).await.unwrap();
    bind(&app, &token, &dock).await;
    // binding tells the workspace's clients the dock is there
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut online = None;
    while online.is_none() && Instant::now() < deadline {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
            if v["biz_code"] == "device_online" && v["data"]["sn"] == dock.as_str() {
                online = Some(v);
            }
        }
    }
    let online = online.expect("device_online pushed on binding");
    assert_eq!(online["data"]["online_status"], true);
    assert_eq!(online["data"]["device_model"]["device_model_key"], "3-2-0");

    let (_, r) =
        app.put(&format!("/manage/api/v1/devices/{WS}/devices/{dock}"), &token, json!({"nickname": "North"})).await;
    assert_eq!(r["code"], 0);
    app.wait_for("renamed", || async {
        app.get(&format!("/manage/api/v1/devices/{WS}/devices/{dock}"), &token).await.1["data"]["nickname"] == "North"
    })
    .await;

    // property/set goes to the dock over MQTT and its property/set_reply comes back
    let prop = format!("/manage/api/v1/devices/{WS}/devices/{dock}/property");
    let (_, r) = app.put(&prop, &token, json!({"height_limit": 120})).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    assert!(f.stats().commands >= 1, "the dock received the command");
    let (_, r) = app.put(&prop, &token, json!({"height_limit": 120, "rth_altitude": 100})).await;
    assert_eq!(r, json!({"code": 210002, "message": "Invalid parameter."}));
    let (_, r) = app.put(&prop, &token, json!({"no_such_property": 1})).await;
    assert_eq!(r["code"], 210002);

    let (_, r) = app
        .request(reqwest::Method::DELETE, &format!("/manage/api/v1/devices/{dock}/unbinding"), Some(&token), None)
        .await;
    assert_eq!(r["code"], 0);
    app.wait_for("unbound", || async {
        app.get(&format!("/manage/api/v1/devices/{WS}/devices/bound?domain=3"), &token).await.1["data"]["pagination"]
            ["total"]
            == 0
    })
    .await;
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn odd_device_messages_are_kept_and_the_next_one_still_goes_through() {
    let app = app_with_bridge(60).await;
    let p = prefix();
    let gw = format!("{p}RC01");
    let (client, mut rx) =
        device_client(&[format!("thing/product/{gw}/requests_reply"), format!("sys/product/{gw}/status_reply")]).await;
    for (topic, payload) in [
        (format!("thing/product/{gw}/events"), "{not json".to_string()),
        (
            format!("thing/product/{gw}/events"),
            json!({"tid": "t1", "method": "brand_new_event", "need_reply": 1, "data": {"x": [1, 2]}}).to_string(),
        ),
        (
            format!("sys/product/{gw}/status"),
            json!({"tid": "t2", "method": "update_topo", "data": {"domain": "2", "type": [], "sub_devices": "nope"}})
                .to_string(),
        ),
        (format!("thing/product/{gw}/events"), "x".repeat(300_000)),
    ] {
        client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    // an unknown request method is answered, not left hanging
    let r = request(&client, &mut rx, &gw, "offline_map_get", json!({})).await;
    assert_ne!(r["result"], 0);
    // and a normal topology right after: a brand-new model the dictionary does not know
    let tid = uuid::Uuid::new_v4().to_string();
    let topo = json!({"tid": tid, "bid": tid, "timestamp": 1, "method": "update_topo",
        "data": {"domain": 2, "type": 999, "sub_type": 0, "thing_version": "9.9", "sub_devices": []}});
    client.publish(format!("sys/product/{gw}/status"), QoS::AtLeastOnce, false, topo.to_string()).await.unwrap();
    let reply = next_on(&mut rx, &format!("sys/product/{gw}/status_reply"), &tid).await;
    assert_eq!(reply["data"], json!({"result": 0}));
    assert_eq!(reply["method"], "update_topo");
    app.wait_for("new model online", || async {
        sqlx::query_scalar::<_, i32>("SELECT type FROM rm_devices WHERE device_sn = $1 AND online")
            .bind(&gw)
            .fetch_optional(&app.pool)
            .await
            .unwrap()
            == Some(999)
    })
    .await;
    // everything that came is in DEVICE_IN as it came
    let stream = app.js.get_stream(app.names.device_in_stream()).await.unwrap();
    let info = stream.get_info().await.unwrap();
    assert!(info.state.messages >= 5, "{:?}", info.state);
    let raw = stream.get_first_raw_message_by_subject(app.names.device_in_subject(&gw, "events"), 1).await.unwrap();
    assert_eq!(raw.payload.as_ref(), b"{not json");
    app.stop().await;
}

#[tokio::test]
async fn the_dock_gets_its_config_and_storage_answers() {
    let app = app_with_bridge(60).await;
    let p = prefix();
    let gw = format!("{p}DOCKX");
    let (client, mut rx) = device_client(&[format!("thing/product/{gw}/requests_reply")]).await;
    let cfg = request(&client, &mut rx, &gw, "config", json!({"config_type": "json", "config_scope": "product"})).await;
    assert!(cfg.get("ntp_server_host").is_some() && cfg.get("app_id").is_some(), "{cfg}");
    let bad = request(&client, &mut rx, &gw, "config", json!({"config_type": "json", "config_scope": "other"})).await;
    assert_eq!(bad["result"], 200001);
    // a gateway bound to no workspace gets no upload credentials: it is told, not left waiting
    let st = request(&client, &mut rx, &gw, "storage_config_get", json!({"module": 0})).await;
    assert_eq!(st["result"], 210230);
    let no_code = request(&client, &mut rx, &gw, "airport_organization_get", json!({"device_binding_code": ""})).await;
    assert_eq!(no_code["result"], 200001);
    let wrong = request(&client, &mut rx, &gw, "airport_organization_get", json!({"device_binding_code": "zzz"})).await;
    assert_eq!(wrong["result"], 210230);
    app.stop().await;
}

#[tokio::test]
async fn pilot_remote_controller_topology_and_hms_texts() {
    let app = app_with_bridge(60).await;
    let token = app.pilot_token().await;
    let p = prefix();
    let (rc, drone) = (format!("{p}RC"), format!("{p}M30"));
    let (client, mut rx) = device_client(&[format!("sys/product/{rc}/status_reply")]).await;
    let tid = uuid::Uuid::new_v4().to_string();
    let topo = json!({"tid": tid, "bid": tid, "timestamp": 1, "method": "update_topo",
        "data": {"domain": 2, "type": 119, "sub_type": 0, "thing_version": "1.1.2",
                 "sub_devices": [{"sn": drone, "domain": 0, "type": 67, "sub_type": 1, "index": "A", "thing_version": "1.1.2"}]}});
    client.publish(format!("sys/product/{rc}/status"), QoS::AtLeastOnce, false, topo.to_string()).await.unwrap();
    next_on(&mut rx, &format!("sys/product/{rc}/status_reply"), &tid).await;
    // Pilot 2 binds its remote controller and aircraft after logging in
    bind(&app, &token, &rc).await;
    bind(&app, &token, &drone).await;
    let path = format!("/manage/api/v1/workspaces/{WS}/devices/topologies");
    app.wait_for("topology", || async {
        app.get(&path, &token).await.1["data"]["list"][0]["hosts"][0]["sn"] == drone.as_str()
    })
    .await;
    let (_, r) = app.get(&path, &token).await;
    let parent = &r["data"]["list"][0]["parents"][0];
    assert_eq!(parent["sn"], rc.as_str());
    assert_eq!(parent["model"], "DJI RC Plus");
    assert_eq!(parent["device_model"], json!({"device_model_key": "2-119-0", "domain": 2, "type": 119, "sub_type": 0}));
    assert_eq!(parent["icon_urls"]["normal_icon_url"], "resource://pilot/drawable/tsa_person_normal");
    let host = &r["data"]["list"][0]["hosts"][0];
    assert_eq!(host["model"], "Matrice 30T");
    assert_eq!(host["online_status"], true);
    assert_eq!(host["gateway_sn"], rc.as_str());

    // an HMS alert of the aircraft, rendered from a loaded dictionary
    let n = hangar::hms_import(
        &app.pool,
        r#"{"fpv_tip_0x16100083": {"en": "Compass %index error", "zh": "指南针%index异常"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let hms = json!({"tid": "h1", "bid": "h1", "timestamp": 1, "method": "hms", "need_reply": 0, "gateway": rc,
        "data": {"list": [{"level": 2, "module": 3, "in_the_sky": 0, "code": "0x16100083", "device_type": "0-67-1",
                           "imminent": 0, "args": {"component_index": 0, "sensor_index": 1}}]}});
    client.publish(format!("thing/product/{drone}/events"), QoS::AtLeastOnce, false, hms.to_string()).await.unwrap();
    let unread = format!("/manage/api/v1/devices/{WS}/devices/hms/{drone}");
    app.wait_for("hms", || async { app.get(&unread, &token).await.1["data"][0]["key"] == "fpv_tip_0x16100083" }).await;
    let (_, r) = app.get(&unread, &token).await;
    assert_eq!(r["data"][0]["message_en"], "Compass 2 error");
    assert_eq!(r["data"][0]["message_zh"], "指南针2异常");
    let (_, r) = app
        .get(&format!("/manage/api/v1/devices/{WS}/devices/hms?device_sn={drone}&message=compass&language=en"), &token)
        .await;
    assert_eq!(r["data"]["pagination"]["total"], 1, "{r}");
    app.stop().await;
}
