//! What the camera sees now: the annotated MJPEG stream, the latest frame, the status page's
//! numbers and Prometheus metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::{blocking, ApiError, ApiResult, Shared};
use crate::events::BoxJson;
use crate::live::recognizer::InView;
use crate::serve::hub::Hub;
use crate::serve::{lock, ModelSummary};

/// A stream client gets at most this many frames a second: a phone on Wi-Fi needs no more, and
/// each frame costs the board an encoding.
const STREAM_FPS: f64 = 10.0;
const BOUNDARY: &str = "frame";

#[derive(Serialize)]
struct InViewJson {
    track: u64,
    name: Option<String>,
    score: f64,
    state: &'static str,
    #[serde(rename = "box")]
    rect: BoxJson,
}

fn in_view_json(v: &InView) -> InViewJson {
    InViewJson {
        track: v.track,
        name: v.name.clone(),
        score: (v.score as f64 * 1e4).round() / 1e4,
        state: v.state.as_str(),
        rect: BoxJson::from(&v.rect),
    }
}

#[derive(Serialize)]
struct Status {
    version: &'static str,
    uptime_s: f64,
    model: ModelSummary,
    gallery: serde_json::Value,
    source: String,
    live: serde_json::Value,
    events_stored: u64,
    events_dropped: u64,
    state_dir: String,
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub async fn status(State(app): Shared) -> ApiResult<Response> {
    blocking(move || {
        let s = app.hub.stats();
        let [detect, landmarks, embed, track] = s.stage_ms;
        let events_stored = lock(&app.history).count().map_err(ApiError::internal)?;
        let gallery = app.gallery().map_err(ApiError::internal)?;
        let status = Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: round1(app.hub.uptime_s()),
            model: app.model.clone(),
            gallery: serde_json::json!({
                "people": gallery.people().len(),
                "shots": gallery.people().iter().map(|p| p.entry.shots).sum::<usize>(),
            }),
            source: s.source.clone(),
            live: serde_json::json!({
                "fps": round1(s.fps_now()),
                "frames": s.frames,
                "dropped": s.dropped,
                "ended": s.state == "ended",
                "source_state": s.state,
                "source_problem": s.unhealthy(),
                "last_frame_age_s": s.last_frame.map(|t| round1(t.elapsed().as_secs_f64())),
                "stage_ms": {"detect": round1(detect), "landmarks": round1(landmarks),
                             "embed": round1(embed), "track": round1(track)},
                "in_view": app.hub.in_view().iter().map(in_view_json).collect::<Vec<_>>(),
            }),
            events_stored,
            events_dropped: app.hub.events_dropped.load(Ordering::Relaxed),
            state_dir: app.state_dir.display().to_string(),
        };
        Ok(Json(status).into_response())
    })
    .await
}

