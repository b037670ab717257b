//! `relay_stream`: arbitrary bytes as the browser's side of a relay.
//!
//! The relay runs over `tokio::io::duplex` pipes on a current-thread runtime with a paused
//! clock (timeouts fire as soon as everything is idle), small limits and no pings. The fake
//! upstream reads everything and, if byte 0 says so, answers the first close frame it reads
//! with a message still "in flight" and its own close. Input: byte 0 picks the limits, buffer
//! size, pipe size, whether the browser hangs up after its bytes or stays silent (then the
//! idle timeout ends the relay) and whether the upstream answers; byte 1 picks the write chunk
//! sizes; the rest is the browser's byte stream.
//!
//! Invariants:
//! - no panic, and the relay returns (within an hour of virtual time);
//! - the upstream receives a prefix of the input: every complete frame up to the first
//!   violation, close or incomplete frame, verbatim (less pongs carrying guestgate's own ping
//!   payload, which the relay consumes by design), then exactly one close frame of
//!   guestgate's own (masked, from `close_code::ALL`) unless the browser's close went
//!   through or the browser hung up inside a data frame (then part of that frame, no close);
//! - the browser receives at most one close: guestgate's own (unmasked; 1002 after a protocol
//!   violation, 1009 after a limit) or, when the browser's close went through, the answering
//!   upstream's; the answering upstream's in-flight message arrives before it exactly when
//!   the close handshake completed or the browser misbehaved, and never otherwise;
//! - the report agrees with the wire: close codes both ways, bytes counted <= bytes sent.

#![no_main]

use std::cell::RefCell;
use std::time::Duration;

use guestgate::close_code;
use guestgate::ws::frame::{
    self, Header, Kind, Limits, MessageState, Side, Violation, parse_header,
};
use guestgate::relay::{Leg, RelayConfig, RelayReport, relay};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

thread_local! {
    static RT: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime"),
    );
}

fuzz_target!(|data: &[u8]| {
    let (ctl, chunking, input) = match data {
        [a, b, rest @ ..] => (*a, *b, rest),
        _ => return,
    };
    let max_frame = [125u64, 200, 1000, 4096][(ctl & 3) as usize];
    let limits = Limits {
        max_frame,
        max_message: max_frame * [1, 4][(ctl >> 2 & 1) as usize],
    };
    let cfg = RelayConfig {
        browser_limits: limits,
        upstream_limits: limits,
        // The smallest the config allows, and an odd size: headers and control frames
        // straddle the buffer end often.
        buffer_size: [1024, 1031][(ctl >> 3 & 1) as usize],
        idle_timeout: Duration::from_secs(5),
        browser_ping: None,
        upstream_ping: None,
        write_stall: Duration::from_secs(2),
        close_timeout: Duration::from_secs(1),
        ..RelayConfig::default()
    };
    let pipe = [16usize, 257, 1 << 16][(ctl >> 4 & 3) as usize % 3];
    let hang_up = ctl & 0x40 == 0;
    let answers = ctl & 0x80 != 0;

    let run = RT.with(|rt| {
        rt.borrow()
            .block_on(run_relay(input, cfg, pipe, chunking, hang_up, answers))
    });
    check(input, &cfg, answers, &run);
});

/// What an answering upstream sends once it has read a close frame: a text message that was
/// still in flight, then its close reply (1000 "bye"), both unmasked (server frames).
const IN_FLIGHT: &[u8] = b"\x81\x09in flight";
const UPSTREAM_CLOSE: &[u8] = b"\x88\x05\x03\xe8bye";

struct Run {
    report: RelayReport,
    to_upstream: Vec<u8>,
    to_browser: Vec<u8>,
}

