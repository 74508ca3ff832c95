//! The accept loop: HTTP/1.1 over hyper, with a per-connection switch to drop the connection
//! (the `connection_reset` fault), and shutdown on a cancellation token.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::limits::{Limits, PARSER_MAX_BUF, PARSER_MAX_HEADERS};

/// Request extension: notify it to drop the connection the request came on, with a TCP reset.
#[derive(Debug, Clone)]
pub(crate) struct ConnKill(pub(crate) Arc<Notify>);

/// Serves `router` on `listener` until `stop` is cancelled.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or a transient error: wait a little rather than spin.
                tracing::warn!("openai-sim accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // A second handle on the same socket, to set SO_LINGER=0 (reset) when we drop it.
        let twin = match stream.into_std().and_then(|s| {
            let twin = s.try_clone()?;
            Ok((tokio::net::TcpStream::from_std(s)?, twin))
        }) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("openai-sim could not set up a connection: {e}");
                continue;
            }
        };
        let (stream, twin) = twin;
        let kill = Arc::new(Notify::new());
        let router = router.clone();
        let ext = ConnKill(Arc::clone(&kill));
        let svc = tower::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ext.clone());
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let stop = stop.clone();
        let header_timeout = limits.header_read_timeout;
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(PARSER_MAX_BUF)
                .max_headers(PARSER_MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            tokio::select! {
                res = conn => {
                    if let Err(e) = res {
                        tracing::debug!("openai-sim connection ended: {e}");
                    }
                }
                _ = kill.notified() => {
                    let _ = socket2::SockRef::from(&twin).set_linger(Some(Duration::ZERO));
                }
                _ = stop.cancelled() => {}
            }
            drop(twin);
        });
    }
    conns.abort_all();
}
