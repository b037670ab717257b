//! The `Origin` allowlist: exact `scheme://host[:port]` matching after the same normalisation
//! browsers apply (WHATWG URL parsing: lowercase, default port dropped, IDN hosts as punycode),
//! so there is no substring, suffix or wildcard matching to get wrong.
//!
//! Two grammars feed one normaliser. Allowlist entries are parsed leniently (a trailing `/` is
//! tolerated, Unicode hosts become punycode) but anything that is not an origin (a path, a
//! query, user info, `*`, a missing scheme, `null`) is a config error. `Origin` headers are
//! parsed strictly: exactly `scheme://host[:port]`, visible ASCII, or they never match.

use std::collections::HashSet;

use http::{HeaderMap, header};
use url::Url;

/// A normalised origin: `scheme://host[:port]`, lowercase, default port elided.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// The normalised text, e.g. `https://example.com:8443`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses an allowlist entry as written in the config; the error says what to fix.
    pub fn parse_allowlist_entry(entry: &str) -> Result<Self, String> {
        if entry.is_empty() {
            return Err("is empty".into());
        }
        if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace".into());
        }
        if entry.contains('*') {
            return Err("wildcards are not supported; list each origin".into());
        }
        if entry.eq_ignore_ascii_case("null") {
            return Err(
                "`null` is sent by sandboxed frames and local files on any site, so it cannot \
                 be allowed; use allow_any_origin if you really mean it"
                    .into(),
            );
        }
        let Some((scheme, _)) = entry.split_once("://") else {
            return Err(format!(
                "missing scheme; write it as https://{}",
                entry.trim_start_matches('/')
            ));
        };
        if scheme.eq_ignore_ascii_case("file") {
            return Err("browsers send `null` for file:// pages; it cannot be allowed".into());
        }
        if scheme.eq_ignore_ascii_case("ws") || scheme.eq_ignore_ascii_case("wss") {
            return Err("an origin is the page's scheme (http or https), not ws or wss".into());
        }
        let url = Url::parse(entry).map_err(|e| format!("is not a valid origin: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain user info".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or fragment".into());
        }
        if !matches!(url.path(), "" | "/") {
            return Err(format!(
                "must not have a path ({}); an origin is scheme://host[:port]",
                url.path()
            ));
        }
        Self::from_url(&url).ok_or_else(|| "has no host".into())
    }

    /// Parses an `Origin` header value as browsers serialise it; `None` for anything else,
    /// including `null`.
    pub fn parse_header(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?;
        let (scheme, rest) = text.split_once("://")?;
        let mut chars = scheme.chars();
        if !chars.next()?.is_ascii_alphabetic()
            || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return None;
        }
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (inside, after) = v6.split_once(']')?;
                if inside.is_empty()
                    || !inside
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                {
                    return None;
                }
                (&rest[..inside.len() + 2], after)
            }
            None => match rest.find(':') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            },
        };
        let host_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if host.is_empty() || (!host.starts_with('[') && !host.chars().all(host_ok)) {
            return None;
        }
        if !port.is_empty() {
            let digits = port.strip_prefix(':')?;
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
        }
        // The grammar is strict; the normaliser is the one allowlist entries go through.
        Self::from_url(&Url::parse(text).ok()?)
    }

    fn from_url(url: &Url) -> Option<Self> {
        let host = url.host_str().filter(|h| !h.is_empty())?;
        let mut out = format!("{}://{}", url.scheme(), host.to_ascii_lowercase());
        // `port()` is already `None` for a special scheme's default port (80, 443).
        if let Some(port) = url.port() {
            out.push_str(&format!(":{port}"));
        }
        Some(Self(out))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a request's `Origin` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginProblem {
    /// No `Origin` header and the route requires one.
    Missing,
    /// Not a serialised origin (several headers, a path, non-ASCII, ...).
    Malformed,
    /// A well-formed origin (or `null`) that is not on the list; the normalised value, capped
    /// in length, is kept for the log line.
    NotAllowed(String),
}

/// A route's compiled origin rule.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    any: bool,
    allow_missing: bool,
    allowed: HashSet<Origin>,
}

impl OriginPolicy {
    /// Compiles validated allowlist entries; the error names the index of a bad entry.
    pub fn new(
        entries: &[String],
        allow_any: bool,
        allow_missing: bool,
    ) -> Result<Self, (usize, String)> {
        let allowed = entries
            .iter()
            .enumerate()
            .map(|(i, e)| Origin::parse_allowlist_entry(e).map_err(|p| (i, p)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            any: allow_any,
            allow_missing,
            allowed,
        })
    }

    /// Checks the request's `Origin` header(s).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), OriginProblem> {
        if self.any {
            return Ok(());
        }
        let mut values = headers.get_all(header::ORIGIN).iter();
        let Some(value) = values.next() else {
            return if self.allow_missing {
                Ok(())
            } else {
                Err(OriginProblem::Missing)
            };
        };
        if values.next().is_some() {
            return Err(OriginProblem::Malformed);
        }
        if value.as_bytes() == b"null" {
            return Err(OriginProblem::NotAllowed("null".into()));
        }
        let origin = Origin::parse_header(value.as_bytes()).ok_or(OriginProblem::Malformed)?;
        if self.allowed.contains(&origin) {
            Ok(())
        } else {
            // The normalised origin is ASCII, so any byte index is a char boundary.
            let mut shown = origin.0;
            shown.truncate(120);
            Err(OriginProblem::NotAllowed(shown))
        }
    }
}

#[cfg(test)]
#[path = "origin_tests.rs"]
mod tests;
