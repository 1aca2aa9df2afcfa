//! The binding flow of a dock configured with a binding code (§5.1–5.3): after every connection
//! it asks whether it and its aircraft are bound (`airport_bind_status`); if either is not, it
//! checks the code (`airport_organization_get`) and binds both (`airport_organization_bind`).
//! A reply that never comes, or a non-zero result, starts the flow again later.
//!
//! [`Binding`] is the decision only: it says which request to send and reads the replies; the
//! driver publishes and routes `requests_reply` to it by the dock's serial number.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::protocol::{as_i64, thing_topic};

use super::{tid, Body, Kind, Message, SimDock};

/// Model keys (domain-type-subtype) the dock declares when binding: Dock 2 and its M3D.
const DOCK2: &str = "3-2-0";
const M3D: &str = "0-91-0";

/// One dock's progress through the binding flow.
#[derive(Debug)]
pub(super) struct Binding {
    code: String,
    /// How long to wait for a reply, and to wait before starting again after a failure.
    retry: Duration,
    phase: Phase,
    bound: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Not started (the dock has not announced itself yet).
    Idle,
    /// Request `tid` of `method` sent; started again if no reply by `until`.
    Waiting { tid: String, method: &'static str, until: Instant },
    /// Failed; starts again at this time.
    RetryAt(Instant),
    /// Both devices are bound.
    Done,
}

impl Binding {
    pub(super) fn new(code: String, retry: Duration) -> Self {
        Self { code, retry, phase: Phase::Idle, bound: false }
    }

    /// Whether the last answer said the dock and its aircraft are bound (already, or by this
    /// flow's `airport_organization_bind`).
    pub(super) fn is_bound(&self) -> bool {
        self.bound
    }

    /// The dock (re)connected and announced its topology: a real dock checks its binding again.
    pub(super) fn start(&mut self, ids: &SimDock, now: Instant) -> Message {
        let data = json!({"devices": [{"sn": ids.dock_sn}, {"sn": ids.drone_sn}]});
        self.request(ids, "airport_bind_status", data, now)
    }

    /// A request timed out or a retry is due.
    pub(super) fn poll(&mut self, ids: &SimDock, now: Instant) -> Option<Message> {
        match &self.phase {
            Phase::Waiting { until, .. } | Phase::RetryAt(until) if now >= *until => Some(self.start(ids, now)),
            _ => None,
        }
    }

    /// A `requests_reply` for this dock; returns the next request, if any. Replies to anything
    /// but the request in flight (late, duplicated) are ignored.
    pub(super) fn on_reply(&mut self, ids: &SimDock, reply_tid: &str, data: &Value, now: Instant) -> Option<Message> {
        let method = match &self.phase {
            Phase::Waiting { tid, method, .. } if tid == reply_tid => *method,
            _ => return None,
        };
        if data.get("result").and_then(as_i64) != Some(0) {
            self.phase = Phase::RetryAt(now + self.retry);
            return None;
        }
        let output = data.get("output").unwrap_or(&Value::Null);
        match method {
            "airport_bind_status" => {
                self.bound = both_bound(ids, output);
                if self.bound {
                    self.phase = Phase::Done;
                    return None;
                }
                let data = json!({"device_binding_code": self.code, "organization_id": ""});
                Some(self.request(ids, "airport_organization_get", data, now))
            }
            "airport_organization_get" => {
                let entry = |sn: &str, model: &str| {
                    json!({
                        "device_binding_code": self.code, "organization_id": "",
                        "device_callsign": ids.dock_sn, "sn": sn, "device_model_key": model,
                    })
                };
                let data = json!({"bind_devices": [entry(&ids.dock_sn, DOCK2), entry(&ids.drone_sn, M3D)]});
                Some(self.request(ids, "airport_organization_bind", data, now))
            }
            _ => {
                let errors = output.get("err_infos").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                if errors.iter().all(|e| e.get("err_code").and_then(as_i64) == Some(0)) {
                    self.bound = true;
                    self.phase = Phase::Done;
                } else {
                    self.phase = Phase::RetryAt(now + self.retry);
                }
                None
            }
        }
    }

