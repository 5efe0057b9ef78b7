//! Events to an MQTT broker (Home Assistant and similar), through `rumqttc`.
//!
//! Publishing never blocks recognition: events go into the client's bounded request queue and a
//! background thread drives the connection, reconnecting when the broker goes away. A broker that
//! is down is a warning, not a reason to stop watching the door.
//!
//! A session may carry a last will (published by the broker when the connection dies) and
//! announcements: retained messages sent again on every (re)connection and whenever a message
//! arrives on a "resend" topic (Home Assistant's birth message), see [`home_assistant`].
//!
//! facegate speaks MQTT 5 (every broker of the last years does: mosquitto since 1.6, EMQX,
//! VerneMQ, HiveMQ) for one reason: a client tells the broker the largest packet it accepts, and
//! the broker then drops larger messages for it instead of sending them. Over MQTT 3.1.1 one
//! oversized retained message was a connection error that came back with every reconnection,
//! so nothing retained after it was ever read.

pub mod home_assistant;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{Filter, LastWill, Packet, RetainForwardRule};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, ConnectionError, Event, MqttOptions};

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Message {
    pub fn retained(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            retain: true,
        }
    }
}

/// What a connection does besides publishing events.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// Published by the broker when the connection is lost without a goodbye.
    pub will: Option<Message>,
    /// Sent once, before everything else: resets of retained states (presence off) that must
    /// reach the broker before the announcements say "online".
    pub first: Vec<Message>,
    /// Sent on every connection, and again when `resend_on` receives `resend_payload`.
    pub announcements: Vec<Message>,
    pub resend_on: Option<(String, Vec<u8>)>,
    /// Messages on a topic filter, handed to another thread (see [`Inbox`]).
    pub inbox: Option<Inbox>,
    /// The client id [default: `facegate-<pid>`]; two connections of one process need two.
    pub client_id: Option<String>,
    /// Largest packet sent or received [default: 1 MiB].
    pub max_packet: Option<usize>,
}

/// Where a connection delivers what arrives on its `filters` (`a/b/+`: one level under `a/b/`).
/// The channel is bounded, so a slow reader holds the connection back (the broker queues, and
/// beyond its limit drops) instead of growing memory.
#[derive(Debug, Clone)]
pub struct Inbox {
    /// Subscribed on every connection.
    pub filters: Vec<Subscription>,
    pub to: mpsc::SyncSender<Incoming>,
    /// Set when the reader fell behind (the channel was full): the broker may then have dropped
    /// messages it could not queue for this connection.
    pub fell_behind: Arc<std::sync::atomic::AtomicBool>,
}

/// One topic filter of an [`Inbox`].
#[derive(Debug, Clone)]
pub struct Subscription {
    pub filter: String,
    /// Whether the broker sends what it retains there when subscribing (MQTT 5's retain
    /// handling); without, only what is published from then on arrives.
    pub retained: bool,
}

impl Subscription {
    pub fn new(filter: impl Into<String>, retained: bool) -> Subscription {
        Subscription {
            filter: filter.into(),
            retained,
        }
    }

    fn filter(&self) -> Filter {
        let mut f = Filter::new(self.filter.clone(), QoS::AtLeastOnce);
        if !self.retained {
            f.retain_forward_rule = RetainForwardRule::Never;
        }
        f
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A (new) connection: subscriptions made over the last one are gone.
    Connected,
    /// A subscription is in place: retained messages follow.
    Subscribed,
    Message {
        topic: String,
        payload: Vec<u8>,
    },
}

/// Whether `topic` matches the MQTT topic filter `filter` (`+` one level, `#` the rest).
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if f == "+" && !level.is_empty() => {}
            Some(level) if f == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

impl Inbox {
    fn matches(&self, topic: &str) -> bool {
        self.filters.iter().any(|s| matches(&s.filter, topic))
    }
}

/// Events waiting for the broker; beyond this, new events are not published (and said so).
const QUEUE: usize = 64;
/// Messages [`Publisher::try_send`] lets wait for their acknowledgement at once (well under the
/// client's 100 packet ids).
pub const IN_FLIGHT: u64 = 32;
/// How long closing waits for queued events to reach the broker.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Publisher {
    client: Client,
    topic: String,
    finished: mpsc::Receiver<()>,
    announcements: Arc<Mutex<Vec<Message>>>,
    /// QoS 1 messages handed to the client, and acknowledged by the broker.
    queued: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
}

