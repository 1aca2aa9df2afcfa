//! Flight tasks, DJI's wayline jobs (§9.1, §8, §13 note 4): `flighttask_prepare` leaves a task
//! on the dock; `flighttask_execute` flies it, reported by `flighttask_progress` events whose
//! `bid` is the flight id, until a terminal `ok` or `failed`; `flighttask_pause` and
//! `flighttask_recovery` hold and resume a flight; `flighttask_undo` forgets prepared tasks; a
//! conditional task reports `flighttask_ready` once its ready conditions hold. Timed and
//! conditional tasks, like immediate ones, fly when the cloud sends `flighttask_execute`.
//!
//! [`Tasks`] is one dock's part and is pure: it decides the reply to each of these methods, keeps
//! the prepared tasks and the flight, and says on each [`Tasks::poll`] which progress is due. The
//! driver does the rest: downloads the wayline file and checks its fingerprint
//! ([`fetch_wayline`]), asks `flighttask_resource_get` (§5.6) when a task has no URL, and uploads
//! the media after an `ok` (`media`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use md5::Digest as _;
use serde_json::{json, Value};
use shared::protocol::as_i64;

/// Result of `flighttask_execute` for a flight id the dock has no prepared task for (never
/// prepared, undone, or already flown). The simulator's choice within DJI's 314xxx family.
pub const TASK_NOT_PREPARED: i64 = 314001;
/// `data.result` of the `failed` progress that ends a flight at once because its wayline file
/// could not be used: the download failed, its MD5 did not match `file.fingerprint`, or
/// `flighttask_resource_get` was refused or unanswered. The simulator's choice within DJI's
/// 316xxx (flight preparation) family.
pub const WAYLINE_UNUSABLE: i64 = 316001;
/// Result of `flighttask_execute` while another flight is in progress (DJI: "performing another
/// task").
pub const OTHER_TASK_RUNNING: i64 = 319016;
/// Result of `flighttask_pause` when no flight is in progress, or it is already paused. The
/// simulator's choice within DJI's 321xxx (wayline execution) family.
pub const NOTHING_TO_PAUSE: i64 = 321000;
/// Result of `flighttask_recovery` when no flight is paused. The simulator's choice, as above.
pub const NOTHING_TO_RECOVER: i64 = 321001;

/// How often a dock checks the ready conditions of its conditional tasks.
pub(super) const READY_CHECK: Duration = Duration::from_secs(1);
/// A wayline file larger than this is refused (a 1,000-waypoint KMZ is far smaller).
const WAYLINE_MAX_BYTES: usize = 64 << 20;

/// `task_type` of a conditional task: flown when the cloud answers its `flighttask_ready`.
const CONDITIONAL: i64 = 2;

/// How a flight ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlightOutcome {
    /// `ok` with percent 100 and `ext.media_count` = media per flight, then the media upload.
    #[default]
    Ok,
    /// After the in-progress steps, `failed` with this `data.result` (e.g. a 321xxx code); no
    /// media.
    Failed(i64),
}

/// When a dock asks the cloud for its wayline file with `flighttask_resource_get` before flying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResourceGet {
    /// Only when the prepared task had no `file.url` (the default).
    #[default]
    WhenNoUrl,
    /// Before every flight, then downloading the URL of the answer, to exercise the cloud's
    /// answer to it.
    Always,
}

/// `ready_conditions` of a prepare (times in ms since the epoch); a missing or zero value
/// imposes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadyConditions {
    pub battery_capacity: Option<i64>,
    pub begin_time: Option<i64>,
    pub end_time: Option<i64>,
}

impl ReadyConditions {
    /// Whether a dock whose aircraft has `battery` percent may fly at `now_ms`.
    pub fn hold(&self, battery: i64, now_ms: i64) -> bool {
        self.battery_capacity.is_none_or(|b| battery >= b)
            && self.begin_time.is_none_or(|t| now_ms >= t)
            && self.end_time.is_none_or(|t| now_ms <= t)
    }
}

