//! Answers to `services` and `property/set`: the reply a test scripted (result, delay, silence),
//! then what a real dock sends after accepting the command: progress events with the command's
//! `bid` (§8), authority changes on `state` (§7), and the OSD changes the command causes.
//!
//! Flight-task methods a script accepts may still be refused by the dock's state (no prepared
//! task, nothing to pause): `flighttask` decides, and its change comes back in [`Plan::task`].
//!
//! Everything here is pure: [`plan`] says what to publish and when, the driver publishes it.
//! A command's state change (debug mode, cover) takes effect when it arrives, even if its reply
//! is scripted to come later: the OSD a test reads does not depend on the reply delay.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Map, Value};
use shared::protocol::{thing_topic, Envelope};

use super::flighttask::TaskCommand;
use super::telemetry::DockState;
use super::{tid, Body, Kind, Message};

/// How the simulated docks answer one method.
///
/// A non-silent answer is a reply with the command's `tid` and `bid` and `data.result` =
/// [`Answer::result`], published [`Answer::delay`] after the command arrived. Only an answer with
/// result 0 is followed by the method's progress events and state changes; for flight-task
/// methods the dock's state may still turn it into a refusal (the codes are in `sim`, e.g.
/// `TASK_NOT_PREPARED`).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// `data.result` of the reply (for `property/set`, the result of every property).
    pub result: i64,
    /// Time between the command's arrival and the reply.
    pub delay: Duration,
    /// No reply at all, no events, no state change: a dock that never got the command.
    pub silent: bool,
    /// `data.output` of a `services_reply`. `None` gives `{"status":"ok"}` for result 0 and
    /// `{"status":"failed"}` otherwise. Not used for `property/set` (its reply has no output).
    pub output: Option<Value>,
}

impl Default for Answer {
    fn default() -> Self {
        Self { result: 0, delay: Duration::ZERO, silent: false, output: None }
    }
}

impl Answer {
    /// Result 0 at once.
    pub fn ok() -> Self {
        Self::default()
    }

    /// A device error code (e.g. 514301) at once.
    pub fn error(code: i64) -> Self {
        Self { result: code, ..Self::default() }
    }

    /// No reply.
    pub fn silent() -> Self {
        Self { silent: true, ..Self::default() }
    }

    /// Result 0 after `d`.
    pub fn delayed(d: Duration) -> Self {
        Self { delay: d, ..Self::default() }
    }

    /// The same answer with this `data.output`.
    pub fn with_output(self, output: Value) -> Self {
        Self { output: Some(output), ..self }
    }

    /// The reply's `data.output` when the reply's result is `result`: the scripted one only for
    /// the scripted result (a dock refusing in its present state says `failed`).
    fn output(&self, result: i64) -> Value {
        match &self.output {
            Some(o) if result == self.result => o.clone(),
            _ if result == 0 => json!({"status": "ok"}),
            _ => json!({"status": "failed"}),
        }
    }
}

/// Key under which `FleetConfig::answers` scripts every property set that has no entry of its
/// own.
pub const PROPERTY_SET: &str = "property/set";

/// The scripted answers of a fleet.
#[derive(Debug, Clone, Default)]
pub(super) struct Answers {
    pub(super) by_method: HashMap<String, Answer>,
    pub(super) default: Answer,
}

impl Answers {
    /// A `services` method's answer: its own entry, else the default.
    pub(super) fn for_service(&self, method: &str) -> &Answer {
        self.by_method.get(method).unwrap_or(&self.default)
    }

    /// A `property/set`'s answer: the entry of the first property set (in the message's order)
    /// that has one, else the `"property/set"` entry, else the default. Docks get one property per
    /// message (§10), so one answer per message is enough.
    pub(super) fn for_property_set(&self, data: &Value) -> &Answer {
        data.as_object()
            .and_then(|props| props.keys().find_map(|k| self.by_method.get(k)))
            .or_else(|| self.by_method.get(PROPERTY_SET))
            .unwrap_or(&self.default)
    }
}

