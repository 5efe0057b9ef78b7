//! When a rule applies: weekly windows ("mon-fri 07:00-19:00") and a validity period for guests,
//! in the board's time zone (or the rules file's `timezone`).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A weekly window: days of the week and a time of day range (minutes after midnight, end
/// exclusive). A range that ends before it starts runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub days: [bool; 7],
    pub from: u32,
    pub to: u32,
    pub text: String,
}

/// The local weekday (0 = Monday) and minute of day of a Unix time.
pub fn local(ts: f64, tz: &TimeZone) -> Option<(usize, u32)> {
    let t = Timestamp::from_second(ts.floor() as i64).ok()?;
    let z = t.to_zoned_datetime(tz.clone());
    Some((
        z.weekday().to_monday_zero_offset() as usize,
        z.hour() as u32 * 60 + z.minute() as u32,
    ))
}

impl Window {
    /// Parses `"mon-fri 07:00-19:00"`, `"sat,sun 10:00-12:00"`, `"daily 22:00-06:00"` or
    /// `"mon"` (the whole day).
    pub fn parse(text: &str) -> Result<Window, String> {
        let bad = |why: &str| {
            format!(
                "window '{}': {why} (expected like \"mon-fri 07:00-19:00\")",
                crate::support::terminal::escape(text)
            )
        };
        let mut parts = text.split_whitespace();
        let days_text = parts.next().ok_or_else(|| bad("empty"))?;
        let mut days = [false; 7];
        for item in days_text.split(',') {
            if item == "daily" || item == "all" {
                days = [true; 7];
                continue;
            }
            let day = |d: &str| DAYS.iter().position(|x| *x == d.to_ascii_lowercase());
            match item.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (
                        day(a).ok_or_else(|| bad("unknown day"))?,
                        day(b).ok_or_else(|| bad("unknown day"))?,
                    );
                    let mut d = a;
                    loop {
                        days[d] = true;
                        if d == b {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[day(item).ok_or_else(|| bad("unknown day"))?] = true,
            }
        }
        let (from, to) = match parts.next() {
            None => (0, 24 * 60),
            Some(range) => {
                let (a, b) = range.split_once('-').ok_or_else(|| bad("no time range"))?;
                (
                    minutes(a).ok_or_else(|| bad("bad time"))?,
                    minutes(b).ok_or_else(|| bad("bad time"))?,
                )
            }
        };
        if parts.next().is_some() {
            return Err(bad("unexpected text after the time range"));
        }
        if from == to {
            return Err(bad("the range is empty"));
        }
        Ok(Window {
            days,
            from,
            to,
            text: text.to_string(),
        })
    }

    /// Whether a local weekday and minute fall inside the window.
    pub fn contains(&self, weekday: usize, minute: u32) -> bool {
        if self.from < self.to {
            self.days[weekday] && (self.from..self.to).contains(&minute)
        } else {
            // Past midnight: the evening part on the window's days, the morning part the day after.
            (self.days[weekday] && minute >= self.from)
                || (self.days[(weekday + 6) % 7] && minute < self.to)
        }
    }
}

/// `HH:MM` (or `24:00`) as minutes after midnight.
fn minutes(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// The Unix time at which a date (`YYYY-MM-DD`, a day in `tz`) starts; `end` gives the end of
/// that day instead (validity periods include their last day).
pub fn day_bound(text: &str, tz: &TimeZone, end: bool) -> Result<f64, String> {
    let date: Date = text.parse().map_err(|e| {
        format!(
            "date '{}': {e} (expected YYYY-MM-DD)",
            crate::support::terminal::escape(text)
        )
    })?;
    let day = if end {
        date.tomorrow().map_err(|e| e.to_string())?
    } else {
        date
    };
    let start = day
        .to_zoned_datetime(tz.clone())
        .map_err(|e| e.to_string())?;
    Ok(start.timestamp().as_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_contain() {
        let w = Window::parse("mon-fri 07:00-19:00").unwrap();
        assert!(w.contains(0, 7 * 60));
        assert!(!w.contains(0, 19 * 60));
        assert!(!w.contains(5, 12 * 60));
        let night = Window::parse("fri 22:00-06:00").unwrap();
        assert!(night.contains(4, 23 * 60));
        assert!(
            night.contains(5, 5 * 60),
            "Saturday morning is Friday night"
        );
        assert!(!night.contains(4, 5 * 60));
        let wrap = Window::parse("sat-mon").unwrap();
        assert_eq!(wrap.days, [true, false, false, false, false, true, true]);
        for bad in [
            "",
            "someday 07:00-08:00",
            "mon 7-8",
            "mon 25:00-26:00",
            "mon 08:00-08:00",
            "mon 08:00-09:00 x",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_time_follows_the_zone() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 2026-12-01 07:30 UTC is a Tuesday, 08:30 in Berlin.
        let ts = 1_796_110_200.0;
        assert_eq!(local(ts, &TimeZone::UTC), Some((1, 7 * 60 + 30)));
        assert_eq!(local(ts, &berlin), Some((1, 8 * 60 + 30)));
        let start = day_bound("2026-12-01", &TimeZone::UTC, false).unwrap();
        let end = day_bound("2026-12-01", &TimeZone::UTC, true).unwrap();
        assert_eq!(end - start, 86_400.0);
        assert!((start..end).contains(&ts));
        assert!(day_bound("2026-13-01", &TimeZone::UTC, false).is_err());
    }
}
