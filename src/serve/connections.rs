//! Accepting connections: the server's own accept loop over hyper, for what `axum::serve` does
//! not bound. A client that opens connections and sends its request headers a byte at a time
//! (slowloris) used to hold each connection, and a file descriptor, for as long as it liked: 200
//! of them kept the web UI from answering. Now request headers must arrive within
//! [`HEADER_DEADLINE`], and at most [`MAX_CONNECTIONS`] are open at once (more are closed as
//! they are accepted, so the process never runs out of descriptors for the camera, SQLite and
//! the gallery).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};

/// How long a client has to send a request's headers (and, on a kept-alive connection, to
/// start the next request).
pub const HEADER_DEADLINE: Duration = Duration::from_secs(10);

/// Connections open at once. A board serves one owner's browser (a few connections each) and
/// the odd script; live-view streams hold one each.
pub const MAX_CONNECTIONS: usize = 256;

/// Serves `router` on `listener` until `stopped` fires.
pub async fn accept(
    listener: TcpListener,
    router: Router,
    mut stopped: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stopped => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors, or a connection reset before it was accepted: go on
                // after a breath rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once: the client sees a reset, the board keeps its descriptors.
            drop(stream);
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut router = router.clone();
                async move {
                    tower_service::Service::call(&mut router, req.map(axum::body::Body::new)).await
                }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE);
            // A failed connection (a reset, a deadline missed) concerns only that client.
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
            drop(slot);
        });
    }
}
