//! Events to an MQTT broker (Home Assistant and similar), through `rumqttc`.
//!
//! Publishing never blocks recognition: events go into the client's bounded request queue and a
//! background thread drives the connection, reconnecting when the broker goes away. A broker that
//! is down is a warning, not a reason to stop watching the door.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::{Client, ConnectionError, Event, MqttOptions, Packet, QoS};

/// Events waiting for the broker; beyond this, new events are not published (and said so).
const QUEUE: usize = 64;
/// How long closing waits for queued events to reach the broker.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Publisher {
    client: Client,
    topic: String,
    finished: mpsc::Receiver<()>,
}

/// `mqtt://host[:port]` (or `tcp://`, or a bare `host[:port]`) to host and port (default 1883).
pub fn parse_address(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .unwrap_or(url);
    if rest.contains("://") {
        return Err(format!(
            "unsupported MQTT address {url}: use mqtt://host[:port] (TLS is not built in)"
        ));
    }
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("bad port in MQTT address {url}"))?;
            (h.trim_matches(['[', ']']).to_string(), port)
        }
        _ => (rest.to_string(), 1883),
    };
    if host.is_empty() {
        return Err(format!("no host in MQTT address {url}"));
    }
    Ok((host, port))
}

impl Publisher {
    /// Starts connecting to the broker at `url` and returns at once; events are published on
    /// `topic`.
    pub fn connect(
        url: &str,
        topic: &str,
        credentials: Option<(String, String)>,
    ) -> Result<Publisher, String> {
        let (host, port) = parse_address(url)?;
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(format!(
                "bad MQTT topic {topic:?}: it must be non-empty, without + or #"
            ));
        }
        let mut options = MqttOptions::new(format!("facegate-{}", std::process::id()), &host, port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(options, QUEUE);
        let (done_tx, finished) = mpsc::channel();
        let address = format!("{host}:{port}");
        thread::Builder::new()
            .name("facegate-mqtt".into())
            .spawn(move || {
                let mut last_warning: Option<Instant> = None;
                for notification in connection.iter() {
                    match notification {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            eprintln!("facegate: connected to MQTT broker {address}");
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        Err(ConnectionError::RequestsDone) => break,
                        Err(e) => {
                            // Say it once in a while, not on every retry.
                            if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                                eprintln!(
                                    "facegate: warning: MQTT broker {address}: {e}; retrying"
                                );
                                last_warning = Some(Instant::now());
                            }
                            thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        Ok(Publisher {
            client,
            topic: topic.to_string(),
            finished,
        })
    }

    /// Queues one event (a JSON line) for the broker, at-least-once.
    pub fn publish(&self, payload: &str) {
        if let Err(e) = self.client.try_publish(
            &self.topic,
            QoS::AtLeastOnce,
            false,
            payload.as_bytes().to_vec(),
        ) {
            eprintln!("facegate: warning: event not published to MQTT ({e})");
        }
    }

    /// Sends what is queued, then disconnects; gives up after a few seconds if the broker is away.
    pub fn close(self) {
        if self.client.try_disconnect().is_ok()
            && self.finished.recv_timeout(FLUSH_TIMEOUT).is_err()
        {
            eprintln!(
                "facegate: warning: MQTT broker unreachable; queued events were not delivered"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_default_port() {
        assert_eq!(
            parse_address("mqtt://broker.lan").unwrap(),
            ("broker.lan".into(), 1883)
        );
        assert_eq!(
            parse_address("tcp://10.0.0.2:1884/").unwrap(),
            ("10.0.0.2".into(), 1884)
        );
        assert_eq!(
            parse_address("localhost:99").unwrap(),
            ("localhost".into(), 99)
        );
        assert_eq!(
            parse_address("mqtt://[::1]:1883").unwrap(),
            ("::1".into(), 1883)
        );
        assert!(parse_address("mqtts://x").unwrap_err().contains("TLS"));
        assert!(parse_address("mqtt://x:port")
            .unwrap_err()
            .contains("bad port"));
        assert!(parse_address("mqtt://").unwrap_err().contains("no host"));
    }
}
