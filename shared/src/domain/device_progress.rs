//! What a device reports about an operation under way: the progress events of remote-debug
//! commands (`cover_open`, `device_reboot`, …), `fly_to_point_progress`,
//! `takeoff_to_point_progress`, `return_home_info`, `device_exit_homing_notify`. One aggregate per
//! device, method and `bid` ([`id`]), so one operation's reports stay together and a dock's long
//! life does not make any aggregate long. A report redelivered with the same `tid` is kept once.

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const AGGREGATE_TYPE: &str = "device_progress";

/// The aggregate id of one operation's reports.
pub fn id(sn: &str, method: &str, bid: &str) -> String {
    super::derived_id(&["progress", sn, method, bid])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The device the event was published for (the topic's serial number).
    pub sn: String,
    /// The gateway that relayed it (`gateway` of the envelope, else the topic's serial number).
    pub gateway_sn: String,
    pub method: String,
    pub tid: String,
    pub bid: String,
    /// `data` as received.
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceProgressCommand {
    Report(Report),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceProgressEvent {
    ProgressReported(Report),
}
crate::domain_event!(DeviceProgressEvent, "1.0", { ProgressReported });

#[derive(Debug, thiserror::Error)]
pub enum DeviceProgressError {}

impl crate::error::DjiCode for DeviceProgressError {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeviceProgress {
    tids: Vec<String>,
}

impl Aggregate for DeviceProgress {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = DeviceProgressCommand;
    type Event = DeviceProgressEvent;
    type Error = DeviceProgressError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let DeviceProgressCommand::Report(report) = command;
        if report.tid.is_empty() || !self.tids.contains(&report.tid) {
            sink.write(DeviceProgressEvent::ProgressReported(report), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let DeviceProgressEvent::ProgressReported(report) = event;
        if !report.tid.is_empty() {
            self.tids.push(report.tid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    fn report(tid: &str) -> Report {
        Report {
            sn: "D".into(),
            gateway_sn: "D".into(),
            method: "cover_open".into(),
            tid: tid.into(),
            bid: "b".into(),
            data: json!({"result": 0, "output": {"status": "in_progress"}}),
        }
    }

    #[test]
    fn a_redelivered_report_is_kept_once() {
        TestFramework::<DeviceProgress>::with(())
            .given(vec![DeviceProgressEvent::ProgressReported(report("t1"))])
            .when(DeviceProgressCommand::Report(report("t1")))
            .then_expect_events(vec![]);
        TestFramework::<DeviceProgress>::with(())
            .given(vec![DeviceProgressEvent::ProgressReported(report("t1"))])
            .when(DeviceProgressCommand::Report(report("t2")))
            .then_expect_events(vec![DeviceProgressEvent::ProgressReported(report("t2"))]);
    }
}
