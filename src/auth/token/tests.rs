//! Token source tests against a tiny programmable token endpoint on 127.0.0.1.
//!
//! Requests use real sockets and real timeouts; token expiry is tested by moving the source's
//! clock skew forward, so no test sleeps for a token's lifetime and no paused-time
//! auto-advance can fire a request timeout while a socket read is pending.
//!
//! This file holds the fake endpoint and helpers; the tests are grouped by concern in `cache`
//! (single flight, refresh ahead of expiry), `retry` (retries, timeouts, backoff, the
//! breaker) and `wire` (what is sent, how replies are read, what errors may quote).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::auth::backoff::{Backoff, BreakerState};
use crate::auth::http_client::build_http_client;
use crate::secret::{Secret, SecretSource};

mod cache;
mod retry;
mod wire;

const CANARY_SECRET: &str = "canary-secret-9f2c";
const CANARY_TOKEN: &str = "canary-access-token-77e1";
const CLIENT_ID: &str = "guestgate-test";

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out")
}

/// What the fake endpoint does with one request.
#[derive(Clone)]
enum Reply {
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    },
    /// Accepts the request and never answers.
    Hang,
}

fn ok_token(token: &str, expires_in: u64) -> Reply {
    respond(
        200,
        &format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{expires_in}}}"#),
    )
}

fn respond(status: u16, body: &str) -> Reply {
    Reply::Respond {
        status,
        headers: vec![("content-type", "application/json".to_owned())],
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

fn with_delay(reply: Reply, by: Duration) -> Reply {
    match reply {
        Reply::Respond {
            status,
            headers,
            body,
            ..
        } => Reply::Respond {
            status,
            headers,
            body,
            delay: by,
        },
        Reply::Hang => Reply::Hang,
    }
}

fn with_header(reply: Reply, name: &'static str, value: &str) -> Reply {
    match reply {
        Reply::Respond {
            status,
            mut headers,
            body,
            delay,
        } => {
            headers.push((name, value.to_owned()));
            Reply::Respond {
                status,
                headers,
                body,
                delay,
            }
        }
        Reply::Hang => Reply::Hang,
    }
}

/// One request as the endpoint saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: std::time::Instant,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// A token endpoint that plays `script` in order, then repeats `fallback`.
#[derive(Clone)]
struct FakeEndpoint {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    fallback: Arc<Mutex<Reply>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeEndpoint {
    async fn start(script: Vec<Reply>, fallback: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Self {
            addr: listener.local_addr().unwrap(),
            hits: Arc::default(),
            script: Arc::new(Mutex::new(script.into())),
            fallback: Arc::new(Mutex::new(fallback)),
            seen: Arc::default(),
        };
        let shared = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let fake = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let fake = fake.clone();
                        async move { Ok::<_, Infallible>(fake.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        fake
    }

    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let authorization = header("authorization");
        let content_type = header("content-type");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        self.seen.lock().unwrap().push(Seen {
            at: std::time::Instant::now(),
            authorization,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        self.hits.fetch_add(1, Ordering::SeqCst);
        let reply = self.script.lock().unwrap().pop_front();
        let reply = reply.unwrap_or_else(|| self.fallback.lock().unwrap().clone());
        match reply {
            Reply::Hang => std::future::pending().await,
            Reply::Respond {
                status,
                headers,
                body,
                delay,
            } => {
                tokio::time::sleep(delay).await;
                let mut resp = hyper::Response::builder().status(status);
                for (name, value) in headers {
                    resp = resp.header(name, value);
                }
                resp.body(Full::new(Bytes::from(body))).unwrap()
            }
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set_fallback(&self, reply: Reply) {
        *self.fallback.lock().unwrap() = reply;
    }

    fn url(&self) -> url::Url {
        format!("http://{}/oauth/token", self.addr).parse().unwrap()
    }

    fn config(&self) -> OAuthConfig {
        let mut config = OAuthConfig::new(
            self.url(),
            CLIENT_ID,
            SecretSource {
                file: None,
                env: Some("GUESTGATE_TEST_UNUSED".into()),
            },
        );
        config.request_timeout = Duration::from_secs(5);
        config.backoff_base = Duration::from_millis(5);
        config.backoff_max = Duration::from_millis(20);
        config
    }
}

fn source(config: OAuthConfig) -> TokenSource {
    let client = build_http_client(None, Duration::from_secs(5)).unwrap();
    TokenSource::new(config, Secret::new(CANARY_SECRET), client)
}

fn recorder() -> (OutcomeHook, Arc<Mutex<Vec<TokenFetchOutcome>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let hook: OutcomeHook = Arc::new(move |o| sink.lock().unwrap().push(o));
    (hook, seen)
}
