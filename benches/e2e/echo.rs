//! The echo upstream every target talks to, in two implementations (`raw::Instrument`):
//!
//! * **raw** (default): the upgrade via tungstenite's handshake helpers, then frames handled
//!   directly. Each client frame must be masked with RSV bits clear and a known opcode; data
//!   frames (text, binary, continuation) go back unmasked with the same opcode and FIN bit, so
//!   a fragmented message echoes as the same fragments. The payload is unmasked while it is
//!   copied into an output buffer, streamed in pieces of at most the read buffer (64 KiB,
//!   grown to hold one frame of up to 1 MiB), and written out before every read, so memory
//!   stays bounded whatever the frame size. Ping is answered with pong, pong ignored, a close
//!   echoed back before the server hangs up; a protocol violation is answered with close 1002.
//!   Text is not checked for UTF-8 and fragment sequencing is not checked: the echo reflects
//!   what it gets.
//! * **tungstenite**: the minimal tokio-tungstenite server of the first harness runs, which
//!   sends each text or binary message back whole and answers a close.
//!
//! Unlike `guestgate::mock`'s `FakeUpstream` neither records anything, so either can run under
//! load for minutes in constant memory.

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tungstenite::Message;

use crate::raw::{self, Instrument, op};

/// Accepts and echoes on `listener` until the process ends, with the process's instrument.
pub async fn serve(listener: TcpListener) {
    serve_with(listener, raw::instrument()).await
}

/// Accepts and echoes on `listener` until the process ends.
pub async fn serve_with(listener: TcpListener, instrument: Instrument) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                match instrument {
                    Instrument::Raw => tokio::spawn(echo_raw(tcp)),
                    Instrument::Tungstenite => tokio::spawn(echo_tungstenite(tcp)),
                };
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