/// A command as the dock received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommandTopic {
    Services,
    PropertySet,
}

/// What a command changes in the dock's own state (and so in its OSD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    DebugMode(bool),
    Cover(bool),
    /// `takeoff_to_point`: the aircraft leaves and hovers; `return_home` brings it back.
    Airborne(bool),
}

impl Effect {
    pub(super) fn apply(self, dock: &mut DockState) {
        match self {
            Effect::DebugMode(on) => dock.debug_mode = on,
            // A cover does not move while the aircraft is out: the flight owns it.
            Effect::Cover(open) if !dock.flying => dock.cover_open = open,
            Effect::Cover(_) => {}
            Effect::Airborne(up) => dock.airborne = up,
        }
    }
}

/// What the dock does about one command.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// In order; each `after` counts from the previous message.
    pub(super) messages: Vec<Message>,
    pub(super) effect: Option<Effect>,
    /// A flight task's change, for the driver to make (it may start downloads and requests).
    pub(super) task: Option<TaskCommand>,
    /// Time between the command and its reply: a flight's first progress follows the reply.
    pub(super) reply_delay: Duration,
}

/// Remote-debug methods whose execution a dock reports with `{status, progress}` events of the
/// same name (§8, §9.2).
use shared::protocol::services::REMOTE_DEBUG_PROGRESS as DEBUG_PROGRESS;