async fn run_relay(
    input: &[u8],
    cfg: RelayConfig,
    pipe: usize,
    chunking: u8,
    hang_up: bool,
    answers: bool,
) -> Run {
    let (browser, browser_far) = tokio::io::duplex(pipe);
    let (upstream, upstream_far) = tokio::io::duplex(pipe);
    let (mut browser_rd, mut browser_wr) = tokio::io::split(browser);
    let (mut upstream_rd, mut upstream_wr) = tokio::io::split(upstream);
    let shutdown = CancellationToken::new();
    let done = CancellationToken::new();

    let relayed = async {
        let report = relay(
            Leg::new(browser_far),
            Leg::new(upstream_far),
            &cfg,
            &shutdown,
        )
        .await;
        done.cancel();
        report
    };
    let browser_writes = async {
        let mut at = 0;
        let mut i = 0usize;
        while at < input.len() {
            // Chunk sizes from 1 to 256 bytes, cycling through a pattern set by `chunking`.
            let n = 1 + (chunking.rotate_left(i as u32 % 8) as usize ^ i) % 256;
            let end = (at + n).min(input.len());
            if browser_wr.write_all(&input[at..end]).await.is_err() {
                return; // the relay hung up on us
            }
            at = end;
            i += 1;
        }
        if hang_up {
            let _ = browser_wr.shutdown().await;
        } else {
            done.cancelled().await;
        }
    };
    let browser_reads = async {
        let mut got = Vec::new();
        let _ = browser_rd.read_to_end(&mut got).await;
        got
    };
    let upstream_reads = async {
        // Reads everything; never hangs up first. When answering, replies once to the first
        // close frame it reads (the browser's, relayed, or guestgate's own).
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut replied = !answers;
        loop {
            match upstream_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if !replied && has_close(&got) {
                replied = true;
                let reply = [IN_FLIGHT, UPSTREAM_CLOSE].concat();
                let _ = upstream_wr.write_all(&reply).await;
            }
        }
        drop(upstream_wr);
        got
    };
    let all = async { tokio::join!(relayed, browser_writes, browser_reads, upstream_reads) };
    let (report, (), to_browser, to_upstream) =
        match tokio::time::timeout(Duration::from_secs(3600), all).await {
            Ok(r) => r,
            Err(_) => panic!("the relay did not terminate within an hour of virtual time"),
        };
    Run {
        report,
        to_upstream,
        to_browser,
    }
}

/// What the relay should forward of `input`, from an independent walk over its frames.
struct Expected {
    /// The forwardable bytes: complete valid frames up to the first violation, close or
    /// incomplete frame, minus pongs answering guestgate's own pings (consumed by design).
    bytes: Vec<u8>,
    /// End of the last complete forwardable frame in `bytes`.
    boundary: usize,
    /// The browser's close was forwarded: its code (None for an empty close).
    closed: Option<Option<u16>>,
    /// The input broke the protocol (Some(true)) or a limit (Some(false)).
    violation: Option<bool>,
    /// The input ends inside a data frame whose header was forwarded.
    partial: bool,
}

fn expected(input: &[u8], cfg: &RelayConfig) -> Expected {
    let mut state = MessageState::new(Side::Browser, cfg.browser_limits);
    let mut e = Expected {
        bytes: Vec::new(),
        boundary: 0,
        closed: None,
        violation: None,
        partial: false,
    };
    let mut at = 0usize;
    loop {
        let h = match parse_header(&input[at..]) {
            Ok(Some(h)) => h,
            Ok(None) => return e, // incomplete header: nothing of it is forwarded
            Err(_) => {
                e.violation = Some(true);
                return e;
            }
        };
        match state.admit(&h) {
            Ok(_) => {}
            Err(Violation::Protocol(_)) => {
                e.violation = Some(true);
                return e;
            }
            Err(Violation::TooBig(_)) => {
                e.violation = Some(false);
                return e;
            }
        }
        let end = at as u64 + h.frame_len();
        if end > input.len() as u64 {
            // Data frames are forwarded as they arrive, control frames only when complete.
            if h.kind == Kind::Data {
                e.bytes.extend_from_slice(&input[at..]);
                e.partial = true;
            }
            return e;
        }
        let end = end as usize;
        let bytes = &input[at..end];
        at = end;
        let (payload, n) = if h.kind == Kind::Data {
            ([0; 125], 0)
        } else {
            frame::control_payload(bytes, &h)
        };
        if h.kind == Kind::Pong && &payload[..n] == frame::PING_PAYLOAD {
            continue;
        }
        e.bytes.extend_from_slice(bytes);
        e.boundary = e.bytes.len();
        if h.kind == Kind::Close {
            e.closed = Some(frame::close_code(&payload[..n]));
            return e;
        }
    }
}

/// Whether the client frames in `b` include a complete close frame.
fn has_close(mut b: &[u8]) -> bool {
    while let Ok(Some(h)) = parse_header(b) {
        if h.frame_len() > b.len() as u64 {
            return false;
        }
        if h.kind == Kind::Close {
            return true;
        }
        b = &b[h.frame_len() as usize..];
    }
    false
}

