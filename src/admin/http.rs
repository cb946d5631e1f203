//! The admin endpoints over HTTP/1.1 (hyper): the accept loop, the bearer-token check
//! and the routing of the four paths.

use super::conns::OpenConns;
use super::AdminState;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Connections served at once (scrapers and probes hold one or two each); beyond it the
/// busiest peer's oldest connection gives way ([`OpenConns`]).
const MAX_CONNECTIONS: usize = 64;
/// A request's headers must arrive within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head read (hyper's minimum is 8 KiB).
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Accepts connections and serves each in its own task until aborted (the tasks of the
/// open connections end with it: the set that holds them is dropped).
pub(super) async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let mut conns = JoinSet::new();
    let mut open = OpenConns::new(MAX_CONNECTIONS);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: try again shortly.
                tracing::warn!(error = %e, "admin endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        open.make_room(peer.ip());
        let state = state.clone();
        let handle = conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, &req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        open.add(peer.ip(), handle);
    }
}

/// The answer to one request.
async fn respond(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    let authorized = authorized(state.token.as_ref(), req);
    if path == "/readyz" {
        // Open like /healthz: a kubelet's httpGet probe cannot carry a token from a
        // Secret. Without the token the answer is the status alone; the reason names
        // nodes' addresses, so it needs the token.
        return match super::ready::check(state).await {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) if authorized => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
            Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        };
    }
    if !authorized {
        let mut r = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"respgate admin\""),
        );
        return r;
    }
    match path {
        "/metrics" => with_type(
            StatusCode::OK,
            {
                super::sample::sample(state);
                state.metrics.render()
            },
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/topology" => with_type(
            StatusCode::OK,
            super::topology::json(state).to_string(),
            "application/json",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz or /topology\n",
        ),
    }
}

/// Whether `req` carries the token (always, when none is configured). The comparison
/// takes the same time wherever the first difference is and whatever the lengths: the
/// token is kept as its SHA-256 digest ([`super::TokenDigest`]) and a guess is hashed
/// before the comparison, so a guess's length does not tell the token's.
fn authorized(token: Option<&super::TokenDigest>, req: &Request<Incoming>) -> bool {
    let Some(want) = token else {
        return true;
    };
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()))
        .is_some_and(|given| bool::from(super::TokenDigest::of(given).0.ct_eq(&want.0)))
}

/// The credentials of an `Authorization: Bearer <credentials>` value (the scheme is
/// case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    with_type(status, body.into(), "text/plain; charset=utf-8")
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_credentials_are_found_in_any_case() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
    }
}
