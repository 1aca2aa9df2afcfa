//! Commands to devices end to end: HTTP → command-api → event store and outbox → DEVICE_OUT →
//! mqtt-bridge → Mosquitto → a dock (a raw MQTT client here, so that every byte it gets and
//! answers is the test's) → services_reply → DEVICE_IN → device inbox → the waiting HTTP caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hangar::Components;
use reqwest::Method;
use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::devices::{app_with_bridge, bind, device_client, fleet, prefix};
use crate::helpers::*;

/// How the test dock answers a method.
#[derive(Clone, Copy)]
enum Answer {
    Result(i64),
    /// answers after this long
    Late(i64, Duration),
}

/// A dock played by a raw MQTT client: announces itself with its aircraft, answers `services`
/// and `property/set` as scripted, and records every command it got.
struct TestDock {
    sn: String,
    drone: String,
    client: AsyncClient,
    got: Arc<Mutex<Vec<(String, Value)>>>,
    script: Arc<Mutex<HashMap<String, Answer>>>,
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl TestDock {
    async fn start(p: &str) -> Self {
        let sn = format!("{p}DOCK");
        let drone = format!("{p}UAV");
        let topics = ["services", "property/set", "events_reply", "requests_reply", "state_reply"]
            .map(|t| format!("thing/product/{sn}/{t}"));
        let (client, mut rx) = device_client(&topics).await;
        let got = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (c, g, sc, dock) = (client.clone(), got.clone(), script.clone(), sn.clone());
        tokio::spawn(async move {
            while let Some((topic, v)) = rx.recv().await {
                let is_set = topic.ends_with("/property/set");
                if !topic.ends_with("/services") && !is_set {
                    let _ = events_tx.send((topic, v));
                    continue;
                }
                g.lock().unwrap().push((topic.clone(), v.clone()));
                let method =
                    if is_set { "property/set".to_string() } else { v["method"].as_str().unwrap_or("").to_string() };
                let answer = sc.lock().unwrap().get(&method).copied().unwrap_or(Answer::Result(0));
                let (result, delay) = match answer {
                    Answer::Result(r) => (r, Duration::ZERO),
                    Answer::Late(r, d) => (r, d),
                };
                let (reply_topic, data) = if is_set {
                    let key = v["data"].as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
                    (format!("thing/product/{dock}/property/set_reply"), json!({ key: {"result": result} }))
                } else {
                    (
                        format!("thing/product/{dock}/services_reply"),
                        json!({"result": result, "output": {"status": "ok"}}),
                    )
                };
                let body =
                    json!({"tid": v["tid"], "bid": v["bid"], "timestamp": 1, "method": v["method"], "data": data});
                let c = c.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    c.publish(reply_topic, QoS::AtLeastOnce, false, body.to_string()).await.unwrap();
                });
            }
        });
        let dock = Self { sn, drone, client, got, script, events };
        dock.announce().await;
        dock
    }

    async fn announce(&self) {
        let topo = json!({"tid": uuid::Uuid::new_v4().to_string(), "bid": "b", "timestamp": 1, "method": "update_topo",
            "data": {"domain": 3, "type": 2, "sub_type": 0, "thing_version": "1.2.0", "device_secret": "s", "nonce": "n",
                "sub_devices": [{"sn": self.drone, "domain": 0, "type": 91, "sub_type": 0, "index": "A", "thing_version": "1.2.0"}]}});
        self.publish(&format!("sys/product/{}/status", self.sn), topo).await;
    }

    async fn publish(&self, topic: &str, body: Value) {
        self.client.publish(topic, QoS::AtLeastOnce, false, body.to_string()).await.unwrap();
    }

    fn answer(&self, method: &str, a: Answer) {
        self.script.lock().unwrap().insert(method.to_string(), a);
    }

    fn received(&self) -> Vec<(String, Value)> {
        self.got.lock().unwrap().clone()
    }

    /// The commands with this method the dock got so far (`property/set` for property sets).
    fn got(&self, method: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(
                |(t, v)| if method == "property/set" { t.ends_with("/property/set") } else { v["method"] == method },
            )
            .map(|(_, v)| v)
            .collect()
    }

    /// Waits for the next message on one of the dock's reply topics (events_reply, …).
    async fn next_event_reply(&mut self, topic_end: &str, tid: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (t, v) = tokio::time::timeout(left, self.events.recv()).await.expect("reply in time").unwrap();
            if t.ends_with(topic_end) && v["tid"] == tid {
                return v;
            }
        }
    }
}

