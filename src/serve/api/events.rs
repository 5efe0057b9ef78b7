//! `/events`: the history (filters, paging), one event's snapshot, corrections, and the live
//! feed as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::Stream;
use serde::Deserialize;

use super::people::{add_checked_shot, enroll, PersonJson};
use super::{blocking, ApiError, ApiResult, Shared};
use crate::serve::history::{Filter, StoredEvent};
use crate::serve::lock;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

#[derive(Deserialize)]
pub struct ListQuery {
    person: Option<String>,
    #[serde(default)]
    unknown: bool,
    event: Option<String>,
    since: Option<f64>,
    until: Option<f64>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub async fn list(
    State(app): Shared,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    if let Some(e) = &q.event {
        if !["identified", "unknown", "left"].contains(&e.as_str()) {
            return Err(ApiError::bad("`event` is one of identified, unknown, left"));
        }
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad(format!("`limit` is 1 to {MAX_LIMIT}")));
    }
    let filter = Filter {
        person: q.person.filter(|p| !p.is_empty()),
        unknown: q.unknown,
        event: q.event,
        since: q.since.filter(|t| t.is_finite()),
        until: q.until.filter(|t| t.is_finite()),
        before: q.before,
        limit,
    };
    blocking(move || {
        let events = lock(&app.history)
            .list(&filter)
            .map_err(ApiError::internal)?;
        let next_before = (events.len() == limit as usize)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        Ok(Json(
            serde_json::json!({ "events": events, "next_before": next_before }),
        ))
    })
    .await
}

fn event_or_404(app: &crate::serve::App, id: i64) -> ApiResult<StoredEvent> {
    lock(&app.history)
        .get(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(format!("no event {id} (retention may have removed it)"))
        })
}

pub async fn get_one(State(app): Shared, Path(id): Path<i64>) -> ApiResult<Json<StoredEvent>> {
    blocking(move || Ok(Json(event_or_404(&app, id)?))).await
}

pub async fn snapshot(State(app): Shared, Path(id): Path<i64>) -> ApiResult<Response> {
    blocking(move || {
        let event = event_or_404(&app, id)?;
        if event.snapshot.is_none() {
            return Err(ApiError::not_found(format!("event {id} has no snapshot")));
        }
        let path = lock(&app.history).snapshot_path(id);
        let bytes = crate::support::limits::read_file(
            &path,
            crate::support::limits::MAX_IMAGE_FILE_BYTES,
            "snapshot",
        )
        .map_err(|e| ApiError::not_found(format!("the snapshot of event {id}: {e}")))?;
        Ok(([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response())
    })
    .await
}

#[derive(Deserialize)]
pub struct CorrectionBody {
    name: Option<String>,
    same: bool,
}

/// "This is NAME" (same = true) enrolls the snapshot's face as a shot of NAME, creating them if
/// needed; "this is not NAME" (same = false) is stored and shown.
pub async fn correct(
    State(app): Shared,
    Path(id): Path<i64>,
    Json(body): Json<CorrectionBody>,
) -> ApiResult<Json<serde_json::Value>> {
    blocking(move || {
        let event = event_or_404(&app, id)?;
        let name = match body.name.or_else(|| event.name.clone()) {
            Some(n) => n,
            None => {
                return Err(ApiError::bad(
                    "say who: {\"name\": \"...\", \"same\": true}",
                ))
            }
        };
        crate::store::gallery::validate_name(&name).map_err(ApiError::bad)?;
        if !body.same {
            // The snapshot's face becomes a negative of NAME, so matching stops taking it (and
            // faces closer to it than to NAME's shots) for NAME. Without a usable face the
            // correction is still stored, and the answer says why it changes nothing.
            let negative = snapshot_photo(&app, &event)
                .and_then(|photo| super::people::reject(&app, &name, &photo));
            lock(&app.history)
                .correct(id, &name, false)
                .map_err(ApiError::internal)?;
            let event = event_or_404(&app, id)?;
            return Ok(Json(match negative {
                Ok(person) => serde_json::json!({ "event": event, "person": person }),
                Err(e) => serde_json::json!({ "event": event, "not_used_for_matching": e.message }),
            }));
        }
        let photo = snapshot_photo(&app, &event)?;
        let shot = super::people::check(&app, &photo, true).map_err(|why| {
            ApiError::bad(format!(
                "the snapshot of event {id} cannot be a shot of {name}: {why}"
            ))
        })?;
        let existing = app
            .gallery()
            .map_err(ApiError::internal)?
            .people()
            .iter()
            .find(|p| crate::store::gallery::same_name(&p.entry.name, &name))
            .map(|p| p.entry.id.clone());
        let person: PersonJson = match existing {
            Some(pid) => {
                let what = format!("the snapshot of event {id} cannot be a shot of {name}");
                add_checked_shot(&app, &pid, shot, &what)?
            }
            None => enroll(&app, &name, vec![shot])?,
        };
        lock(&app.history)
            .correct(id, &name, true)
            .map_err(ApiError::internal)?;
        Ok(Json(serde_json::json!({
            "event": event_or_404(&app, id)?,
            "person": person,
        })))
    })
    .await
}

/// The decoded snapshot of a stored event.
fn snapshot_photo(
    app: &crate::serve::App,
    event: &StoredEvent,
) -> ApiResult<crate::imaging::photo::Photo> {
    let id = event.id;
    if event.snapshot.is_none() {
        return Err(ApiError::bad(format!("event {id} has no snapshot")));
    }
    let path = lock(&app.history).snapshot_path(id);
    let bytes = crate::support::limits::read_file(
        &path,
        crate::support::limits::MAX_IMAGE_FILE_BYTES,
        "snapshot",
    )
    .map_err(|e| ApiError::internal(format!("the snapshot of event {id}: {e}")))?;
    super::upload::decode(&bytes, &format!("the snapshot of event {id}"))
}

/// New events as they are stored, as `event: face` messages. A client too slow to keep up is
/// told how many it missed (`event: lagged`) rather than slowing anyone down.
pub async fn stream(State(app): Shared) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = app.hub.subscribe_events();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        use tokio::sync::broadcast::error::RecvError;
        let message = match rx.recv().await {
            Ok(json) => SseEvent::default().event("face").data(&*json),
            Err(RecvError::Lagged(n)) => SseEvent::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(message), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

/// The access rules' decisions, newest first: `{"decisions":[...]}`.
pub async fn access(
    State(app): Shared,
    Query(q): Query<AccessQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad(format!("`limit` is 1 to {MAX_LIMIT}")));
    }
    blocking(move || {
        let decisions = lock(&app.history)
            .decisions(limit, q.before)
            .map_err(ApiError::internal)?;
        Ok(Json(serde_json::json!({ "decisions": decisions })))
    })
    .await
}