/// A `flighttask_prepare` as the dock understood it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PreparedTask {
    /// `data.flight_id`, or the command's `bid` when missing (they are the same job id).
    pub flight_id: String,
    /// 0 immediate, 1 timed, 2 conditional.
    pub task_type: i64,
    /// ms since the epoch; 0 when missing.
    pub execute_time: i64,
    /// `file.url`, empty when missing.
    pub url: String,
    /// `file.fingerprint`: the MD5 of the file, in hex.
    pub fingerprint: String,
    pub ready: ReadyConditions,
    pub rth_altitude: Option<i64>,
    /// The prepare's whole `data`, for anything else a test wants to read.
    pub data: Value,
}

impl PreparedTask {
    /// Reads leniently: numbers may come as strings, anything may be missing.
    pub(super) fn parse(bid: &str, data: &Value) -> Self {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let num = |v: Option<&Value>| v.and_then(as_i64);
        let file = data.get("file");
        let ready = data.get("ready_conditions");
        let given = |k: &str| num(ready.and_then(|r| r.get(k))).filter(|v| *v != 0);
        let flight_id = text(data.get("flight_id"));
        Self {
            flight_id: if flight_id.is_empty() { bid.to_string() } else { flight_id },
            task_type: num(data.get("task_type")).unwrap_or(0),
            execute_time: num(data.get("execute_time")).unwrap_or(0),
            url: text(file.and_then(|f| f.get("url"))),
            fingerprint: text(file.and_then(|f| f.get("fingerprint"))),
            ready: ReadyConditions {
                battery_capacity: given("battery_capacity"),
                begin_time: given("begin_time"),
                end_time: given("end_time"),
            },
            rth_altitude: num(data.get("rth_altitude")),
            data: data.clone(),
        }
    }
}

/// What a flight-task command changes, once its reply is result 0.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TaskCommand {
    Prepare(PreparedTask),
    Execute(String),
    Pause,
    Recover,
    Undo(Vec<String>),
}

/// The dock's answer to a flight-task command it was scripted to accept.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Decision {
    /// `data.result` of the reply: 0, or why the dock refuses in its present state.
    pub(super) result: i64,
    pub(super) command: Option<TaskCommand>,
}

/// What a flight needs from settings of the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FlightSettings {
    /// In-progress events before the terminal one.
    pub(super) steps: u32,
    /// Between two progress events.
    pub(super) interval: Duration,
    /// Photos taken (`ext.media_count` of an `ok`).
    pub(super) media: u32,
    pub(super) resource_get: ResourceGet,
}

/// One `flighttask_progress` due now.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Progress {
    pub(super) flight_id: String,
    pub(super) data: Value,
    /// Set on the terminal one.
    pub(super) end: Option<End>,
}

/// How a flight ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Ok { media: u32 },
    Failed(i64),
}

/// What [`Tasks::poll`] found due.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Polled {
    /// Conditional tasks whose conditions now hold: one `flighttask_ready` each.
    pub(super) ready: Vec<String>,
    pub(super) progress: Vec<Progress>,
}

/// Where a flight's wayline file stands. A generation ties a download's outcome to the prepare
/// (or `flighttask_resource_get` answer) that started it, so that a stale one changes nothing.
#[derive(Debug, Clone, PartialEq)]
enum FileCheck {
    /// The task has no URL (yet): the dock asks `flighttask_resource_get` when it flies.
    NoUrl,
    Downloading(u64),
    Matched,
    Broken(String),
}

#[derive(Debug)]
struct Prepared {
    task: PreparedTask,
    file: FileCheck,
    ready_sent: bool,
    next_check: Instant,
}

#[derive(Debug)]
struct Flight {
    task: PreparedTask,
    track_id: String,
    /// `NoUrl` while `flighttask_resource_get` is unanswered.
    file: FileCheck,
    settings: FlightSettings,
    outcome: FlightOutcome,
    /// In-progress events sent so far.
    sent: u32,
    /// When the next progress is due (once the file is ready and unless paused).
    next_at: Instant,
    paused: bool,
}

impl Flight {
    /// The progress of the last in-progress step sent (0 before the first).
    fn current(&self) -> (u32, u32) {
        let step = self.sent.saturating_sub(1);
        (step, percent(step, self.settings.steps))
    }

    fn progress(&self, status: &str, result: i64, step: u32, percent: u32, media: u32) -> Progress {
        let data = progress_data(status, result, &self.task.flight_id, &self.track_id, step, percent, media);
        Progress { flight_id: self.task.flight_id.clone(), data, end: None }
    }
}

