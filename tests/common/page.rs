//! A page-like client for Genesys routes: a raw WebSocket client that keeps every text frame
//! it received (to check later that no credential was among them).

use serde_json::Value;

use super::{MASK, RawClient};

/// A page: a raw WebSocket client that keeps every text frame it received.
pub struct Page {
    pub client: RawClient,
    pub seen: Vec<String>,
}

impl Page {
    pub async fn open(addr: std::net::SocketAddr, path: &str) -> (Page, Value) {
        let client =
            RawClient::connect_path(addr, path, "Origin: https://www.site.example\r\n").await;
        let mut page = Page {
            client,
            seen: Vec::new(),
        };
        let ready = page.until(|v| v["class"] == "SessionReady").await;
        (page, ready)
    }

    pub async fn send(&mut self, v: Value) {
        self.client
            .send(true, 1, v.to_string().as_bytes(), MASK)
            .await;
    }

    /// Reads text frames until one satisfies `want`; a close frame fails the test.
    pub async fn until(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        loop {
            let (op, payload) = self.client.frame().await.expect("connection ended");
            assert_ne!(op, 8, "closed: {:?}", frame_close(&payload));
            let text = String::from_utf8(payload).unwrap();
            self.seen.push(text.clone());
            let v: Value = serde_json::from_str(&text).unwrap();
            if want(&v) {
                return v;
            }
        }
    }

    /// Reads text frames until the close frame; returns its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            let (op, payload) = self.client.frame().await.expect("connection ended");
            if op == 8 {
                return frame_close(&payload);
            }
            self.seen.push(String::from_utf8(payload).unwrap());
        }
    }

    pub fn classes(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|t| {
                serde_json::from_str::<Value>(t).unwrap()["class"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }
}

pub fn frame_close(payload: &[u8]) -> (u16, String) {
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).into_owned())
}