/// The reply and what follows it, for a command that arrived on `topic` with envelope `command`.
pub(super) fn plan(
    dock: &DockState,
    topic: CommandTopic,
    command: &Envelope,
    answers: &Answers,
    interval: Duration,
) -> Plan {
    let sn = &dock.ids.dock_sn;
    let answer = match topic {
        CommandTopic::Services => answers.for_service(&command.method),
        CommandTopic::PropertySet => answers.for_property_set(&command.data),
    };
    if answer.silent {
        return Plan::default();
    }
    // Flight-task methods the script accepts may still be refused by the dock's state.
    let decision = match topic {
        CommandTopic::Services if answer.result == 0 => dock.tasks.decide(&command.method, &command.bid, &command.data),
        _ => None,
    };
    let result = decision.as_ref().map_or(answer.result, |d| d.result);
    let reply = match topic {
        CommandTopic::Services => Message {
            after: answer.delay,
            topic: thing_topic(sn, "services_reply"),
            kind: Kind::Reply,
            body: Body::Reply {
                tid: command.tid.clone(),
                bid: command.bid.clone(),
                method: Some(command.method.clone()),
                // the log list comes as `files` directly under `data`, as docks answer it
                data: if command.method == "fileupload_list" && result == 0 && answer.output.is_none() {
                    super::logs::list_reply(&dock.ids, &command.data, chrono::Utc::now().timestamp_millis())
                } else {
                    json!({"result": result, "output": answer.output(result)})
                },
            },
        },
        CommandTopic::PropertySet => {
            let results: Map<String, Value> = match &command.data {
                Value::Object(props) => props.keys().map(|k| (k.clone(), json!({"result": answer.result}))).collect(),
                _ => Map::new(),
            };
            Message {
                after: answer.delay,
                topic: thing_topic(sn, "property/set_reply"),
                kind: Kind::Reply,
                body: Body::Reply {
                    tid: command.tid.clone(),
                    bid: command.bid.clone(),
                    method: None,
                    data: Value::Object(results),
                },
            }
        }
    };
    let mut plan = Plan { messages: vec![reply], reply_delay: answer.delay, ..Plan::default() };
    if result != 0 || topic != CommandTopic::Services {
        return plan;
    }
    plan.task = decision.and_then(|d| d.command);
    let method = command.method.as_str();
    let event = |after: Duration, method: &str, data: Value| Message::event(after, sn, &command.bid, method, data);
    // a `state` message of the dock or of one of its devices
    let state_of = |after: Duration, device: &str, data: Value| Message {
        after,
        topic: thing_topic(device, "state"),
        kind: Kind::Event,
        body: Body::Up {
            tid: tid(),
            bid: command.bid.clone(),
            gateway: sn.clone(),
            method: None,
            need_reply: false,
            data,
        },
    };
    let state = |data: Value| state_of(Duration::ZERO, sn, data);
    let follow: Vec<Message> = match method {
        m if DEBUG_PROGRESS.contains(&m) => vec![
            event(Duration::ZERO, m, debug_progress(m, "in_progress", 50, 1)),
            event(interval, m, debug_progress(m, "ok", 100, 2)),
        ],
        "fly_to_point" => {
            let id = command.data.get("fly_to_id").cloned().unwrap_or_else(|| json!(""));
            ["wayline_progress", "wayline_ok"]
                .iter()
                .enumerate()
                .map(|(i, s)| event(step(i, interval), "fly_to_point_progress", fly_to_point_progress(s, &id)))
                .collect()
        }
        "takeoff_to_point" => {
            let id = command.data.get("flight_id").cloned().unwrap_or_else(|| json!(""));
            let track = format!("track-{}", command.bid);
            ["task_ready", "wayline_progress", "wayline_ok"]
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    event(step(i, interval), "takeoff_to_point_progress", takeoff_to_point_progress(s, &id, &track))
                })
                .collect()
        }
        "return_home" => vec![event(Duration::ZERO, "return_home_info", return_home_info(dock.lat, dock.lon))],
        // download, upgrade, done; then each device says its new version in its state
        "ota_create" => {
            let progress = |status: &str, percent: i64, current_step: i64| {
                json!({"result": 0, "output": {"status": status, "progress": {"percent": percent, "current_step": current_step},
                    "ext": {"rate": 0}}})
            };
            let mut out = vec![
                event(Duration::ZERO, "ota_progress", progress("in_progress", 40, 1)),
                event(interval, "ota_progress", progress("in_progress", 80, 2)),
                event(step(2, interval), "ota_progress", progress("ok", 100, 2)),
            ];
            for d in command.data.get("devices").and_then(Value::as_array).into_iter().flatten() {
                let (Some(device), Some(version)) = (d.get("sn").and_then(Value::as_str), d.get("product_version"))
                else {
                    continue;
                };
                out.push(state_of(step(2, interval), device, json!({"firmware_version": version})));
            }
            out
        }
        // A flight's progress carries the flight id as its bid (§13 note 4), not the command's.
        "flighttask_pause" | "flighttask_recovery" => {
            let status = if method == "flighttask_pause" { "paused" } else { "in_progress" };
            dock.tasks
                .progress_now(status)
                .map(|p| Message::event(Duration::ZERO, sn, &p.flight_id, "flighttask_progress", p.data))
                .into_iter()
                .collect()
        }
        "upload_flighttask_media_prioritize" => {
            let id = command.data.get("flight_id").cloned().unwrap_or_else(|| json!(""));
            vec![event(Duration::ZERO, "highest_priority_upload_flighttask_media", json!({"flight_id": id}))]
        }
        "flight_authority_grab" => vec![state(json!({"control_source": "A"}))],
        "payload_authority_grab" => {
            let index = command.data.get("payload_index").cloned().unwrap_or_else(|| json!(""));
            vec![state(json!({"payloads": [{"control_source": "A", "payload_index": index, "sn": dock.ids.drone_sn}]}))]
        }
        _ => Vec::new(),
    };
    plan.messages.extend(follow);
    plan.effect = match method {
        "debug_mode_open" => Some(Effect::DebugMode(true)),
        "debug_mode_close" => Some(Effect::DebugMode(false)),
        "cover_open" => Some(Effect::Cover(true)),
        "cover_close" | "cover_force_close" => Some(Effect::Cover(false)),
        "takeoff_to_point" => Some(Effect::Airborne(true)),
        "return_home" => Some(Effect::Airborne(false)),
        _ => None,
    };
    plan
}

