//! How a relay ends: once one direction stops, what each leg is told (relayed close, or a
//! documented close code of guestgate's own), whose close reply is awaited, and which legs get
//! an orderly TCP/TLS shutdown. The outcome is an [`Ending`], from which the log text, the
//! metric outcome and the closer are derived (never compared as strings).

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Closer, Limit, Pump, PumpEnd, PumpStats, RelayConfig, RelayReport, Side, Violation};
use crate::close_code::{self, CloseCode};

/// How a relay ended: which side, and why. A closed set; everything the log line and the
/// metrics say about the end is derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The initiator sent a close frame, it was relayed, and the other side's reply came back.
    CloseHandshake {
        /// The side whose close frame started the handshake.
        initiator: Side,
    },
    /// The initiator's close was relayed; the other side did not reply within the close
    /// timeout.
    CloseTimedOut {
        /// The side whose close frame started the handshake.
        initiator: Side,
    },
    /// The initiator's close was relayed; the other side failed (transport lost, protocol
    /// broken, write failed) instead of replying.
    PeerFailedDuringClose {
        /// The side whose close frame started the handshake.
        initiator: Side,
    },
    /// This side's transport ended (EOF or error) without a close frame.
    TransportLost(Side),
    /// This side broke the protocol or a limit.
    Violation(Side, Violation),
    /// This side sent nothing for the idle timeout.
    Idle(Side),
    /// Writing to this side failed.
    DestinationFailed(Side),
    /// Writing to this side made no progress for the stall timeout.
    DestinationStalled(Side),
    /// The browser-message transform refused a message (secret-free reason).
    Refused(&'static str),
    /// This side went over a limit kept over time (message rate, message timeout).
    Limited(Side, Limit),
    /// guestgate is shutting down.
    Shutdown,
}

impl Ending {
    /// Who ended the relay: a side that closed or vanished, otherwise guestgate.
    pub fn closer(self) -> Closer {
        match self {
            Ending::CloseHandshake { initiator }
            | Ending::CloseTimedOut { initiator }
            | Ending::PeerFailedDuringClose { initiator } => closer(initiator),
            Ending::TransportLost(side) | Ending::DestinationFailed(side) => closer(side),
            Ending::Violation(..)
            | Ending::Idle(_)
            | Ending::DestinationStalled(_)
            | Ending::Refused(_)
            | Ending::Limited(..)
            | Ending::Shutdown => Closer::Guestgate,
        }
    }

    /// Short, secret-free text for the `why` field of the log line.
    pub fn why(self) -> &'static str {
        match self {
            Ending::CloseHandshake { .. } => "close handshake completed",
            Ending::CloseTimedOut { .. } => "close handshake timed out",
            Ending::PeerFailedDuringClose { .. } => "peer failed during the close handshake",
            Ending::TransportLost(_) => "transport closed without a close frame",
            Ending::Violation(_, v) => v.detail(),
            Ending::Idle(_) => "idle timeout",
            Ending::DestinationFailed(_) => "write to the other leg failed",
            Ending::DestinationStalled(_) => "write to the other leg stalled",
            Ending::Refused(reason) => reason,
            Ending::Limited(_, limit) => limit.detail(),
            Ending::Shutdown => "guestgate is shutting down",
        }
    }

    /// The `outcome` label of `guestgate_connections_total` for a connection that reached
    /// the relay.
    pub fn outcome(self) -> &'static str {
        match self {
            Ending::Shutdown => "shutdown",
            _ => "relayed",
        }
    }
}

/// Which write sides still deserve an orderly shutdown.
pub(super) struct Teardown {
    pub(super) shutdown_browser: bool,
    pub(super) shutdown_upstream: bool,
}

