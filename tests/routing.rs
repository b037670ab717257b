//! Several routes in one guestgate: each path reaches its own upstream, whatever order the
//! routes are written in; `/` takes only the paths no other route has.

mod common;

use common::{MASK, RawClient, config_for, fake, gateway, http_get};
use guestgate::config::{Config, RouteConfig};
use guestgate::edge::EdgeConfig;
use guestgate::mock::{FakeBehavior, FakeUpstreamHandle};

fn route(name: &str, path: &str, upstream: &FakeUpstreamHandle) -> RouteConfig {
    let mut r = RouteConfig::relay(
        path,
        upstream.url().parse().unwrap(),
        EdgeConfig::one_liner(Vec::new()),
    );
    r.name = name.into();
    r
}

/// Opens `path`, echoes one message through it, and returns the echo.
async fn echo_through(addr: std::net::SocketAddr, path: &str, text: &str) -> Vec<u8> {
    let mut client = RawClient::connect_path(addr, path, "").await;
    client.send(true, 1, text.as_bytes(), MASK).await;
    let (opcode, payload) = client.frame().await.expect("an echo");
    assert_eq!(opcode, 1);
    payload
}

#[tokio::test]
async fn each_path_reaches_its_own_upstream_and_the_catch_all_takes_the_rest() {
    let (a, b, rest) = (
        fake(FakeBehavior::Echo).await,
        fake(FakeBehavior::Echo).await,
        fake(FakeBehavior::Echo).await,
    );
    let mut config: Config = config_for(&rest.url());
    // The catch-all comes first in the file: it must not shadow the routes after it.
    config.routes = vec![
        route("rest", "/", &rest),
        route("a", "/a", &a),
        route("b", "/b", &b),
    ];
    config.validate().unwrap();
    let gg = gateway(&config).await;

    assert_eq!(echo_through(gg.addr, "/a", "to a").await, b"to a");
    assert_eq!(echo_through(gg.addr, "/b?x=1", "to b").await, b"to b");
    assert_eq!(
        echo_through(gg.addr, "/elsewhere", "to rest").await,
        b"to rest"
    );
    assert_eq!(
        (a.accepted(), b.accepted(), rest.accepted()),
        (1, 1, 1),
        "each upstream got exactly the connection for its path"
    );
    assert_eq!(a.requests()[0].path(), "/");

    // guestgate's own paths never fall through to the catch-all.
    let (status, _) = http_get(gg.addr, "/_internal").await;
    assert_eq!(status, 404);
    assert_eq!(rest.accepted(), 1);

    gg.shutdown();
    gg.wait().await;
}

#[tokio::test]
async fn without_a_catch_all_an_unknown_path_is_404() {
    let a = fake(FakeBehavior::Echo).await;
    let mut config = config_for(&a.url());
    config.routes = vec![route("a", "/a", &a)];
    let gg = gateway(&config).await;
    let (status, body) = http_get(gg.addr, "/b").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(a.accepted(), 0);
    assert_eq!(echo_through(gg.addr, "/a", "hi").await, b"hi");
    gg.shutdown();
    gg.wait().await;
}
