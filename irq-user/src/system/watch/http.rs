//! The /metrics endpoint. Handlers only read the text the last interval published, so a
//! scrape never waits for the maps and never makes the probes' reader wait.
//!
//! It listens on a port anyone who reaches the host may connect to, in the process that holds
//! the probes, so a client can take no more than a bounded share of it: each request's
//! headers must arrive within [`HEADER_TIMEOUT`] and be at most [`MAX_REQUEST`] bytes, a
//! connection lives at most [`CONNECTION_LIFETIME`], and at most [`MAX_CONNECTIONS`] are open
//! at once (more are closed as soon as they are accepted). Only `GET /metrics` and `GET /`
//! are answered.

use std::{
    convert::Infallible,
    sync::{Arc, RwLock},
    time::Duration,
};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};

/// What the last interval published.
#[derive(Clone, Default)]
pub struct Published {
    pub text: Arc<RwLock<String>>,
}

/// A scraper sends its request at once; 5 s is what a client on a loaded network needs at
/// worst, and what a slow-loris client may hold a connection for without sending it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A keep-alive scraper reconnects after this; nothing else holds a connection longer.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Concurrent connections: a Prometheus pair, a few humans and scripts need a handful; 1024
/// bounds the memory idle clients can tie up (each a task and buffers of a few KiB) while a
/// flood of 1,000 idle connections still leaves the scrapes room.
pub const MAX_CONNECTIONS: usize = 1024;

/// Largest request (headers) read: a GET needs a few hundred bytes; hyper's floor is 8 KiB.
pub const MAX_REQUEST: usize = 8192;

const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// The answer to one request.
pub fn answer(published: &Published, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {}
        "/" => {
            return respond(
                StatusCode::OK,
                "text/plain",
                "irqtune watch: metrics at /metrics\n".into(),
            )
        }
        _ => return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
    let text = published.text.read().map(|t| t.clone()).unwrap_or_default();
    if text.is_empty() {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "no interval read yet\n".into(),
        );
    }
    let wants_om = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_om {
        respond(StatusCode::OK, OPENMETRICS, super::to_openmetrics(&text))
    } else {
        respond(StatusCode::OK, PROMETHEUS, text)
    }
}

/// Serves until `quit` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    published: Published,
    quit: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(quit);
    loop {
        let stream = tokio::select! {
            _ = &mut quit => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors or the like: wait instead of spinning.
                    log::warn!("/metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let published = published.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = answer(&published, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
    }
}
