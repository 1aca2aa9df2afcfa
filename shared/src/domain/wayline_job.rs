//! A wayline job (DJI's flight task): one flight of a wayline file by one dock, immediate, at a set
//! time or when the dock says its conditions hold. The job is created, prepared on the dock
//! (`flighttask_prepare`), executed once (`flighttask_execute`), moved by the dock's
//! `flighttask_progress` and ends succeeded, failed or cancelled. Its media files count towards it
//! as the dock uploads them.
//!
//! Every decision that must happen once is taken here: a job executes only from pending (so two
//! schedulers, or a scheduler and the dock's `flighttask_ready`, cannot both execute it), is
//! cancelled only while pending, and a progress report redelivered with the same `tid` is recorded
//! once.

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const AGGREGATE_TYPE: &str = "wayline_job";

/// DJI's job statuses (WaylineJobDTO `status`).
pub mod status {
    pub const PENDING: i32 = 1;
    pub const IN_PROGRESS: i32 = 2;
    pub const SUCCESS: i32 = 3;
    pub const CANCEL: i32 = 4;
    pub const FAILED: i32 = 5;
    /// Not stored: an in-progress job the dock paused.
    pub const PAUSED: i32 = 6;
}

/// DJI's task types.
pub mod task_type {
    pub const IMMEDIATE: i32 = 0;
    pub const TIMED: i32 = 1;
    pub const CONDITIONAL: i32 = 2;
}

/// Codes DJI's backend gives jobs that did not run.
pub mod code {
    /// The job's time passed before it could be executed.
    pub const TIME_PASSED: i64 = 408;
    /// Executing failed on Hangar's side.
    pub const EXECUTION_FAILED: i64 = 500;
}

/// A job as created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobPlan {
    pub workspace_id: String,
    pub name: String,
    /// The wayline file's id and name when the job was created.
    pub file_id: String,
    pub file_name: String,
    pub dock_sn: String,
    pub wayline_type: i32,
    pub task_type: i32,
    /// Planned start and (optional) end, epoch milliseconds.
    pub begin_time_ms: i64,
    pub end_time_ms: Option<i64>,
    pub rth_altitude: i32,
    pub out_of_control_action: i32,
    pub min_battery_capacity: Option<i32>,
    pub min_storage_capacity: Option<i32>,
    /// Who created it.
    pub username: String,
    /// The job this one retries, if any.
    pub parent_id: Option<String>,
}

/// One `flighttask_progress` report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub tid: String,
    /// `data.result`.
    pub result: i64,
    /// `output.status`: `in_progress`, `paused`, `ok`, `failed`, …
    pub status: String,
    pub percent: i32,
    pub current_step: i32,
    /// `output.ext.media_count`, when reported.
    pub media_count: Option<i32>,
    /// `data.output` as the dock sent it (for the WebSocket and for analysts).
    pub output: Value,
}

