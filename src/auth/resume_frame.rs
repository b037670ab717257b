//! Presenting a resume ticket (or a sign-in code) in the browser's first frame instead of the
//! URL query, so it stays out of access logs: a page that opens `/ws?resume=first-frame` sends
//! `{"type":"guestgate","action":"resume","ticket":"..."}` as its first message; a page that
//! opens `/ws?signin=first-frame` sends `{"type":"guestgate","action":"signIn","code":"...",
//! "codeVerifier"?:..,"nonce"?:..,"ticket"?:..}`. `session::run` reads it before the set-up
//! starts (so before `configureSession`). The read is bounded in size ([`FIRST_FRAME_MAX`]) and
//! time ([`FIRST_FRAME_WAIT`]); the frame is consumed (never relayed upstream) and any bytes
//! read after it are handed back for the relay.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::ws::frame::{self, Kind};

/// The query value that announces a ticket in the first frame.
pub const FIRST_FRAME_MARKER: &str = "first-frame";
/// The largest first frame accepted, header included (a ticket is at most 4096 characters).
pub const FIRST_FRAME_MAX: usize = 4096 + 128;
/// How long the browser has to send it.
pub const FIRST_FRAME_WAIT: Duration = Duration::from_secs(2);

/// Why no ticket was read from the first frame. Holds nothing from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FirstFrameError {
    /// The browser sent no complete first frame in time.
    #[error("browser sent no resume frame in time")]
    Timeout,
    /// The browser closed the connection (or it failed) first.
    #[error("browser connection ended before its resume frame")]
    Closed,
    /// The frame is longer than [`FIRST_FRAME_MAX`].
    #[error("browser resume frame is too large")]
    TooLarge,
    /// Not a single masked text frame holding the resume request.
    #[error("browser first frame is not a resume request")]
    NotResume,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeFrame {
    r#type: String,
    action: String,
    ticket: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SignInFrame {
    r#type: String,
    action: String,
    code: String,
    #[serde(default)]
    code_verifier: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
}

/// The query parameter and value that announce a sign-in code in the first frame.
pub const SIGN_IN_PARAM: &str = "signin";

/// What a page's first frame carried.
#[derive(PartialEq, Eq)]
pub enum FirstFrame {
    /// A resume ticket.
    Resume(String),
    /// A sign-in: the identity provider's code, and a ticket to continue (or upgrade) a
    /// conversation.
    SignIn {
        /// The code, verifier and nonce.
        code: crate::auth::sign_in_code::SignInCode,
        /// A resume ticket, if the page had one.
        ticket: Option<String>,
    },
}

impl std::fmt::Debug for FirstFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FirstFrame::Resume(_) => f.write_str("Resume(..)"),
            FirstFrame::SignIn { .. } => f.write_str("SignIn(..)"),
        }
    }
}

/// Whether the page announced a sign-in in its first frame (`?signin=first-frame`).
pub fn wants_sign_in_frame(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(name, value)| name == SIGN_IN_PARAM && value == FIRST_FRAME_MARKER)
    })
}

/// Reads the browser's first frame from `prefix` then `io`, within `wait`, and returns the
/// ticket it carries. Bytes after the frame are left in `prefix`.
pub async fn read_resume_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    prefix: &mut Bytes,
    wait: Duration,
) -> Result<String, FirstFrameError> {
    match read_first_frame(io, prefix, wait).await? {
        FirstFrame::Resume(ticket) => Ok(ticket),
        FirstFrame::SignIn { .. } => Err(FirstFrameError::NotResume),
    }
}

/// Reads the browser's first frame from `prefix` then `io`, within `wait`: a resume or a
/// sign-in request. Bytes after the frame are left in `prefix`.
pub async fn read_first_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    prefix: &mut Bytes,
    wait: Duration,
) -> Result<FirstFrame, FirstFrameError> {
    let mut buf = prefix.to_vec();
    let frame = tokio::time::timeout(wait, async {
        loop {
            if let Some(len) = complete_frame(&buf)? {
                return Ok(len);
            }
            // `complete_frame` refuses an over-long frame from its header, so `buf` stays
            // under FIRST_FRAME_MAX plus one chunk.
            let mut chunk = [0u8; 1024];
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return Err(FirstFrameError::Closed),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .map_err(|_| FirstFrameError::Timeout)??;
    let header = frame::parse_header(&buf)
        .ok()
        .flatten()
        .expect("checked complete");
    let mut payload = buf[header.header_len..frame].to_vec();
    frame::apply_mask(&mut payload, header.mask.expect("checked masked"));
    *prefix = Bytes::copy_from_slice(&buf[frame..]);
    if let Ok(request) = serde_json::from_slice::<ResumeFrame>(&payload) {
        if request.r#type != "guestgate" || request.action != "resume" {
            return Err(FirstFrameError::NotResume);
        }
        return Ok(FirstFrame::Resume(request.ticket));
    }
    let request: SignInFrame =
        serde_json::from_slice(&payload).map_err(|_| FirstFrameError::NotResume)?;
    if request.r#type != "guestgate" || request.action != "signIn" || request.code.is_empty() {
        return Err(FirstFrameError::NotResume);
    }
    Ok(FirstFrame::SignIn {
        code: crate::auth::sign_in_code::SignInCode {
            code: crate::secret::Secret::new(request.code),
            code_verifier: request.code_verifier.map(crate::secret::Secret::new),
            nonce: request.nonce,
        },
        ticket: request.ticket,
    })
}

/// The length of the complete first frame at the start of `buf`, `None` if more is needed.
fn complete_frame(buf: &[u8]) -> Result<Option<usize>, FirstFrameError> {
    let header = match frame::parse_header(buf) {
        Ok(Some(h)) => h,
        Ok(None) if buf.len() <= FIRST_FRAME_MAX => return Ok(None),
        Ok(None) => return Err(FirstFrameError::TooLarge),
        Err(_) => return Err(FirstFrameError::NotResume),
    };
    if header.kind != Kind::Data || header.opcode != 1 || !header.fin || header.mask.is_none() {
        return Err(FirstFrameError::NotResume);
    }
    let len = header.frame_len();
    if len > FIRST_FRAME_MAX as u64 {
        return Err(FirstFrameError::TooLarge);
    }
    Ok((buf.len() as u64 >= len).then_some(len as usize))
}

#[cfg(test)]
#[path = "resume_frame_tests.rs"]
mod tests;