/// One dock's prepared tasks and its flight.
#[derive(Debug, Default)]
pub(super) struct Tasks {
    prepared: HashMap<String, Prepared>,
    flight: Option<Flight>,
    generation: u64,
}

impl Tasks {
    /// The reply to a flight-task `method` the scripted answer accepts, and what it changes;
    /// `None` for other methods.
    pub(super) fn decide(&self, method: &str, bid: &str, data: &Value) -> Option<Decision> {
        let ok = |command| Some(Decision { result: 0, command: Some(command) });
        let refuse = |result| Some(Decision { result, command: None });
        match method {
            "flighttask_prepare" => ok(TaskCommand::Prepare(PreparedTask::parse(bid, data))),
            "flighttask_execute" => {
                let id = data.get("flight_id").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(bid);
                match &self.flight {
                    // A redelivered execute of the flight in progress: nothing more to do.
                    Some(f) if f.task.flight_id == id => Some(Decision { result: 0, command: None }),
                    Some(_) => refuse(OTHER_TASK_RUNNING),
                    None if self.prepared.contains_key(id) => ok(TaskCommand::Execute(id.to_string())),
                    None => refuse(TASK_NOT_PREPARED),
                }
            }
            "flighttask_pause" => match &self.flight {
                Some(f) if !f.paused => ok(TaskCommand::Pause),
                _ => refuse(NOTHING_TO_PAUSE),
            },
            "flighttask_recovery" => match &self.flight {
                Some(f) if f.paused => ok(TaskCommand::Recover),
                _ => refuse(NOTHING_TO_RECOVER),
            },
            "flighttask_undo" => {
                let ids = data.get("flight_ids").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                ok(TaskCommand::Undo(ids.iter().filter_map(Value::as_str).map(str::to_string).collect()))
            }
            _ => None,
        }
    }

    /// Remembers a task (replacing one with the same id, whose ready event may then be sent
    /// again). Returns the generation of the download to start, when it has a URL.
    pub(super) fn prepare(&mut self, task: PreparedTask, now: Instant) -> Option<u64> {
        let download = (!task.url.is_empty()).then(|| self.next_generation());
        let file = download.map_or(FileCheck::NoUrl, FileCheck::Downloading);
        self.prepared.insert(task.flight_id.clone(), Prepared { task, file, ready_sent: false, next_check: now });
        download
    }

    /// Starts flying a prepared task: the first progress is due at `start_at`, once the file is
    /// ready. Returns whether the dock must ask `flighttask_resource_get` first; `None` when the
    /// task is not prepared (or another flight is in progress).
    pub(super) fn execute(
        &mut self,
        flight_id: &str,
        start_at: Instant,
        settings: FlightSettings,
        outcome: FlightOutcome,
    ) -> Option<bool> {
        if self.flight.is_some() {
            return None;
        }
        let Prepared { task, file, .. } = self.prepared.remove(flight_id)?;
        let file = if settings.resource_get == ResourceGet::Always { FileCheck::NoUrl } else { file };
        let ask = file == FileCheck::NoUrl;
        let track_id = uuid::Uuid::new_v4().to_string();
        self.flight =
            Some(Flight { task, track_id, file, settings, outcome, sent: 0, next_at: start_at, paused: false });
        Some(ask)
    }

    /// The outcome of download `generation` of `flight_id`'s file. Returns false when that
    /// download no longer matters (the task was prepared again, undone or has flown).
    pub(super) fn file_checked(&mut self, flight_id: &str, generation: u64, outcome: &Result<(), String>) -> bool {
        let checked = match outcome {
            Ok(()) => FileCheck::Matched,
            Err(e) => FileCheck::Broken(e.clone()),
        };
        let awaited = FileCheck::Downloading(generation);
        if let Some(p) = self.prepared.get_mut(flight_id).filter(|p| p.file == awaited) {
            p.file = checked;
            return true;
        }
        match self.flight.as_mut().filter(|f| f.task.flight_id == flight_id && f.file == awaited) {
            Some(f) => {
                f.file = checked;
                true
            }
            None => false,
        }
    }

    /// The flight in progress.
    pub(super) fn flight_id(&self) -> Option<&str> {
        self.flight.as_ref().map(|f| f.task.flight_id.as_str())
    }

