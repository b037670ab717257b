//! Resume tickets as an attacker holds them: altered, expired, and renewed again and again to
//! keep a conversation past the route's absolute `max_lifetime`. Each must start a fresh
//! upstream session (never an error close), and a fresh one must really be fresh.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::open_genesys;
use crate::Args;
use crate::client::{ClientError, Ending};
use crate::report::Report;

/// Pause between two renewals.
const RENEW_EVERY: Duration = Duration::from_millis(700);
/// Tickets carry whole seconds: how much later than the bound a resume may still succeed.
const SECOND_SLACK: f64 = 1.5;

/// Opens the Genesys route (resuming with `ticket` when given); returns `newSession` and the
/// new ticket, after closing politely.
async fn session(args: &Args, ticket: Option<&str>) -> Result<(bool, String), ClientError> {
    let query = match ticket {
        Some(t) => format!("?resume={t}"),
        None => String::new(),
    };
    let (mut c, body) = open_genesys(args, &query, None).await?;
    c.send(true, 8, &1000u16.to_be_bytes()).await?;
    let end = c.wait_end(Duration::from_secs(5)).await;
    if end == Ending::StillOpen {
        return Err(ClientError::Unexpected("no close reply within 5s".into()));
    }
    let ticket = body["resumeTicket"]
        .as_str()
        .ok_or_else(|| ClientError::Unexpected("SessionReady without resumeTicket".into()))?;
    Ok((body["newSession"] == Value::Bool(true), ticket.to_owned()))
}

/// Flips one character in the middle of a base64url ticket.
fn tamper(ticket: &str) -> String {
    let mut chars: Vec<char> = ticket.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// Tampered, expired and over-age tickets.
pub async fn tickets(args: &Args, report: &mut Report) -> Result<(), ClientError> {
    let first_issued = Instant::now();
    let (_, original) = session(args, None).await?;
    let (_, to_expire) = session(args, None).await?;

    let (tampered_fresh, _) = session(args, Some(&tamper(&original))).await?;
    report.set("tampered_new_session", tampered_fresh);
    report.check(tampered_fresh, || {
        "a tampered ticket resumed a session".into()
    });

    // Renew as often as the route lets us, until well past max_lifetime.
    let lifetime = args.ticket_max_lifetime_secs;
    let mut current = original;
    let mut renewals = 0u32;
    let mut last_resumed_at = None::<f64>;
    while first_issued.elapsed().as_secs_f64() < lifetime + SECOND_SLACK + 1.0 {
        tokio::time::sleep(RENEW_EVERY).await;
        let (fresh, next) = session(args, Some(&current)).await?;
        if fresh {
            break;
        }
        renewals += 1;
        last_resumed_at = Some(first_issued.elapsed().as_secs_f64());
        current = next;
    }
    report.set("renewals", renewals);
    report.set(
        "last_resume_secs",
        last_resumed_at.map(|s| (s * 1000.0).round() / 1000.0),
    );
    report.set("max_lifetime_secs", lifetime);
    report.check(renewals > 0, || {
        "not even the first renewal resumed: the scenario proves nothing".into()
    });
    report.check(
        last_resumed_at.is_none_or(|s| s <= lifetime + SECOND_SLACK),
        || {
            format!(
                "a ticket renewed {renewals} times still resumed {:.1}s after its first issue \
                 (max_lifetime {lifetime}s)",
                last_resumed_at.unwrap_or_default()
            )
        },
    );

    // By now the untouched second ticket is past its ttl.
    let ttl = args.ticket_ttl_secs;
    let wait = (ttl + SECOND_SLACK) - first_issued.elapsed().as_secs_f64();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    let (expired_fresh, _) = session(args, Some(&to_expire)).await?;
    report.set("expired_new_session", expired_fresh);
    report.check(expired_fresh, || {
        format!("a ticket {ttl}s past issue (ttl {ttl}s) still resumed")
    });
    Ok(())
}
