//! The web UI: three static files compiled into the binary (no CDN, no build step), served
//! without the token since they hold no data; everything they show comes from the API, which
//! needs it.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::gzipped::{gzipped, Gzipped};
use super::App;

const INDEX: Gzipped = gzipped!("index.html");
const SCRIPT: Gzipped = gzipped!("app.js");
const STYLE: Gzipped = gzipped!("style.css");

/// Pages may load only what this server serves.
const POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; \
                      frame-ancestors 'none'; base-uri 'none'";

fn file(request: &HeaderMap, kind: &'static str, body: &Gzipped) -> impl IntoResponse {
    let mut res = body.respond(request, kind);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

pub fn routes() -> Router<std::sync::Arc<App>> {
    Router::new()
        .route(
            "/",
            get(|h: HeaderMap| async move { file(&h, "text/html; charset=utf-8", &INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|h: HeaderMap| async move { file(&h, "text/javascript; charset=utf-8", &SCRIPT) }),
        )
        .route(
            "/ui/style.css",
            get(|h: HeaderMap| async move { file(&h, "text/css; charset=utf-8", &STYLE) }),
        )
}
