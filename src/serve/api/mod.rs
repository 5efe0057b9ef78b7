//! The HTTP routes: `/api/v1` (JSON, token required), `/health`, `/metrics` and the web UI.
//! Handlers do their heavy work (recognition, JPEG encoding, SQLite) on the blocking pool.

mod events;
mod live;
mod people;
pub mod pin;
mod recognition;
mod upload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::serve::auth::COOKIE;
use crate::serve::gzipped::{gzipped, Gzipped};
use crate::serve::App;

pub type Shared = State<Arc<App>>;

/// An error response: a status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Runs blocking work (recognition, disk) off the async workers.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::internal(format!("the request failed: {e}")))?
}

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/status", get(live::status))
        .route("/metrics", get(live::metrics))
        .route("/openapi.yaml", get(openapi))
        .route("/recognize", post(recognition::recognize))
        .route("/detect", post(recognition::detect))
        .route("/verify", post(recognition::verify))
        .route("/people", get(people::list).post(people::create))
        .route(
            "/people/{id}",
            get(people::get_one)
                .patch(people::rename)
                .delete(people::remove),
        )
        .route("/people/{id}/shots", post(people::add_shot))
        .route(
            "/people/{id}/shots/{shot}",
            get(people::shot_image).delete(people::remove_shot),
        )
        .route("/camera/shot", post(people::camera_shot))
        .route("/camera/shots/{shot}", get(people::camera_shot_image))
        .route("/events", get(events::list))
        .route("/access", get(events::access))
        .route("/access/pin", post(pin::enter))
        .route("/events/stream", get(events::stream))
        .route("/events/{id}", get(events::get_one))
        .route("/events/{id}/snapshot.jpg", get(events::snapshot))
        .route("/events/{id}/correction", post(events::correct))
        .route("/stream.mjpeg", get(live::mjpeg))
        .route("/snapshot.jpg", get(live::snapshot))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            limit_uploads,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_token,
        ))
        .route("/login", post(login))
        .route("/logout", post(logout));
    let metrics = Router::new()
        .route("/metrics", get(live::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_token,
        ));
    Router::new()
        .nest("/api/v1", api)
        .merge(metrics)
        .route("/health", get(health))
        .merge(super::ui::routes())
        .fallback(|| async { ApiError::not_found("no such page or API route") })
        .layer(DefaultBodyLimit::max(app.max_body))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// 200 while the board recognises (the source open and, when live, delivering); 503 with the
/// reason otherwise, so that a monitor or a load balancer sees a dead camera.
async fn health(State(app): Shared) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    match app.hub.stats().unhealthy() {
        None => Json(serde_json::json!({"status": "ok", "version": version})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                serde_json::json!({"status": "unavailable", "reason": reason, "version": version}),
            ),
        )
            .into_response(),
    }
}

async fn openapi(request: HeaderMap) -> impl IntoResponse {
    const OPENAPI: Gzipped = gzipped!("openapi.yaml");
    OPENAPI.respond(&request, "application/yaml")
}

/// Lets a request through only with the token; counts and logs failures per address.
async fn require_token(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    // The right token is always taken: a neighbour (or everyone behind the same reverse proxy)
    // guessing from the owner's address must not lock the owner out. Only failures are throttled,
    // and the token is 128 random bits, so the throttle is about logs and load, not odds.
    match crate::serve::auth::credential(req.headers()) {
        Some(c) if app.token.matches(c) => {
            use axum::http::Method;
            let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
            let headers = req.headers();
            if changes
                && !crate::serve::auth::has_bearer(headers)
                && crate::serve::auth::cross_origin(headers)
            {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "a change sent with the session cookie from a page of another origin: only \
                     facegate's own pages may change things with it (scripts send \
                     `Authorization: Bearer <token>` instead)",
                )
                .into_response();
            }
            next.run(req).await
        }
        _ if app.logins.blocked(peer.ip(), Instant::now()) => too_many(),
        given => {
            refuse(&app, peer, given.is_some(), req.uri().path());
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs the API token: send `Authorization: Bearer <token>` (the token is in \
                 the state directory's `token` file)",
            )
            .into_response()
        }
    }
}

/// Lets at most a few requests that carry a body run at once (after the token check, so
/// strangers cannot use up the slots); the rest are told to come back.
async fn limit_uploads(State(app): Shared, req: Request, next: Next) -> Response {
    use axum::http::Method;
    if !matches!(*req.method(), Method::POST | Method::PATCH | Method::PUT) {
        return next.run(req).await;
    }
    let Ok(_permit) = app.uploads.clone().try_acquire_owned() else {
        let mut res = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy with other uploads; try again in a moment",
        )
        .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return res;
    };
    if let Some(length) = declared_length(&req).filter(|n| *n > app.max_body as u64) {
        return refuse_oversized(req, length, app.max_body).await;
    }
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, stalls_end(body));
    next.run(req).await
}

