//! Frames cut into several TCP writes: [`write_in_pieces`] sends bytes in chunks with pauses,
//! and [`SplitEcho`] is a raw-socket WebSocket upstream that parses frames with its own code,
//! records their payloads and echoes each back written in chunks a test chooses, so both legs
//! of guestgate can be fed frame headers that arrive piecemeal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use guestgate::ws::frame::encode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::STEP;

/// The pause between two pieces: long enough for the reader to consume one piece alone.
pub const PAUSE: Duration = Duration::from_millis(15);

/// Writes `bytes` cut at the offsets in `cuts` (ascending, inside `1..bytes.len()`), pausing
/// [`PAUSE`] after every piece but the last. Sets `TCP_NODELAY` so each piece leaves at once.
pub async fn write_in_pieces(tcp: &mut TcpStream, bytes: &[u8], cuts: &[usize]) {
    tcp.set_nodelay(true).unwrap();
    let len = bytes.len();
    let fail = |from: usize, to: usize, e: std::io::Error| -> ! {
        panic!("writing bytes {from}..{to} of {len} (cuts {cuts:?}): the peer is gone: {e}")
    };
    let mut from = 0;
    for &cut in cuts {
        assert!(from < cut && cut < len, "bad cut {cut} in {cuts:?}");
        if let Err(e) = tcp.write_all(&bytes[from..cut]).await {
            fail(from, cut, e);
        }
        tokio::time::sleep(PAUSE).await;
        from = cut;
    }
    if let Err(e) = tcp.write_all(&bytes[from..]).await {
        fail(from, len, e);
    }
}

/// The length of a frame's header (with extended length and mask) given its first two bytes.
pub fn header_len(first_two: [u8; 2]) -> usize {
    let ext = match first_two[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if first_two[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Cuts after every byte of the header of `frame`; the payload goes in one piece.
pub fn every_header_byte(frame: &[u8]) -> Vec<usize> {
    (1..header_len([frame[0], frame[1]]).min(frame.len())).collect()
}

/// A received frame: (fin, opcode, unmasked payload).
pub type Received = (bool, u8, Vec<u8>);

/// Chooses the cuts of the echo of the `n`-th message (counting from 0), given its bytes.
pub type EchoCuts = fn(usize, &[u8]) -> Vec<usize>;

/// A one-connection upstream that echoes every data frame as an unmasked frame, cut by
/// [`EchoCuts`], and answers a close with the same payload.
pub struct SplitEcho {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SplitEcho {
    /// Starts on 127.0.0.1:0; the connection's task ends at the close or on any error.
    pub async fn start(cuts: EchoCuts) -> SplitEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            serve(tcp, cuts, log).await;
        });
        SplitEcho { url, received }
    }

    /// The URL to put in a route's `upstream`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every frame received so far as (fin, opcode, unmasked payload).
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn serve(mut tcp: TcpStream, cuts: EchoCuts, log: Arc<Mutex<Vec<Received>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .expect("the upgrade request has a key");
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await.unwrap();
    let mut echoed = 0;
    while let Some((fin, opcode, payload)) = read_frame(&mut tcp).await {
        log.lock().unwrap().push((fin, opcode, payload.clone()));
        let mut frame = Vec::new();
        encode(&mut frame, fin, opcode, &payload, None);
        match opcode {
            // Control frames are answered whole: a close with the same payload, a ping (from
            // guestgate's keep-alive) with its pong.
            8 => {
                let _ = tcp.write_all(&frame).await;
                return;
            }
            9 => {
                let mut pong = Vec::new();
                encode(&mut pong, true, 10, &payload, None);
                tcp.write_all(&pong).await.unwrap();
                continue;
            }
            10 => continue,
            _ => {}
        }
        write_in_pieces(&mut tcp, &frame, &cuts(echoed, &frame)).await;
        echoed += 1;
    }
}

/// Reads one client frame (which must be masked): (fin, opcode, unmasked payload).
async fn read_frame(tcp: &mut TcpStream) -> Option<Received> {
    let mut head = [0u8; 2];
    tokio::time::timeout(STEP, tcp.read_exact(&mut head))
        .await
        .expect("upstream read timed out")
        .ok()?;
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        tcp.read_exact(&mut ext).await.ok()?;
        len = u64::from(u16::from_be_bytes(ext));
    } else if len == 127 {
        let mut ext = [0u8; 8];
        tcp.read_exact(&mut ext).await.ok()?;
        len = u64::from_be_bytes(ext);
    }
    assert_ne!(
        head[1] & 0x80,
        0,
        "frames toward the upstream must be masked"
    );
    let mut mask = [0u8; 4];
    tcp.read_exact(&mut mask).await.ok()?;
    let mut payload = vec![0u8; len as usize];
    tcp.read_exact(&mut payload).await.ok()?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Some((head[0] & 0x80 != 0, head[0] & 0x0f, payload))
}