/// Prometheus text format.
pub async fn metrics(State(app): Shared) -> ApiResult<Response> {
    let people = {
        let app = app.clone();
        blocking(move || app.gallery().map_err(ApiError::internal)).await?
    }
    .people()
    .len();
    let hub = &app.hub;
    let s = hub.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, f64)]| {
        let _ = writeln!(
            out,
            "# HELP facegate_{name} {help}\n# TYPE facegate_{name} {kind}"
        );
        for (labels, v) in lines {
            let _ = writeln!(out, "facegate_{name}{labels} {v}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    metric(
        "fps",
        "gauge",
        "Frames recognised per second, last few seconds (0 once frames stop).",
        &one(s.fps_now()),
    );
    metric(
        "source_up",
        "gauge",
        "1 while the frame source is healthy (open, and a live one delivering), else 0.",
        &one(if s.unhealthy().is_none() { 1.0 } else { 0.0 }),
    );
    if let Some(t) = s.last_frame {
        metric(
            "last_frame_age_seconds",
            "gauge",
            "Seconds since the last frame was recognised.",
            &one(t.elapsed().as_secs_f64()),
        );
    }
    let decision_lines: Vec<(String, f64)> = ["granted", "denied"]
        .iter()
        .zip(&hub.decisions)
        .map(|(n, v)| {
            (
                format!("{{decision=\"{n}\"}}"),
                v.load(Ordering::Relaxed) as f64,
            )
        })
        .collect();
    metric(
        "access_decisions_total",
        "counter",
        "Access decisions since the start.",
        &decision_lines,
    );
    metric(
        "frames_total",
        "counter",
        "Frames recognised.",
        &one(s.frames as f64),
    );
    metric(
        "dropped_frames_total",
        "counter",
        "Frames dropped because recognition was behind.",
        &one(s.dropped as f64),
    );
    let latency = hub.latency();
    let mut hist = String::new();
    let _ = writeln!(
        hist,
        "# HELP facegate_stage_seconds Seconds each stage took per frame (frame: all of them).\n\
         # TYPE facegate_stage_seconds histogram"
    );
    for (i, stage) in crate::serve::hub::STAGES.iter().enumerate() {
        let mut cumulative = 0;
        for (b, bound) in crate::serve::hub::LATENCY_BOUNDS.iter().enumerate() {
            cumulative += latency.buckets[i][b];
            let _ = writeln!(
                hist,
                "facegate_stage_seconds_bucket{{stage=\"{stage}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            hist,
            "facegate_stage_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}\n\
             facegate_stage_seconds_sum{{stage=\"{stage}\"}} {}\n\
             facegate_stage_seconds_count{{stage=\"{stage}\"}} {}",
            latency.count, latency.sum_s[i], latency.count
        );
    }
    let stages = ["detect", "landmarks", "embed", "track"];
    let stage_lines: Vec<(String, f64)> = stages
        .iter()
        .zip(s.stage_ms)
        .map(|(n, v)| (format!("{{stage=\"{n}\"}}"), v))
        .collect();
    metric(
        "stage_ms",
        "gauge",
        "Mean milliseconds per frame of each stage.",
        &stage_lines,
    );
    let counts = hub.event_counts();
    let event_lines: Vec<(String, f64)> = ["identified", "unknown", "left"]
        .iter()
        .zip(counts)
        .map(|(n, v)| (format!("{{event=\"{n}\"}}"), v as f64))
        .collect();
    metric(
        "events_total",
        "counter",
        "Events since the start.",
        &event_lines,
    );
    metric(
        "events_dropped_total",
        "counter",
        "Events not stored because the recorder was behind.",
        &one(hub.events_dropped.load(Ordering::Relaxed) as f64),
    );
    metric(
        "gallery_people",
        "gauge",
        "People enrolled.",
        &one(people as f64),
    );
    metric(
        "in_view",
        "gauge",
        "Faces in view now.",
        &one(hub.in_view().len() as f64),
    );
    metric(
        "stream_clients",
        "gauge",
        "Clients watching the MJPEG stream.",
        &one(hub.stream_clients.load(Ordering::Relaxed) as f64),
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the start.",
        &one(hub.uptime_s()),
    );
    out.push_str(&hist);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

async fn encoded(hub: Arc<Hub>) -> ApiResult<Option<crate::serve::hub::Encoded>> {
    blocking(move || hub.annotated_jpeg().map_err(ApiError::internal)).await
}

pub async fn snapshot(State(app): Shared) -> ApiResult<Response> {
    match encoded(app.hub.clone()).await? {
        Some((_, jpeg)) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg.to_vec(),
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no frame yet: the source has not delivered one",
        )),
    }
}

/// Counts a stream client for as long as its response lives.
struct Watching(Arc<Hub>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.stream_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The live frames with boxes and names, as multipart JPEGs. Each client waits for frames on
/// its own; a slow one skips frames, it never holds the pipeline back.
pub async fn mjpeg(State(app): Shared) -> Response {
    let hub = app.hub.clone();
    hub.stream_clients.fetch_add(1, Ordering::Relaxed);
    let watching = Watching(hub.clone());
    let frames = hub.subscribe_frames();
    let period = Duration::from_secs_f64(1.0 / STREAM_FPS);
    let state = (watching, frames, None::<u64>, tokio::time::Instant::now());
    let parts = futures_util::stream::unfold(
        state,
        move |(watching, mut frames, last, next_at)| {
            async move {
                tokio::time::sleep_until(next_at).await;
                loop {
                    // A frame newer than the last one sent, or wait for it.
                    let latest = *frames.borrow_and_update();
                    if last != Some(latest) || last.is_none() {
                        if let Ok(Some((number, jpeg))) = encoded(watching.0.clone()).await {
                            if last != Some(number) {
                                let mut part = format!(
                                "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                                jpeg.len()
                            )
                            .into_bytes();
                                part.extend_from_slice(&jpeg);
                                part.extend_from_slice(b"\r\n");
                                let next = tokio::time::Instant::now() + period;
                                return Some((
                                    Ok::<_, std::io::Error>(Bytes::from(part)),
                                    (watching, frames, Some(number), next),
                                ));
                            }
                        }
                    }
                    if frames.changed().await.is_err() {
                        return None;
                    }
                }
            }
        },
    );
    (
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(parts),
    )
        .into_response()
}
