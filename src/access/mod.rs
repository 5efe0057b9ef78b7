//! Access rules that act: each `identified` or `unknown` event is checked against the rules
//! ([`rules`]), the first rule that grants runs its actions ([`actions`]), and every decision,
//! granted or denied with the reason, is returned for the audit (a JSON line, an MQTT message).

pub mod actions;
pub mod bindings;
pub mod factors;
pub mod pins;
pub mod rules;
pub mod schedule;

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::events::Event;
use crate::events::EventKind;
use actions::{Gpio, Job, Runner};
use factors::{Check, Evidence, Subject};
use rules::{Action, Rule, Rules};

/// A face a rule would grant, waiting for the rule's other factors.
struct Pending {
    rule: usize,
    who: String,
    camera: Option<String>,
    event: Event,
    /// Wall-clock seconds when the face was decided (it waits the rule's `wait` from then).
    face_at: f64,
}

/// One decision, as the audit records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub event: &'static str,
    pub ts: f64,
    pub name: Option<String>,
    /// The gallery id of the person identified: what the rules grant (a name can change hands).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_id: Option<String>,
    pub camera: Option<String>,
    pub track: u64,
    pub score: f32,
    pub granted: bool,
    /// The rule that granted, or (denied) the first rule that would have applied.
    pub rule: Option<String>,
    pub reason: String,
    /// Actions run (granted only).
    pub actions: Vec<String>,
    /// The factors besides the face the rule requires, each with whether it held and what was
    /// seen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub factors: Vec<Check>,
    /// Denied for now: the face is waiting for the factors, and a later decision on the same
    /// track says whether they came.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub waiting: bool,
}

