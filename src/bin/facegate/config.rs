//! `facegate watch --config FILE` (and `serve --config FILE`): a TOML file of settings, for a
//! service that should not carry its setup on the command line. Keys are the subcommand's long
//! flag names (`gallery`, `camera`, `threshold`, `mqtt-topic`, `listen`, ...); each value becomes
//! that flag's default, so a flag given on the command line still wins.
//!
//! ```toml
//! camera = 0
//! gallery = "/var/lib/facegate/gallery"
//! threshold = 0.40
//! mqtt = "mqtt://homeassistant.local"
//! mqtt-topic = "facegate/front-door"
//! stats = true
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command};
use facegate::support::settings::Value;

/// The subcommands that read a settings file.
const WITH_CONFIG: [&str; 2] = ["watch", "serve"];

/// The subcommand and `--config FILE` of a `watch` or `serve` command line, if any (read before
/// clap parses, because the file supplies defaults for the parse).
pub fn config_path(args: &[OsString]) -> Option<(&'static str, PathBuf)> {
    let sub = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))?
        + 1;
    let name = *WITH_CONFIG.iter().find(|n| args[sub] == **n)?;
    let rest = &args[sub + 1..];
    for (i, a) in rest.iter().enumerate() {
        let s = a.to_string_lossy();
        if s == "--" {
            break;
        }
        if s == "--config" {
            return rest.get(i + 1).map(|p| (name, PathBuf::from(p)));
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some((name, PathBuf::from(v)));
        }
    }
    None
}

/// The frame sources exclude each other: one named on the command line replaces the file's.
const SOURCES: [&str; 3] = ["camera", "frames", "mjpeg"];

/// Reads the file and turns its settings into defaults of the subcommand `sub`.
pub fn apply(cmd: Command, sub: &str, path: &Path, argv: &[OsString]) -> Result<Command, String> {
    let named = |flag: &str| {
        argv.iter().any(|a| {
            let a = a.to_string_lossy();
            a == format!("--{flag}") || a.starts_with(&format!("--{flag}="))
        })
    };
    let source_on_command_line = SOURCES.iter().any(|s| named(s));
    let watch = cmd
        .find_subcommand(sub)
        .ok_or_else(|| format!("no {sub} subcommand"))?
        .clone();
    let mut settings = Vec::new();
    for (flag, value) in facegate::support::settings::read(path)? {
        let shown = facegate::support::terminal::escape(&flag).into_owned();
        let arg = watch
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()) && flag != "config" && flag != "help")
            .ok_or_else(|| {
                format!(
                    "config file {}: unknown setting `{shown}` (settings are the long flag names of `facegate {sub} --help`)",
                    facegate::support::terminal::path(path)
                )
            })?;
        let is_switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let text = match value {
            Value::Text(t) if !is_switch => t,
            Value::Switch(b) if is_switch => b.to_string(),
            _ => {
                return Err(format!(
                    "config file {}: `{shown}` must be {}",
                    facegate::support::terminal::path(path),
                    if is_switch {
                        "true or false"
                    } else {
                        "a string or a number"
                    }
                ))
            }
        };
        if (is_switch && text == "false")
            || (source_on_command_line && SOURCES.contains(&flag.as_str()))
        {
            continue;
        }
        settings.push((arg.get_id().clone(), text));
    }
    Ok(cmd.mut_subcommand(sub, |mut sub| {
        for (id, text) in settings {
            sub = sub.mut_arg(id, |a| a.default_value(text));
        }
        sub
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_config_path_is_found_only_for_watch_and_serve() {
        assert_eq!(
            config_path(&args(&["facegate", "watch", "--config", "a.toml"])),
            Some(("watch", "a.toml".into()))
        );
        assert_eq!(
            config_path(&args(&["facegate", "watch", "--stats", "--config=b.toml"])),
            Some(("watch", "b.toml".into()))
        );
        assert_eq!(
            config_path(&args(&["facegate", "serve", "--config", "c.toml"])),
            Some(("serve", "c.toml".into()))
        );
        assert_eq!(
            config_path(&args(&["facegate", "identify", "--config", "a.toml"])),
            None
        );
        assert_eq!(
            config_path(&args(&["facegate", "watch", "--", "--config"])),
            None
        );
    }
}
