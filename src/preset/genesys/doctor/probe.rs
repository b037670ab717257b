//! Probing the guest socket's upgrade with the route's Origin: connect through the preset's
//! target, and on a 101 close again at once with 1000 (no `configureSession` is sent).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fetch::{Unreachable, resolve};
use crate::preset::genesys::GenesysPreset;
use crate::upstream::{self, UpstreamConn, UpstreamError};
use crate::ws::frame::{OwnFrame, Side, parse_header};

/// How long the probe waits for the upstream's answer to its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What the socket upgrade with the route's Origin got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeProbe {
    /// 101: the deployment takes this Origin.
    Accepted,
    /// Refused with this HTTP status.
    Refused(u16),
    /// An answer that was not a valid upgrade.
    Bad(String),
    /// No HTTP answer.
    Unreachable(Unreachable),
}

fn classify_io(e: &std::io::Error) -> Unreachable {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Unreachable::Refused,
        _ => Unreachable::Connect,
    }
}

/// Opens the socket with the route's Origin and closes it again with 1000 (no
/// `configureSession`).
pub async fn probe_upgrade(preset: &GenesysPreset) -> UpgradeProbe {
    let target = preset.target();
    if let Err(why) = resolve(&target.url, target.timeout).await {
        return UpgradeProbe::Unreachable(why);
    }
    match upstream::connect(target, None).await {
        Ok(conn) => {
            close_cleanly(conn).await;
            UpgradeProbe::Accepted
        }
        Err(UpstreamError::Refused { status, .. }) => UpgradeProbe::Refused(status.as_u16()),
        Err(UpstreamError::Timeout { after, .. }) => {
            UpgradeProbe::Unreachable(Unreachable::Timeout(after))
        }
        Err(UpstreamError::Tls { .. }) => UpgradeProbe::Unreachable(Unreachable::Tls),
        Err(UpstreamError::Connect { source, .. }) => {
            UpgradeProbe::Unreachable(classify_io(&source))
        }
        Err(UpstreamError::BadHandshake { problem, .. }) => {
            UpgradeProbe::Bad(format!("answered the upgrade badly: {problem}"))
        }
        Err(UpstreamError::Subprotocol { .. }) => {
            UpgradeProbe::Bad("selected a subprotocol nobody asked for".into())
        }
    }
}

/// Sends close 1000 and waits (briefly) for the upstream's close before hanging up.
async fn close_cleanly(mut conn: UpstreamConn) {
    let frame = OwnFrame::close(1000, "", Side::Upstream);
    if conn.stream.write_all(frame.as_bytes()).await.is_err() {
        return;
    }
    let mut buf = conn.prefix.to_vec();
    let wait_for_close = async {
        loop {
            while let Ok(Some(h)) = parse_header(&buf) {
                if h.opcode == 8 {
                    return;
                }
                let len = usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
                if buf.len() < len {
                    break;
                }
                buf.drain(..len);
            }
            let mut chunk = [0u8; 1024];
            match conn.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, wait_for_close).await;
    let _ = conn.stream.shutdown().await;
}
