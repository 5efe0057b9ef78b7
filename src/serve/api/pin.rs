//! `POST /api/v1/access/pin`: a PIN entered at this door (a keypad page, a Home Assistant
//! dashboard, a keypad bridged by a script), for the access rules' `pin` factor. A correct PIN
//! is remembered as evidence for its person; it opens nothing by itself, only together with
//! that person's face within the factor's window.
//!
//! Wrong PINs are limited for the whole server, not per address: a PIN has 10 000 values at 4
//! digits, and guesses spread over many addresses must not add up. After [`MAX_WRONG`] wrong
//! ones in a minute every PIN is refused until the minute is over (a locked keypad is the lesser
//! harm), and each wrong one is said in the journal.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, Shared};
use crate::access::factors::wall_now;
use crate::access::pins::{self, Pins};

/// Wrong PINs allowed in [`WINDOW`].
pub const MAX_WRONG: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// `{"pin": "123456789012"}` with room for spaces.
const MAX_BYTES: usize = 256;
const DEADLINE: Duration = Duration::from_secs(5);

/// Wrong PINs in the current window.
#[derive(Default)]
pub struct WrongPins {
    seen: Mutex<Option<(Instant, u32)>>,
}

impl WrongPins {
    fn locked(&self, now: Instant) -> bool {
        let seen = crate::serve::lock(&self.seen);
        seen.is_some_and(|(start, n)| now.duration_since(start) < WINDOW && n >= MAX_WRONG)
    }

    fn wrong(&self, now: Instant) -> u32 {
        let mut seen = crate::serve::lock(&self.seen);
        let entry = seen.get_or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entered {
    pin: String,
}

pub async fn enter(State(app): Shared, req: Request) -> Response {
    let body = match super::small_body(req, MAX_BYTES, DEADLINE, "PIN", "{\"pin\": \"1234\"}").await
    {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let Ok(entered) = serde_json::from_slice::<Entered>(&body) else {
        return ApiError::bad("expected JSON: {\"pin\": \"1234\"}").into_response();
    };
    if let Err(e) = pins::check_form(&entered.pin) {
        return ApiError::bad(e).into_response();
    }
    let now = Instant::now();
    if app.wrong_pins.locked(now) {
        let mut res = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_WRONG} wrong PINs in a minute; PINs are refused until it is over"),
        )
        .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return res;
    }
    let gallery = app.gallery_dir.clone();
    let pin = entered.pin;
    let matched = match super::blocking(move || {
        Pins::load(&gallery)
            .map(|p| p.matching(&pin))
            .map_err(ApiError::internal)
    })
    .await
    {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    if matched.is_empty() {
        let n = app.wrong_pins.wrong(now);
        eprintln!("facegate: access: a wrong PIN was entered ({n} in the last minute)");
        return ApiError::new(StatusCode::FORBIDDEN, "wrong PIN").into_response();
    }
    let at = wall_now();
    for id in &matched {
        app.evidence.pin(id, at);
    }
    eprintln!(
        "facegate: access: the PIN of {} entered",
        matched.join(", ")
    );
    Json(serde_json::json!({ "matched": true })).into_response()
}