/// The first event follows the reply at once, the next ones one `interval` apart.
fn step(i: usize, interval: Duration) -> Duration {
    if i == 0 {
        Duration::ZERO
    } else {
        interval
    }
}

/// Progress of a two-step remote-debug action (§8).
pub(super) fn debug_progress(method: &str, status: &str, percent: i64, current_step: i64) -> Value {
    json!({"result": 0, "output": {"status": status, "progress": {
        "percent": percent,
        "current_step": current_step,
        "total_steps": 2,
        "step_key": format!("{method}_step_{current_step}"),
        "step_result": 0,
    }}})
}

/// `fly_to_point_progress` data (§8): flat, no `output` wrapper.
pub(super) fn fly_to_point_progress(status: &str, fly_to_id: &Value) -> Value {
    json!({"result": 0, "status": status, "fly_to_id": fly_to_id, "way_point_index": 0})
}

/// `takeoff_to_point_progress` data (§8): the distance and time left shrink to 0 at `wayline_ok`.
pub(super) fn takeoff_to_point_progress(status: &str, flight_id: &Value, track_id: &str) -> Value {
    let (distance, time) = match status {
        "task_ready" => (120.0, 30.0),
        "wayline_progress" => (60.0, 15.0),
        _ => (0.0, 0.0),
    };
    json!({
        "result": 0, "status": status, "flight_id": flight_id, "track_id": track_id,
        "way_point_index": 0, "remaining_distance": distance, "remaining_time": time,
        "planned_path_points": [],
    })
}