    /// The cloud's answer to `flighttask_resource_get` for `flight_id`: its file's URL and
    /// fingerprint (the prepared one when the answer has none), or why there is none. Returns
    /// the download to start: generation, URL, fingerprint.
    pub(super) fn resource_answered(
        &mut self,
        flight_id: &str,
        answer: Result<(String, String), String>,
    ) -> Option<(u64, String, String)> {
        let generation = self.generation + 1;
        let f = self.flight.as_mut().filter(|f| f.task.flight_id == flight_id && f.file == FileCheck::NoUrl)?;
        match answer {
            Ok((url, fingerprint)) if !url.is_empty() => {
                let fingerprint = if fingerprint.is_empty() { f.task.fingerprint.clone() } else { fingerprint };
                f.file = FileCheck::Downloading(generation);
                self.generation = generation;
                Some((generation, url, fingerprint))
            }
            Ok(_) => {
                f.file = FileCheck::Broken("flighttask_resource_get answered without a URL".into());
                None
            }
            Err(e) => {
                f.file = FileCheck::Broken(e);
                None
            }
        }
    }

    pub(super) fn pause(&mut self) {
        if let Some(f) = &mut self.flight {
            f.paused = true;
        }
    }

    /// Resumes a paused flight: its next step is one interval after `now`.
    pub(super) fn recover(&mut self, now: Instant) {
        if let Some(f) = &mut self.flight {
            f.paused = false;
            f.next_at = now + f.settings.interval;
        }
    }

    /// Forgets the prepared tasks among `ids`; a flight in progress goes on. Returns the ids
    /// forgotten.
    pub(super) fn undo(&mut self, ids: &[String]) -> Vec<String> {
        ids.iter().filter(|id| self.prepared.remove(id.as_str()).is_some()).cloned().collect()
    }

    /// A progress of the flight in progress at its current step, with `status` (`paused`, or
    /// `in_progress` on recovery).
    pub(super) fn progress_now(&self, status: &str) -> Option<Progress> {
        let f = self.flight.as_ref()?;
        let (step, percent) = f.current();
        Some(f.progress(status, 0, step, percent, 0))
    }

    /// Whether [`Tasks::poll`] may have anything to do.
    pub(super) fn busy(&self) -> bool {
        self.flight.is_some() || self.prepared.values().any(|p| p.task.task_type == CONDITIONAL && !p.ready_sent)
    }

    /// How far the flight is, 0–1, while the aircraft is out (from its first progress on).
    pub(super) fn airborne(&self) -> Option<f64> {
        let f = self.flight.as_ref().filter(|f| f.sent > 0)?;
        Some(f64::from(f.sent) / f64::from(f.settings.steps + 1))
    }

    /// What is due at `now`: ready events of conditional tasks (checked every [`READY_CHECK`],
    /// only while no flight is in progress), and the next progress of the flight.
    pub(super) fn poll(&mut self, now: Instant, now_ms: i64, battery: i64) -> Polled {
        let mut polled = Polled::default();
        let idle = self.flight.is_none();
        for p in self.prepared.values_mut() {
            if p.task.task_type == CONDITIONAL && !p.ready_sent && now >= p.next_check {
                p.next_check = now + READY_CHECK;
                if idle && p.task.ready.hold(battery, now_ms) {
                    p.ready_sent = true;
                    polled.ready.push(p.task.flight_id.clone());
                }
            }
        }
        polled.ready.sort();
        let Some(f) = self.flight.as_mut().filter(|f| !f.paused && now >= f.next_at) else { return polled };
        let steps = f.settings.steps;
        let progress = match (&f.file, f.outcome) {
            (FileCheck::NoUrl | FileCheck::Downloading(_), _) => return polled,
            (FileCheck::Broken(_), _) => {
                Progress { end: Some(End::Failed(WAYLINE_UNUSABLE)), ..f.progress("failed", WAYLINE_UNUSABLE, 0, 0, 0) }
            }
            (FileCheck::Matched, _) if f.sent < steps => {
                let step = f.sent;
                f.sent += 1;
                f.next_at = now + f.settings.interval;
                f.progress("in_progress", 0, step, percent(step, steps), 0)
            }
            (FileCheck::Matched, FlightOutcome::Ok) => {
                let media = f.settings.media;
                Progress { end: Some(End::Ok { media }), ..f.progress("ok", 0, steps, 100, media) }
            }
            (FileCheck::Matched, FlightOutcome::Failed(code)) => {
                let (_, percent) = f.current();
                Progress { end: Some(End::Failed(code)), ..f.progress("failed", code, steps, percent, 0) }
            }
        };
        if progress.end.is_some() {
            self.flight = None;
        }
        polled.progress.push(progress);
        polled
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }
}

