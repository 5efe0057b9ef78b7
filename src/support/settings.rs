//! A settings file (TOML) for a long-running command: plain `key = value` lines whose keys are
//! the command's long flag names. This module reads and checks the file; the command line turns
//! each setting into a flag default, so flag ranges apply to settings too.

use std::path::Path;

use crate::support::limits;

/// One setting's value, as the flag would be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A flag's value (strings and numbers).
    Text(String),
    /// A switch (`stats = true`).
    Switch(bool),
}

/// Reads a settings file of at most [`limits::MAX_CONFIG_BYTES`].
pub fn read(path: &Path) -> Result<Vec<(String, Value)>, String> {
    let shown = crate::support::terminal::path(path);
    let text = limits::read_text(path, limits::MAX_CONFIG_BYTES, "config file")
        .map_err(|e| format!("cannot read config file {shown}: {e}"))?;
    parse(&text).map_err(|e| format!("config file {shown}: {e}"))
}

/// Parses settings text: keys with `_` or `-`, values strings, numbers or booleans.
pub fn parse(text: &str) -> Result<Vec<(String, Value)>, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("it is not valid TOML: {e}"))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let flag = key.replace('_', "-");
            let shown = crate::support::terminal::escape(&key).into_owned();
            let value = match value {
                toml::Value::String(s) => Value::Text(s),
                toml::Value::Integer(i) => Value::Text(i.to_string()),
                toml::Value::Float(f) => Value::Text(f.to_string()),
                toml::Value::Boolean(b) => Value::Switch(b),
                _ => {
                    return Err(format!(
                        "`{shown}` must be a string or a number (or true/false for a switch)"
                    ))
                }
            };
            Ok((flag, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_settings_parse_and_nesting_is_refused() {
        let s = parse("camera = 0\nmqtt_topic = \"a/b\"\nstats = true\nthreshold = 0.4\n").unwrap();
        assert_eq!(
            s,
            vec![
                ("camera".into(), Value::Text("0".into())),
                ("mqtt-topic".into(), Value::Text("a/b".into())),
                ("stats".into(), Value::Switch(true)),
                ("threshold".into(), Value::Text("0.4".into())),
            ]
        );
        assert!(parse("a = [1]").unwrap_err().contains("must be"));
        let deep = format!("a = {}", "[".repeat(100_000));
        assert!(parse(&deep).unwrap_err().contains("TOML"));
    }
}
