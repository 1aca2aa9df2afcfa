//! DRC end to end with the dock simulator: the browser's credentials, entering DRC (the dock joins
//! the broker with credentials of its own), the browser flying it over the broker with Hangar out
//! of the path, the broker's authorization questions answered from the session, renewing, leaving,
//! a dock that refuses, the DRC notifications pushed, and bad requests.

use std::time::Duration;

use hangar::Components;
use jsonwebtoken::{DecodingKey, Validation};
use mqtt_bridge::sim::{Answer, Fleet, FleetConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::devices::{bind, prefix};
use crate::helpers::*;

const DRC: &str = "/control/api/v1/workspaces";

/// A browser on the DRC broker with the credentials of `drc/connect`, subscribed to `sub`.
async fn browser(creds: &Value, sub: &str) -> (AsyncClient, mpsc::UnboundedReceiver<Value>) {
    let mut o = MqttOptions::new(creds["client_id"].as_str().unwrap(), "127.0.0.1", 1883);
    o.set_credentials(creds["username"].as_str().unwrap(), creds["password"].as_str().unwrap());
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(o, 100);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    let (c, sub) = (client.clone(), sub.to_string());
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = c.subscribe(&sub, QoS::AtMostOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(serde_json::from_slice(&p.payload).unwrap_or(Value::Null));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(5), ready.recv()).await.expect("subscribed");
    (client, rx)
}

async fn next_method(rx: &mut mpsc::UnboundedReceiver<Value>, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = tokio::time::timeout_at(deadline, rx.recv()).await.unwrap_or_else(|_| panic!("no {method}")).unwrap();
        if m["method"] == method && pred(&m) {
            return m;
        }
    }
}

/// Waits until the aircraft's latest OSD has an elevation that `ok` accepts.
pub(crate) async fn wait_elevation(app: &TestApp, drone: &str, ok: impl Fn(f64) -> bool) {
    wait_osd(app, drone, "elevation", ok).await
}