    fn request(&mut self, ids: &SimDock, method: &'static str, data: Value, now: Instant) -> Message {
        let tid = tid();
        self.phase = Phase::Waiting { tid: tid.clone(), method, until: now + self.retry };
        Message {
            after: Duration::ZERO,
            topic: thing_topic(&ids.dock_sn, "requests"),
            kind: Kind::Request,
            body: Body::Up {
                tid,
                bid: super::tid(),
                gateway: ids.dock_sn.clone(),
                method: Some(method.to_string()),
                need_reply: false,
                data,
            },
        }
    }
}

/// `airport_bind_status` output: both serial numbers listed with `is_device_bind_organization`
/// true. A device missing from the list is not bound (the cloud does not know it).
fn both_bound(ids: &SimDock, output: &Value) -> bool {
    let list = output.get("bind_status").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    [&ids.dock_sn, &ids.drone_sn].iter().all(|sn| {
        list.iter().any(|e| {
            e.get("sn").and_then(Value::as_str) == Some(sn.as_str())
                && e.get("is_device_bind_organization").is_some_and(shared::protocol::truthy)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> SimDock {
        SimDock::new("X", 1)
    }

    fn sent(o: &Message) -> Value {
        serde_json::from_slice(&o.body.encode()).unwrap()
    }

    fn status(dock: bool, drone: bool) -> Value {
        json!({"result": 0, "output": {"bind_status": [
            {"sn": "XDOCK0001", "is_device_bind_organization": dock},
            {"sn": "XUAV0001", "is_device_bind_organization": drone},
        ]}})
    }

    #[test]
    fn an_unbound_dock_checks_the_code_then_binds_both_devices() {
        let now = Instant::now();
        let mut b = Binding::new("qwe".into(), Duration::from_secs(10));
        let first = b.start(&ids(), now);
        assert_eq!(first.topic, "thing/product/XDOCK0001/requests");
        let m = sent(&first);
        assert_eq!((m["method"].as_str(), m["gateway"].as_str()), (Some("airport_bind_status"), Some("XDOCK0001")));
        assert_eq!(m["data"], json!({"devices": [{"sn": "XDOCK0001"}, {"sn": "XUAV0001"}]}));

        let get = b.on_reply(&ids(), m["tid"].as_str().unwrap(), &status(true, false), now).unwrap();
        let m = sent(&get);
        assert_eq!(m["method"], "airport_organization_get");
        assert_eq!(m["data"], json!({"device_binding_code": "qwe", "organization_id": ""}));
        assert!(!b.is_bound());

        let ok = json!({"result": 0, "output": {"organization_name": "Test Group One"}});
        let bind = b.on_reply(&ids(), m["tid"].as_str().unwrap(), &ok, now).unwrap();
        let m = sent(&bind);
        assert_eq!(m["method"], "airport_organization_bind");
        let devices = &m["data"]["bind_devices"];
        assert_eq!(
            devices[0],
            json!({"device_binding_code": "qwe", "organization_id": "", "device_callsign": "XDOCK0001", "sn": "XDOCK0001", "device_model_key": "3-2-0"})
        );
        assert_eq!(
            (devices[1]["sn"].as_str(), devices[1]["device_model_key"].as_str()),
            (Some("XUAV0001"), Some("0-91-0"))
        );

        let done = json!({"result": 0, "output": {"err_infos": [{"sn": "XDOCK0001", "err_code": 0}, {"sn": "XUAV0001", "err_code": 0}]}});
        assert!(b.on_reply(&ids(), m["tid"].as_str().unwrap(), &done, now).is_none());
        assert!(b.is_bound());
        assert!(b.poll(&ids(), now + Duration::from_secs(60)).is_none(), "nothing more once bound");
    }

    #[test]
    fn a_bound_dock_stops_after_the_status() {
        let now = Instant::now();
        let mut b = Binding::new("qwe".into(), Duration::from_secs(10));
        let tid = sent(&b.start(&ids(), now))["tid"].as_str().unwrap().to_string();
        assert!(b.on_reply(&ids(), &tid, &status(true, true), now).is_none());
        assert!(b.is_bound());
        // A device missing from the answer is not bound.
        let tid = sent(&b.start(&ids(), now))["tid"].as_str().unwrap().to_string();
        let only_dock =
            json!({"result": 0, "output": {"bind_status": [{"sn": "XDOCK0001", "is_device_bind_organization": true}]}});
        assert_eq!(sent(&b.on_reply(&ids(), &tid, &only_dock, now).unwrap())["method"], "airport_organization_get");
        assert!(!b.is_bound());
    }

    #[test]
    fn failures_and_silence_start_again_later() {
        let now = Instant::now();
        let retry = Duration::from_secs(10);
        let mut b = Binding::new("bad".into(), retry);
        let tid = sent(&b.start(&ids(), now))["tid"].as_str().unwrap().to_string();
        let get = b.on_reply(&ids(), &tid, &status(false, false), now).unwrap();
        let tid = sent(&get)["tid"].as_str().unwrap().to_string();
        assert!(b.on_reply(&ids(), "another", &json!({"result": 0}), now).is_none(), "someone else's reply");
        assert!(b.on_reply(&ids(), &tid, &json!({"result": 210230, "output": {}}), now).is_none());
        assert!(b.poll(&ids(), now + retry / 2).is_none());
        let again = b.poll(&ids(), now + retry).unwrap();
        assert_eq!(sent(&again)["method"], "airport_bind_status");
        // No reply at all: asked again once the wait is over.
        assert!(b.poll(&ids(), now + retry + retry / 2).is_none());
        assert_eq!(sent(&b.poll(&ids(), now + retry * 2).unwrap())["method"], "airport_bind_status");
        // A bind that failed for one device is a failure.
        let tid = sent(&b.start(&ids(), now))["tid"].as_str().unwrap().to_string();
        let tid =
            sent(&b.on_reply(&ids(), &tid, &status(false, false), now).unwrap())["tid"].as_str().unwrap().to_string();
        let tid =
            sent(&b.on_reply(&ids(), &tid, &json!({"result": 0}), now).unwrap())["tid"].as_str().unwrap().to_string();
        let partly = json!({"result": 0, "output": {"err_infos": [{"sn": "XDOCK0001", "err_code": 0}, {"sn": "XUAV0001", "err_code": 210231}]}});
        assert!(b.on_reply(&ids(), &tid, &partly, now).is_none());
        assert!(!b.is_bound());
        assert!(b.poll(&ids(), now + retry).is_some());
    }
}