/// Percent done at in-progress step `step` (from 0) of `steps`.
fn percent(step: u32, steps: u32) -> u32 {
    (step * 100).checked_div(steps).unwrap_or(0)
}

/// `flighttask_progress` data (§8). `wayline_mission_state` follows the aircraft's wayline
/// states as DJI numbers them: 5 flying the wayline, 6 interrupted (paused), 8 finished.
pub(super) fn progress_data(
    status: &str,
    result: i64,
    flight_id: &str,
    track_id: &str,
    step: u32,
    percent: u32,
    media_count: u32,
) -> Value {
    let mission_state = match status {
        "in_progress" => 5,
        "paused" => 6,
        _ => 8,
    };
    json!({"result": result, "output": {
        "status": status,
        "progress": {"current_step": step, "percent": percent},
        "ext": {
            "current_waypoint_index": step,
            "media_count": media_count,
            "flight_id": flight_id,
            "track_id": track_id,
            "wayline_mission_state": mission_state,
            "wayline_id": 0,
        },
    }})
}

/// Downloads a wayline file (following redirects) and checks that its MD5 is `fingerprint`
/// (hex, any case). The error says what went wrong, for [`super::FlightRecord::file_error`].
pub(super) async fn fetch_wayline(http: &reqwest::Client, url: &str, fingerprint: &str) -> Result<(), String> {
    let mut response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("download failed: {e}"))?;
    let mut md5 = md5::Md5::new();
    let mut len = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("download failed: {e}"))? {
        len += chunk.len();
        if len > WAYLINE_MAX_BYTES {
            return Err(format!("the file is larger than {WAYLINE_MAX_BYTES} bytes"));
        }
        md5.update(&chunk);
    }
    let actual = hex::encode(md5.finalize());
    if actual.eq_ignore_ascii_case(fingerprint.trim()) {
        Ok(())
    } else {
        Err(format!("MD5 {actual} of {len} bytes does not match the fingerprint {fingerprint:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: FlightSettings = FlightSettings {
        steps: 4,
        interval: Duration::from_millis(200),
        media: 2,
        resource_get: ResourceGet::WhenNoUrl,
    };

    fn task(id: &str, task_type: i64, url: &str) -> PreparedTask {
        PreparedTask::parse(
            id,
            &json!({"flight_id": id, "task_type": task_type, "execute_time": 1, "file": {"url": url, "fingerprint": "abc"}}),
        )
    }

    fn statuses(progress: &[Progress]) -> Vec<(String, i64, i64)> {
        progress
            .iter()
            .map(|p| {
                let o = &p.data["output"];
                (
                    o["status"].as_str().unwrap_or_default().to_string(),
                    o["progress"]["percent"].as_i64().unwrap_or(-1),
                    p.data["result"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }

    /// Polls every interval until the flight ends, collecting its progress.
    fn fly(tasks: &mut Tasks, mut now: Instant) -> Vec<Progress> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let polled = tasks.poll(now, 0, 100);
            let ended = polled.progress.iter().any(|p| p.end.is_some());
            all.extend(polled.progress);
            if ended {
                break;
            }
            now += SETTINGS.interval;
        }
        all
    }

    fn s(status: &str, percent: i64, result: i64) -> (String, i64, i64) {
        (status.to_string(), percent, result)
    }

    #[test]
    fn a_prepare_is_read_leniently() {
        let data = json!({
            "flight_id": "j1", "task_type": "2", "execute_time": 1_700_000_000_000i64, "wayline_type": 0,
            "file": {"url": "http://x/w.kmz", "fingerprint": "ABC"},
            "ready_conditions": {"battery_capacity": 80, "begin_time": 0, "end_time": 1_800_000_000_000i64},
            "rth_altitude": 120.0,
        });
        let t = PreparedTask::parse("bid", &data);
        assert_eq!((t.flight_id.as_str(), t.task_type, t.execute_time), ("j1", 2, 1_700_000_000_000));
        assert_eq!((t.url.as_str(), t.fingerprint.as_str(), t.rth_altitude), ("http://x/w.kmz", "ABC", Some(120)));
        assert_eq!(
            t.ready,
            ReadyConditions { battery_capacity: Some(80), begin_time: None, end_time: Some(1_800_000_000_000) }
        );
        assert_eq!(PreparedTask::parse("bid", &json!("")).flight_id, "bid", "the bid is the job id");
    }

    #[test]
    fn ready_conditions() {
        let c = ReadyConditions { battery_capacity: Some(50), begin_time: Some(1_000), end_time: Some(2_000) };
        assert!(c.hold(50, 1_000) && c.hold(100, 2_000));
        assert!(!c.hold(49, 1_500), "battery too low");
        assert!(!c.hold(90, 999) && !c.hold(90, 2_001), "outside the window");
        assert!(ReadyConditions::default().hold(0, 0));
    }

    #[test]
    fn execute_needs_a_prepared_task_and_an_idle_dock() {
        let mut t = Tasks::default();
        let d = t.decide("flighttask_execute", "j1", &json!({"flight_id": "j1"})).unwrap();
        assert_eq!(d, Decision { result: TASK_NOT_PREPARED, command: None });
        t.prepare(task("j1", 0, "http://x"), Instant::now());
        t.prepare(task("j2", 0, "http://x"), Instant::now());
        let d = t.decide("flighttask_execute", "other-bid", &json!({"flight_id": "j1"})).unwrap();
        assert_eq!(d, Decision { result: 0, command: Some(TaskCommand::Execute("j1".into())) });
        assert_eq!(t.execute("j1", Instant::now(), SETTINGS, FlightOutcome::Ok), Some(false));
        let d = t.decide("flighttask_execute", "j2", &json!({"flight_id": "j2"})).unwrap();
        assert_eq!(d.result, OTHER_TASK_RUNNING);
        let again = t.decide("flighttask_execute", "j1", &json!({"flight_id": "j1"})).unwrap();
        assert_eq!(again, Decision { result: 0, command: None }, "a redelivery changes nothing");
        assert!(t.decide("cover_open", "b", &json!("")).is_none());
    }

    #[test]
    fn undo_forgets_prepared_tasks_only() {
        let mut t = Tasks::default();
        let now = Instant::now();
        for id in ["j1", "j2", "j3"] {
            t.prepare(task(id, 0, "http://x"), now);
        }
        t.execute("j3", now, SETTINGS, FlightOutcome::Ok);
        let Some(Decision { result: 0, command: Some(TaskCommand::Undo(ids)) }) =
            t.decide("flighttask_undo", "b", &json!({"flight_ids": ["j1", "j3", "nope"]}))
        else {
            panic!("undo accepted")
        };
        assert_eq!(t.undo(&ids), ["j1"]);
        assert_eq!(
            t.decide("flighttask_execute", "j1", &json!({"flight_id": "j1"})).unwrap().result,
            OTHER_TASK_RUNNING
        );
        assert!(t.airborne().is_none() && t.busy(), "j3 still flies");
        t.file_checked("j3", 3, &Ok(()));
        fly(&mut t, now);
        assert_eq!(
            t.decide("flighttask_execute", "j1", &json!({"flight_id": "j1"})).unwrap().result,
            TASK_NOT_PREPARED
        );
        assert_eq!(t.decide("flighttask_execute", "j2", &json!({"flight_id": "j2"})).unwrap().result, 0, "not undone");
    }

    #[test]
    fn a_flight_rises_in_steps_to_ok_with_its_media() {
        let mut t = Tasks::default();
        let now = Instant::now();
        let generation = t.prepare(task("j1", 0, "http://x"), now).unwrap();
        t.file_checked("j1", generation, &Ok(()));
        assert_eq!(t.execute("j1", now, SETTINGS, FlightOutcome::Ok), Some(false));
        assert!(t.airborne().is_none(), "on the ground until the first step");
        let first = t.poll(now, 0, 100);
        assert_eq!(statuses(&first.progress), [s("in_progress", 0, 0)]);
        assert!(t.airborne().unwrap() > 0.0);
        assert!(t.poll(now + Duration::from_millis(100), 0, 100).progress.is_empty(), "one per interval");
        let rest = fly(&mut t, now + SETTINGS.interval);
        assert_eq!(
            statuses(&rest),
            [s("in_progress", 25, 0), s("in_progress", 50, 0), s("in_progress", 75, 0), s("ok", 100, 0)]
        );
        let ok = rest.last().unwrap();
        assert_eq!(ok.end, Some(End::Ok { media: 2 }));
        let ext = &ok.data["output"]["ext"];
        assert_eq!((ext["media_count"].as_i64(), ext["flight_id"].as_str()), (Some(2), Some("j1")));
        assert_eq!(ext["track_id"], first.progress[0].data["output"]["ext"]["track_id"]);
        assert_eq!(ok.data["output"]["progress"]["current_step"], 4);
        assert!(!t.busy() && t.airborne().is_none());
    }

    #[test]
    fn progress_payload_shape() {
        let data = progress_data("in_progress", 0, "j1", "t1", 2, 50, 0);
        assert_eq!(
            data,
            json!({"result": 0, "output": {"status": "in_progress", "progress": {"current_step": 2, "percent": 50},
                "ext": {"current_waypoint_index": 2, "media_count": 0, "flight_id": "j1", "track_id": "t1",
                    "wayline_mission_state": 5, "wayline_id": 0}}})
        );
        assert_eq!(progress_data("paused", 0, "j", "t", 0, 0, 0)["output"]["ext"]["wayline_mission_state"], 6);
    }

    #[test]
    fn a_broken_file_fails_the_flight_at_once() {
        let mut t = Tasks::default();
        let now = Instant::now();
        let generation = t.prepare(task("j1", 0, "http://x"), now).unwrap();
        t.file_checked("j1", generation + 7, &Ok(()));
        t.file_checked("j1", generation, &Err("MD5 mismatch".into()));
        t.execute("j1", now, SETTINGS, FlightOutcome::Ok);
        let p = t.poll(now, 0, 100).progress;
        assert_eq!(statuses(&p), [s("failed", 0, WAYLINE_UNUSABLE)]);
        assert_eq!(p[0].end, Some(End::Failed(WAYLINE_UNUSABLE)));
        assert!(!t.busy());
    }

    #[test]
    fn a_flight_waits_for_its_download() {
        let mut t = Tasks::default();
        let now = Instant::now();
        let generation = t.prepare(task("j1", 0, "http://x"), now).unwrap();
        t.execute("j1", now, SETTINGS, FlightOutcome::Ok);
        assert!(t.poll(now, 0, 100).progress.is_empty(), "still downloading");
        t.file_checked("j1", generation, &Ok(()));
        assert_eq!(statuses(&t.poll(now, 0, 100).progress), [s("in_progress", 0, 0)]);
    }

    #[test]
    fn a_scripted_failure_ends_the_flight_failed_without_media() {
        let mut t = Tasks::default();
        let now = Instant::now();
        let g = t.prepare(task("j1", 0, "http://x"), now).unwrap();
        t.file_checked("j1", g, &Ok(()));
        t.execute("j1", now, FlightSettings { steps: 2, ..SETTINGS }, FlightOutcome::Failed(321004));
        let p = fly(&mut t, now);
        assert_eq!(statuses(&p), [s("in_progress", 0, 0), s("in_progress", 50, 0), s("failed", 50, 321004)]);
        assert_eq!(p[2].end, Some(End::Failed(321004)));
        assert_eq!(p[2].data["output"]["ext"]["media_count"], 0);
    }

    #[test]
    fn pause_holds_the_flight_and_recovery_resumes_it() {
        let mut t = Tasks::default();
        let now = Instant::now();
        assert_eq!(t.decide("flighttask_pause", "b", &json!("")).unwrap().result, NOTHING_TO_PAUSE);
        assert_eq!(t.decide("flighttask_recovery", "b", &json!("")).unwrap().result, NOTHING_TO_RECOVER);
        let g = t.prepare(task("j1", 0, "http://x"), now).unwrap();
        t.file_checked("j1", g, &Ok(()));
        t.execute("j1", now, SETTINGS, FlightOutcome::Ok);
        t.poll(now, 0, 100);
        t.poll(now + SETTINGS.interval, 0, 100);
        assert_eq!(t.decide("flighttask_recovery", "b", &json!("")).unwrap().result, NOTHING_TO_RECOVER);
        let pause = t.decide("flighttask_pause", "b", &json!("")).unwrap();
        assert_eq!(pause, Decision { result: 0, command: Some(TaskCommand::Pause) });
        let paused = t.progress_now("paused").unwrap();
        assert_eq!(
            (paused.flight_id.as_str(), statuses(std::slice::from_ref(&paused))[0].clone()),
            ("j1", s("paused", 25, 0))
        );
        t.pause();
        assert_eq!(t.decide("flighttask_pause", "b", &json!("")).unwrap().result, NOTHING_TO_PAUSE);
        let later = now + Duration::from_secs(60);
        assert!(t.poll(later, 0, 100).progress.is_empty(), "a paused flight does not advance");
        assert!(t.airborne().is_some(), "hovering");
        assert_eq!(t.decide("flighttask_recovery", "b", &json!("")).unwrap().command, Some(TaskCommand::Recover));
        assert_eq!(statuses(&[t.progress_now("in_progress").unwrap()]), [s("in_progress", 25, 0)]);
        t.recover(later);
        assert!(t.poll(later, 0, 100).progress.is_empty(), "the next step is an interval away");
        let rest = fly(&mut t, later + SETTINGS.interval);
        assert_eq!(statuses(&rest), [s("in_progress", 50, 0), s("in_progress", 75, 0), s("ok", 100, 0)]);
    }

    #[test]
    fn a_task_without_url_asks_for_its_resource() {
        let mut t = Tasks::default();
        let now = Instant::now();
        assert_eq!(t.prepare(task("j1", 0, ""), now), None);
        assert_eq!(t.execute("j1", now, SETTINGS, FlightOutcome::Ok), Some(true));
        assert!(t.resource_answered("other", Ok(("http://y".into(), String::new()))).is_none());
        let (g, url, fingerprint) = t.resource_answered("j1", Ok(("http://y".into(), String::new()))).unwrap();
        assert_eq!((url.as_str(), fingerprint.as_str()), ("http://y", "abc"), "the prepared fingerprint");
        assert!(t.poll(now, 0, 100).progress.is_empty());
        t.file_checked("j1", g, &Ok(()));
        assert_eq!(statuses(&t.poll(now, 0, 100).progress), [s("in_progress", 0, 0)]);

        // Refused: the flight fails.
        let mut t = Tasks::default();
        t.prepare(task("j2", 0, "http://x"), now);
        let always = FlightSettings { resource_get: ResourceGet::Always, ..SETTINGS };
        assert_eq!(t.execute("j2", now, always, FlightOutcome::Ok), Some(true));
        assert!(t.resource_answered("j2", Err("result 200001".into())).is_none());
        assert_eq!(statuses(&t.poll(now, 0, 100).progress), [s("failed", 0, WAYLINE_UNUSABLE)]);
    }

    #[test]
    fn a_conditional_task_is_ready_once_when_its_conditions_hold() {
        let mut t = Tasks::default();
        let now = Instant::now();
        let mut c = task("c1", CONDITIONAL, "http://x");
        c.ready = ReadyConditions { battery_capacity: Some(90), begin_time: Some(1_000), end_time: None };
        t.prepare(c.clone(), now);
        t.prepare(task("i1", 0, "http://x"), now);
        assert!(t.busy());
        assert!(t.poll(now, 500, 100).ready.is_empty(), "too early");
        assert!(t.poll(now + READY_CHECK, 1_000, 80).ready.is_empty(), "battery too low");
        assert!(t.poll(now + READY_CHECK + READY_CHECK / 2, 1_000, 95).ready.is_empty(), "checked once a second");
        assert_eq!(t.poll(now + READY_CHECK * 2, 1_000, 95).ready, ["c1"]);
        assert!(t.poll(now + READY_CHECK * 3, 1_000, 95).ready.is_empty(), "sent once");
        assert!(!t.busy());
        // Prepared again: ready again.
        t.prepare(c, now);
        assert_eq!(t.poll(now, 1_000, 95).ready, ["c1"]);
    }
}
