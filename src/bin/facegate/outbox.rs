//! `--mqtt`: the broker sink of `watch` and `serve`, with Home Assistant's discovery on top
//! (unless `--no-ha`).

use facegate::live::sinks::Sink;

use crate::watch::WatchArgs;

#[cfg(feature = "mqtt")]
pub fn sink(url: &str, args: &WatchArgs) -> Result<Box<dyn Sink>, String> {
    use facegate::live::sinks::mqtt::{MqttConfig, Outbox};
    Ok(Box::new(Outbox::new(MqttConfig {
        url: url.to_string(),
        topic: args.mqtt_topic.clone(),
        credentials: args.mqtt_credentials(),
        home_assistant: (!args.no_ha).then(|| (args.ha_prefix.clone(), args.camera_name())),
        // Beside the gallery, one file a camera: a board-local fact, like its access bindings.
        remember: (!args.no_ha).then(|| {
            let node = facegate::mqtt::home_assistant::node_id(&args.camera_name());
            args.gallery
                .gallery
                .join(format!("home-assistant-{node}.json"))
        }),
    })))
}

/// Without the `mqtt` feature: nothing to connect to.
#[cfg(not(feature = "mqtt"))]
pub fn sink(_: &str, _: &WatchArgs) -> Result<Box<dyn Sink>, String> {
    Err("this facegate was built without MQTT support (the `mqtt` feature)".into())
}