/// `return_home_info` data (§8): the way home ends above the dock.
pub(super) fn return_home_info(lat: f64, lon: f64) -> Value {
    json!({
        "planned_path_points": [{"latitude": lat, "longitude": lon, "height": 100.0}],
        "last_point_type": 0,
        "flight_id": "",
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::sim::SimDock;

    fn dock() -> DockState {
        DockState::new(SimDock::new("X", 1), 0)
    }

    fn envelope(json: &str) -> Envelope {
        Envelope::parse(json.as_bytes()).unwrap()
    }

    fn decode(o: &Message) -> Value {
        serde_json::from_slice(&o.body.encode()).unwrap()
    }

    fn services(method: &str, data: &str, answers: &Answers) -> Plan {
        let e = envelope(&format!(r#"{{"tid":"t1","bid":"b1","timestamp":1,"method":"{method}","data":{data}}}"#));
        plan(&dock(), CommandTopic::Services, &e, answers, Duration::from_millis(200))
    }

    #[test]
    fn services_get_an_ok_reply_with_tid_and_bid() {
        let p = services("supplement_light_open", r#""""#, &Answers::default());
        assert_eq!(p.messages.len(), 1);
        assert_eq!(p.messages[0].topic, "thing/product/XDOCK0001/services_reply");
        let body = decode(&p.messages[0]);
        assert_eq!(
            (body["tid"].as_str(), body["bid"].as_str(), body["method"].as_str()),
            (Some("t1"), Some("b1"), Some("supplement_light_open"))
        );
        assert_eq!(body["data"], json!({"result": 0, "output": {"status": "ok"}}));
    }

    #[test]
    fn property_set_gets_a_result_per_property() {
        let e = envelope(r#"{"tid":"t","bid":"b","data":{"height_limit":200}}"#);
        let p = plan(&dock(), CommandTopic::PropertySet, &e, &Answers::default(), Duration::ZERO);
        assert_eq!(p.messages.len(), 1);
        assert_eq!(p.messages[0].topic, "thing/product/XDOCK0001/property/set_reply");
        let body = decode(&p.messages[0]);
        assert_eq!(body["data"], json!({"height_limit": {"result": 0}}));
        assert!(body.get("method").is_none());
    }

    #[test]
    fn answers_are_looked_up_by_method_then_default() {
        let mut answers = Answers::default();
        answers.by_method.insert("cover_open".into(), Answer::error(514301));
        answers.by_method.insert("height_limit".into(), Answer::error(1));
        answers.by_method.insert(PROPERTY_SET.into(), Answer::error(2));
        answers.default = Answer::delayed(Duration::from_secs(1));
        assert_eq!(answers.for_service("cover_open"), &Answer::error(514301));
        assert_eq!(answers.for_service("cover_close"), &Answer::delayed(Duration::from_secs(1)));
        assert_eq!(answers.for_property_set(&json!({"rth_altitude": 1, "height_limit": 2})), &Answer::error(1));
        assert_eq!(answers.for_property_set(&json!({"rth_altitude": 1})), &Answer::error(2));
        answers.by_method.remove(PROPERTY_SET);
        assert_eq!(answers.for_property_set(&json!("")), &Answer::delayed(Duration::from_secs(1)));
    }

    #[test]
    fn an_error_is_replied_without_events_or_effects() {
        let mut answers = Answers::default();
        answers.by_method.insert("cover_open".into(), Answer::error(514301));
        let p = services("cover_open", r#""""#, &answers);
        assert_eq!(p.messages.len(), 1);
        assert_eq!(decode(&p.messages[0])["data"], json!({"result": 514301, "output": {"status": "failed"}}));
        assert_eq!(p.effect, None);
    }

    #[test]
    fn a_silent_method_gets_nothing_and_a_delayed_one_waits() {
        let mut answers = Answers::default();
        answers.by_method.insert("cover_open".into(), Answer::silent());
        answers.by_method.insert("drone_open".into(), Answer::delayed(Duration::from_secs(2)));
        let p = services("cover_open", r#""""#, &answers);
        assert!(p.messages.is_empty() && p.effect.is_none());
        let p = services("drone_open", r#""""#, &answers);
        assert_eq!(p.messages[0].after, Duration::from_secs(2));
        assert_eq!(p.messages[1].after, Duration::ZERO, "progress follows the reply");
    }

    #[test]
    fn scripted_output_replaces_the_status() {
        let answers = Answers { default: Answer::ok().with_output(json!("rtsp://x")), ..Answers::default() };
        let p = services("live_start_push", "{}", &answers);
        assert_eq!(decode(&p.messages[0])["data"], json!({"result": 0, "output": "rtsp://x"}));
    }

    #[test]
    fn cover_open_reports_progress_with_the_command_bid() {
        let p = services("cover_open", r#""""#, &Answers::default());
        assert_eq!(p.messages.len(), 3);
        assert_eq!(p.effect, Some(Effect::Cover(true)));
        let events: Vec<Value> = p.messages[1..].iter().map(decode).collect();
        assert_eq!(p.messages[1].topic, "thing/product/XDOCK0001/events");
        assert_eq!(p.messages[2].after, Duration::from_millis(200));
        for e in &events {
            assert_eq!((e["method"].as_str(), e["bid"].as_str()), (Some("cover_open"), Some("b1")));
            assert_eq!((e["need_reply"].as_i64(), e["gateway"].as_str()), (Some(1), Some("XDOCK0001")));
            assert_ne!(e["tid"], "t1");
        }
        assert_eq!(events[0]["data"]["output"]["status"], "in_progress");
        assert_eq!(events[0]["data"]["output"]["progress"]["percent"], 50);
        assert_eq!(events[1]["data"]["output"]["status"], "ok");
        assert_eq!(events[1]["data"]["output"]["progress"]["percent"], 100);
        assert_ne!(events[0]["tid"], events[1]["tid"]);
    }

    #[test]
    fn flight_commands_report_their_own_progress() {
        let p = services("fly_to_point", r#"{"fly_to_id":"f1","max_speed":5,"points":[]}"#, &Answers::default());
        let events: Vec<Value> = p.messages[1..].iter().map(decode).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["method"], "fly_to_point_progress");
        assert_eq!(
            events[0]["data"],
            json!({"result": 0, "status": "wayline_progress", "fly_to_id": "f1", "way_point_index": 0})
        );
        assert_eq!(events[1]["data"]["status"], "wayline_ok");

        let p = services("takeoff_to_point", r#"{"flight_id":"j1"}"#, &Answers::default());
        let events: Vec<Value> = p.messages[1..].iter().map(decode).collect();
        let statuses: Vec<&str> = events.iter().map(|e| e["data"]["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["task_ready", "wayline_progress", "wayline_ok"]);
        assert_eq!(events[2]["method"], "takeoff_to_point_progress");
        assert_eq!(events[2]["data"]["flight_id"], "j1");
        assert_eq!(events[2]["data"]["remaining_distance"], 0.0);
        assert!(events[0]["data"]["planned_path_points"].is_array() && events[0]["data"].get("track_id").is_some());

        let p = services("return_home", r#""""#, &Answers::default());
        let info = decode(&p.messages[1]);
        assert_eq!(info["method"], "return_home_info");
        assert_eq!(info["data"]["last_point_type"], 0);
        assert!(info["data"]["planned_path_points"][0]["latitude"].is_f64());
    }

    #[test]
    fn authority_grabs_change_state() {
        let p = services("flight_authority_grab", r#""""#, &Answers::default());
        assert_eq!(p.messages[1].topic, "thing/product/XDOCK0001/state");
        let s = decode(&p.messages[1]);
        assert_eq!(
            (s["data"].clone(), s["bid"].as_str(), s["gateway"].as_str()),
            (json!({"control_source": "A"}), Some("b1"), Some("XDOCK0001"))
        );
        assert!(s.get("method").is_none());

        let p = services("payload_authority_grab", r#"{"payload_index":"99-0-0"}"#, &Answers::default());
        assert_eq!(
            decode(&p.messages[1])["data"],
            json!({"payloads": [{"control_source": "A", "payload_index": "99-0-0", "sn": "XUAV0001"}]})
        );
    }

    #[test]
    fn a_prepare_is_replied_and_remembered_unless_scripted_otherwise() {
        let data =
            r#"{"flight_id":"j1","task_type":0,"execute_time":1,"file":{"url":"http://x/w.kmz","fingerprint":"ab"}}"#;
        let p = services("flighttask_prepare", data, &Answers::default());
        assert_eq!(p.messages.len(), 1, "a reply and nothing else");
        assert_eq!(decode(&p.messages[0])["data"], json!({"result": 0, "output": {"status": "ok"}}));
        let Some(TaskCommand::Prepare(task)) = p.task else { panic!("prepared") };
        assert_eq!((task.flight_id.as_str(), task.url.as_str()), ("j1", "http://x/w.kmz"));

        let mut answers = Answers::default();
        answers.by_method.insert("flighttask_prepare".into(), Answer::error(316001));
        let p = services("flighttask_prepare", data, &answers);
        assert_eq!(decode(&p.messages[0])["data"]["result"], 316001);
        assert!(p.task.is_none(), "a refused prepare leaves nothing to fly");
        answers.by_method.insert("flighttask_prepare".into(), Answer::silent());
        let p = services("flighttask_prepare", data, &answers);
        assert!(p.messages.is_empty() && p.task.is_none());
    }

    #[test]
    fn an_execute_without_a_prepared_task_is_refused() {
        let p = services("flighttask_execute", r#"{"flight_id":"j1"}"#, &Answers::default());
        assert_eq!(
            decode(&p.messages[0])["data"],
            json!({"result": crate::sim::TASK_NOT_PREPARED, "output": {"status": "failed"}})
        );
        assert!(p.task.is_none());
    }

    #[test]
    fn a_delayed_execute_tells_the_flight_to_wait_for_the_reply() {
        let mut d = dock();
        d.tasks.prepare(crate::sim::PreparedTask { flight_id: "j1".into(), ..Default::default() }, Instant::now());
        let e =
            envelope(r#"{"tid":"t","bid":"j1","timestamp":1,"method":"flighttask_execute","data":{"flight_id":"j1"}}"#);
        let mut answers = Answers::default();
        answers.by_method.insert("flighttask_execute".into(), Answer::delayed(Duration::from_secs(1)));
        let p = plan(&d, CommandTopic::Services, &e, &answers, Duration::ZERO);
        assert_eq!(p.task, Some(TaskCommand::Execute("j1".into())));
        assert_eq!(p.reply_delay, Duration::from_secs(1));
        assert_eq!(decode(&p.messages[0])["data"]["result"], 0);
    }

    #[test]
    fn pause_reports_paused_progress_with_the_flight_id_as_bid() {
        let mut d = dock();
        let now = Instant::now();
        d.tasks.prepare(crate::sim::PreparedTask { flight_id: "j1".into(), ..Default::default() }, now);
        let settings = super::super::flighttask::FlightSettings {
            steps: 4,
            interval: Duration::from_millis(200),
            media: 2,
            resource_get: crate::sim::ResourceGet::WhenNoUrl,
        };
        d.tasks.execute("j1", now, settings, crate::sim::FlightOutcome::Ok);
        let e = envelope(r#"{"tid":"t","bid":"b-pause","timestamp":1,"method":"flighttask_pause","data":""}"#);
        let p = plan(&d, CommandTopic::Services, &e, &Answers::default(), Duration::ZERO);
        assert_eq!(p.task, Some(TaskCommand::Pause));
        assert_eq!(p.messages.len(), 2);
        assert_eq!(decode(&p.messages[0])["bid"], "b-pause", "the reply echoes the command");
        let progress = decode(&p.messages[1]);
        assert_eq!(
            (progress["method"].as_str(), progress["bid"].as_str(), progress["need_reply"].as_i64()),
            (Some("flighttask_progress"), Some("j1"), Some(1))
        );
        assert_eq!(progress["data"]["output"]["status"], "paused");

        let p = services("flighttask_pause", r#""""#, &Answers::default());
        assert_eq!(decode(&p.messages[0])["data"]["result"], crate::sim::NOTHING_TO_PAUSE);
        assert_eq!(p.messages.len(), 1);
    }

    #[test]
    fn undo_and_media_priority() {
        let p = services("flighttask_undo", r#"{"flight_ids":["j1","j2"]}"#, &Answers::default());
        assert_eq!(p.task, Some(TaskCommand::Undo(vec!["j1".into(), "j2".into()])));
        assert_eq!(decode(&p.messages[0])["data"]["result"], 0);

        let p = services("upload_flighttask_media_prioritize", r#"{"flight_id":"j1"}"#, &Answers::default());
        assert_eq!(p.messages.len(), 2);
        let e = decode(&p.messages[1]);
        assert_eq!(
            (e["method"].as_str(), e["need_reply"].as_i64(), &e["data"]),
            (Some("highest_priority_upload_flighttask_media"), Some(1), &json!({"flight_id": "j1"}))
        );
        let mut answers = Answers::default();
        answers.by_method.insert("upload_flighttask_media_prioritize".into(), Answer::error(324032));
        let p = services("upload_flighttask_media_prioritize", r#"{"flight_id":"j1"}"#, &answers);
        assert_eq!(p.messages.len(), 1);
    }

    #[test]
    fn debug_mode_and_cover_effects() {
        assert_eq!(services("debug_mode_open", r#""""#, &Answers::default()).effect, Some(Effect::DebugMode(true)));
        assert_eq!(services("debug_mode_close", r#""""#, &Answers::default()).effect, Some(Effect::DebugMode(false)));
        assert_eq!(services("cover_force_close", r#""""#, &Answers::default()).effect, Some(Effect::Cover(false)));
        let mut d = dock();
        Effect::Cover(true).apply(&mut d);
        assert!(d.cover_open);
        d.flying = true;
        Effect::Cover(false).apply(&mut d);
        assert!(d.cover_open, "a flight owns the cover");
    }
}
