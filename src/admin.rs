//! The admin listener: `/healthz` (the process is alive), `/readyz` (accepting and not
//! draining, JSON saying why not) and `/metrics` (Prometheus text format). Keep it on a private
//! address; it is separate from the browser listener so it can be firewalled on its own.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::route::RouteUpstream;
use crate::server::Gateway;

/// Renders the metrics page; `None` serves 404 at `/metrics`.
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves admin requests until `stop` fires.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    metrics: Option<MetricsRenderer>,
    stop: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    warn!(error = %e, "accepting an admin connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (gateway, metrics, stop) = (gateway.clone(), metrics.clone(), stop.clone());
        tokio::spawn(async move {
            let service = service_fn(|req: Request<Incoming>| {
                let answer = answer(&req, &gateway, metrics.as_ref());
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Why this replica should not get new browsers, as a JSON body; `None` when ready.
fn not_ready_because(gateway: &Gateway) -> Option<serde_json::Value> {
    if gateway.draining.load(Ordering::Relaxed) {
        return Some(serde_json::json!({"ready": false, "reason": "draining"}));
    }
    let failing = gateway.routes.iter().find(|route| match &route.upstream {
        RouteUpstream::Flow(f) => f
            .flow
            .token_source()
            .is_some_and(|source| !source.is_healthy()),
        _ => false,
    })?;
    Some(serde_json::json!({
        "ready": false,
        "reason": "oauth token source failing",
        "route": failing.name,
    }))
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn answer(
    req: &Request<Incoming>,
    gateway: &Gateway,
    metrics: Option<&MetricsRenderer>,
) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    if req.method() == http::Method::POST {
        let action = gateway
            .extras
            .admin_actions
            .iter()
            .find(|(p, _)| *p == req.uri().path());
        if let Some((_, action)) = action {
            return respond(StatusCode::OK, "text/plain", action() + "\n");
        }
    }
    match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, JSON, r#"{"status":"ok"}"#.into()),
        "/readyz" => match not_ready_because(gateway) {
            Some(why) => respond(StatusCode::SERVICE_UNAVAILABLE, JSON, why.to_string()),
            None => respond(StatusCode::OK, JSON, r#"{"ready":true}"#.into()),
        },
        "/metrics" => match metrics {
            Some(render) => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                render(),
            ),
            None => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "metrics are off\n".into(),
            ),
        },
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}
