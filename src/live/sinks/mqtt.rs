//! Events to an MQTT broker, with Home Assistant's discovery on top: each event's JSON line on
//! the events topic, access decisions on `facegate/access` with the messages of their MQTT
//! actions, and Home Assistant's entities kept in step with the gallery.

use std::time::Duration;

use crate::mqtt::home_assistant::{self, Board, HomeAssistant};
use crate::mqtt::{Message, Publisher, Session};
use crate::store::gallery::Person;

use super::super::capture::Counts;
use super::super::recognizer::Recognizer;
use super::{DecisionDone, Sink, SourceState};
use crate::events::Event;

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// `mqtt://host[:port]`.
    pub url: String,
    /// The topic of event lines.
    pub topic: String,
    /// User and password (the password from the environment, never a flag).
    pub credentials: Option<(String, String)>,
    /// Home Assistant's discovery prefix and this camera's name; `None`: no discovery.
    pub home_assistant: Option<(String, String)>,
    /// Where the ids announced to Home Assistant are remembered between runs (board-local).
    pub remember: Option<std::path::PathBuf>,
}

/// Access decisions go to this topic.
pub const ACCESS_TOPIC: &str = "facegate/access";

pub struct Outbox {
    config: MqttConfig,
    connected: Option<Connected>,
}

struct Connected {
    publisher: Publisher,
    home_assistant: Option<HomeAssistant>,
}

impl Outbox {
    /// Connects when the run opens (see [`Sink::open`]).
    pub fn new(config: MqttConfig) -> Outbox {
        Outbox {
            config,
            connected: None,
        }
    }

    /// Home Assistant's camera entity: the source up or down.
    fn camera(&self, up: bool) {
        if let Some(Connected {
            publisher,
            home_assistant: Some(ha),
        }) = &self.connected
        {
            ha.camera(publisher, up);
        }
    }

    fn send(publisher: &Publisher, topic: &str, payload: &str) {
        publisher.send(&Message {
            topic: topic.to_string(),
            payload: payload.as_bytes().to_vec(),
            retain: false,
        });
    }
}

impl Sink for Outbox {
    fn open(&mut self, people: &[Person]) -> Result<(), String> {
        let board = match &self.config.home_assistant {
            Some((prefix, camera)) => Some(Board::new(prefix, camera)?),
            None => None,
        };
        // What a previous run announced, to delete the entities of people gone since: the
        // config the broker retains, and what this board remembers (the broker may have lost it).
        let gone = match &board {
            Some(b) => {
                let config = crate::mqtt::read_retained(
                    &self.config.url,
                    self.config.credentials.clone(),
                    &b.config_topic(),
                    Duration::from_secs(3),
                );
                let remembered = self
                    .config
                    .remember
                    .as_deref()
                    .map(home_assistant::remembered)
                    .unwrap_or_default();
                b.gone(config.as_deref(), &remembered, people)
            }
            None => Vec::new(),
        };
        let session = board
            .as_ref()
            .map_or_else(Session::default, |b| b.session(people, &gone));
        let publisher = Publisher::connect_with(
            &self.config.url,
            &self.config.topic,
            self.config.credentials.clone(),
            session,
        )?;
        let home_assistant = board.map(|b| {
            let mut ha = HomeAssistant::start(&publisher, b, people, gone);
            if let Some(path) = &self.config.remember {
                ha.remember_at(path.clone());
            }
            ha
        });
        self.connected = Some(Connected {
            publisher,
            home_assistant,
        });
        Ok(())
    }

    fn event(&mut self, event: &Event, line: &str) -> Result<(), String> {
        if let Some(c) = &mut self.connected {
            c.publisher.publish(line);
            if let Some(ha) = &mut c.home_assistant {
                ha.event(&c.publisher, event);
            }
        }
        Ok(())
    }

    fn decision(&mut self, decision: &DecisionDone<'_>) -> Result<(), String> {
        if let Some(c) = &self.connected {
            Outbox::send(&c.publisher, ACCESS_TOPIC, decision.audit);
            for (topic, payload) in decision.messages {
                Outbox::send(&c.publisher, topic, payload);
            }
        }
        Ok(())
    }

    fn source_state(&mut self, state: &SourceState) {
        self.camera(matches!(state, SourceState::Up { .. }));
    }

    fn source_ended(&mut self) {
        self.camera(false);
    }

    fn gallery(&mut self, people: &[Person]) {
        if let Some(Connected {
            publisher,
            home_assistant: Some(ha),
        }) = &mut self.connected
        {
            ha.gallery(publisher, people);
        }
    }

    fn finish(&mut self, _: &Recognizer, _: Counts) {
        if let Some(c) = self.connected.take() {
            if let Some(ha) = &c.home_assistant {
                ha.stop(&c.publisher);
            }
            c.publisher.close();
        }
    }
}