async fn echo_tungstenite(tcp: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let sent = match msg {
            Message::Text(_) | Message::Binary(_) => ws.send(msg).await,
            // tungstenite queued the close reply; flush it and hang up (server closes first).
            Message::Close(_) => {
                let _ = ws.flush().await;
                return;
            }
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

async fn echo_raw(mut tcp: TcpStream) {
    let _ = echo_raw_on(&mut tcp).await;
}

/// The raw echo on an upgraded-to-be stream; returns when the connection is over.
pub async fn echo_raw_on<S>(s: &mut S) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut inbuf = raw::server_handshake(s).await?;
    let mut out = raw::OutBuf::new();
    // Flushes `out` before every read, so echoes of frames that arrived together go out in
    // one write and nothing waits for more input.
    macro_rules! read_more {
        () => {{
            if !out.data().is_empty() {
                s.write_all(out.data())
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                out.clear();
            }
            inbuf.read_more(s).await?;
        }};
    }
    loop {
        let h = loop {
            match raw::parse_header(inbuf.data()) {
                Ok(Some(h)) => break h,
                Ok(None) => read_more!(),
                Err(_) => return fail(s, &mut out, 1002).await,
            }
        };
        inbuf.consume(h.header_len);
        inbuf.fit_frame(h.header_len as u64 + h.len);
        out.fit(inbuf.capacity());
        let Some(key) = h.mask else {
            return fail(s, &mut out, 1002).await;
        };
        let control = h.opcode & 0x8 != 0;
        let known = matches!(
            h.opcode,
            op::CONT | op::TEXT | op::BINARY | op::CLOSE | op::PING | op::PONG
        );
        if h.rsv != 0 || !known || (control && (!h.fin || h.len > 125)) {
            return fail(s, &mut out, 1002).await;
        }
        if control {
            let len = h.len as usize;
            while inbuf.data().len() < len {
                read_more!();
            }
            match h.opcode {
                op::PING | op::CLOSE => {
                    let reply = if h.opcode == op::PING {
                        op::PONG
                    } else {
                        op::CLOSE
                    };
                    out.header(true, reply, h.len);
                    out.unmasked(&inbuf.data()[..len], key, 0);
                }
                _ => {}
            }
            inbuf.consume(len);
            if h.opcode == op::CLOSE {
                // Close echoed: send it and hang up (the server closes the TCP connection first).
                s.write_all(out.data())
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                let _ = s.shutdown().await;
                return Ok(());
            }
            continue;
        }
        out.header(h.fin, h.opcode, h.len);
        let mut done = 0u64;
        while done < h.len {
            if inbuf.data().is_empty() {
                read_more!();
            }
            let n = (inbuf.data().len() as u64).min(h.len - done) as usize;
            out.unmasked(&inbuf.data()[..n], key, done);
            inbuf.consume(n);
            done += n as u64;
        }
    }
}

/// Sends what is pending plus a close frame with `code`, and hangs up.
async fn fail<S>(s: &mut S, out: &mut raw::OutBuf, code: u16) -> Result<(), String>
where
    S: AsyncWrite + Unpin,
{
    out.header(true, op::CLOSE, 2);
    out.unmasked(&code.to_be_bytes(), [0; 4], 0);
    let _ = s.write_all(out.data()).await;
    let _ = s.shutdown().await;
    Err(format!("protocol error, closed with {code}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};

    async fn echo_server(instrument: Instrument) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve_with(l, instrument));
        addr
    }

    async fn tungstenite_client(
        addr: std::net::SocketAddr,
    ) -> tokio_tungstenite::WebSocketStream<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .unwrap()
            .0
    }

    #[tokio::test]
    async fn raw_echo_returns_fragmented_messages_pings_and_close_to_a_tungstenite_client() {
        let addr = echo_server(Instrument::Raw).await;
        let mut ws = tungstenite_client(addr).await;
        let big: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
        // A binary message in three fragments (one larger than the echo's read buffer), with a
        // ping between the fragments.
        let frames = [
            Frame::message(
                Bytes::copy_from_slice(&big[..1000]),
                OpCode::Data(Data::Binary),
                false,
            ),
            Frame::message(
                Bytes::copy_from_slice(&big[1000..200_000]),
                OpCode::Data(Data::Continue),
                false,
            ),
        ];
        for f in frames {
            ws.send(Message::Frame(f)).await.unwrap();
        }
        ws.send(Message::Ping(Bytes::from_static(b"p1")))
            .await
            .unwrap();
        let last = Frame::message(
            Bytes::copy_from_slice(&big[200_000..]),
            OpCode::Data(Data::Continue),
            true,
        );
        ws.send(Message::Frame(last)).await.unwrap();
        ws.send(Message::text("h\u{e9}llo")).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(ws.next().await.unwrap().unwrap());
        }
        assert_eq!(got[0], Message::Pong(Bytes::from_static(b"p1")));
        assert_eq!(got[1], Message::Binary(Bytes::from(big)));
        assert_eq!(got[2], Message::text("h\u{e9}llo"));
        ws.close(None).await.unwrap();
        match ws.next().await {
            Some(Ok(Message::Close(_))) => {}
            other => panic!("expected the close echoed, got {other:?}"),
        }
        assert!(matches!(ws.next().await, None | Some(Err(_))));
    }

    #[tokio::test]
    async fn raw_echo_closes_with_1002_on_rsv_bits_unknown_opcodes_and_unmasked_frames() {
        let addr = echo_server(Instrument::Raw).await;
        for first_byte_and_mask in [(0x82 | 0x40, 0x80), (0x83, 0x80), (0x82, 0x00)] {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let mut inbuf = raw::client_handshake(&mut tcp, &format!("ws://{addr}/"))
                .await
                .unwrap();
            let (b0, m) = first_byte_and_mask;
            let mut frame = vec![b0, m | 3];
            if m != 0 {
                frame.extend_from_slice(&[9, 9, 9, 9]);
            }
            frame.extend_from_slice(b"abc");
            tcp.write_all(&frame).await.unwrap();
            let h = inbuf.header(&mut tcp).await.unwrap();
            assert_eq!((h.opcode, h.len, h.mask), (op::CLOSE, 2, None));
            inbuf.fill(&mut tcp, 2).await.unwrap();
            assert_eq!(inbuf.data(), &1002u16.to_be_bytes());
            inbuf.consume(2);
            let mut rest = Vec::new();
            tcp.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
        }
    }

    #[tokio::test]
    async fn tungstenite_echo_still_echoes() {
        let addr = echo_server(Instrument::Tungstenite).await;
        let mut ws = tungstenite_client(addr).await;
        ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::binary(vec![1u8, 2, 3])
        );
    }
}
