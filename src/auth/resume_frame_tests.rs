//! Tests for reading a resume ticket from the browser's first frame.

use tokio::io::AsyncWriteExt;

use super::*;

const MASK: Option<[u8; 4]> = Some([9, 8, 7, 6]);

fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(&mut out, fin, opcode, payload, mask);
    out
}

fn resume(ticket: &str) -> Vec<u8> {
    let json = format!(r#"{{"type":"guestgate","action":"resume","ticket":"{ticket}"}}"#);
    frame(true, 1, json.as_bytes(), MASK)
}

async fn read(prefix: &[u8], rest: &[u8]) -> (Result<String, FirstFrameError>, Bytes) {
    let (mut near, mut far) = tokio::io::duplex(1 << 16);
    near.write_all(rest).await.unwrap();
    let mut prefix = Bytes::copy_from_slice(prefix);
    let got = read_resume_frame(&mut far, &mut prefix, FIRST_FRAME_WAIT).await;
    (got, prefix)
}

#[tokio::test]
async fn the_ticket_is_read_and_what_follows_is_kept_for_the_relay() {
    let next = frame(true, 1, br#"{"action":"onMessage"}"#, MASK);
    let mut bytes = resume("t1cket_-");
    bytes.extend(&next);
    // Split across the handshake's read-ahead and the socket, at every point.
    for cut in 0..bytes.len() {
        let (got, left) = read(&bytes[..cut], &bytes[cut..]).await;
        assert_eq!(got.as_deref(), Ok("t1cket_-"), "cut {cut}");
        // What was read past the frame is handed back (the rest is still in the socket).
        assert!(next.starts_with(&left), "cut {cut}");
    }
}

#[tokio::test]
async fn anything_else_is_not_a_resume_request() {
    for bytes in [
        frame(true, 1, br#"{"action":"onMessage"}"#, MASK),
        frame(
            true,
            1,
            br#"{"type":"guestgate","action":"other","ticket":"x"}"#,
            MASK,
        ),
        frame(
            true,
            2,
            br#"{"type":"guestgate","action":"resume","ticket":"x"}"#,
            MASK,
        ),
        frame(
            false,
            1,
            br#"{"type":"guestgate","action":"resume","ticket":"x"}"#,
            MASK,
        ),
        frame(
            true,
            1,
            br#"{"type":"guestgate","action":"resume","ticket":"x"}"#,
            None,
        ),
        frame(true, 9, b"ping", MASK),
    ] {
        assert_eq!(read(&[], &bytes).await.0, Err(FirstFrameError::NotResume));
    }
}

#[tokio::test]
async fn a_large_frame_is_refused_from_its_header() {
    let mut head = frame(true, 1, &[], MASK);
    head[1] = 0x80 | 127;
    head.splice(2..2, (16u64 << 20).to_be_bytes());
    assert_eq!(read(&[], &head).await.0, Err(FirstFrameError::TooLarge));
    let big = resume(&"x".repeat(FIRST_FRAME_MAX));
    assert_eq!(read(&[], &big).await.0, Err(FirstFrameError::TooLarge));
}

#[tokio::test(start_paused = true)]
async fn a_silent_or_trickling_browser_times_out() {
    let (mut near, mut far) = tokio::io::duplex(1 << 16);
    let bytes = resume("x");
    near.write_all(&bytes[..5]).await.unwrap();
    let mut prefix = Bytes::new();
    let got = read_resume_frame(&mut far, &mut prefix, FIRST_FRAME_WAIT).await;
    assert_eq!(got, Err(FirstFrameError::Timeout));
    drop(near);
    let (near, mut far) = tokio::io::duplex(64);
    drop(near);
    let got = read_resume_frame(&mut far, &mut prefix, FIRST_FRAME_WAIT).await;
    assert_eq!(got, Err(FirstFrameError::Closed));
}
