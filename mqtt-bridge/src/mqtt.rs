//! Connecting to the broker: the broker URL, client options shared by the bridge and the
//! simulator, and the reconnect backoff.

use std::time::Duration;

use anyhow::{bail, Context as _};
use rand::Rng as _;
use rumqttc::MqttOptions;

/// The largest packet MQTT can express (remaining length of 268,435,455 bytes). The bridge accepts
/// anything the broker accepts: a packet rumqttc refuses breaks the connection, and the broker
/// would redeliver the same message on every reconnect, stalling the bridge for good. The broker's
/// own `message_size_limit` (see `mosquitto.conf`) is where the size is capped.
pub const MAX_PACKET_BYTES: usize = 268_435_455;

/// A broker address: `mqtt://host:port` or DJI's `tcp://host:port`, optionally with
/// `user:password@` before the host. TLS and WebSocket are not built in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some((scheme, _)) => bail!("MQTT URL {url:?}: scheme {scheme}:// is not supported (use mqtt:// or tcp://)"),
            None => url,
        };
        let rest = rest.trim_end_matches('/');
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((user.to_string(), password.to_string())), hostport)
            }
            None => (None, rest),
        };
        if hostport.contains('/') || hostport.contains('?') {
            bail!("MQTT URL {url:?}: paths and query strings are not supported");
        }
        // `[::1]:1883`, `host:1883`, `host`
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse::<u16>().with_context(|| format!("MQTT URL {url:?}: port"))?)
            }
            _ => (hostport, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("MQTT URL {url:?}: no host");
        }
        Ok(Self { host: host.to_string(), port, credentials })
    }
}

/// Client options for one connection. `clean_session = false` asks the broker to keep the
/// subscriptions and to queue QoS 1 messages while the client is away.
pub fn options(
    url: &BrokerUrl,
    client_id: &str,
    keep_alive: Duration,
    clean_session: bool,
    credentials: Option<(&str, &str)>,
) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, url.host.clone(), url.port);
    // rumqttc refuses keep-alives under one second (zero disables it).
    let keep_alive = if keep_alive.is_zero() { keep_alive } else { keep_alive.max(Duration::from_secs(1)) };
    o.set_keep_alive(keep_alive);
    o.set_clean_session(clean_session);
    o.set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    let credentials = credentials.or(url.credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str())));
    if let Some((user, password)) = credentials {
        o.set_credentials(user, password);
    }
    o
}

/// A client and its event loop with Nagle's algorithm off: commands and replies are small
/// messages that must not wait for the previous one's TCP acknowledgement.
pub fn client(options: MqttOptions, capacity: usize) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, capacity);
    eventloop.network_options.set_tcp_nodelay(true);
    (client, eventloop)
}

/// Exponential backoff with jitter for reconnecting: 100 ms doubling up to 10 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The next delay; jitter keeps a fleet of replicas (or simulated docks) from reconnecting in
    /// lock-step after a broker restart.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        base.mul_f64(rand::thread_rng().gen_range(0.5..1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1883").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.credentials), ("127.0.0.1", 1883, None));
        let u = BrokerUrl::parse("tcp://broker.example:11883/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("broker.example", 11883));
        let u = BrokerUrl::parse("mqtt://JavaServer:123456@emqx").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("emqx", 1883));
        assert_eq!(u.credentials, Some(("JavaServer".into(), "123456".into())));
        let u = BrokerUrl::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
        assert_eq!(BrokerUrl::parse("localhost").unwrap().port, 1883);
        assert!(BrokerUrl::parse("mqtts://x:8883").is_err());
        assert!(BrokerUrl::parse("ws://x:8083/mqtt").is_err());
        assert!(BrokerUrl::parse("mqtt://x:notaport").is_err());
        assert!(BrokerUrl::parse("mqtt://").is_err());
    }

    #[test]
    fn backoff_grows_to_a_ceiling() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(10));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
