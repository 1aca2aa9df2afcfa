//! A camera's live stream (LiveStreamController): started, changed and stopped through its
//! gateway, recorded once the device accepted, so that the web client can ask what a device is
//! streaming and where to watch it. One aggregate per camera video ([`id`]).

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub const AGGREGATE_TYPE: &str = "live_stream";

/// The aggregate id of a `video_id` (`<sn>/<camera index>/<video>`).
pub fn id(video_id: &str) -> String {
    super::derived_id(&["live_stream", video_id])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub workspace_id: String,
    /// The device whose camera streams.
    pub sn: String,
    pub video_id: String,
    /// 0 Agora, 1 RTMP, 2 RTSP, 3 GB28181, 4 WHIP.
    pub url_type: i64,
    /// Where to watch it (what the start answered), not where the device pushes.
    pub url: String,
    pub video_quality: i64,
    /// `normal`, `wide`, `zoom`, `ir`, … as the video id or the last lens change says.
    pub video_type: String,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LiveStreamCommand {
    Start(Box<Started>),
    SetQuality { video_quality: i64 },
    SwitchLens { video_type: String },
    Stop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LiveStreamEvent {
    LiveStreamStarted(Box<Started>),
    LiveStreamQualitySet { video_quality: i64 },
    LiveStreamLensSwitched { video_type: String },
    LiveStreamStopped,
}
crate::domain_event!(LiveStreamEvent, "1.0", {
    LiveStreamStarted,
    LiveStreamQualitySet,
    LiveStreamLensSwitched,
    LiveStreamStopped
});

#[derive(Debug, thiserror::Error)]
pub enum LiveStreamError {}

impl crate::error::DjiCode for LiveStreamError {}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LiveStream {
    stream: Option<Started>,
    pushing: bool,
}

impl LiveStream {
    pub fn workspace_id(&self) -> Option<&str> {
        self.stream.as_ref().map(|s| s.workspace_id.as_str())
    }
}

impl Aggregate for LiveStream {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = LiveStreamCommand;
    type Event = LiveStreamEvent;
    type Error = LiveStreamError;
    type Services = ();

    /// The device already accepted what is recorded; a change to a stream never started (or one
    /// started before Hangar recorded streams) is not recorded, nor is a stop of a stopped one.
    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        let event = match command {
            LiveStreamCommand::Start(s) => Some(LiveStreamEvent::LiveStreamStarted(s)),
            LiveStreamCommand::SetQuality { video_quality } => {
                self.pushing.then_some(LiveStreamEvent::LiveStreamQualitySet { video_quality })
            }
            LiveStreamCommand::SwitchLens { video_type } => {
                self.pushing.then_some(LiveStreamEvent::LiveStreamLensSwitched { video_type })
            }
            LiveStreamCommand::Stop => self.pushing.then_some(LiveStreamEvent::LiveStreamStopped),
        };
        if let Some(e) = event {
            sink.write(e, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            LiveStreamEvent::LiveStreamStarted(s) => {
                self.stream = Some(*s);
                self.pushing = true;
            }
            LiveStreamEvent::LiveStreamQualitySet { video_quality } => {
                if let Some(s) = self.stream.as_mut() {
                    s.video_quality = video_quality;
                }
            }
            LiveStreamEvent::LiveStreamLensSwitched { video_type } => {
                if let Some(s) = self.stream.as_mut() {
                    s.video_type = video_type;
                }
            }
            LiveStreamEvent::LiveStreamStopped => self.pushing = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn started() -> LiveStreamEvent {
        LiveStreamEvent::LiveStreamStarted(Box::new(Started {
            workspace_id: "w".into(),
            sn: "UAV".into(),
            video_id: "UAV/39-0-7/normal-0".into(),
            url_type: 1,
            url: "webrtc://x/live/UAV-39-0-7".into(),
            video_quality: 0,
            video_type: "normal".into(),
            username: "adminPC".into(),
        }))
    }

    #[test]
    fn changes_are_recorded_while_the_stream_runs_only() {
        TestFramework::<LiveStream>::with(())
            .given(vec![started()])
            .when(LiveStreamCommand::SetQuality { video_quality: 3 })
            .then_expect_events(vec![LiveStreamEvent::LiveStreamQualitySet { video_quality: 3 }]);
        TestFramework::<LiveStream>::with(())
            .given(vec![started(), LiveStreamEvent::LiveStreamStopped])
            .when(LiveStreamCommand::SwitchLens { video_type: "ir".into() })
            .then_expect_events(vec![]);
        TestFramework::<LiveStream>::with(())
            .given_no_previous_events()
            .when(LiveStreamCommand::Stop)
            .then_expect_events(vec![]);
    }
}