impl Progress {
    /// The job status a terminal report gives (§13.4: `ok`, `partially_done` succeed; `failed`,
    /// `canceled`, `rejected`, `timeout` fail), `None` while it is under way.
    pub fn terminal_status(&self) -> Option<i32> {
        match self.status.as_str() {
            "ok" | "partially_done" => Some(status::SUCCESS),
            "failed" | "canceled" | "cancelled" | "rejected" | "timeout" => Some(status::FAILED),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WaylineJobCommand {
    Create(JobPlan),
    /// The dock accepted `flighttask_prepare`.
    RecordPrepared,
    /// Decide to execute now; refused unless the job is pending and prepared.
    Execute {
        at_ms: i64,
    },
    ReportProgress(Progress),
    /// The dock accepted `flighttask_pause` / `flighttask_recovery`.
    RecordPaused,
    RecordResumed,
    /// This job's media upload goes first (the web client asked, or the dock said so).
    RecordMediaPrioritized,
    /// A media file of this job was uploaded and recorded.
    RecordMediaUploaded {
        file_id: String,
    },
    /// The job cannot run or went wrong on Hangar's side; a job already ended stays as it ended.
    Fail {
        code: i64,
        reason: String,
        at_ms: i64,
    },
    /// Cancel a pending job (its dock was told with `flighttask_undo`).
    Cancel {
        at_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WaylineJobEvent {
    JobCreated(JobPlan),
    JobPrepared,
    JobExecuting {
        at_ms: i64,
    },
    JobProgressed(Progress),
    JobPaused,
    JobResumed,
    JobMediaPrioritized,
    JobMediaUploaded {
        file_id: String,
    },
    /// Terminal: `status` 3 success, 4 cancel, 5 failed; `code` the device's result or DJI's code.
    JobEnded {
        status: i32,
        code: i64,
        reason: String,
        media_count: Option<i32>,
        at_ms: i64,
    },
}
crate::domain_event!(WaylineJobEvent, "1.0", {
    JobCreated, JobPrepared, JobExecuting, JobProgressed, JobPaused, JobResumed,
    JobMediaPrioritized, JobMediaUploaded, JobEnded
});

#[derive(Debug, thiserror::Error)]
pub enum WaylineJobError {
    #[error("The wayline job does not exist.")]
    NotFound,
    #[error("The wayline job already exists.")]
    Exists,
    #[error("The wayline job is not pending (status {0}).")]
    NotPending(i32),
    #[error("The wayline job has not been prepared on the dock.")]
    NotPrepared,
    #[error("The wayline job status does not match, and the operation cannot be performed.")]
    StatusMismatch,
}

impl crate::error::DjiCode for WaylineJobError {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WaylineJob {
    plan: Option<JobPlan>,
    prepared: bool,
    status: i32,
    paused: bool,
    execute_time_ms: Option<i64>,
    /// Ended only because the dock did not answer `flighttask_execute` in time: the dock may still
    /// be flying it, and its progress reports are believed.
    ended_without_answer: bool,
    media_count: Option<i32>,
    uploaded: BTreeSet<String>,
    prioritized: bool,
    progress_tids: BTreeSet<String>,
}

impl WaylineJob {
    pub fn plan(&self) -> Option<&JobPlan> {
        self.plan.as_ref()
    }

    /// The job if it exists in this workspace.
    pub fn in_workspace(&self, workspace_id: &str) -> Option<&JobPlan> {
        self.plan.as_ref().filter(|p| p.workspace_id == workspace_id)
    }

    /// DJI's status, with 6 for a paused job in progress.
    pub fn status(&self) -> i32 {
        if self.status == status::IN_PROGRESS && self.paused {
            status::PAUSED
        } else {
            self.status
        }
    }

    pub fn is_prepared(&self) -> bool {
        self.prepared
    }

    pub fn is_prioritized(&self) -> bool {
        self.prioritized
    }

    pub fn uploaded_count(&self) -> usize {
        self.uploaded.len()
    }

    pub fn media_count(&self) -> Option<i32> {
        self.media_count
    }

    fn ended(&self) -> bool {
        matches!(self.status, status::SUCCESS | status::CANCEL | status::FAILED)
    }
}

impl Aggregate for WaylineJob {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = WaylineJobCommand;
    type Event = WaylineJobEvent;
    type Error = WaylineJobError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        use WaylineJobCommand as C;
        use WaylineJobEvent as E;
        if !matches!(command, C::Create(_)) && self.plan.is_none() {
            return Err(WaylineJobError::NotFound);
        }
        match command {
            C::Create(plan) => {
                if self.plan.is_some() {
                    return Err(WaylineJobError::Exists);
                }
                sink.write(E::JobCreated(plan), self).await;
            }
            C::RecordPrepared => {
                if !self.prepared && !self.ended() {
                    sink.write(E::JobPrepared, self).await;
                }
            }
            C::Execute { at_ms } => {
                if self.status != status::PENDING {
                    return Err(WaylineJobError::NotPending(self.status()));
                }
                if !self.prepared {
                    return Err(WaylineJobError::NotPrepared);
                }
                sink.write(E::JobExecuting { at_ms }, self).await;
            }
            C::ReportProgress(p) => {
                if self.progress_tids.contains(&p.tid) {
                    return Ok(());
                }
                // What the dock reports is what happened, even after Hangar gave up waiting for it.
                let believed = !self.ended() || self.ended_without_answer;
                let terminal = p.terminal_status();
                let (result, media_count, reason) = (p.result, p.media_count, p.status.clone());
                sink.write(E::JobProgressed(p), self).await;
                if let (true, Some(status)) = (believed, terminal) {
                    let code = if status == status::SUCCESS { 0 } else { result };
                    let at_ms = crate::time::now_ms();
                    sink.write(E::JobEnded { status, code, reason, media_count, at_ms }, self).await;
                }
            }
            // the dock's own progress report may have said so first
            C::RecordPaused => {
                if self.status != status::IN_PROGRESS {
                    return Err(WaylineJobError::StatusMismatch);
                }
                if !self.paused {
                    sink.write(E::JobPaused, self).await;
                }
            }
            C::RecordResumed => {
                if self.status != status::IN_PROGRESS {
                    return Err(WaylineJobError::StatusMismatch);
                }
                if self.paused {
                    sink.write(E::JobResumed, self).await;
                }
            }
            C::RecordMediaPrioritized => {
                if !self.prioritized {
                    sink.write(E::JobMediaPrioritized, self).await;
                }
            }
            C::RecordMediaUploaded { file_id } => {
                if !self.uploaded.contains(&file_id) {
                    sink.write(E::JobMediaUploaded { file_id }, self).await;
                }
            }
            C::Fail { code, reason, at_ms } => {
                if !self.ended() {
                    sink.write(E::JobEnded { status: status::FAILED, code, reason, media_count: None, at_ms }, self)
                        .await;
                }
            }
            C::Cancel { at_ms } => {
                if self.status != status::PENDING {
                    return Err(WaylineJobError::NotPending(self.status()));
                }
                let reason = "cancelled".to_string();
                sink.write(E::JobEnded { status: status::CANCEL, code: 0, reason, media_count: None, at_ms }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use WaylineJobEvent as E;
        match event {
            E::JobCreated(plan) => {
                self.plan = Some(plan);
                self.status = status::PENDING;
            }
            E::JobPrepared => self.prepared = true,
            E::JobExecuting { at_ms } => {
                self.status = status::IN_PROGRESS;
                self.execute_time_ms = Some(at_ms);
            }
            E::JobProgressed(p) => {
                self.progress_tids.insert(p.tid.clone());
                if let Some(n) = p.media_count {
                    self.media_count = Some(n);
                }
                if self.ended_without_answer && p.terminal_status().is_none() {
                    // the dock did fly it: the job is under way after all
                    self.status = status::IN_PROGRESS;
                    self.ended_without_answer = false;
                }
                if !self.ended() {
                    self.status = status::IN_PROGRESS;
                    self.paused = p.status == "paused";
                }
            }
            E::JobPaused => self.paused = true,
            E::JobResumed => self.paused = false,
            E::JobMediaPrioritized => self.prioritized = true,
            E::JobMediaUploaded { file_id } => {
                self.uploaded.insert(file_id);
            }
            E::JobEnded { status, code, media_count, .. } => {
                self.ended_without_answer = status == status::FAILED
                    && code == crate::protocol::codes::NO_REPLY
                    && self.execute_time_ms.is_some();
                self.status = status;
                self.paused = false;
                if media_count.is_some() {
                    self.media_count = media_count;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    fn plan() -> JobPlan {
        JobPlan {
            workspace_id: "w".into(),
            name: "Roof".into(),
            file_id: "f".into(),
            file_name: "Roof".into(),
            dock_sn: "D".into(),
            task_type: task_type::TIMED,
            begin_time_ms: 1_000,
            rth_altitude: 100,
            ..JobPlan::default()
        }
    }

    fn progress(tid: &str, status: &str, result: i64) -> Progress {
        Progress {
            tid: tid.into(),
            result,
            status: status.into(),
            percent: 50,
            output: json!({}),
            ..Progress::default()
        }
    }

    fn pending() -> Vec<WaylineJobEvent> {
        vec![WaylineJobEvent::JobCreated(plan()), WaylineJobEvent::JobPrepared]
    }

    fn running() -> Vec<WaylineJobEvent> {
        let mut e = pending();
        e.push(WaylineJobEvent::JobExecuting { at_ms: 5 });
        e
    }

    #[test]
    fn a_job_executes_once_and_only_when_prepared() {
        TestFramework::<WaylineJob>::with(())
            .given(pending())
            .when(WaylineJobCommand::Execute { at_ms: 5 })
            .then_expect_events(vec![WaylineJobEvent::JobExecuting { at_ms: 5 }]);
        TestFramework::<WaylineJob>::with(())
            .given(running())
            .when(WaylineJobCommand::Execute { at_ms: 6 })
            .then_expect_error_message("The wayline job is not pending (status 2).");
        TestFramework::<WaylineJob>::with(())
            .given(vec![WaylineJobEvent::JobCreated(plan())])
            .when(WaylineJobCommand::Execute { at_ms: 6 })
            .then_expect_error_message("The wayline job has not been prepared on the dock.");
    }

    #[test]
    fn only_pending_jobs_are_cancelled() {
        TestFramework::<WaylineJob>::with(())
            .given(running())
            .when(WaylineJobCommand::Cancel { at_ms: 9 })
            .then_expect_error_message("The wayline job is not pending (status 2).");
        TestFramework::<WaylineJob>::with(())
            .given(pending())
            .when(WaylineJobCommand::Cancel { at_ms: 9 })
            .then_expect_events(vec![WaylineJobEvent::JobEnded {
                status: status::CANCEL,
                code: 0,
                reason: "cancelled".into(),
                media_count: None,
                at_ms: 9,
            }]);
    }

    #[test]
    fn a_redelivered_progress_report_is_recorded_once() {
        let mut given = running();
        given.push(WaylineJobEvent::JobProgressed(progress("t1", "in_progress", 0)));
        TestFramework::<WaylineJob>::with(())
            .given(given)
            .when(WaylineJobCommand::ReportProgress(progress("t1", "in_progress", 0)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_failed_flight_ends_the_job_with_the_devices_code() {
        let events = TestFramework::<WaylineJob>::with(())
            .given(running())
            .when(WaylineJobCommand::ReportProgress(progress("t2", "failed", 316001)))
            .inspect_result()
            .unwrap();
        assert_eq!(events.len(), 2);
        assert!(matches!(events[1], WaylineJobEvent::JobEnded { status: status::FAILED, code: 316001, .. }));
    }

    #[test]
    fn progress_after_a_missing_answer_revives_the_job() {
        let mut job = WaylineJob::default();
        for e in running() {
            job.apply(e);
        }
        job.apply(WaylineJobEvent::JobEnded {
            status: status::FAILED,
            code: crate::protocol::codes::NO_REPLY,
            reason: String::new(),
            media_count: None,
            at_ms: 7,
        });
        assert_eq!(job.status(), status::FAILED);
        job.apply(WaylineJobEvent::JobProgressed(progress("t3", "in_progress", 0)));
        assert_eq!(job.status(), status::IN_PROGRESS);
        job.apply(WaylineJobEvent::JobProgressed(progress("t4", "paused", 0)));
        assert_eq!(job.status(), status::PAUSED);
    }

    #[test]
    fn pause_and_resume_follow_the_state() {
        TestFramework::<WaylineJob>::with(())
            .given(pending())
            .when(WaylineJobCommand::RecordPaused)
            .then_expect_error_message("The wayline job status does not match, and the operation cannot be performed.");
        let mut paused = running();
        paused.push(WaylineJobEvent::JobPaused);
        TestFramework::<WaylineJob>::with(())
            .given(paused)
            .when(WaylineJobCommand::RecordResumed)
            .then_expect_events(vec![WaylineJobEvent::JobResumed]);
        // the dock's "paused" progress arrived before the answer to the pause was recorded
        let mut reported = running();
        reported.push(WaylineJobEvent::JobProgressed(progress("t5", "paused", 0)));
        TestFramework::<WaylineJob>::with(())
            .given(reported)
            .when(WaylineJobCommand::RecordPaused)
            .then_expect_events(vec![]);
    }

    #[test]
    fn media_are_counted_once_each() {
        let mut given = running();
        given.push(WaylineJobEvent::JobMediaUploaded { file_id: "m1".into() });
        TestFramework::<WaylineJob>::with(())
            .given(given)
            .when(WaylineJobCommand::RecordMediaUploaded { file_id: "m1".into() })
            .then_expect_events(vec![]);
    }
}