impl Decision {
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

pub struct Access {
    rules: Rules,
    /// When each (rule, person or stranger, camera) was last granted.
    granted_at: HashMap<(usize, String, String), f64>,
    runner: Runner,
    /// Runner line index of each GPIO action.
    lines: HashMap<usize, usize>,
    threshold: f32,
    evidence: Evidence,
    pending: Vec<Pending>,
}

impl Access {
    /// Opens the GPIO lines the rules use (an error names the line), and starts the action thread.
    /// `threshold` is the match threshold, the default `min_score`.
    pub fn start(
        rules: Rules,
        gpio: &dyn Gpio,
        threshold: f32,
        evidence: Evidence,
    ) -> Result<Access, String> {
        let mut opened = Vec::new();
        let mut lines = HashMap::new();
        for (action, spec) in rules.gpio_lines() {
            lines.insert(action, opened.len());
            opened.push(gpio.open(&spec.chip, spec.line, spec.active_low)?);
        }
        for spec in rules.input_lines() {
            gpio.watch(&spec, evidence.clone())?;
        }
        Ok(Access {
            rules,
            granted_at: HashMap::new(),
            runner: Runner::start(opened),
            lines,
            threshold,
            evidence,
            pending: Vec::new(),
        })
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Takes a re-read rules file. Its GPIO lines must be the ones already held (changing
    /// wiring needs a restart); otherwise the old rules stay. `edited`: the file changed (its
    /// rules may be others, so cooldowns start over); otherwise the same file was resolved
    /// against a changed gallery, and a cooldown running must not end because someone enrolled.
    pub fn replace(&mut self, rules: Rules, edited: bool) -> Result<(), String> {
        if rules.gpio_lines() != self.rules.gpio_lines()
            || rules.input_lines() != self.rules.input_lines()
        {
            return Err(
                "the GPIO actions or input factors changed; restart facegate to use them (the \
                 old rules stay)"
                    .into(),
            );
        }
        self.rules = rules;
        if edited {
            self.granted_at.clear();
            // Their indices name rules of the old file; a face waiting under them is decided
            // anew when it is seen again.
            self.pending.clear();
        }
        Ok(())
    }

    /// Waits for queued actions (at exit).
    pub fn finish(&mut self) {
        self.runner.finish();
    }

    /// Decides an event: `None` for events rules do not concern (`left`). Returns the decision
    /// and the MQTT messages its actions publish (topic, payload), for the caller's connection.
    pub fn decide(
        &mut self,
        e: &Event,
        camera: Option<&str>,
    ) -> Option<(Decision, Vec<(String, String)>)> {
        self.decide_at(e, camera, factors::wall_now())
    }

    /// [`Access::decide`] at wall-clock time `now` (what factors are timed by).
    pub fn decide_at(
        &mut self,
        e: &Event,
        camera: Option<&str>,
        now: f64,
    ) -> Option<(Decision, Vec<(String, String)>)> {
        let who = match e.kind {
            EventKind::Identified => e.person_id.clone()?,
            EventKind::Unknown => e.unknown_id.clone().unwrap_or_else(|| "unknown".into()),
            EventKind::Left => return None,
        };
        let mut d = blank(e, camera);
        let mut denials: Vec<(usize, String)> = Vec::new();
        // The first rule that would grant but for its factors: the one the face waits under.
        let mut waiting: Option<(usize, Vec<Check>)> = None;
        let mut granting = None;
        for (i, rule) in self.rules.rules.iter().enumerate() {
            let named = match e.kind {
                EventKind::Identified => rule.people.contains(&who),
                _ => rule.unknown,
            };
            if !named || !at_camera(rule, camera) {
                continue;
            }
            if let Some(why) = self.refusal(i, rule, &who, camera, e) {
                denials.push((i, why));
                continue;
            }
            let (checks, held) = self.factor_checks(rule, e, now, now);
            if held {
                granting = Some((i, checks));
                break;
            }
            waiting.get_or_insert((i, checks));
        }
        let mut messages = Vec::new();
        match (granting, waiting) {
            (Some((i, checks)), _) => {
                d.factors = checks;
                messages = self.grant(i, &who, camera, &mut d);
                self.pending
                    .retain(|p| !(p.who == who && p.camera.as_deref() == camera));
            }
            (None, Some((i, checks))) => {
                let rule = &self.rules.rules[i];
                d.rule = Some(rule.name.clone());
                d.reason = missing(&checks, rule);
                d.factors = checks;
                if rule.wait > 0.0 {
                    d.waiting = true;
                    d.reason = format!("waiting up to {} s for {}", rule.wait, d.reason);
                    self.pending.retain(|p| {
                        !(p.rule == i && p.who == who && p.camera.as_deref() == camera)
                    });
                    self.pending.push(Pending {
                        rule: i,
                        who,
                        camera: camera.map(str::to_string),
                        event: e.clone(),
                        face_at: now,
                    });
                }
            }
            (None, None) if denials.is_empty() => {
                d.reason = match e.kind {
                    EventKind::Identified => self
                        .name_given_to_another(e, camera)
                        .unwrap_or_else(|| "no rule names them at this camera".into()),
                    _ => "no rule for unknown faces at this camera".into(),
                };
            }
            (None, None) => {
                d.rule = Some(self.rules.rules[denials[0].0].name.clone());
                d.reason = denials
                    .iter()
                    .map(|(i, why)| {
                        if denials.len() == 1 {
                            why.clone()
                        } else {
                            format!("{}: {why}", self.rules.rules[*i].name)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
            }
        }
        Some((d, messages))
    }

    /// Decides the faces waiting for factors: granted when the factors hold now, denied when
    /// their wait is over. Called by the live loop every frame, and while it waits for frames.
    pub fn poll(&mut self) -> Vec<(Decision, Vec<(String, String)>)> {
        self.poll_at(factors::wall_now())
    }

    /// [`Access::poll`] at wall-clock time `now`.
    pub fn poll_at(&mut self, now: f64) -> Vec<(Decision, Vec<(String, String)>)> {
        let mut out = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let Some(rule) = self.rules.rules.get(p.rule) else {
                continue;
            };
            let (checks, held) = self.factor_checks(rule, &p.event, p.face_at, now);
            if !held && now < p.face_at + rule.wait {
                self.pending.push(p);
                continue;
            }
            // The decision is made now: on the event's clock, this much after the face.
            let mut e = p.event.clone();
            e.ts += now - p.face_at;
            let mut d = blank(&e, p.camera.as_deref());
            d.rule = Some(rule.name.clone());
            let refused = self.refusal(p.rule, rule, &p.who, p.camera.as_deref(), &e);
            d.factors = checks;
            let mut messages = Vec::new();
            match refused {
                Some(why) => d.reason = why,
                None if held => messages = self.grant(p.rule, &p.who, p.camera.as_deref(), &mut d),
                None => {
                    d.reason = format!(
                        "not given within the {} s the face waited: {}",
                        rule.wait,
                        missing(&d.factors, rule)
                    )
                }
            }
            out.push((d, messages));
        }
        out
    }

    /// Denies the faces still waiting, at the end of a run: every waiting decision is followed
    /// by one that says how it ended.
    pub fn abandon(&mut self) -> Vec<(Decision, Vec<(String, String)>)> {
        let mut out = self.poll_at(factors::wall_now());
        for p in std::mem::take(&mut self.pending) {
            let mut d = blank(&p.event, p.camera.as_deref());
            d.rule = self.rules.rules.get(p.rule).map(|r| r.name.clone());
            d.reason = "the run ended while the face waited for its factors".into();
            out.push((d, Vec::new()));
        }
        out
    }

    /// Faces waiting for factors.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// The factors `rule` requires (and its liveness, when it asks), checked for the face of
    /// `e` seen at `face_at`; and whether every one it requires held.
    fn factor_checks(&self, rule: &Rule, e: &Event, face_at: f64, now: f64) -> (Vec<Check>, bool) {
        let who = Subject {
            person_id: e.person_id.as_deref(),
            name: e.name.as_deref(),
        };
        let mut checks: Vec<Check> = rule
            .require
            .iter()
            .map(|&f| {
                let (name, factor) = &self.rules.factors[f];
                self.evidence.check(name, factor, &who, face_at, now)
            })
            .collect();
        let mut held = checks.iter().all(|c| c.held);
        if rule.liveness != factors::Liveness::Off {
            let live = self.evidence.live(e.track);
            if rule.liveness == factors::Liveness::Require {
                held &= live.held;
            }
            checks.push(live);
        }
        (checks, held)
    }

    /// Grants by rule `i`: runs its actions, starts its cooldown, and fills in `d`. Returns the
    /// MQTT messages its actions publish.
    fn grant(
        &mut self,
        i: usize,
        who: &str,
        camera: Option<&str>,
        d: &mut Decision,
    ) -> Vec<(String, String)> {
        let rule = &self.rules.rules[i];
        d.granted = true;
        d.waiting = false;
        d.rule = Some(rule.name.clone());
        d.reason = "granted".into();
        d.actions = rule
            .actions
            .iter()
            .map(|&a| self.rules.actions[a].0.clone())
            .collect();
        let actions = rule.actions.clone();
        self.granted_at
            .insert((i, who.to_string(), camera.unwrap_or("").to_string()), d.ts);
        let payload = d.json();
        let mut messages = Vec::new();
        for &a in &actions {
            let job = match &self.rules.actions[a].1 {
                Action::Gpio(g) => Job::Pulse {
                    line: self.lines.get(&a).copied().unwrap_or(usize::MAX),
                    length: Duration::from_millis(g.pulse_ms),
                },
                Action::Mqtt(topic) => {
                    messages.push((topic.clone(), payload.clone()));
                    continue;
                }
                Action::Webhook { url, timeout_ms } => Job::Webhook {
                    url: url.clone(),
                    body: payload.clone(),
                    timeout: Duration::from_millis(*timeout_ms),
                },
                Action::Command(argv) => Job::Command {
                    argv: argv.clone(),
                    env: env_of(d, &payload),
                },
            };
            if let Err(err) = self.runner.submit(job) {
                d.reason = format!("granted; {err}");
            }
        }
        messages
    }

    /// When a rule at this camera gives the face's name but the name is bound to someone else
    /// (a person removed, or renamed, and the name enrolled again): that, in words, with the
    /// rule that named it. Without it the audit would say "no rule names them" of a name the
    /// owner can read in the rules.
    fn name_given_to_another(&self, e: &Event, camera: Option<&str>) -> Option<String> {
        let name = e.name.as_deref()?;
        let rule = self
            .rules
            .rules
            .iter()
            .find(|r| at_camera(r, camera) && r.names.iter().any(|n| n == name))?;
        let bound = self.rules.bound.get(name)?;
        let esc = |s: &str| crate::support::terminal::escape(s).into_owned();
        Some(format!(
            "rule '{}' names '{}', which it binds to person {bound}; this face is person {}, \
             given that name later, and is not granted (`facegate rules bind '{}'` grants them)",
            esc(&rule.name),
            esc(name),
            e.person_id.as_deref().unwrap_or("?"),
            esc(name)
        ))
    }

    /// Why `rule` does not grant now, if it does not.
    fn refusal(
        &self,
        i: usize,
        rule: &Rule,
        who: &str,
        camera: Option<&str>,
        e: &Event,
    ) -> Option<String> {
        if let Some((from, text)) = &rule.valid_from {
            if e.ts < *from {
                return Some(format!("not valid before {text}"));
            }
        }
        if let Some((until, text)) = &rule.valid_until {
            if e.ts >= *until {
                return Some(format!("expired (valid until {text})"));
            }
        }
        if !rule.windows.is_empty() {
            let inside = schedule::local(e.ts, &self.rules.tz)
                .is_some_and(|(day, minute)| rule.windows.iter().any(|w| w.contains(day, minute)));
            if !inside {
                let windows: Vec<&str> = rule.windows.iter().map(|w| w.text.as_str()).collect();
                return Some(format!("outside {}", windows.join(" and ")));
            }
        }
        let min = rule.min_score.unwrap_or(self.threshold);
        if e.kind == EventKind::Identified && e.score < min {
            return Some(format!("score {:.3} below {min}", e.score));
        }
        let key = (i, who.to_string(), camera.unwrap_or("").to_string());
        if let Some(last) = self.granted_at.get(&key) {
            if e.ts - last < rule.cooldown {
                return Some(format!(
                    "cooldown ({:.0} s since the last grant, {} s needed)",
                    e.ts - last,
                    rule.cooldown
                ));
            }
        }
        None
    }
}

/// A decision on `e`, not yet made.
fn blank(e: &Event, camera: Option<&str>) -> Decision {
    Decision {
        event: "access",
        ts: (e.ts * 1e3).round() / 1e3,
        name: e.name.clone(),
        person_id: e.person_id.clone(),
        unknown_id: e.unknown_id.clone(),
        camera: camera.map(str::to_string),
        track: e.track,
        score: (e.score * 1e4).round() / 1e4,
        granted: false,
        rule: None,
        reason: String::new(),
        actions: Vec::new(),
        factors: Vec::new(),
        waiting: false,
    }
}

/// The factors that did not hold, in words (liveness only when `rule` requires it).
fn missing(checks: &[Check], rule: &Rule) -> String {
    let required = |c: &Check| c.factor != "live" || rule.liveness == factors::Liveness::Require;
    checks
        .iter()
        .filter(|c| !c.held && required(c))
        .map(|c| format!("{} ({})", c.factor, c.detail))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn at_camera(rule: &Rule, camera: Option<&str>) -> bool {
    rule.cameras.is_empty() || camera.is_some_and(|c| rule.cameras.iter().any(|r| r == c))
}

/// What a command action sees: the decision as JSON and its main fields.
fn env_of(d: &Decision, json: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("FACEGATE_DECISION".into(), json.to_string()),
        ("FACEGATE_RULE".into(), d.rule.clone().unwrap_or_default()),
        ("FACEGATE_SCORE".into(), d.score.to_string()),
        ("FACEGATE_TS".into(), d.ts.to_string()),
    ];
    if let Some(n) = &d.name {
        env.push(("FACEGATE_NAME".into(), n.clone()));
    }
    if let Some(id) = &d.person_id {
        env.push(("FACEGATE_PERSON_ID".into(), id.clone()));
    }
    if let Some(u) = &d.unknown_id {
        env.push(("FACEGATE_UNKNOWN_ID".into(), u.clone()));
    }
    if let Some(c) = &d.camera {
        env.push(("FACEGATE_CAMERA".into(), c.clone()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::rect::Rect;
    use actions::RecordingGpio;
    use bindings::Bindings;
    use rules::Enrolled;

    const FILE: &str = r#"
timezone = "UTC"
cameras = ["front", "garage"]
[groups]
family = ["Ada", "Bob"]
[actions.door]
gpio = { chip = "gpiochip0", line = 17, active_low = true, pulse_ms = 1500 }
[actions.notify]
mqtt = "home/notify"
[[rules]]
name = "family"
who = ["@family"]
cameras = ["front"]
when = ["mon-fri 07:00-19:00"]
min_score = 0.5
cooldown = 30
do = ["door"]
[[rules]]
name = "guest"
who = ["Carol"]
until = "2026-12-01"
do = ["door"]
[[rules]]
name = "strangers"
who = ["unknown"]
do = ["notify"]
"#;

    fn people() -> Vec<Enrolled> {
        ["Ada", "Bob", "Carol", "Dan"]
            .iter()
            .enumerate()
            .map(|(i, n)| Enrolled {
                id: format!("p{}", i + 1),
                name: n.to_string(),
            })
            .collect()
    }

    fn parse(text: &str) -> Result<Rules, String> {
        Rules::parse(text, &people(), &Bindings::default())
    }

    /// Tuesday 2026-12-01 07:30 UTC.
    const TUESDAY_0730: f64 = 1_796_110_200.0;

    fn event(kind: EventKind, name: Option<&str>, score: f32, ts: f64) -> Event {
        Event {
            ts,
            kind,
            name: name.map(String::from),
            person_id: name.and_then(|n| people().into_iter().find(|p| p.name == n).map(|p| p.id)),
            score,
            rect: Rect {
                x: 0,
                y: 0,
                w: 80,
                h: 80,
            },
            track: 1,
            frame: 1,
            face: None,
            unknown_id: (kind == EventKind::Unknown).then(|| "u000003".into()),
            liveness: None,
        }
    }

    #[test]
    fn rules_grant_deny_and_pulse_the_door() {
        let gpio = RecordingGpio {
            chips: vec!["gpiochip0".into()],
            ..RecordingGpio::default()
        };
        let rules = parse(FILE).unwrap();
        let mut access = Access::start(rules, &gpio, 0.363, Evidence::default()).unwrap();
        let mut decide = |kind, name, score, ts, camera| {
            let (d, mqtt) = access
                .decide(&event(kind, name, score, ts), camera)
                .unwrap();
            (d.granted, d.rule, d.reason, mqtt.len())
        };
        let front = Some("front");
        let ada = decide(EventKind::Identified, Some("Ada"), 0.7, TUESDAY_0730, front);
        assert!(ada.0, "{ada:?}");
        let again = decide(
            EventKind::Identified,
            Some("Ada"),
            0.7,
            TUESDAY_0730 + 5.0,
            front,
        );
        assert!(!again.0 && again.2.starts_with("cooldown"), "{again:?}");
        let later = decide(
            EventKind::Identified,
            Some("Ada"),
            0.7,
            TUESDAY_0730 + 40.0,
            front,
        );
        assert!(later.0, "{later:?}");
        let unsure = decide(
            EventKind::Identified,
            Some("Bob"),
            0.45,
            TUESDAY_0730,
            front,
        );
        assert_eq!(unsure.2, "score 0.450 below 0.5");
        let night = decide(
            EventKind::Identified,
            Some("Bob"),
            0.7,
            TUESDAY_0730 + 12.0 * 3600.0,
            front,
        );
        assert_eq!(night.2, "outside mon-fri 07:00-19:00");
        let garage = decide(
            EventKind::Identified,
            Some("Bob"),
            0.7,
            TUESDAY_0730,
            Some("garage"),
        );
        assert!(!garage.0 && garage.1.is_none(), "{garage:?}");
        let dan = decide(EventKind::Identified, Some("Dan"), 0.9, TUESDAY_0730, front);
        assert_eq!(dan.2, "no rule names them at this camera");
        // The guest's last day is included; the day after, expired.
        assert!(
            decide(
                EventKind::Identified,
                Some("Carol"),
                0.6,
                TUESDAY_0730 + 3600.0,
                front
            )
            .0
        );
        let expired = decide(
            EventKind::Identified,
            Some("Carol"),
            0.6,
            TUESDAY_0730 + 86_400.0,
            front,
        );
        assert_eq!(expired.2, "expired (valid until 2026-12-01)");
        // Strangers notify over MQTT; "left" is no decision.
        let stranger = decide(EventKind::Unknown, None, 0.1, TUESDAY_0730, front);
        assert!(stranger.0 && stranger.3 == 1, "{stranger:?}");
        assert!(access
            .decide(
                &event(EventKind::Left, Some("Ada"), 0.7, TUESDAY_0730),
                front
            )
            .is_none());
        access.finish();
        let pulses = gpio.pulses.lock().unwrap().clone();
        assert_eq!(
            pulses,
            vec![
                (
                    "gpiochip0".to_string(),
                    17,
                    true,
                    Duration::from_millis(1500)
                );
                3
            ],
            "Ada twice, Carol once"
        );
    }

    #[test]
    fn a_name_not_enrolled_is_a_warning_and_grants_nothing() {
        let text = FILE.replace("\"Ada\", \"Bob\"", "\"Ada\", \"Zoe\"");
        let rules = parse(&text).unwrap();
        assert_eq!(rules.warnings.len(), 1, "{:?}", rules.warnings);
        assert!(
            rules.warnings[0]
                .contains("group 'family': 'Zoe' is not enrolled, so that entry grants nothing"),
            "{:?}",
            rules.warnings
        );
        assert!(rules.rules.iter().any(|r| r.people.contains("p1")));
        assert_eq!(rules.new_bindings.len(), 2, "Ada and Carol");
    }

    /// Ada is bound to p1 when the rules first run; she is removed and a stranger is enrolled
    /// as "Ada" (p9): the stranger is refused with the reason, Bob renamed keeps his grant, and
    /// an `id:` entry grants exactly that person.
    #[test]
    fn rules_grant_the_person_a_name_was_bound_to_not_whoever_has_it_now() {
        let first = parse(FILE).unwrap();
        let mut bindings = Bindings::default();
        for (name, id) in &first.new_bindings {
            bindings.bind(name, id);
        }
        let now = vec![
            Enrolled {
                id: "p9".into(),
                name: "Ada".into(),
            },
            Enrolled {
                id: "p2".into(),
                name: "Robert".into(),
            },
        ];
        let text = FILE.replace("who = [\"Carol\"]", "who = [\"id:p9\", \"Bob\"]");
        let rules = Rules::parse(&text, &now, &bindings).unwrap();
        let w = rules.warnings.join("\n");
        assert!(
            w.contains("'Ada' was bound to person p1, who is no longer enrolled; the 'Ada' enrolled now (p9) is another person"),
            "{w}"
        );
        let gpio = RecordingGpio {
            chips: vec!["gpiochip0".into()],
            ..RecordingGpio::default()
        };
        let mut access = Access::start(rules, &gpio, 0.363, Evidence::default()).unwrap();
        let mut stranger = event(EventKind::Identified, Some("Ada"), 0.9, TUESDAY_0730);
        stranger.person_id = Some("p9".into());
        // The family rule refuses the new Ada; the guest rule grants p9 by id.
        let (d, _) = access.decide(&stranger, Some("front")).unwrap();
        assert_eq!(d.rule.as_deref(), Some("guest"), "{d:?}");
        assert_eq!(d.person_id.as_deref(), Some("p9"));
        let mut bob = event(EventKind::Identified, Some("Robert"), 0.9, TUESDAY_0730);
        bob.person_id = Some("p2".into());
        let (d, _) = access.decide(&bob, Some("front")).unwrap();
        assert!(d.granted && d.rule.as_deref() == Some("family"), "{d:?}");
        // Without the id entry, the audit says why the new Ada is refused.
        let rules = Rules::parse(FILE, &now, &bindings).unwrap();
        let mut access = Access::start(rules, &gpio, 0.363, Evidence::default()).unwrap();
        let (d, _) = access.decide(&stranger, Some("front")).unwrap();
        assert!(!d.granted, "{d:?}");
        assert!(
            d.reason.contains(
                "rule 'family' names 'Ada', which it binds to person p1; this face is person p9"
            ),
            "{}",
            d.reason
        );
        access.finish();
    }

    #[test]
    fn a_file_naming_what_does_not_exist_is_refused() {
        let cases = [
            (
                FILE.replace("who = [\"Carol\"]", "who = [\"@friends\"]"),
                "no group 'friends'",
            ),
            (
                FILE.replace("cameras = [\"front\"]", "cameras = [\"back\"]"),
                "camera 'back'",
            ),
            (
                FILE.replace("do = [\"notify\"]", "do = [\"siren\"]"),
                "no action 'siren'",
            ),
            (
                FILE.replace("mon-fri 07:00-19:00", "weekdays"),
                "window 'weekdays'",
            ),
            (
                FILE.replace("until = \"2026-12-01\"", "until = \"2026-02-30\""),
                "date '2026-02-30'",
            ),
            (
                FILE.replace("timezone = \"UTC\"", "timezone = \"Mars/Olympus\""),
                "timezone 'Mars/Olympus'",
            ),
            (
                FILE.replace("mqtt = \"home/notify\"", "webhook = \"https://x\""),
                "http:// URL",
            ),
            (
                FILE.replace(
                    "mqtt = \"home/notify\"",
                    "webhook = \"http://türen.local/open\"",
                ),
                "needs an ASCII host",
            ),
            (
                FILE.replace("mqtt = \"home/notify\"", "webhook = \"http:///open\""),
                "needs an ASCII host",
            ),
            (
                FILE.replace("cooldown = 30", "cooldwn = 30"),
                "unknown field",
            ),
            ("rules = 3".to_string(), "not a valid rules file"),
            (
                "\u{0}\u{ff}[[[ garbage".to_string(),
                "not a valid rules file",
            ),
        ];
        for (text, expected) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(expected), "expected '{expected}' in: {e}");
        }
        // A GPIO chip that is not there is an error at start.
        let rules = parse(FILE).unwrap();
        let e = Access::start(rules, &RecordingGpio::default(), 0.363, Evidence::default())
            .err()
            .unwrap();
        assert!(e.contains("line 17 of gpiochip0"), "{e}");
    }

    #[test]
    fn a_rule_with_factors_waits_for_them_then_grants_or_denies() {
        let file = r#"
timezone = "UTC"
[actions.door]
gpio = { chip = "gpiochip0", line = 17 }
[factors.phone]
mqtt = { topic = "home/{name}/phone", values = ["home"] }
[factors.button]
gpio = { chip = "gpiochip0", line = 27, within = 5 }
[[rules]]
name = "night"
who = ["Ada", "Bob"]
require = ["face", "phone", "button"]
wait = 10
do = ["door"]
"#;
        let gpio = RecordingGpio {
            chips: vec!["gpiochip0".into()],
            ..RecordingGpio::default()
        };
        let evidence = Evidence::default();
        let rules = parse(file).unwrap();
        assert_eq!(rules.mqtt_filters(), vec!["home/+/phone".to_string()]);
        let mut access = Access::start(rules, &gpio, 0.363, evidence.clone()).unwrap();
        let watched = gpio.inputs.lock().unwrap().clone();
        assert_eq!(watched.len(), 1, "the button's line is watched");
        let t0 = 5000.0;
        evidence.mqtt("home/Ada/phone", b"home", t0 - 60.0);
        // The phone is home, the button not pressed: the face waits.
        let (d, _) = access
            .decide_at(
                &event(EventKind::Identified, Some("Ada"), 0.7, TUESDAY_0730),
                None,
                t0,
            )
            .unwrap();
        assert!(!d.granted && d.waiting, "{d:?}");
        assert!(
            d.reason.starts_with("waiting up to 10 s for button"),
            "{}",
            d.reason
        );
        assert_eq!(
            d.factors.iter().map(|c| c.held).collect::<Vec<_>>(),
            [true, false]
        );
        assert!(access.poll_at(t0 + 1.0).is_empty(), "still waiting");
        // The button is pressed (the input thread writes the evidence): granted now.
        watched[0].1.input("gpiochip0", 27, t0 + 2.0);
        let settled = access.poll_at(t0 + 2.1);
        assert_eq!(settled.len(), 1);
        let d = &settled[0].0;
        assert!(d.granted && !d.waiting, "{d:?}");
        assert!(
            d.factors[1].detail.contains("2.0 s after the face"),
            "{d:?}"
        );
        assert!((d.ts - (TUESDAY_0730 + 2.1)).abs() < 1e-3, "{}", d.ts);
        assert_eq!(access.waiting(), 0);
        // Bob's phone is away: he waits, and is denied when the wait is over, saying why.
        evidence.mqtt("home/Bob/phone", b"not_home", t0);
        let (d, _) = access
            .decide_at(
                &event(EventKind::Identified, Some("Bob"), 0.7, TUESDAY_0730),
                None,
                t0,
            )
            .unwrap();
        assert!(d.waiting, "{d:?}");
        assert!(access.poll_at(t0 + 9.0).is_empty());
        let settled = access.poll_at(t0 + 10.5);
        let d = &settled[0].0;
        assert!(!d.granted && !d.waiting, "{d:?}");
        assert!(
            d.reason
                .contains("phone (home/Bob/phone is 'not_home', not home)")
                && d.reason.contains("within the 10 s the face waited"),
            "{}",
            d.reason
        );
        access.finish();
        assert_eq!(
            gpio.pulses.lock().unwrap().len(),
            1,
            "the door opened once, for Ada; Bob opened nothing"
        );
        // With no wait, a missing factor is a plain denial, and nothing waits.
        let mut access = Access::start(
            parse(&file.replace("wait = 10", "wait = 0")).unwrap(),
            &gpio,
            0.363,
            Evidence::default(),
        )
        .unwrap();
        let (d, _) = access
            .decide_at(
                &event(EventKind::Identified, Some("Ada"), 0.7, TUESDAY_0730),
                None,
                t0,
            )
            .unwrap();
        assert!(
            !d.granted && !d.waiting && d.reason.starts_with("phone"),
            "{d:?}"
        );
        assert_eq!(access.waiting(), 0);
        // A run that ends while a face waits says so.
        let mut access =
            Access::start(parse(file).unwrap(), &gpio, 0.363, Evidence::default()).unwrap();
        let ada = event(EventKind::Identified, Some("Ada"), 0.7, TUESDAY_0730);
        let now = factors::wall_now();
        assert!(access.decide_at(&ada, None, now).unwrap().0.waiting);
        let ended = access.abandon();
        assert_eq!(ended.len(), 1);
        assert!(ended[0].0.reason.contains("run ended"), "{:?}", ended[0].0);
        // Factors that do not exist, or bad limits, are refused at start.
        for (text, expected) in [
            (
                file.replace("\"phone\", \"button\"]", "\"phone\", \"bell\"]"),
                "requires 'bell'",
            ),
            (file.replace("wait = 10", "wait = 9999"), "wait must be"),
            (
                file.replace("[factors.button]", "[factors.face]"),
                "may not be called 'face'",
            ),
            (file.replace("within = 5", "within = -1"), "within must be"),
            (
                format!("liveness = \"maybe\"\n{file}"),
                "not a valid rules file",
            ),
            (
                file.replace("[factors.button]", "[factors.live]"),
                "may not be called 'live'",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(expected), "{expected}: {e}");
        }
    }

    #[test]
    fn check_explains_person_by_person() {
        let rules = parse(FILE).unwrap();
        let text = rules.explain(&people());
        assert!(text.contains("Ada (p1):\n  rule 'family', at front, mon-fri 07:00-19:00, score at least 0.5 -> door (pulse gpiochip0 line 17 for 1500 ms)"), "{text}");
        assert!(
            text.contains("Dan (p4):\n  nothing: no rule names them"),
            "{text}"
        );
        assert!(text.contains("until 2026-12-01 (inclusive)"), "{text}");
        assert!(
            text.contains("unknown faces:\n  rule 'strangers'"),
            "{text}"
        );
    }
}