/// Hands a message to the client (QoS 1) and counts it, so that closing can wait for its ack.
fn queue(client: &Client, queued: &AtomicU64, m: &Message) -> Result<(), String> {
    // The client's error holds the whole request; only its words are wanted.
    client
        .try_publish(&m.topic, QoS::AtLeastOnce, m.retain, m.payload.clone())
        .map_err(|e| e.to_string())?;
    queued.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Largest MQTT packet sent or received: a snapshot JPEG or a discovery config of many people.
const MAX_PACKET: usize = 1 << 20;

/// A topic to publish on: non-empty, no wildcards.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.contains(['+', '#']) || topic.contains('\0') {
        return Err(format!(
            "bad MQTT topic {topic:?}: it must be non-empty, without + or #"
        ));
    }
    Ok(())
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

/// The message the broker retains on `topic`, read once over a connection of its own: `None`
/// when it holds none, or the broker cannot be reached within `patience` (the caller goes on as
/// if there were none). Retained messages come right after the subscription is acknowledged, so
/// an empty topic costs one round trip and a short grace, not the whole `patience`.
pub fn read_retained(
    url: &str,
    credentials: Option<(String, String)>,
    topic: &str,
    patience: Duration,
) -> Option<Vec<u8>> {
    let (host, port) = parse_address(url).ok()?;
    let mut options = MqttOptions::new(format!("facegate-read-{}", std::process::id()), host, port);
    options.set_max_packet_size(Some(MAX_PACKET as u32));
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    let (client, mut connection) = Client::new(options, 10);
    client.subscribe(topic, QoS::AtLeastOnce).ok()?;
    let deadline = Instant::now() + patience;
    let mut acknowledged: Option<Instant> = None;
    let grace = Duration::from_millis(300);
    let mut found = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let wait = match acknowledged {
            Some(at) => grace.saturating_sub(at.elapsed()).min(left),
            None => left,
        };
        if wait.is_zero() {
            break;
        }
        match connection.recv_timeout(wait) {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => acknowledged = Some(Instant::now()),
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic[..] == *topic.as_bytes() => {
                found = Some(p.payload.to_vec());
                break;
            }
            Ok(Ok(_)) => {}
            // A refused or lost connection: no retained message to go on.
            Ok(Err(_)) => break,
            Err(_) if acknowledged.is_some() => break,
            Err(_) => {}
        }
    }
    let _ = client.disconnect();
    found
}

impl Publisher {
    /// Starts connecting to the broker at `url` and returns at once; events are published on
    /// `topic`.
    pub fn connect(
        url: &str,
        topic: &str,
        credentials: Option<(String, String)>,
    ) -> Result<Publisher, String> {
        Publisher::connect_with(url, topic, credentials, Session::default())
    }