/// How long an upload's body may go without a byte before it is given up on.
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The body, ending in an error when no data arrives for [`BODY_IDLE`]: a client that stops
/// sending halfway no longer holds one of the few upload slots for as long as it likes.
fn stalls_end(body: axum::body::Body) -> axum::body::Body {
    use futures_util::StreamExt;
    let chunks = body.into_data_stream();
    let guarded = futures_util::stream::unfold(Some(chunks), |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout(BODY_IDLE, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(chunks))),
            Ok(None) => None,
            Err(_) => {
                let stalled = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no data for {} s", BODY_IDLE.as_secs()),
                );
                Some((Err(axum::Error::new(stalled)), None))
            }
        }
    });
    axum::body::Body::from_stream(guarded)
}

fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Oversized bodies up to this size are read and thrown away before the 413 goes out.
const DRAIN_AT_MOST: u64 = 64 << 20;
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Refuses a body declared larger than `--max-body`. Clients (browsers, curl, ureq) write the
/// whole body before they read the answer; a server that closes with the body unread makes the
/// kernel reset the connection, and the client reports a broken pipe instead of the 413 and
/// its reason. So a body of moderate size is read and discarded first, chunk by chunk, bounded
/// in bytes and time as web servers' "lingering close" is; a larger one is still cut off.
async fn refuse_oversized(req: Request, length: u64, max_body: usize) -> Response {
    use futures_util::StreamExt;
    if length <= DRAIN_AT_MOST {
        let mut body = req.into_body().into_data_stream();
        // A client too slow to finish in time is cut off as before.
        let _ = tokio::time::timeout(DRAIN_FOR, async {
            while let Some(Ok(_)) = body.next().await {}
        })
        .await;
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request is {length} bytes, larger than the server's limit of {max_body} bytes (--max-body)"
        ),
    )
    .into_response()
}

fn too_many() -> Response {
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed attempts from this address; wait a minute",
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    res
}

/// Counts a failed attempt (a wrong token; a missing one only costs nothing, as browsers make
/// such requests before logging in) and logs it, throttled.
fn refuse(app: &App, peer: SocketAddr, wrong: bool, path: &str) {
    if !wrong {
        return;
    }
    let n = app.logins.failed(peer.ip(), Instant::now());
    static LOG: std::sync::Mutex<Option<crate::support::warnings::Throttle>> =
        std::sync::Mutex::new(None);
    let mut log = crate::serve::lock(&LOG);
    log.get_or_insert_with(crate::support::warnings::Throttle::per_minute)
        .warn(&format!(
            "wrong API token from {} for {path} ({n} in the last minute)",
            peer.ip()
        ));
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

/// The largest login body: `{"token": "..."}` with room to spare. The login needs no token, so
/// anyone can send one: a body the size of `--max-body`, held open by many clients, once took
/// a board to a gigabyte.
const LOGIN_MAX_BYTES: usize = 4096;
/// How long a login body may take to arrive.
const LOGIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The whole body of a small JSON request (a login, a PIN), read within `deadline`: a body larger
/// than `max` is a 413 and a slow one a 408, so that no client holds a connection's memory or
/// time for long. `what` and `example` word the errors.
pub async fn small_body(
    req: Request,
    max: usize,
    deadline: std::time::Duration,
    what: &str,
    example: &str,
) -> Result<axum::body::Bytes, Response> {
    let read = axum::body::to_bytes(req.into_body(), max);
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a {what} body is at most {max} bytes: {example}"),
        )
        .into_response()),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the {what} body did not arrive within {} s",
                deadline.as_secs()
            ),
        )
        .into_response()),
    }
}

/// Checks the token and sets the session cookie the web UI's pages and images use.
async fn login(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let body = match small_body(
        req,
        LOGIN_MAX_BYTES,
        LOGIN_DEADLINE,
        "login",
        "{\"token\": \"...\"}",
    )
    .await
    {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let Ok(login) = serde_json::from_slice::<Login>(&body) else {
        return ApiError::bad("expected JSON: {\"token\": \"...\"}").into_response();
    };
    if !app.token.matches(&login.token) {
        if app.logins.blocked(peer.ip(), Instant::now()) {
            return too_many();
        }
        refuse(&app, peer, true, "/api/v1/login");
        return ApiError::new(StatusCode::UNAUTHORIZED, "wrong token").into_response();
    }
    // The cookie holds the token itself: there is one user, and nothing to revoke but the
    // token (replace the token file and restart).
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000",
        login.token
    );
    match HeaderValue::from_str(&cookie) {
        Ok(v) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, v)]).into_response(),
        Err(_) => ApiError::bad("the token cannot be a cookie").into_response(),
    }
}

/// Clears the session cookie. Needs no token: a browser holding a stale cookie (the token was
/// replaced) must still be able to drop it.
async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    match HeaderValue::from_str(&cookie) {
        Ok(v) => (StatusCode::NO_CONTENT, [(header::SET_COOKIE, v)]).into_response(),
        Err(_) => StatusCode::NO_CONTENT.into_response(),
    }
}
