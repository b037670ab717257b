//! `frame_header`: `parse_header` and `MessageState::admit` against an independent reading of
//! RFC 6455's header layout, plus round trips through guestgate's own encoders.
//!
//! Input: byte 0 picks the side and the limits; the rest is read as a run of frame headers
//! (payloads are skipped, only their lengths matter to `admit`), and its first bytes also
//! drive an `encode`/`OwnFrame` round trip.

#![no_main]

use guestgate::close_code;
use guestgate::ws::frame::{
    self, Header, Kind, Limits, MessageState, OwnFrame, Side, Violation, parse_header,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let side = if ctl & 1 == 0 {
        Side::Browser
    } else {
        Side::Upstream
    };
    let max_frame = [125, 126, 1000, 65535, 65536, 1 << 20][(ctl >> 1) as usize % 6];
    let limits = Limits {
        max_frame,
        max_message: max_frame * [1, 2, 3, 1000][(ctl >> 4) as usize % 4],
    };

    check_header_stream(rest, side, limits);
    check_prefixes(rest);
    check_encode_round_trip(rest);
    check_own_frames(rest);
});

/// What RFC 6455 section 5.2 says about the header at the start of `b`, computed without
/// tungstenite: `None` if incomplete, else (fin, rsv, opcode, mask, header_len, payload_len).
type RefHeader = (bool, u8, u8, Option<[u8; 4]>, usize, u64);

fn reference(b: &[u8]) -> Option<RefHeader> {
    if b.len() < 2 {
        return None;
    }
    let masked = b[1] & 0x80 != 0;
    let (ext, len) = match b[1] & 0x7f {
        126 => {
            let e = b.get(2..4)?;
            (2, u16::from_be_bytes([e[0], e[1]]) as u64)
        }
        127 => {
            let e = b.get(2..10)?;
            (8, u64::from_be_bytes(e.try_into().unwrap()))
        }
        n => (0, n as u64),
    };
    let header_len = 2 + ext + if masked { 4 } else { 0 };
    if b.len() < header_len {
        return None;
    }
    let mask = masked.then(|| b[header_len - 4..header_len].try_into().unwrap());
    Some((
        b[0] & 0x80 != 0,
        (b[0] >> 4) & 7,
        b[0] & 0x0f,
        mask,
        header_len,
        len,
    ))
}

/// Parses one header and checks it against [`reference`]. Returns the header, or None when
/// more bytes are needed or it was (rightly) rejected.
fn parse_checked(b: &[u8]) -> Option<Header> {
    let parsed = parse_header(b);
    let Some((fin, rsv, opcode, mask, header_len, payload_len)) = reference(b) else {
        assert!(
            matches!(parsed, Ok(None)),
            "incomplete header {:02x?} parsed as {parsed:?}",
            &b[..b.len().min(14)]
        );
        return None;
    };
    let reserved = matches!(opcode, 3..=7 | 11..=15);
    match parsed {
        Ok(None) => panic!(
            "complete header {:02x?} reported as incomplete",
            &b[..header_len]
        ),
        Err(Violation::TooBig(_)) => panic!("parse_header must not apply limits"),
        Err(Violation::Protocol(_)) => {
            assert!(
                rsv != 0 || reserved || payload_len >> 63 != 0,
                "valid header {:02x?} rejected: {parsed:?}",
                &b[..header_len]
            );
            None
        }
        Ok(Some(h)) => {
            assert!(
                rsv == 0 && !reserved && payload_len >> 63 == 0,
                "{h:?} accepted"
            );
            assert!(h.header_len <= b.len());
            assert_eq!(h.header_len, header_len);
            assert_eq!(h.payload_len, payload_len);
            assert_eq!(h.fin, fin);
            assert_eq!(h.opcode, opcode);
            assert_eq!(h.mask, mask);
            let kind = match opcode {
                0..=2 => Kind::Data,
                8 => Kind::Close,
                9 => Kind::Ping,
                10 => Kind::Pong,
                _ => unreachable!(),
            };
            assert_eq!(h.kind, kind);
            assert_eq!(h.frame_len(), header_len as u64 + payload_len);
            Some(h)
        }
    }
}