fn check(input: &[u8], cfg: &RelayConfig, answers: bool, run: &Run) {
    let e = expected(input, cfg);
    let up = &run.to_upstream;
    let r = &run.report;
    let ctx = || {
        format!(
            "input {} bytes, upstream got {}, expected boundary {} of {} (closed {:?}, \
             violation {:?}, partial {}), report {:?} / {:?}",
            input.len(),
            up.len(),
            e.boundary,
            e.bytes.len(),
            e.closed,
            e.violation,
            e.partial,
            r.why,
            r.closer,
        )
    };
    if std::env::var_os("RELAY_STREAM_DEBUG").is_some() {
        eprintln!("{}; to browser {:02x?}", ctx(), run.to_browser);
    }

    // Upstream: every complete forwardable frame, then guestgate's close unless the browser's
    // own close went through; or, when the browser hung up inside a data frame, part of it.
    let k = e.boundary;
    assert!(
        up.len() >= k && up[..k] == e.bytes[..k],
        "forwarded bytes differ: {}",
        ctx()
    );
    let own_to_upstream = if up.len() == k {
        None
    } else if let Some(code) = own_close(&up[k..], Side::Upstream) {
        Some(code)
    } else {
        assert!(
            e.partial && up.len() <= e.bytes.len() && up[..] == e.bytes[..up.len()],
            "upstream got more than the input's frames and one own close: {}",
            ctx()
        );
        None
    };
    let mid_frame = up.len() > k && own_to_upstream.is_none();
    if let Some(code) = e.closed {
        assert!(
            own_to_upstream.is_none(),
            "own close after the browser's: {}",
            ctx()
        );
        assert_eq!(r.code_to_upstream, code, "relayed close code: {}", ctx());
    } else if !mid_frame {
        assert!(
            own_to_upstream.is_some(),
            "upstream was not told: {}",
            ctx()
        );
    }
    if own_to_upstream.is_some() {
        assert_eq!(
            r.code_to_upstream,
            own_to_upstream,
            "code_to_upstream: {}",
            ctx()
        );
    }

    // Browser: the upstream writes nothing, or (when answering) only after it read a close:
    // so at most the in-flight message, then one close, the upstream's or guestgate's own.
    let b = &run.to_browser[..];
    let in_flight = answers && b.starts_with(IN_FLIGHT);
    let b = if in_flight { &b[IN_FLIGHT.len()..] } else { b };
    let (upstream_close, own_to_browser) = if b.is_empty() {
        (false, None)
    } else if answers && b == UPSTREAM_CLOSE {
        (true, None)
    } else {
        let own = own_close(b, Side::Browser).unwrap_or_else(|| {
            panic!(
                "browser got more than one close: {:02x?}: {}",
                run.to_browser,
                ctx()
            )
        });
        (false, Some(own))
    };
    let code_on_wire = if upstream_close {
        Some(1000)
    } else {
        own_to_browser
    };
    assert_eq!(
        r.code_to_browser,
        code_on_wire,
        "code_to_browser: {}",
        ctx()
    );
    match e.violation {
        Some(protocol) => assert_eq!(
            own_to_browser,
            Some(if protocol { 1002 } else { 1009 }),
            "violation close: {}",
            ctx()
        ),
        None => assert!(
            !matches!(own_to_browser, Some(1002 | 1009)),
            "violation close without a violation: {}",
            ctx()
        ),
    }
    if answers && e.closed.is_some() {
        // The close handshake completes: the upstream's answer reaches the browser whole.
        assert!(
            in_flight && upstream_close,
            "upstream's answer not relayed: {}",
            ctx()
        );
    } else if answers && e.violation.is_some() {
        // What the upstream had in flight comes first, then guestgate's 1002/1009; the
        // upstream's close reply (to guestgate's own close) is not forwarded.
        assert!(
            in_flight,
            "in-flight message lost after a violation: {}",
            ctx()
        );
    } else {
        assert!(
            !in_flight && !upstream_close,
            "unexpected upstream bytes: {}",
            ctx()
        );
    }

    assert!(r.from_browser.bytes <= input.len() as u64);
    let upstream_sent = if answers {
        IN_FLIGHT.len() + UPSTREAM_CLOSE.len()
    } else {
        0
    };
    assert!(r.from_upstream.bytes <= upstream_sent as u64);
}

/// If `b` is exactly one close frame guestgate writes toward `to`, its code.
fn own_close(b: &[u8], to: Side) -> Option<u16> {
    let h: Header = parse_header(b).ok()??;
    if h.kind != Kind::Close || !h.fin || h.frame_len() != b.len() as u64 {
        return None;
    }
    if h.mask.is_some() != (to == Side::Upstream) {
        return None;
    }
    let (payload, n) = frame::control_payload(b, &h);
    let code = frame::close_code(&payload[..n])?;
    let reason = std::str::from_utf8(&payload[2..n]).ok()?;
    close_code::ALL
        .iter()
        .any(|c| c.code == code && c.reason == reason)
        .then_some(code)
}
