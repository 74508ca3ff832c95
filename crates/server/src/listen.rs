//! The accept loop: HTTP/1.1 over hyper, with a read timeout on every request's head (a
//! client that trickles its headers is cut off; `axum::serve` has no such timeout, and the
//! 408 layer only starts once the head is read), WebSocket upgrades, and a graceful shutdown
//! that lets the requests in flight finish.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Serves `router` on `listener` until `shutdown` resolves; a connection whose request head
/// is not all in within `head_timeout` is closed. At shutdown every open connection finishes
/// the request it is on and closes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop, stopped) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let router = router.clone();
        let mut stopped = stopped.clone();
        conns.spawn(async move {
            let svc = tower::service_fn(move |req: Request<Incoming>| {
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(head_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!("connection ended: {e}");
                    }
                }
                () = async { drop(stopped.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended at shutdown: {e}");
                    }
                }
            }
        });
    }
    let _ = stop.send(true);
    while conns.join_next().await.is_some() {}
}