/// Walks `b` as consecutive headers (payloads not present), feeding each to `admit` and to a
/// reference model of the message state.
fn check_header_stream(mut b: &[u8], side: Side, limits: Limits) {
    let mut state = MessageState::new(side, limits);
    let (mut in_message, mut message_len) = (false, 0u64);
    while let Some(h) = parse_checked(b) {
        b = &b[h.header_len..];
        let want: Result<bool, bool> = (|| {
            // Err(true): protocol error, Err(false): too big.
            if h.mask.is_some() != (side == Side::Browser) {
                return Err(true);
            }
            if h.kind != Kind::Data {
                if !h.fin || h.payload_len > 125 || (h.kind == Kind::Close && h.payload_len == 1) {
                    return Err(true);
                }
                return Ok(false);
            }
            if (h.opcode == 0) != in_message {
                return Err(true);
            }
            if h.payload_len > limits.max_frame
                || message_len.saturating_add(h.payload_len) > limits.max_message
            {
                return Err(false);
            }
            Ok(h.fin)
        })();
        let got = state.admit(&h);
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{h:?}: completes-message flag"),
            (Err(Violation::Protocol(_)), Err(true)) | (Err(Violation::TooBig(_)), Err(false)) => {
                return; // the relay stops at the first violation
            }
            (g, w) => panic!("{h:?} (side {side:?}, {limits:?}): admit gave {g:?}, expected {w:?}"),
        }
        if h.kind == Kind::Data {
            if h.fin {
                (in_message, message_len) = (false, 0);
            } else {
                (in_message, message_len) = (true, message_len + h.payload_len);
            }
        }
        assert_eq!(state.in_message(), in_message);
    }
}

/// Every strict prefix of a complete header needs more bytes; extra bytes change nothing.
fn check_prefixes(b: &[u8]) {
    let Some((_, _, _, _, header_len, _)) = reference(b) else {
        return;
    };
    for n in 0..header_len {
        assert_eq!(parse_header(&b[..n]), Ok(None), "prefix of {n} bytes");
    }
    assert_eq!(parse_header(&b[..header_len]), parse_header(b));
}

/// `encode` then `parse_header` gives back what was encoded, and unmasking restores the payload.
fn check_encode_round_trip(b: &[u8]) {
    let Some((&first, rest)) = b.split_first() else {
        return;
    };
    let fin = first & 0x80 != 0;
    let opcode = [0, 1, 2, 8, 9, 10][(first & 0x7f) as usize % 6];
    let mask = (first & 0x40 != 0).then_some([first, 0x5a, first ^ 0xff, 0x01]);
    let payload = &rest[..rest.len().min(70_000)];
    let mut out = Vec::new();
    frame::encode(&mut out, fin, opcode, payload, mask);
    let h = parse_header(&out)
        .expect("encode wrote a valid header")
        .expect("complete");
    assert_eq!((h.fin, h.opcode, h.mask), (fin, opcode, mask));
    assert_eq!(h.payload_len, payload.len() as u64);
    assert_eq!(h.frame_len(), out.len() as u64);
    let mut body = out[h.header_len..].to_vec();
    if let Some(m) = mask {
        frame::apply_mask(&mut body, m);
    }
    assert_eq!(body, payload);
}

/// guestgate's own close and ping frames are valid frames toward their leg and carry what was
/// asked (reasons cut at a UTF-8 boundary).
fn check_own_frames(b: &[u8]) {
    if b.len() < 2 {
        return;
    }
    let code = u16::from_be_bytes([b[0], b[1]]);
    let reason = String::from_utf8_lossy(&b[2..]);
    for to in [Side::Browser, Side::Upstream] {
        let own = OwnFrame::close(code, &reason, to);
        let bytes = own.as_bytes();
        assert!(bytes.len() <= frame::MAX_OWN_FRAME);
        let h = parse_header(bytes)
            .expect("own close parses")
            .expect("complete");
        assert_eq!(h.frame_len(), bytes.len() as u64);
        // An own frame toward `to` must pass the checks of the pump that reads from `to`'s
        // peer role: masked toward the upstream (we are its client), unmasked toward the browser.
        let reader = match to {
            Side::Upstream => Side::Browser,
            Side::Browser => Side::Upstream,
        };
        let mut state = MessageState::new(
            reader,
            Limits {
                max_frame: 125,
                max_message: 125,
            },
        );
        assert_eq!(state.admit(&h), Ok(false));
        assert_eq!(h.kind, Kind::Close);
        let (payload, n) = frame::control_payload(bytes, &h);
        assert_eq!(frame::close_code(&payload[..n]), Some(code));
        let sent = std::str::from_utf8(&payload[2..n]).expect("reason stays UTF-8");
        assert!(reason.starts_with(sent));
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        assert_eq!(
            sent.len(),
            cut,
            "reason cut at the last boundary within 123 bytes"
        );

        let ping = OwnFrame::ping(to);
        let h = parse_header(ping.as_bytes()).unwrap().unwrap();
        let (payload, n) = frame::control_payload(ping.as_bytes(), &h);
        assert_eq!(&payload[..n], frame::PING_PAYLOAD);
    }
    // Every close guestgate sends is one a peer may receive.
    for c in close_code::ALL {
        assert!(!matches!(c.code, 1004..=1006 | 1014 | 1015) && (1000..5000).contains(&c.code));
        assert!(c.reason.len() <= 123);
    }
}