/// Hangar with its bridge and a short reply timeout, and a bound test dock.
async fn app_and_dock(timeout_ms: u64) -> (TestApp, TestDock, String) {
    let mut c = test_config();
    c.mqtt_client_id = format!("{}-bridge", c.nats_prefix);
    c.mqtt_share_group = c.nats_prefix.clone();
    c.device_reply_timeout_ms = timeout_ms;
    let app = TestApp::spawn_with(c, Components::ALL).await;
    let token = app.admin_token().await;
    let dock = TestDock::start(&prefix()).await;
    bind(&app, &token, &dock.sn).await;
    (app, dock, token)
}

async fn job(app: &TestApp, token: &str, sn: &str, id: &str, body: Value) -> Value {
    app.post(&format!("/control/api/v1/devices/{sn}/jobs/{id}"), token, body).await.1
}

#[tokio::test]
async fn dock_commands_carry_the_exact_method_and_data_and_answer_with_the_device_result() {
    let (app, dock, token) = app_and_dock(1500).await;
    let sn = dock.sn.clone();
    let ok = json!({"code": 0, "message": "success", "data": ""});
    let metrics_before = app.metrics().await;

    assert_eq!(job(&app, &token, &sn, "cover_open", json!({})).await, ok);
    let sent = dock.got("cover_open");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["data"], "");
    assert!(sent[0]["tid"].as_str().is_some_and(|t| t.len() == 36) && sent[0]["bid"].is_string());
    assert!(sent[0]["timestamp"].as_i64().unwrap() > 1_700_000_000_000);

    for (method, body, data) in [
        ("alarm_state_switch", json!({"action": 1}), json!({"action": 1})),
        ("battery_store_mode_switch", json!({"action": "2"}), json!({"action": 2})),
        ("sdr_workmode_switch", json!({"action": 1}), json!({"link_workmode": 1})),
        ("air_conditioner_mode_switch", json!({"action": 3}), json!({"action": 3})),
        ("debug_mode_open", json!(null), json!("")),
    ] {
        assert_eq!(job(&app, &token, &sn, method, body).await, ok, "{method}");
        assert_eq!(dock.got(method).last().unwrap()["data"], data, "{method}");
    }
    // the PUT shortcuts send the same methods
    for (path, method) in [("cover/force-close", "cover_force_close"), ("debug-mode/close", "debug_mode_close")] {
        let (_, r) = app.put(&format!("/control/api/v1/devices/{sn}/{path}"), &token, json!({})).await;
        assert_eq!(r, ok, "{path}");
        assert_eq!(dock.got(method).len(), 1, "{method}");
    }

    // the device's error code is the answer, with DJI's text
    dock.answer("device_reboot", Answer::Result(319001));
    let r = job(&app, &token, &sn, "device_reboot", json!({})).await;
    assert_eq!(r["code"], 319001);
    assert_eq!(r["message"], "The dock is not idle (device error 319001)");

    // bad input and destructive commands: refused, nothing sent
    let before = dock.received().len();
    for (id, body, code) in [
        ("format_everything", json!({}), 210002),
        ("alarm_state_switch", json!({}), 210002),
        ("battery_store_mode_switch", json!({"action": 0}), 210002),
        ("device_format", json!({}), 210003),
        ("drone_format", json!({}), 210003),
    ] {
        let r = job(&app, &token, &sn, id, body).await;
        assert_eq!(r["code"], code, "{id}: {r}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, r) = app.post_raw(&format!("/control/api/v1/devices/{sn}/jobs/cover_open"), &token, "{not json").await;
    assert_eq!((status.as_u16(), r["code"].clone()), (200, json!(-1)));
    assert_eq!(dock.received().len(), before, "nothing sent for refused commands");

    // a device that does not answer: 211001 in time, and the late answer is still recorded
    dock.answer("return_home", Answer::Late(0, Duration::from_millis(2500)));
    let started = Instant::now();
    let r = job(&app, &token, &sn, "return_home", json!({})).await;
    let took = started.elapsed();
    assert_eq!(r["code"], 211001, "{r}");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_millis(3000), "answered after {took:?}");
    let tid = dock.got("return_home")[0]["tid"].as_str().unwrap().to_string();
    app.wait_for("late reply recorded", || async {
        let types: Vec<String> = sqlx::query_scalar(
            "SELECT event_type || coalesce(payload->'ReplyReceived'->>'late', '') FROM events \
             WHERE aggregate_type = 'device_command' AND aggregate_id = $1 ORDER BY sequence",
        )
        .bind(&tid)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        types == ["CommandSent", "ReplyMissing", "ReplyReceivedtrue"]
    })
    .await;

    // every command and its answer are events
    let (sent, replied): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'CommandSent'), count(*) FILTER (WHERE event_type = 'ReplyReceived') \
         FROM events WHERE aggregate_type = 'device_command'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((sent, replied), (dock.received().len() as i64, dock.received().len() as i64));
    let who: Value = sqlx::query_scalar(
        "SELECT metadata FROM events WHERE aggregate_type = 'device_command' AND event_type = 'CommandSent' LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(who["user"], "adminPC");

    // and their outcomes are counted: 8 answered 0, 1 device error, 1 unanswered
    let metrics = app.metrics().await;
    let counted = |series: &str| {
        let value = |text: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
                .map_or(0.0, |v| v.parse::<f64>().unwrap())
        };
        value(&metrics) - value(&metrics_before)
    };
    assert_eq!(counted("hangar_device_commands_total{outcome=\"ok\"}"), 8.0, "{metrics}");
    assert_eq!(counted("hangar_device_commands_total{outcome=\"device_error\"}"), 1.0, "{metrics}");
    assert_eq!(counted("hangar_device_commands_total{outcome=\"no_reply\"}"), 1.0, "{metrics}");
    assert_eq!(counted("hangar_device_command_seconds_count"), 10.0, "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn flight_control_payload_and_property_commands() {
    let (app, dock, token) = app_and_dock(3000).await;
    let sn = dock.sn.clone();
    let base = format!("/control/api/v1/devices/{sn}");

    // fly-to: checked, then flight authority is grabbed (the dock has not said it holds it)
    let (_, r) = app.post(&format!("{base}/jobs/fly-to-point"), &token, json!({"max_speed": 20, "points": []})).await;
    assert_eq!(r["code"], 210002);
    let points = json!([{"latitude": 22.5, "longitude": 113.9, "height": 100}]);
    let (_, r) =
        app.post(&format!("{base}/jobs/fly-to-point"), &token, json!({"max_speed": 12, "points": points})).await;
    assert_eq!(r["code"], 0, "{r}");
    let names: Vec<String> =
        dock.received().iter().map(|(_, v)| v["method"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(names, ["flight_authority_grab", "fly_to_point"]);
    let fly = &dock.got("fly_to_point")[0]["data"];
    assert_eq!(
        (fly["max_speed"].as_f64(), fly["points"].clone()),
        (Some(12.0), json!([{"latitude": 22.5, "longitude": 113.9, "height": 100.0}]))
    );
    assert_eq!(fly["fly_to_id"].as_str().map(str::len), Some(36));

    // once the dock says it controls the flight, no grab
    let state = json!({"tid": "s1", "bid": "s1", "timestamp": 1, "gateway": sn, "data": {"control_source": "A"}});
    dock.publish(&format!("thing/product/{sn}/state"), state).await;
    app.wait_for("control source recorded", || async {
        sqlx::query_scalar::<_, String>("SELECT flight_control FROM rm_devices WHERE device_sn = $1")
            .bind(&sn)
            .fetch_one(&app.pool)
            .await
            .unwrap()
            == "A"
    })
    .await;
    let (_, r) = app.request(Method::DELETE, &format!("{base}/jobs/fly-to-point"), Some(&token), None).await;
    assert_eq!(r["code"], 0);
    let takeoff = json!({"target_latitude": 22.5, "target_longitude": 113.9, "target_height": 100,
        "security_takeoff_height": 50, "rth_altitude": 100, "rc_lost_action": 2, "exit_wayline_when_rc_lost": 1,
        "max_speed": 10, "rth_mode": 1, "commander_flight_height": 80});
    let (_, r) = app.post(&format!("{base}/jobs/takeoff-to-point"), &token, takeoff).await;
    assert_eq!(r["code"], 0, "{r}");
    let (_, r) = app.post(&format!("{base}/authority/flight"), &token, json!({})).await;
    assert_eq!(r["code"], 0);
    assert_eq!(dock.got("flight_authority_grab").len(), 1, "no second grab");
    assert_eq!(dock.got("fly_to_point_stop").len(), 1);
    let t = &dock.got("takeoff_to_point")[0]["data"];
    assert_eq!((t["rc_lost_action"].clone(), t["rth_mode"].clone()), (json!(2), json!(1)));
    assert_eq!(t["commander_flight_height"].as_f64(), Some(80.0));
    assert!(t["flight_id"].is_string());

    // payload authority and commands
    let (_, r) = app.post(&format!("{base}/authority/payload"), &token, json!({"payload_index": "80-0-0"})).await;
    assert_eq!(r["code"], 0);
    assert_eq!(dock.got("payload_authority_grab")[0]["data"], json!({"payload_index": "80-0-0"}));
    let cmd = json!({"cmd": "camera_aim", "data": {"payload_index": "80-0-0", "camera_type": "zoom", "locked": false, "x": 0.5, "y": 0.5}});
    let (_, r) = app.post(&format!("{base}/payload/commands"), &token, cmd).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(
        dock.got("camera_aim")[0]["data"],
        json!({"payload_index": "80-0-0", "camera_type": "zoom", "locked": false, "x": 0.5, "y": 0.5})
    );
    let cmd = json!({"cmd": "camera_focal_length_set", "data": {"payload_index": "80-0-0", "camera_type": "wide", "zoom_factor": 5}});
    let (_, r) = app.post(&format!("{base}/payload/commands"), &token, cmd).await;
    assert_eq!(r["code"], 210002);

    // property/set: a nested value goes one field per message; the device's result is the answer
    let prop = format!("/manage/api/v1/devices/{WS}/devices/{sn}/property");
    let (_, r) = app.put(&prop, &token, json!({"distance_limit_status": {"state": 1, "distance_limit": 500}})).await;
    assert_eq!(r["code"], 0, "{r}");
    let sets: Vec<Value> = dock.got("property/set").into_iter().map(|v| v["data"].clone()).collect();
    assert_eq!(sets.len(), 2);
    assert!(sets.contains(&json!({"distance_limit_status": {"state": 1}})));
    assert!(sets.contains(&json!({"distance_limit_status": {"distance_limit": 500}})));
    assert!(dock.got("property/set").iter().all(|v| v.get("method").is_none()), "property/set has no method");
    dock.answer("property/set", Answer::Result(1));
    let (_, r) = app.put(&prop, &token, json!({"height_limit": 200})).await;
    assert_eq!(r["code"], 1);
    let (_, r) = app.put(&prop, &token, json!({"height_limit": 5})).await;
    assert_eq!(r, json!({"code": 210002, "message": "Invalid parameter."}));
    app.stop().await;
}

#[tokio::test]
async fn commands_to_unknown_offline_or_foreign_devices_are_refused_and_not_sent() {
    let mut c = test_config();
    c.mqtt_client_id = format!("{}-bridge", c.nats_prefix);
    c.mqtt_share_group = c.nats_prefix.clone();
    c.device_offline_secs = 2;
    let app = TestApp::spawn_with(c, Components::ALL).await;
    let token = app.admin_token().await;
    let dock = TestDock::start(&prefix()).await;
    let sn = dock.sn.clone();

    // seen but not bound: to this workspace it is unknown, exactly like a serial number never seen
    app.wait_for("dock known", || async { app.online(&sn).await == Some(true) }).await;
    let unbound = job(&app, &token, &sn, "cover_open", json!({})).await;
    let unknown = job(&app, &token, "NO-SUCH-DOCK", "cover_open", json!({})).await;
    assert_eq!(unbound["code"], 210001);
    assert_eq!(unbound, unknown);

    // bound to this workspace: another workspace's token cannot tell it from an unknown device
    bind(&app, &token, &sn).await;
    let now = chrono::Utc::now().timestamp();
    let other = app.sign(json!({"iss": "DJI", "sub": "CloudApiSample", "iat": now, "nbf": now, "exp": now + 600,
        "id": "u-other", "username": "other", "user_type": "1", "workspace_id": "another-workspace"}));
    assert_eq!(job(&app, &other, &sn, "cover_open", json!({})).await, unknown);

    // silent past the offline timeout: refused as offline
    app.wait_for("dock offline", || async { app.online(&sn).await == Some(false) }).await;
    let r = job(&app, &token, &sn, "cover_open", json!({})).await;
    assert_eq!((r["code"].clone(), r["message"].clone()), (json!(212015), json!("The device is offline.")));
    assert!(dock.received().is_empty(), "nothing was sent: {:?}", dock.received());
    app.stop().await;
}

#[tokio::test]
async fn progress_and_control_events_reach_the_web_client_and_are_answered() {
    let (app, mut dock, token) = app_and_dock(3000).await;
    let sn = dock.sn.clone();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws?x-auth-token={token}", app.addr)).await.unwrap();
    // the session is registered once an OSD of the dock reaches it
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no dock_osd on the WebSocket");
        let osd = json!({"tid": uuid::Uuid::new_v4().to_string(), "bid": "o", "timestamp": 1, "gateway": sn, "data": {"mode_code": 0}});
        dock.publish(&format!("thing/product/{sn}/osd"), osd).await;
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            if m.to_text().unwrap_or("").contains("\"dock_osd\"") {
                break;
            }
        }
    }
    let r = job(&app, &token, &sn, "cover_open", json!({})).await;
    assert_eq!(r["code"], 0);
    let bid = dock.got("cover_open")[0]["bid"].as_str().unwrap().to_string();
    let progress = |tid: &str, status: &str, percent: i64| {
        json!({"tid": tid, "bid": bid, "timestamp": 1, "gateway": sn, "method": "cover_open", "need_reply": 1,
            "data": {"result": 0, "output": {"status": status, "progress": {"percent": percent, "current_step": 1,
            "total_steps": 2, "step_key": "open_cover", "step_result": 0}}}})
    };
    let events = format!("thing/product/{sn}/events");
    dock.publish(&events, progress("p1", "in_progress", 50)).await;
    dock.publish(&events, progress("p1", "in_progress", 50)).await; // a repeated copy
    dock.publish(&events, progress("p2", "ok", 100)).await;
    let fly = json!({"tid": "f1", "bid": "fb", "timestamp": 1, "gateway": sn, "method": "fly_to_point_progress",
        "need_reply": 1, "data": {"result": 0, "status": "wayline_progress", "fly_to_id": "x", "way_point_index": 0}});
    dock.publish(&events, fly).await;
    let state = json!({"tid": "s1", "bid": "s1", "timestamp": 1, "gateway": sn,
        "data": {"payloads": [{"payload_index": "80-0-0", "sn": dock.drone, "control_source": "A"}]}});
    dock.publish(&format!("thing/product/{sn}/state"), state).await;

    // each event with need_reply is answered with its tid and method
    let reply = dock.next_event_reply("/events_reply", "p2").await;
    assert_eq!((reply["method"].clone(), reply["data"].clone()), (json!("cover_open"), json!({"result": 0})));

    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && seen.len() < 4 {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await else { continue };
        let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
        if ["cover_open", "fly_to_point_progress", "control_source_change"]
            .contains(&v["biz_code"].as_str().unwrap_or(""))
        {
            seen.push(v);
        }
    }
    let covers: Vec<&Value> = seen.iter().filter(|v| v["biz_code"] == "cover_open").collect();
    assert_eq!(covers.len(), 2, "one push per report, the repeat kept once: {seen:?}");
    assert_eq!(covers[1]["data"]["bid"], bid.as_str());
    assert_eq!(covers[1]["data"]["sn"], sn.as_str());
    assert_eq!(covers[1]["data"]["output"]["progress"]["percent"], 100);
    let fly = seen.iter().find(|v| v["biz_code"] == "fly_to_point_progress").expect("fly_to_point_progress pushed");
    assert_eq!((fly["data"]["sn"].clone(), fly["data"]["result"].clone()), (json!(sn), json!(0)));
    assert_eq!(fly["data"]["message"], "wayline_progress");
    let control = seen.iter().find(|v| v["biz_code"] == "control_source_change").expect("control_source_change");
    assert_eq!(control["data"], json!({"sn": dock.drone, "type": 2, "control_source": "A", "payload_index": "80-0-0"}));
    app.stop().await;
}

#[tokio::test]
async fn two_command_api_processes_answer_callers_whichever_reads_the_reply() {
    let (a, dock, token) = app_and_dock(5000).await;
    // a second command-api on the same database, NATS and broker
    let mut c = a.config.clone();
    c.listen = "127.0.0.1:0".parse().unwrap();
    let b = hangar::start(
        c,
        Components { command: true, query: true, projectors: false, bridge: false },
        shared::Shutdown::new(),
    )
    .await
    .unwrap();
    let b_base = format!("http://{}", b.addr.unwrap());
    let mut calls = Vec::new();
    for i in 0..30 {
        let base = if i % 2 == 0 { a.base.clone() } else { b_base.clone() };
        let (http, token, sn) = (a.http.clone(), token.clone(), dock.sn.clone());
        calls.push(tokio::spawn(async move {
            let r: Value = http
                .post(format!("{base}/control/api/v1/devices/{sn}/jobs/supplement_light_open"))
                .header("x-auth-token", token)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r
        }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap()["code"], 0);
    }
    // each command reached the dock once
    let tids: Vec<String> =
        dock.got("supplement_light_open").iter().map(|v| v["tid"].as_str().unwrap().to_string()).collect();
    let mut unique = tids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((tids.len(), unique.len()), (30, 30));
    // and some replies were read by the process that did not send the command
    let crossed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events s JOIN events r ON r.aggregate_type = s.aggregate_type AND r.aggregate_id = s.aggregate_id \
         WHERE s.aggregate_type = 'device_command' AND s.event_type = 'CommandSent' AND r.event_type = 'ReplyReceived' \
           AND s.metadata->>'instance' <> r.metadata->>'instance'",
    )
    .fetch_one(&a.pool)
    .await
    .unwrap();
    assert!(crossed > 0, "no reply was read by the other process");
    b.stop().await.unwrap();
    a.stop().await;
}

#[tokio::test]
async fn an_rc_bound_right_after_its_first_update_topo_is_bound() {
    let app = app_with_bridge(60).await;
    let pilot = app.pilot_token().await;
    let rc = format!("{}RC", prefix());
    let (client, _rx) = device_client(&[format!("sys/product/{rc}/status_reply")]).await;
    let topo = json!({"tid": "t", "bid": "b", "timestamp": 1, "method": "update_topo",
        "data": {"domain": 2, "type": 119, "sub_type": 0, "thing_version": "1.1.2", "sub_devices": []}});
    client.publish(format!("sys/product/{rc}/status"), QoS::AtLeastOnce, false, topo.to_string()).await.unwrap();
    // Pilot 2 binds at once, before the inbox may have recorded the topology
    let (_, r) = app.post(&format!("/manage/api/v1/devices/{rc}/binding"), &pilot, json!({"workspace_id": WS})).await;
    assert_eq!(r["code"], 0, "{r}");
    app.wait_for("the RC listed as bound", || async {
        let (_, r) = app.get(&format!("/manage/api/v1/devices/{WS}/devices/{rc}"), &pilot).await;
        r["data"]["bound_status"] == true
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn malformed_status_and_event_messages_leave_the_dock_and_its_pushes_intact() {
    let app = app_with_bridge(60).await;
    let token = app.admin_token().await;
    let p = prefix();
    let f = fleet(&p, 1, None).await;
    let (dock, drone) = (f.docks()[0].dock_sn.clone(), f.docks()[0].drone_sn.clone());
    bind(&app, &token, &dock).await;
    let (client, _rx) = device_client(&[]).await;
    let status = format!("sys/product/{dock}/status");
    let events = format!("thing/product/{dock}/events");
    for (topic, body) in [
        (&status, json!({"tid": "m1", "method": "update_topo"})),
        (&status, json!({"tid": "m2", "method": "update_topo", "data": ""})),
        (&status, json!({"tid": "m3", "method": "update_topo", "data": {"domain": "x", "thing_version": 5}})),
        (&status, json!({"tid": "m4", "method": "update_topo", "data": {"domain": 0, "type": 1}})),
        (&status, json!({"tid": "m5", "method": "update_topo", "data": {"sub_devices": "none"}})),
        (&status, json!({"tid": "m6", "data": {"domain": 2, "type": 144, "sub_type": 0}})),
        (&events, json!({"tid": "m7", "method": "hms", "need_reply": 1, "data": {"list": "x"}})),
        (&events, json!({"tid": "m8", "method": "cover_open", "data": null})),
        (&events, json!([1, 2, 3])),
    ] {
        client.publish(topic.as_str(), QoS::AtLeastOnce, false, body.to_string()).await.unwrap();
    }
    client.publish(status.as_str(), QoS::AtLeastOnce, false, "not json at all").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let row: (i32, i32, String, bool) =
        sqlx::query_as("SELECT domain, type, thing_version, online FROM rm_devices WHERE device_sn = $1")
            .bind(&dock)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(row, (3, 2, "1.2.0".to_string(), true));
    let (_, r) = app.get(&format!("/manage/api/v1/devices/{WS}/devices/{dock}"), &token).await;
    assert_eq!(r["data"]["children"]["device_sn"], drone.as_str(), "the aircraft is still the dock's: {r}");

    // the dock's next OSD still reaches the web client as dock_osd
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws?x-auth-token={token}", app.addr)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = false;
    while !got && Instant::now() < deadline {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
            got = v["biz_code"] == "dock_osd" && v["data"]["sn"] == dock.as_str();
        }
    }
    assert!(got, "dock_osd after the malformed burst");
    f.stop().await;
    app.stop().await;
}

#[tokio::test]
#[ignore = "its dock binds itself to every Hangar on the broker; scripts/test runs it alone after the other tests"]
async fn the_dock_simulator_binds_itself_answers_every_dock_endpoint_and_reports_progress() {
    use mqtt_bridge::sim::{Answer as SimAnswer, Fleet, FleetConfig};
    let mut c = test_config();
    c.mqtt_client_id = format!("{}-bridge", c.nats_prefix);
    c.mqtt_share_group = c.nats_prefix.clone();
    c.device_reply_timeout_ms = 1500;
    let app = TestApp::spawn_with(c, Components::ALL).await;
    let token = app.admin_token().await;
    // as `dock-sim` runs for a newcomer: the docks bind themselves with the workspace's code
    let fleet = Fleet::start(FleetConfig {
        docks: 1,
        osd_hz: 2.0,
        sn_prefix: prefix(),
        hms_every: None,
        binding_code: Some("qwe".into()),
        progress_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    fleet.ready(Duration::from_secs(10)).await.unwrap();
    let sn = fleet.docks()[0].dock_sn.clone();
    app.wait_for("the simulated dock bound itself", || async {
        let (_, r) = app.get(&format!("/manage/api/v1/devices/{WS}/devices/bound?domain=3"), &token).await;
        r["data"]["list"].as_array().is_some_and(|l| l.iter().any(|d| d["device_sn"] == sn.as_str()))
    })
    .await;
    app.wait_for("the simulator saw its bind answered", || async { fleet.bound() == 1 }).await;
    app.wait_for("online", || async { app.online(&sn).await == Some(true) }).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws?x-auth-token={token}", app.addr)).await.unwrap();
    // the session is registered once the dock's OSD reaches it; pushes before that are not its own
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no dock_osd on the WebSocket");
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            if m.to_text().unwrap_or("").contains("\"dock_osd\"") {
                break;
            }
        }
    }

    let base = format!("/control/api/v1/devices/{sn}");
    let payload = "80-0-0";
    let calls: Vec<(Method, String, Value, &str, Value)> = vec![
        (Method::POST, format!("{base}/jobs/debug_mode_open"), json!({}), "debug_mode_open", json!("")),
        (Method::POST, format!("{base}/jobs/cover_open"), json!({}), "cover_open", json!("")),
        (
            Method::POST,
            format!("{base}/jobs/battery_maintenance_switch"),
            json!({"action": 1}),
            "battery_maintenance_switch",
            json!({"action": 1}),
        ),
        (Method::PUT, format!("{base}/cover/close"), json!({}), "cover_close", json!("")),
        (Method::POST, format!("{base}/authority/flight"), json!({}), "flight_authority_grab", json!("")),
        (
            Method::POST,
            format!("{base}/authority/payload"),
            json!({"payload_index": payload}),
            "payload_authority_grab",
            json!({"payload_index": payload}),
        ),
        (
            Method::POST,
            format!("{base}/payload/commands"),
            json!({"cmd": "gimbal_reset", "data": {"payload_index": payload, "reset_mode": 0}}),
            "gimbal_reset",
            json!({"payload_index": payload, "reset_mode": 0}),
        ),
        (
            Method::POST,
            format!("{base}/payload/commands"),
            json!({"cmd": "camera_mode_switch", "data": {"payload_index": payload, "camera_mode": 1}}),
            "camera_mode_switch",
            json!({"payload_index": payload, "camera_mode": 1}),
        ),
        (Method::DELETE, format!("{base}/jobs/fly-to-point"), json!({}), "fly_to_point_stop", json!("")),
        (Method::POST, format!("{base}/jobs/debug_mode_close"), json!({}), "debug_mode_close", json!("")),
    ];
    for (method, path, body, mqtt_method, data) in calls {
        let (_, r) = app.request(method, &path, Some(&token), Some(body)).await;
        assert_eq!(r["code"], 0, "{path}: {r}");
        let got = fleet.received().into_iter().rev().find(|c| c.method == mqtt_method).expect(mqtt_method);
        assert_eq!((got.dock_sn.as_str(), &got.data), (sn.as_str(), &data), "{mqtt_method}");
    }
    // the simulator's progress for cover_open reached the web client, 50 % then 100 %
    let mut percents = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while percents.len() < 2 && Instant::now() < deadline {
        if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            let v: Value = serde_json::from_str(m.to_text().unwrap_or("null")).unwrap_or(Value::Null);
            if v["biz_code"] == "cover_open" {
                percents.push(v["data"]["output"]["progress"]["percent"].clone());
            }
        }
    }
    assert_eq!(percents, [json!(50), json!(100)]);

    // scripted device error and silence
    fleet.set_answer("putter_open", SimAnswer::error(514180));
    let r = job(&app, &token, &sn, "putter_open", json!({})).await;
    assert_eq!(r["code"], 514180);
    fleet.set_answer("charge_open", SimAnswer::silent());
    let r = job(&app, &token, &sn, "charge_open", json!({})).await;
    assert_eq!(r["code"], 211001);
    fleet.stop().await;
    app.stop().await;
}
