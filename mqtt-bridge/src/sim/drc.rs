//! Direct remote control of a simulated dock's aircraft (§11): told `drc_mode_enter`, the dock
//! joins the DRC broker with the credentials it was given, listens on its `drc/down` and speaks on
//! its `drc/up`: `osd_info_push` and `hsi_info_push` at the frequencies asked, an answer to every
//! `drone_control` (with its `seq`), `drone_emergency_stop` and `heart_beat`. `drc_mode_exit` (or
//! the next enter) ends the link.
//!
//! The payloads are pure functions; [`run`] is the link itself, off the driver's loop.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde_json::{json, Value};

use crate::mqtt::BrokerUrl;

/// What `drc_mode_enter` says: where to connect, as whom, and how often to report.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DrcLink {
    pub(super) dock_sn: String,
    pub(super) url: BrokerUrl,
    pub(super) client_id: String,
    pub(super) username: String,
    pub(super) password: String,
    pub(super) osd_hz: f64,
    pub(super) hsi_hz: f64,
    /// Where the aircraft hovers.
    pub(super) lat: f64,
    pub(super) lon: f64,
}

impl DrcLink {
    pub(super) fn parse(dock_sn: &str, data: &Value, lat: f64, lon: f64) -> Result<Self, String> {
        let b = data.get("mqtt_broker").ok_or("drc_mode_enter without mqtt_broker")?;
        let text = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let url = BrokerUrl::parse(&text("address")).map_err(|e| e.to_string())?;
        let hz = |k: &str| data.get(k).and_then(Value::as_f64).unwrap_or(1.0).clamp(1.0, 30.0);
        let client_id = text("client_id");
        if client_id.is_empty() {
            return Err("drc_mode_enter without a client_id".into());
        }
        Ok(Self {
            dock_sn: dock_sn.to_string(),
            url,
            client_id,
            username: text("username"),
            password: text("password"),
            osd_hz: hz("osd_frequency"),
            hsi_hz: hz("hsi_frequency"),
            lat,
            lon,
        })
    }
}

/// The answer on `drc/up` to a message from `drc/down`, if it gets one.
pub(super) fn answer(down: &Value) -> Option<Value> {
    let method = down.get("method").and_then(Value::as_str)?;
    let data = down.get("data").cloned().unwrap_or(Value::Null);
    let reply = match method {
        "drone_control" => json!({"result": 0, "output": {"seq": data.get("seq").cloned().unwrap_or(json!(0))}}),
        "drone_emergency_stop" => json!({"result": 0}),
        "heart_beat" => data,
        _ => return None,
    };
    Some(json!({"method": method, "data": reply, "timestamp": chrono::Utc::now().timestamp_millis()}))
}

fn osd_info(link: &DrcLink, t: f64) -> Value {
    json!({"method": "osd_info_push", "timestamp": chrono::Utc::now().timestamp_millis(), "data": {
        "attitude_head": (t * 10.0) % 360.0 - 180.0, "latitude": link.lat, "longitude": link.lon, "height": 80.0,
        "speed_x": 0.0, "speed_y": 0.0, "speed_z": 0.0, "gimbal_pitch": -30.0, "gimbal_roll": 0.0, "gimbal_yaw": 0.0}})
}

fn hsi_info() -> Value {
    json!({"method": "hsi_info_push", "timestamp": chrono::Utc::now().timestamp_millis(), "data": {
        "up_distance": 60000, "down_distance": 80000, "around_distance": vec![60000; 8],
        "up_enable": true, "up_work": true, "down_enable": true, "down_work": true,
        "left_enable": true, "left_work": true, "right_enable": true, "right_work": true,
        "front_enable": true, "front_work": true, "back_enable": true, "back_work": true,
        "vertical_enable": true, "vertical_work": true, "horizontal_enable": true, "horizontal_work": true}})
}

/// The link: connects, subscribes to `drc/down`, answers and reports until aborted.
pub(super) async fn run(link: DrcLink) {
    let mut o = rumqttc::MqttOptions::new(&link.client_id, link.url.host.clone(), link.url.port);
    o.set_keep_alive(Duration::from_secs(10));
    o.set_credentials(&link.username, &link.password);
    let (client, mut events) = AsyncClient::new(o, 256);
    let down = shared::domain::drc::down_topic(&link.dock_sn);
    let up = shared::domain::drc::up_topic(&link.dock_sn);
    let mut osd = tokio::time::interval(Duration::from_secs_f64(1.0 / link.osd_hz));
    let mut hsi = tokio::time::interval(Duration::from_secs_f64(1.0 / link.hsi_hz));
    let started = tokio::time::Instant::now();
    let publish = |body: Value| {
        let (client, up) = (client.clone(), up.clone());
        async move {
            let _ = client.publish(up, QoS::AtMostOnce, false, body.to_string().into_bytes()).await;
        }
    };
    loop {
        tokio::select! {
            e = events.poll() => match e {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe(&down, QoS::AtMostOnce).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == down => {
                    let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else { continue };
                    if let Some(reply) = answer(&v) {
                        publish(reply).await;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, dock = link.dock_sn, "simulated dock's DRC link reconnects");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            _ = osd.tick() => publish(osd_info(&link, started.elapsed().as_secs_f64())).await,
            _ = hsi.tick() => publish(hsi_info()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_is_read_and_controls_are_answered_with_their_seq() {
        let data = json!({"mqtt_broker": {"address": "tcp://127.0.0.1:1883", "client_id": "D-1", "username": "D",
            "password": "jwt", "expire_time": 1, "enable_tls": false}, "osd_frequency": 10, "hsi_frequency": 1});
        let link = DrcLink::parse("D", &data, 22.5, 113.9).unwrap();
        assert_eq!((link.url.port, link.client_id.as_str(), link.osd_hz), (1883, "D-1", 10.0));
        assert!(DrcLink::parse("D", &json!({}), 0.0, 0.0).is_err());
        let ws = json!({"mqtt_broker": {"address": "ws://127.0.0.1:8083/mqtt", "client_id": "x"}});
        assert!(DrcLink::parse("D", &ws, 0.0, 0.0).is_err(), "the simulator speaks plain MQTT only");

        let a = answer(&json!({"method": "drone_control", "data": {"seq": 7, "x": 5.0}})).unwrap();
        assert_eq!((a["method"].as_str(), a["data"]["output"]["seq"].as_i64()), (Some("drone_control"), Some(7)));
        let beat = json!({"ts": 1, "seq": 2});
        assert_eq!(answer(&json!({"method": "heart_beat", "data": beat})).unwrap()["data"], beat);
        assert!(answer(&json!({"method": "unknown"})).is_none());
        assert_eq!(osd_info(&link, 0.0)["data"]["latitude"], 22.5);
        assert_eq!(hsi_info()["data"]["around_distance"].as_array().map(Vec::len), Some(8));
    }
}
