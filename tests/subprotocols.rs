//! Subprotocols end to end: the browser gets one agreed protocol, the upstream is asked for the
//! same one, and every mismatch ends with a documented close code the page can read.

// The upstream's handshake callback has tungstenite's signature; its error type is not ours.
#![allow(clippy::result_large_err)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{MASK, RawClient, config_for, gateway};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// An echo upstream that records the protocols asked for and answers with `select(asked)`.
struct ProtocolUpstream {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<Option<String>>>>,
}

async fn upstream(select: fn(Option<&str>) -> Option<&'static str>) -> ProtocolUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let record = asked.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let callback = |req: &Request, mut resp: Response| {
                    let offered = req
                        .headers()
                        .get("sec-websocket-protocol")
                        .map(|v| v.to_str().unwrap().to_owned());
                    if let Some(chosen) = select(offered.as_deref()) {
                        resp.headers_mut()
                            .insert("sec-websocket-protocol", chosen.parse().unwrap());
                    }
                    record.lock().unwrap().push(offered);
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        let _ = ws.send(msg).await;
                    }
                }
            });
        }
    });
    ProtocolUpstream { addr, asked }
}

fn agree(asked: Option<&str>) -> Option<&'static str> {
    match asked {
        Some("graphql-transport-ws") => Some("graphql-transport-ws"),
        Some("mqtt") => Some("mqtt"),
        _ => None,
    }
}

async fn guestgate_for(up: &ProtocolUpstream) -> guestgate::app::Running {
    let mut config = config_for(&format!("ws://{}/", up.addr));
    config.routes[0].subprotocols = vec!["graphql-transport-ws".into(), "mqtt".into()];
    config.validate().unwrap();
    gateway(&config).await
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn the_routes_preferred_protocol_is_agreed_on_both_legs() {
    let up = upstream(agree).await;
    let gg = guestgate_for(&up).await;
    let mut client = RawClient::connect(
        gg.addr,
        "Sec-WebSocket-Protocol: mqtt, graphql-transport-ws\r\n",
    )
    .await;
    assert_eq!(
        header(&client.response_head, "sec-websocket-protocol"),
        Some("graphql-transport-ws"),
        "{}",
        client.response_head
    );
    client.send(true, 1, b"{\"type\":\"ping\"}", MASK).await;
    assert_eq!(
        client.frame().await,
        Some((1, b"{\"type\":\"ping\"}".to_vec()))
    );
    assert_eq!(
        up.asked.lock().unwrap().as_slice(),
        &[Some("graphql-transport-ws".to_owned())]
    );
    gg.shutdown();
    gg.wait().await;
}

#[tokio::test]
async fn no_offer_means_no_protocol_on_either_leg() {
    let up = upstream(agree).await;
    let gg = guestgate_for(&up).await;
    let mut client = RawClient::connect(gg.addr, "").await;
    assert_eq!(
        header(&client.response_head, "sec-websocket-protocol"),
        None
    );
    client.send(true, 1, b"hi", MASK).await;
    assert_eq!(client.frame().await, Some((1, b"hi".to_vec())));
    assert_eq!(up.asked.lock().unwrap().as_slice(), &[None]);
    gg.shutdown();
    gg.wait().await;
}

#[tokio::test]
async fn offers_with_nothing_in_common_close_4406_before_any_upstream_work() {
    let up = upstream(agree).await;
    let gg = guestgate_for(&up).await;
    let mut client =
        RawClient::connect(gg.addr, "Sec-WebSocket-Protocol: wamp, v12.stomp\r\n").await;
    // The handshake completes (the browser's own first offer is echoed) so the page can read
    // the close code instead of an opaque failure.
    assert_eq!(
        header(&client.response_head, "sec-websocket-protocol"),
        Some("wamp")
    );
    let (code, reason) = client.close_frame().await;
    assert_eq!(code, 4406);
    assert_eq!(reason, "no subprotocol in common with this route");
    assert!(
        up.asked.lock().unwrap().is_empty(),
        "no upstream connection"
    );
    gg.shutdown();
    gg.wait().await;
}

#[tokio::test]
async fn an_upstream_that_picks_another_protocol_or_none_closes_4502() {
    for select in [
        (|_| None) as fn(Option<&str>) -> Option<&'static str>,
        |_| Some("mqtt"),
    ] {
        let up = upstream(select).await;
        let gg = guestgate_for(&up).await;
        let mut client =
            RawClient::connect(gg.addr, "Sec-WebSocket-Protocol: graphql-transport-ws\r\n").await;
        let (code, reason) = client.close_frame().await;
        assert_eq!(code, 4502);
        assert_eq!(reason, "upstream did not agree to the subprotocol");
        gg.shutdown();
        gg.wait().await;
    }
}

#[tokio::test]
async fn an_upstream_that_picks_a_protocol_nobody_asked_for_closes_4502() {
    let up = upstream(|_| Some("mqtt")).await;
    let gg = guestgate_for(&up).await;
    let mut client = RawClient::connect(gg.addr, "").await;
    let (code, _) = client.close_frame().await;
    assert_eq!(code, 4502);
    gg.shutdown();
    gg.wait().await;
}
