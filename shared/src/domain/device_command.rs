//! A command sent to a device (`services` or `property/set`), keyed by its `tid`: who asked what of
//! which gateway, and what the device answered, or that it did not answer in time.
//!
//! The command's MQTT message is part of its `CommandSent` event: the outbox relay publishes it to
//! DEVICE_OUT with the event itself ([`outbound`]), so a command is recorded if and only if it is
//! sent. The message carries an expiry: a command the device could not get before its caller
//! stopped waiting is never delivered late (a fly-to arriving minutes later would be dangerous).

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::es::StoredEvent;
use crate::protocol::services::CommandTopic;

pub const AGGREGATE_TYPE: &str = "device_command";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub gateway_sn: String,
    pub topic: CommandTopic,
    /// `None` for `property/set`, which has no method.
    pub method: Option<String>,
    pub bid: String,
    pub data: Value,
    /// The message's `timestamp` (ms).
    pub sent_at_ms: i64,
    /// After this (ms) the caller has stopped waiting and the message is not delivered any more.
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceCommandCommand {
    Send(Sent),
    /// A `services_reply` / `property/set_reply` with this tid.
    RecordReply {
        bid: String,
        result: Option<i64>,
        output: Value,
        received_at_ms: i64,
    },
    /// The caller stopped waiting.
    Expire,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DeviceCommandEvent {
    CommandSent(Sent),
    /// `late` when it came after the caller had been told the device did not answer.
    ReplyReceived {
        result: Option<i64>,
        output: Value,
        late: bool,
    },
    ReplyMissing,
}
crate::domain_event!(DeviceCommandEvent, "1.0", { CommandSent, ReplyReceived, ReplyMissing });

#[derive(Debug, thiserror::Error)]
pub enum DeviceCommandError {
    #[error("a command with this tid was already sent")]
    AlreadySent,
    #[error("no command with this tid was sent")]
    Unknown,
    #[error("the reply's bid is not the command's")]
    OtherBid,
}

impl crate::error::DjiCode for DeviceCommandError {}

/// What a command came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Waiting,
    Replied { result: Option<i64>, output: Value },
    Missing,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeviceCommand {
    sent: Option<Sent>,
    reply: Option<(Option<i64>, Value)>,
    missing: bool,
}

impl DeviceCommand {
    pub fn outcome(&self) -> Outcome {
        match (&self.reply, self.missing) {
            (Some((result, output)), _) => Outcome::Replied { result: *result, output: output.clone() },
            (None, true) => Outcome::Missing,
            (None, false) => Outcome::Waiting,
        }
    }
}

impl Aggregate for DeviceCommand {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = DeviceCommandCommand;
    type Event = DeviceCommandEvent;
    type Error = DeviceCommandError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        match command {
            DeviceCommandCommand::Send(sent) => {
                if self.sent.is_some() {
                    return Err(DeviceCommandError::AlreadySent);
                }
                sink.write(DeviceCommandEvent::CommandSent(sent), self).await;
            }
            DeviceCommandCommand::RecordReply { bid, result, output, received_at_ms } => {
                let sent = self.sent.as_ref().ok_or(DeviceCommandError::Unknown)?;
                // devices echo the bid; a reply with the tid of this command but another bid is
                // not an answer to it (an empty bid is taken as an echo that lost the field)
                if !bid.is_empty() && bid != sent.bid {
                    return Err(DeviceCommandError::OtherBid);
                }
                // a device repeating its reply (QoS 1) answers once
                if self.reply.is_none() {
                    let late = self.missing || received_at_ms > sent.expires_at_ms;
                    sink.write(DeviceCommandEvent::ReplyReceived { result, output, late }, self).await;
                }
            }
            DeviceCommandCommand::Expire => {
                if self.sent.is_none() {
                    return Err(DeviceCommandError::Unknown);
                }
                if self.reply.is_none() && !self.missing {
                    sink.write(DeviceCommandEvent::ReplyMissing, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DeviceCommandEvent::CommandSent(sent) => self.sent = Some(sent),
            DeviceCommandEvent::ReplyReceived { result, output, .. } => self.reply = Some((result, output)),
            DeviceCommandEvent::ReplyMissing => self.missing = true,
        }
    }
}

/// A message for a device, as the relay and command-api publish it to DEVICE_OUT.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub gateway_sn: String,
    /// Kind token of the DEVICE_OUT subject.
    pub kind: &'static str,
    pub mqtt_topic: String,
    /// `Nats-Msg-Id`: the relay's copy and command-api's early copy are one message.
    pub msg_id: String,
    pub expires_at_ms: i64,
    pub body: Vec<u8>,
}

impl Sent {
    pub fn outbound(&self, tid: &str) -> Outbound {
        let mqtt_topic = self.topic.topic(&self.gateway_sn);
        Outbound {
            gateway_sn: self.gateway_sn.clone(),
            kind: self.topic.kind(),
            msg_id: format!("{mqtt_topic}/{tid}"),
            mqtt_topic,
            expires_at_ms: self.expires_at_ms,
            body: crate::protocol::down_message(tid, &self.bid, self.sent_at_ms, self.method.as_deref(), &self.data),
        }
    }
}

/// The device message a committed event carries, if any.
pub fn outbound(event: &StoredEvent) -> Option<Outbound> {
    if event.aggregate_type != AGGREGATE_TYPE || event.event_type != "CommandSent" {
        return None;
    }
    match serde_json::from_value::<DeviceCommandEvent>(event.payload.clone()) {
        Ok(DeviceCommandEvent::CommandSent(sent)) => Some(sent.outbound(&event.aggregate_id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    fn sent() -> Sent {
        Sent {
            gateway_sn: "DOCK".into(),
            topic: CommandTopic::Services,
            method: Some("cover_open".into()),
            bid: "b".into(),
            data: json!(""),
            sent_at_ms: 1_000,
            expires_at_ms: 11_000,
        }
    }

    fn reply(at: i64) -> DeviceCommandCommand {
        DeviceCommandCommand::RecordReply { bid: "b".into(), result: Some(0), output: json!({}), received_at_ms: at }
    }

    #[test]
    fn a_reply_in_time_is_recorded_once() {
        let received = DeviceCommandEvent::ReplyReceived { result: Some(0), output: json!({}), late: false };
        TestFramework::<DeviceCommand>::with(())
            .given(vec![DeviceCommandEvent::CommandSent(sent())])
            .when(reply(2_000))
            .then_expect_events(vec![received.clone()]);
        TestFramework::<DeviceCommand>::with(())
            .given(vec![DeviceCommandEvent::CommandSent(sent()), received])
            .when(reply(2_500))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_reply_after_the_caller_gave_up_is_recorded_as_late() {
        TestFramework::<DeviceCommand>::with(())
            .given(vec![DeviceCommandEvent::CommandSent(sent()), DeviceCommandEvent::ReplyMissing])
            .when(reply(5_000))
            .then_expect_events(vec![DeviceCommandEvent::ReplyReceived {
                result: Some(0),
                output: json!({}),
                late: true,
            }]);
    }

    #[test]
    fn expiry_after_a_reply_changes_nothing() {
        TestFramework::<DeviceCommand>::with(())
            .given(vec![
                DeviceCommandEvent::CommandSent(sent()),
                DeviceCommandEvent::ReplyReceived { result: Some(0), output: json!({}), late: false },
            ])
            .when(DeviceCommandCommand::Expire)
            .then_expect_events(vec![]);
    }

    #[test]
    fn replies_to_unknown_commands_or_other_bids_are_refused() {
        TestFramework::<DeviceCommand>::with(())
            .given_no_previous_events()
            .when(reply(1))
            .then_expect_error_message("no command with this tid was sent");
        TestFramework::<DeviceCommand>::with(())
            .given(vec![DeviceCommandEvent::CommandSent(sent())])
            .when(DeviceCommandCommand::RecordReply {
                bid: "x".into(),
                result: Some(0),
                output: json!({}),
                received_at_ms: 1,
            })
            .then_expect_error_message("the reply's bid is not the command's");
    }

    #[test]
    fn the_message_is_the_protocols_envelope() {
        let o = sent().outbound("t1");
        assert_eq!(o.mqtt_topic, "thing/product/DOCK/services");
        assert_eq!(o.msg_id, "thing/product/DOCK/services/t1");
        let v: Value = serde_json::from_slice(&o.body).unwrap();
        assert_eq!(v, json!({"tid": "t1", "bid": "b", "timestamp": 1000, "method": "cover_open", "data": ""}));
    }
}