/// Waits until the device's latest OSD has a `field` that `ok` accepts.
async fn wait_osd(app: &TestApp, sn: &str, field: &str, ok: impl Fn(f64) -> bool) {
    let stream = app.js.get_stream(app.names.telemetry_stream()).await.unwrap();
    let subject = app.names.telemetry_subject(sn, "osd");
    for _ in 0..100 {
        if let Ok(m) = stream.get_last_raw_message_by_subject(&subject).await {
            let osd: Value = serde_json::from_slice(&m.payload).unwrap();
            if osd["data"][field].as_f64().is_some_and(&ok) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sn}'s {field} never came as awaited");
}

async fn authorize(app: &TestApp, client_id: &str, topic: &str, action: &str) -> String {
    let body = json!({"clientid": client_id, "username": "u", "topic": topic, "action": action});
    let (_, r) = app.request(reqwest::Method::POST, "/control/api/v1/drc/authorize", None, Some(body)).await;
    r["result"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_browser_flies_a_dock_over_the_broker_while_its_session_is_open() {
    let app = TestApp::spawn_with(crate::wayline_job::bridge_config(), Components::ALL).await;
    let token = app.admin_token().await;
    let f = Fleet::start(FleetConfig {
        docks: 2,
        osd_hz: 2.0,
        sn_prefix: prefix(),
        hms_every: None,
        cycle_flights: false,
        ..Default::default()
    })
    .await
    .unwrap();
    f.ready(Duration::from_secs(10)).await.unwrap();
    let (dock, other) = (f.docks()[0].dock_sn.clone(), f.docks()[1].dock_sn.clone());
    bind(&app, &token, &dock).await;
    bind(&app, &token, &other).await;
    let (up, down) = (format!("thing/product/{dock}/drc/up"), format!("thing/product/{dock}/drc/down"));

    // the browser's credentials
    let (_, r) = app.post(&format!("{DRC}/{WS}/drc/connect"), &token, json!({})).await;
    assert_eq!(r["code"], 0, "{r}");
    let creds = r["data"].clone();
    assert_eq!(
        (creds["address"].as_str(), creds["username"].as_str()),
        (Some("ws://127.0.0.1:8083/mqtt"), Some("adminPC"))
    );
    assert_eq!(creds["enable_tls"], false);
    let client_id = creds["client_id"].as_str().unwrap().to_string();
    assert!(client_id.starts_with(&format!("{ADMIN_ID}-")), "{client_id}");
    let now = chrono::Utc::now().timestamp();
    assert!((creds["expire_time"].as_i64().unwrap() - (now + 3600)).abs() < 5, "{creds}");
    let key = DecodingKey::from_secret(app.config.jwt_secret.as_bytes());
    let claims =
        jsonwebtoken::decode::<Value>(creds["password"].as_str().unwrap(), &key, &Validation::default()).unwrap();
    assert_eq!(claims.claims["exp"], creds["expire_time"]);
    // the password is no access token
    let (status, _) =
        app.get(&format!("/manage/api/v1/devices/{WS}/devices"), creds["password"].as_str().unwrap()).await;
    assert_eq!(status.as_u16(), 401);
    let (_, again) =
        app.post(&format!("{DRC}/{WS}/drc/connect"), &token, json!({"client_id": client_id, "expire_sec": 7200})).await;
    assert_eq!(again["data"]["client_id"], client_id.as_str(), "a client id is kept");
    assert!((again["data"]["expire_time"].as_i64().unwrap() - (now + 7200)).abs() < 5);

    // nothing is allowed before entering
    assert_eq!(authorize(&app, &client_id, &down, "publish").await, "deny");
    assert_eq!(authorize(&app, &client_id, "thing/product/x/osd", "publish").await, "ignore");

    // an aircraft in its dock is not flown by hand
    let enter = json!({"client_id": client_id, "dock_sn": dock});
    let drone = f.docks()[0].drone_sn.clone();
    wait_elevation(&app, &drone, |e| e == 0.0).await;
    let (_, r) = app.post(&format!("{DRC}/{WS}/drc/enter"), &token, enter.clone()).await;
    assert_eq!(r["code"], -1, "{r}");
    assert!(r["message"].as_str().unwrap().contains("in the air"), "{r}");
    assert!(f.received().iter().all(|c| c.method != "drc_mode_enter"));
    let takeoff = json!({"target_latitude": 22.54, "target_longitude": 113.93, "target_height": 100,
        "security_takeoff_height": 50, "rth_altitude": 100, "rc_lost_action": 2, "exit_wayline_when_rc_lost": 1,
        "max_speed": 10, "rth_mode": 1, "commander_flight_height": 80});
    let (_, r) =
        app.post(&format!("/control/api/v1/devices/{dock}/jobs/takeoff-to-point"), &token, takeoff.clone()).await;
    assert_eq!(r["code"], 0, "{r}");
    wait_elevation(&app, &drone, |e| e > 0.0).await;

    // entering: the dock joins with credentials of its own
    let (_, r) = app.post(&format!("{DRC}/{WS}/drc/enter"), &token, enter.clone()).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": {"sub": [up], "pub": [down]}}));
    let sent = f.received().into_iter().find(|c| c.method == "drc_mode_enter").expect("drc_mode_enter");
    let broker = &sent.data["mqtt_broker"];
    assert_eq!(
        (broker["address"].as_str(), broker["username"].as_str()),
        (Some("tcp://127.0.0.1:1883"), Some(dock.as_str()))
    );
    let dock_client = broker["client_id"].as_str().unwrap().to_string();
    assert!(dock_client.starts_with(&format!("{dock}-")), "{dock_client}");
    assert_eq!((sent.data["osd_frequency"].as_i64(), sent.data["hsi_frequency"].as_i64()), (Some(10), Some(1)));
    let dock_claims = jsonwebtoken::decode::<Value>(broker["password"].as_str().unwrap(), &key, &Validation::default())
        .unwrap()
        .claims;
    assert_eq!(dock_claims["acl"], json!({"pub": [up], "sub": [down]}));

    // the session in the dock's history
    let (_, past) = app.get(&format!("/history/api/v1/workspaces/{WS}/aggregates/drc/{dock}"), &token).await;
    assert_eq!(past["data"]["state"]["session"]["client_id"], client_id.as_str(), "{past}");

    // the broker's questions
    for (client, topic, action, want) in [
        (client_id.as_str(), &down, "publish", "allow"),
        (client_id.as_str(), &up, "subscribe", "allow"),
        (client_id.as_str(), &up, "publish", "deny"),
        (dock_client.as_str(), &up, "publish", "allow"),
        (dock_client.as_str(), &down, "subscribe", "allow"),
        ("someone-else", &down, "publish", "deny"),
        (client_id.as_str(), &format!("thing/product/{other}/drc/down"), "publish", "deny"),
    ] {
        assert_eq!(authorize(&app, client, topic, action).await, want, "{client} {action} {topic}");
    }

    // the dock says it is in DRC
    wait_osd(&app, &dock, "drc_state", |d| d == 2.0).await;

    // the browser flies: Hangar is not in the path
    let (b, mut from_dock) = browser(&creds, &up).await;
    next_method(&mut from_dock, "osd_info_push", |_| true).await;
    for seq in 1..=3 {
        let control = json!({"method": "drone_control", "data": {"seq": seq, "x": 5.0, "y": 0.0, "h": 0.0, "w": 0.0}});
        b.publish(&down, QoS::AtMostOnce, false, control.to_string()).await.unwrap();
        next_method(&mut from_dock, "drone_control", |m| m["data"]["output"]["seq"] == seq).await;
    }
    b.publish(&down, QoS::AtMostOnce, false, json!({"method": "heart_beat", "data": {"ts": 1, "seq": 9}}).to_string())
        .await
        .unwrap();
    next_method(&mut from_dock, "heart_beat", |m| m["data"]["seq"] == 9).await;
    next_method(&mut from_dock, "hsi_info_push", |_| true).await;

    // the same browser again: renewed, the dock is not told twice
    let (_, r) = app.post(&format!("{DRC}/{WS}/drc/enter"), &token, enter.clone()).await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(f.received().iter().filter(|c| c.method == "drc_mode_enter").count(), 1);

    // what the dock reports about DRC reaches the web client
    let mut ws = app.websocket(&token).await;
    let (raw, _) = crate::devices::device_client(&[]).await;
    let event = |method: &str, data: Value| {
        json!({"tid": uuid::Uuid::new_v4().to_string(), "bid": "b", "timestamp": 1, "gateway": dock, "method": method,
            "need_reply": 1, "data": data})
        .to_string()
    };
    let events = format!("thing/product/{dock}/events");
    raw.publish(&events, QoS::AtLeastOnce, false, event("drc_status_notify", json!({"result": 0, "drc_state": 2})))
        .await
        .unwrap();
    raw.publish(
        &events,
        QoS::AtLeastOnce,
        false,
        event("drc_status_notify", json!({"result": 514301, "drc_state": 0})),
    )
    .await
    .unwrap();
    let pushed = next_push(&mut ws, "drc_status_notify").await;
    assert_eq!(
        (pushed["sn"].as_str(), pushed["result"].as_i64()),
        (Some(dock.as_str()), Some(514301)),
        "only failures"
    );
    raw.publish(&events, QoS::AtLeastOnce, false, event("joystick_invalid_notify", json!({"reason": 3})))
        .await
        .unwrap();
    let pushed = next_push(&mut ws, "joystick_invalid_notify").await;
    assert_eq!(pushed["result"], 3);
    assert!(pushed["message"].as_str().unwrap().contains("no-fly"), "{pushed}");

    // leaving: the dock is told, the grants end
    let (_, r) = app.post(&format!("{DRC}/{WS}/drc/exit"), &token, enter.clone()).await;
    assert_eq!(r, json!({"code": 0, "message": "success", "data": ""}));
    let exit = f.received().into_iter().find(|c| c.method == "drc_mode_exit").expect("drc_mode_exit");
    assert_eq!(exit.data, json!(""));
    assert_eq!(authorize(&app, &client_id, &down, "publish").await, "deny");
    assert_eq!(authorize(&app, &dock_client, &up, "publish").await, "deny");
    // once the dock says it left, there is nothing to leave
    wait_osd(&app, &dock, "drc_state", |d| d == 0.0).await;
    let (_, r) = app.post(&format!("{DRC}/{WS}/drc/exit"), &token, enter.clone()).await;
    assert_eq!((r["code"].as_i64(), r["message"].as_str()), (Some(-1), Some("The dock is not in DRC mode.")));

    // a dock that refuses: its code, and nothing stays granted
    let takeoff_other = takeoff.clone();
    let (_, r) =
        app.post(&format!("/control/api/v1/devices/{other}/jobs/takeoff-to-point"), &token, takeoff_other).await;
    assert_eq!(r["code"], 0, "{r}");
    wait_elevation(&app, &f.docks()[1].drone_sn, |e| e > 0.0).await;
    f.set_answer("drc_mode_enter", Answer::error(514301));
    let (_, r) =
        app.post(&format!("{DRC}/{WS}/drc/enter"), &token, json!({"client_id": client_id, "dock_sn": other})).await;
    assert_eq!(r["code"], 514301, "{r}");
    let refused = f.received().into_iter().rfind(|c| c.method == "drc_mode_enter").unwrap();
    let refused_client = refused.data["mqtt_broker"]["client_id"].as_str().unwrap().to_string();
    let other_up = format!("thing/product/{other}/drc/up");
    assert_eq!(authorize(&app, &refused_client, &other_up, "publish").await, "deny");

    // bad requests: nothing reaches a dock
    let before = f.received().len();
    for body in [
        json!({"client_id": client_id}),
        json!({"dock_sn": dock}),
        json!({"client_id": client_id, "dock_sn": dock, "device_info": {"osd_frequency": 50}}),
        json!({"client_id": client_id, "dock_sn": dock, "expire_sec": 10}),
        json!({"client_id": client_id, "dock_sn": "NO-SUCH-DOCK"}),
        json!({"client_id": client_id, "dock_sn": f.docks()[0].drone_sn}),
    ] {
        let (status, r) = app.post(&format!("{DRC}/{WS}/drc/enter"), &token, body.clone()).await;
        assert_eq!(status.as_u16(), 200);
        assert_ne!(r["code"], 0, "{body}: {r}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    }
    let (_, r) = app.post(&format!("{DRC}/{WS}/drc/connect"), &token, json!({"expire_sec": 100})).await;
    assert_eq!(r["code"], -1, "{r}");
    assert_eq!(f.received().len(), before, "nothing sent for refused requests");
    let _ = b.disconnect().await;
    f.stop().await;
    app.stop().await;
}
