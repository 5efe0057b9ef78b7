//! Where `watch` and `serve` send events besides stdout: the MQTT broker, with Home Assistant's
//! discovery on top (unless `--no-ha`).

use facegate::live::recognizer::Event;
use facegate::store::gallery::Person;

use crate::watch::WatchArgs;

#[cfg(feature = "mqtt")]
pub struct Outbox {
    publisher: facegate::mqtt::Publisher,
    home_assistant: Option<facegate::mqtt::home_assistant::HomeAssistant>,
}

#[cfg(feature = "mqtt")]
impl Outbox {
    /// Connects to `url` (the password from FACEGATE_MQTT_PASSWORD, never a flag).
    pub fn connect(url: &str, args: &WatchArgs, people: &[Person]) -> Result<Outbox, String> {
        use facegate::mqtt::home_assistant::{Board, HomeAssistant};
        use facegate::mqtt::{Publisher, Session};
        let credentials = args.mqtt_credentials();
        let board = if args.no_ha {
            None
        } else {
            Some(Board::new(&args.ha_prefix, &args.camera_name())?)
        };
        let session = board
            .as_ref()
            .map_or_else(Session::default, |b| b.session(people));
        let publisher = Publisher::connect_with(url, &args.mqtt_topic, credentials, session)?;
        let home_assistant = board.map(|b| HomeAssistant::start(&publisher, b, people));
        Ok(Outbox {
            publisher,
            home_assistant,
        })
    }

    pub fn event(&mut self, event: &Event, line: &str) {
        self.publisher.publish(line);
        if let Some(ha) = &mut self.home_assistant {
            ha.event(&self.publisher, event);
        }
    }

    /// One message to any topic (access decisions and the rules' MQTT actions).
    pub fn message(&self, topic: &str, payload: &str) {
        self.publisher.send(&facegate::mqtt::Message {
            topic: topic.to_string(),
            payload: payload.as_bytes().to_vec(),
            retain: false,
        });
    }

    pub fn gallery(&mut self, people: &[Person]) {
        if let Some(ha) = &mut self.home_assistant {
            ha.gallery(&self.publisher, people);
        }
    }

    pub fn close(self) {
        if let Some(ha) = &self.home_assistant {
            ha.stop(&self.publisher);
        }
        self.publisher.close();
    }
}

/// Without the `mqtt` feature: nothing to connect to.
#[cfg(not(feature = "mqtt"))]
pub enum Outbox {}

#[cfg(not(feature = "mqtt"))]
impl Outbox {
    pub fn connect(_: &str, _: &WatchArgs, _: &[Person]) -> Result<Outbox, String> {
        Err("this facegate was built without MQTT support (the `mqtt` feature)".into())
    }
    pub fn event(&mut self, _: &Event, _: &str) {
        match *self {}
    }
    pub fn message(&self, _: &str, _: &str) {
        match *self {}
    }
    pub fn gallery(&mut self, _: &[Person]) {
        match *self {}
    }
    pub fn close(self) {
        match self {}
    }
}