/// Completes the close after `ended` (reading `source`) stopped with `end`; `other` is the
/// opposite direction, still mid-flight.
pub(super) async fn finish<R1, W1, R2, W2>(
    end: PumpEnd,
    source: Side,
    ended: &mut Pump<R1, W1>,
    other: &mut Pump<R2, W2>,
    cfg: &RelayConfig,
) -> (RelayReport, Teardown)
where
    R1: AsyncRead + Unpin,
    W1: AsyncWrite + Unpin,
    R2: AsyncRead + Unpin,
    W2: AsyncWrite + Unpin,
{
    let dest = source.other();
    let mut report = RelayReport {
        ending: Ending::Shutdown,
        code_to_browser: None,
        code_to_upstream: None,
        from_browser: PumpStats::default(),
        from_upstream: PumpStats::default(),
    };
    let mut set_code = |side: Side, code: Option<u16>| match side {
        Side::Browser => report.code_to_browser = code,
        Side::Upstream => report.code_to_upstream = code,
    };

    // The normal case: one side closed, its close went through; relay the reply.
    if let PumpEnd::CloseForwarded(code) = end {
        set_code(dest, code);
        let reply = tokio::time::timeout(cfg.close_timeout, other.run()).await;
        let reply_code = match reply {
            Ok(PumpEnd::CloseForwarded(c)) => c,
            _ => None,
        };
        set_code(source, reply_code);
        let initiator = source;
        report.ending = match reply {
            Ok(PumpEnd::CloseForwarded(_)) => Ending::CloseHandshake { initiator },
            Err(_) => Ending::CloseTimedOut { initiator },
            Ok(_) => Ending::PeerFailedDuringClose { initiator },
        };
        // The browser's TCP is closed by us (we are its server); the upstream closes its own.
        return (
            report,
            Teardown {
                shutdown_browser: true,
                shutdown_upstream: dest == Side::Upstream && reply.is_err(),
            },
        );
    }

    // Everything else: decide what the source (offender or lost) and the destination get.
    let (ending, to_source, to_dest): (Ending, Option<CloseCode>, Option<CloseCode>) = match end {
        PumpEnd::SourceLost(_) => (Ending::TransportLost(source), None, Some(lost(source))),
        PumpEnd::Violation(v) => (
            Ending::Violation(source, v),
            Some(offender_code(v)),
            Some(misbehaved(source)),
        ),
        PumpEnd::SourceIdle => (
            Ending::Idle(source),
            Some(idle_to(source)),
            Some(idle_to_other(source)),
        ),
        PumpEnd::DestinationFailed(_) => (Ending::DestinationFailed(dest), Some(lost(dest)), None),
        PumpEnd::DestinationStalled => {
            (Ending::DestinationStalled(dest), Some(stalled(dest)), None)
        }
        PumpEnd::Refused(reason) => (
            Ending::Refused(reason),
            Some(CloseCode {
                code: close_code::POLICY_VIOLATION.code,
                reason,
            }),
            Some(close_code::BROWSER_MISBEHAVED),
        ),
        PumpEnd::Limited(limit) => (
            Ending::Limited(source, limit),
            Some(limited_code(limit)),
            Some(misbehaved(source)),
        ),
        PumpEnd::Cancelled => (
            Ending::Shutdown,
            Some(close_code::GOING_AWAY),
            Some(close_code::GOING_AWAY),
        ),
        PumpEnd::CloseForwarded(_) => unreachable!("handled above"),
    };
    report.ending = ending;

    // `ended` writes to dest, `other` writes to source.
    if end == PumpEnd::Cancelled {
        // Shutdown may catch either direction inside a frame; a close cannot be written
        // there. Forward the rest of those frames first (one shared deadline); a leg whose
        // frame does not complete in time gets no 1001 and is cut by the teardown.
        let deadline = cfg.close_timeout;
        tokio::join!(ended.finish_frame(deadline), other.finish_frame(deadline));
    }
    let mut sent_to_dest = false;
    let mut sent_to_source = false;
    if let Some(c) = to_dest
        && ended.send_close(c.code, c.reason).await
    {
        set_code(dest, Some(c.code));
        sent_to_dest = true;
    }
    // A misbehaving browser first gets what the upstream still had in flight for it (say,
    // the echo of its last valid message): relay until the upstream answers our close.
    if sent_to_dest
        && source == Side::Browser
        && matches!(
            end,
            PumpEnd::Violation(_) | PumpEnd::Refused(_) | PumpEnd::Limited(_)
        )
        && other.relay_until_close(cfg.close_timeout).await
    {
        sent_to_dest = false; // its close reply is already read
    }
    if let Some(c) = to_source
        && other.send_close(c.code, c.reason).await
    {
        set_code(source, Some(c.code));
        sent_to_source = true;
    }
    // Read each peer's close reply so neither connection is reset with unread bytes.
    match (sent_to_dest, sent_to_source) {
        (true, true) => {
            tokio::join!(
                other.drain(cfg.close_timeout),
                ended.drain(cfg.close_timeout)
            );
        }
        (true, false) => {
            other.drain(cfg.close_timeout).await;
        }
        (false, true) => {
            ended.drain(cfg.close_timeout).await;
        }
        (false, false) => {}
    }
    (
        report,
        Teardown {
            shutdown_browser: true,
            shutdown_upstream: true,
        },
    )
}

fn closer(side: Side) -> Closer {
    match side {
        Side::Browser => Closer::Browser,
        Side::Upstream => Closer::Upstream,
    }
}

/// What the other leg hears when `side`'s transport is lost.
fn lost(side: Side) -> CloseCode {
    match side {
        Side::Browser => close_code::BROWSER_GONE,
        Side::Upstream => close_code::UPSTREAM_LOST,
    }
}

/// What the other leg hears when writes to `side` stopped making progress.
fn stalled(side: Side) -> CloseCode {
    match side {
        Side::Browser => close_code::BROWSER_GONE,
        Side::Upstream => close_code::UPSTREAM_TIMEOUT,
    }
}

/// What the other leg hears when `side` broke the protocol or a limit.
fn misbehaved(side: Side) -> CloseCode {
    match side {
        Side::Browser => close_code::BROWSER_MISBEHAVED,
        Side::Upstream => close_code::UPSTREAM_BAD,
    }
}

/// What an idle leg hears.
fn idle_to(side: Side) -> CloseCode {
    match side {
        Side::Browser => close_code::BROWSER_IDLE,
        Side::Upstream => close_code::IDLE_GOING_AWAY,
    }
}

/// What the other leg hears when `side` idled out.
fn idle_to_other(side: Side) -> CloseCode {
    match side {
        Side::Browser => close_code::BROWSER_GONE,
        Side::Upstream => close_code::UPSTREAM_TIMEOUT,
    }
}

/// What the offending leg hears.
fn offender_code(v: Violation) -> CloseCode {
    match v {
        Violation::Protocol(_) => close_code::PROTOCOL_ERROR,
        Violation::TooBig(_) => close_code::TOO_BIG,
    }
}

/// What a leg over a limit kept over time hears.
fn limited_code(limit: Limit) -> CloseCode {
    match limit {
        Limit::Rate => close_code::MESSAGE_RATE_LIMITED,
        Limit::MessageTimeout => close_code::MESSAGE_TIMEOUT,
    }
}
