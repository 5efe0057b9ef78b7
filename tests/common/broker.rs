//! A real MQTT broker for the tests: Debian's mosquitto (installed by tools/setup.sh), on a port
//! of its own, and a subscriber that collects what it sees.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub struct Broker(std::process::Child);

/// A free local TCP port (bound, then released for the broker).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start(port: u16) -> Broker {
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let program = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(program)
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed for the MQTT test (tools/setup.sh installs it)");
        Broker::listening(child, port, "mosquitto")
    }

    /// `child` once it accepts connections on `port`.
    fn listening(child: std::process::Child, port: u16, what: &str) -> Broker {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed().as_secs() < 10, "{what} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker(child)
    }
}

impl Broker {
    /// rumqttd (crates.io; `tools/setup.sh` installs it), a second MQTT 5 broker implementation:
    /// its v5 listener on `port`, with the largest payload raised above a person message.
    pub fn start_rumqttd(port: u16, dir: &Path) -> Broker {
        let config = dir.join("rumqttd.toml");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            &config,
            format!(
                r#"id = 0
[router]
id = 0
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v5.1]
name = "v5-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
    [v5.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 33554432
    max_inflight_count = 100
"#
            ),
        )
        .unwrap();
        let installed = std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".cargo/bin/rumqttd"))
            .filter(|p| p.exists());
        let program = installed.map_or_else(|| "rumqttd".into(), |p| p.into_os_string());
        let child = Command::new(program)
            .args(["-q", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rumqttd must be installed for this test (tools/setup.sh installs it)");
        Broker::listening(child, port, "rumqttd")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One message as a subscriber received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Set only for retained messages delivered because of the subscription.
    pub retain: bool,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Everything published on `filters` from now on (and what is retained there).
pub struct Listener {
    rx: Receiver<Received>,
    pub seen: Vec<Received>,
    /// Messages already returned by `wait`, which waits for later ones on their topic.
    claimed: Vec<bool>,
}

impl Listener {
    pub fn subscribe(port: u16, id: &str, filters: &[&str]) -> Listener {
        use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(options, 100);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).unwrap();
        }
        let (tx, rx) = channel();
        let (acks_tx, acks) = channel();
        std::thread::spawn(move || {
            let _client = client;
            for n in connection.iter() {
                match n {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = acks_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let m = Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                        };
                        if tx.send(m).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        for _ in filters {
            acks.recv_timeout(Duration::from_secs(10))
                .expect("subscribed");
        }
        Listener {
            rx,
            seen: Vec::new(),
            claimed: Vec::new(),
        }
    }

    /// Waits for a message on `topic` that `wanted` accepts, after the last one returned on that
    /// topic (messages on other topics may have come in between); `what` names it on failure.
    pub fn wait(
        &mut self,
        topic: &str,
        what: &str,
        wanted: impl Fn(&Received) -> bool,
    ) -> Received {
        let after = (0..self.seen.len())
            .rev()
            .find(|&i| self.claimed[i] && self.seen[i].topic == topic)
            .map_or(0, |i| i + 1);
        for i in after..self.seen.len() {
            if self.seen[i].topic == topic && wanted(&self.seen[i]) {
                self.claimed[i] = true;
                return self.seen[i].clone();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(m) => {
                    let hit = m.topic == topic && wanted(&m);
                    self.seen.push(m.clone());
                    self.claimed.push(hit);
                    if hit {
                        return m;
                    }
                }
                Err(_) => break,
            }
        }
        let seen: Vec<String> = self
            .seen
            .iter()
            .map(|m| {
                format!(
                    "{} {}",
                    m.topic,
                    m.text().chars().take(80).collect::<String>()
                )
            })
            .collect();
        panic!("no {what} on {topic}; saw: {seen:#?}");
    }

    /// Everything that arrives within `time`, kept in `seen` too.
    pub fn drain(&mut self, time: Duration) -> Vec<Received> {
        let deadline = Instant::now() + time;
        let mut got = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(m) => {
                    self.seen.push(m.clone());
                    self.claimed.push(false);
                    got.push(m);
                }
                Err(_) => break,
            }
        }
        got
    }

    /// The payloads seen so far on `topic`, as text, in order.
    pub fn history(&self, topic: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|m| m.topic == topic)
            .map(Received::text)
            .collect()
    }
}

/// Publishes retained messages and waits until the broker has them.
pub fn publish(port: u16, messages: &[(String, Vec<u8>)]) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new("publisher", "127.0.0.1", port);
    // Room for the oversized messages an attacker may leave.
    options.set_max_packet_size(64 << 20, 64 << 20);
    // Room for every request: they are all queued before the connection is driven.
    let (client, mut connection) = Client::new(options, messages.len() + 10);
    for (topic, payload) in messages {
        client
            .publish(topic, QoS::AtLeastOnce, true, payload.clone())
            .unwrap();
    }
    let mut acked = 0;
    for n in connection.iter() {
        if let Ok(Event::Incoming(Packet::PubAck(_))) = n {
            acked += 1;
            if acked == messages.len() {
                break;
            }
        }
    }
}