    /// [`Publisher::connect`] with a last will and announcements.
    pub fn connect_with(
        url: &str,
        topic: &str,
        credentials: Option<(String, String)>,
        session: Session,
    ) -> Result<Publisher, String> {
        let (host, port) = parse_address(url)?;
        check_topic(topic)?;
        let client_id = session
            .client_id
            .clone()
            .unwrap_or_else(|| format!("facegate-{}", std::process::id()));
        let mut options = MqttOptions::new(client_id, &host, port);
        options.set_keep_alive(Duration::from_secs(30));
        // Discovery configs and snapshots are larger than the 10 kB default. Told to the broker,
        // which then drops larger messages for this connection (MQTT 5).
        let max_packet = session.max_packet.unwrap_or(MAX_PACKET);
        options.set_max_packet_size(Some(u32::try_from(max_packet).unwrap_or(u32::MAX)));
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        if let Some(will) = &session.will {
            options.set_last_will(LastWill::new(
                &will.topic,
                will.payload.clone(),
                QoS::AtLeastOnce,
                will.retain,
                None,
            ));
        }
        let (client, mut connection) = Client::new(options, QUEUE);
        let (done_tx, finished) = mpsc::channel();
        let address = format!("{host}:{port}");
        // Queued first, so the config is on the broker before any state it describes; the
        // thread sends them again on reconnections.
        let queued = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        for m in session.first.iter().chain(&session.announcements) {
            let _ = queue(&client, &queued, m);
        }
        let announcements = Arc::new(Mutex::new(session.announcements));
        let resend = session.resend_on;
        let inbox = session.inbox;
        let (thread_client, thread_announcements) = (client.clone(), announcements.clone());
        let (thread_queued, thread_acked) = (queued.clone(), acked.clone());
        thread::Builder::new()
            .name("facegate-mqtt".into())
            .spawn(move || {
                let announce = || {
                    let list = thread_announcements
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    for m in &list {
                        let _ = queue(&thread_client, &thread_queued, m);
                    }
                };
                let mut last_warning: Option<Instant> = None;
                let mut connections = 0u64;
                for notification in connection.iter() {
                    match notification {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            eprintln!("facegate: connected to MQTT broker {address}");
                            // A clean session forgets subscriptions: ask again on every connection.
                            if let Some((t, _)) = &resend {
                                let _ = thread_client.try_subscribe(t, QoS::AtLeastOnce);
                            }
                            // At least once: a broker queues QoS 1 messages for a reader that is
                            // busy (mosquitto: 1000 beyond 20 in flight), QoS 0 ones hardly at all.
                            if let Some(i) = &inbox {
                                let _ = i.to.send(Incoming::Connected);
                                let _ = thread_client
                                    .try_subscribe_many(i.filters.iter().map(Subscription::filter));
                            }
                            // The first connection sends what was queued at the start; after a
                            // reconnection the will has said "offline": announce again.
                            if connections > 0 {
                                announce();
                            }
                            connections += 1;
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            thread_acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(i) = &inbox {
                                let _ = i.to.send(Incoming::Subscribed);
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            // Topics are UTF-8 by the protocol; one that is not matches nothing.
                            let topic = std::str::from_utf8(&p.topic).unwrap_or("");
                            if let Some(i) = inbox.as_ref().filter(|i| i.matches(topic)) {
                                let m = Incoming::Message {
                                    topic: topic.to_string(),
                                    payload: p.payload.to_vec(),
                                };
                                if let Err(mpsc::TrySendError::Full(m)) = i.to.try_send(m) {
                                    i.fell_behind.store(true, Ordering::Relaxed);
                                    let _ = i.to.send(m);
                                }
                            }
                            if resend
                                .as_ref()
                                .is_some_and(|(t, v)| topic == t && p.payload[..] == v[..])
                            {
                                announce();
                            }
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        Err(ConnectionError::RequestsDone) => break,
                        Err(e) => lost(&mut last_warning, &address, &e),
                    }
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        Ok(Publisher {
            client,
            topic: topic.to_string(),
            finished,
            announcements,
            queued,
            acked,
        })
    }

    /// Replaces the announcements (kept for the next reconnection) and sends them now.
    pub fn announce(&self, announcements: Vec<Message>) {
        for m in &announcements {
            self.send(m);
        }
        *self.announcements.lock().unwrap_or_else(|e| e.into_inner()) = announcements;
    }

    /// Subscribes to `filter` again: the broker sends its retained messages there once more.
    pub fn resubscribe(&self, filter: &str) {
        let _ = self.client.try_subscribe(filter, QoS::AtLeastOnce);
    }

    /// Subscribes to these exact topics, for what the broker retains there; false when the
    /// client's queue is full (ask again later). What arrives is delivered only where it matches
    /// the inbox's filters.
    pub fn fetch(&self, topics: &[String]) -> bool {
        if topics.is_empty() {
            return true;
        }
        let filters = topics
            .iter()
            .map(|t| Filter::new(t.clone(), QoS::AtLeastOnce));
        self.client.try_subscribe_many(filters).is_ok()
    }

    /// Ends a subscription made by [`Publisher::fetch`]; false while the client's queue is full
    /// (ask again later).
    pub fn forget(&self, topic: &str) -> bool {
        self.client.try_unsubscribe(topic).is_ok()
    }

    /// Queues one message, at-least-once, unless the queue is full: then it is handed back.
    /// Bulk senders use this: it also hands the message back while [`IN_FLIGHT`] messages wait
    /// for the broker's acknowledgement, since running ahead of the broker makes the client's
    /// packet ids collide and the connection restart.
    pub fn try_send(&self, m: Message) -> Result<(), Message> {
        let waiting = (self.queued.load(Ordering::Relaxed))
            .saturating_sub(self.acked.load(Ordering::Relaxed));
        if waiting >= IN_FLIGHT {
            return Err(m);
        }
        queue(&self.client, &self.queued, &m).map_err(|_| m)
    }

    /// Queues one message, at-least-once.
    pub fn send(&self, m: &Message) {
        match queue(&self.client, &self.queued, m) {
            Ok(()) => {}
            Err(e) => eprintln!(
                "facegate: warning: MQTT message to {} not sent ({e})",
                crate::support::terminal::escape(&m.topic)
            ),
        }
    }

    /// Queues one event (a JSON line) for the broker, at-least-once.
    pub fn publish(&self, payload: &str) {
        let m = Message {
            topic: self.topic.clone(),
            payload: payload.as_bytes().to_vec(),
            retain: false,
        };
        if let Err(e) = queue(&self.client, &self.queued, &m) {
            eprintln!("facegate: warning: event not published to MQTT ({e})");
        }
    }

    /// Sends what is queued, then disconnects; gives up after a few seconds if the broker is away.
    pub fn close(self) {
        // Disconnecting right behind the last publishes lost them (mosquitto saw a broken
        // stream): wait until the broker has acknowledged everything queued, then say goodbye.
        let started = Instant::now();
        while self.acked.load(Ordering::Relaxed) < self.queued.load(Ordering::Relaxed)
            && started.elapsed() < FLUSH_TIMEOUT
        {
            thread::sleep(Duration::from_millis(10));
        }
        if self.client.try_disconnect().is_ok()
            && self.finished.recv_timeout(FLUSH_TIMEOUT).is_err()
        {
            eprintln!(
                "facegate: warning: MQTT broker unreachable; queued events were not delivered"
            );
        }
    }
}

/// The connection to `broker` failed: said once a minute at most, not on every retry, then a
/// second's wait before the client tries again.
fn lost(last_warning: &mut Option<Instant>, broker: &str, e: &ConnectionError) {
    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
        eprintln!("facegate: warning: MQTT broker {broker}: {e}; retrying");
        *last_warning = Some(Instant::now());
    }
    thread::sleep(Duration::from_secs(1));
}

/// A subscription of its own that hands every message on some topic filters to a callback:
/// what the access rules' MQTT factors watch (a phone's presence bridged from Home Assistant).
/// Messages larger than [`WATCH_MAX_PACKET`] are dropped by the broker (MQTT 5): a factor reads
/// a word, never a picture. Dropping the watcher disconnects.
pub struct Watcher {
    client: Client,
}

/// Largest packet a [`Watcher`] accepts.
pub const WATCH_MAX_PACKET: usize = 4096;

impl Watcher {
    pub fn start(
        url: &str,
        credentials: Option<(String, String)>,
        filters: Vec<String>,
        mut deliver: impl FnMut(&str, &[u8]) + Send + 'static,
    ) -> Result<Watcher, String> {
        let (host, port) = parse_address(url)?;
        let mut options = MqttOptions::new(
            format!("facegate-factors-{}", std::process::id()),
            &host,
            port,
        );
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(Some(WATCH_MAX_PACKET as u32));
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(options, 16);
        let thread_client = client.clone();
        let label = format!("{host}:{port} (access factors)");
        thread::Builder::new()
            .name("facegate-mqtt-factors".into())
            .spawn(move || {
                let mut last_warning: Option<Instant> = None;
                for notification in connection.iter() {
                    match notification {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            for f in &filters {
                                let _ = thread_client.try_subscribe(f, QoS::AtLeastOnce);
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if let Ok(topic) = std::str::from_utf8(&p.topic) {
                                deliver(topic, &p.payload);
                            }
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        Err(ConnectionError::RequestsDone) => break,
                        Err(e) => lost(&mut last_warning, &label, &e),
                    }
                }
            })
            .map_err(|e| format!("cannot start the MQTT factor thread: {e}"))?;
        Ok(Watcher { client })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters_match_by_level() {
        assert!(matches("facegate/gallery/+", "facegate/gallery/p1"));
        assert!(!matches("facegate/gallery/+", "facegate/gallery/p1/x"));
        assert!(!matches("facegate/gallery/+", "facegate/gallery/"));
        assert!(matches("facegate/manifest/+/+", "facegate/manifest/b/0"));
        assert!(!matches("facegate/manifest/+/+", "facegate/manifest/b"));
        assert!(matches("facegate/#", "facegate/a/b"));
        assert!(matches("a/b", "a/b") && !matches("a/b", "a/c"));
    }

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
