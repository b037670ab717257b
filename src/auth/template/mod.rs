//! String templates with `{{name}}` placeholders, the per-connection [`Values`] they draw
//! from, and the browser query-parameter allowlist that feeds `query.*` values.
//!
//! A template may name only this closed vocabulary, checked when the config loads:
//!
//! | placeholder                 | value                                                   |
//! |-----------------------------|---------------------------------------------------------|
//! | `{{oauth.access_token}}`    | the route's OAuth access token                          |
//! | `{{session.token}}`         | this connection's upstream session token                |
//! | `{{uuid}}`                  | a fresh random UUID v4, one per render call             |
//! | `{{steps.<step>.<value>}}`  | a value an earlier step extracted                       |
//! | `{{query.<param>}}`         | a browser query parameter the route allowlists          |
//!
//! [`Template::parse`] rejects names outside that vocabulary; [`Template::check`] rejects
//! names the route does not declare ([`Known`]). Whitespace inside the braces is ignored and
//! `{{` always opens a placeholder (no escape: no flow needs a literal `{{`). Substituted
//! values are never re-scanned, so a value cannot smuggle in a placeholder.
//!
//! Each output context has its own render method, because the same value needs different
//! treatment in each: [`Template::render_url`] percent-encodes, [`Template::render_json_string`]
//! JSON-escapes, [`Template::render_header`] refuses control characters, and
//! [`JsonTemplate`] builds a JSON document whose string leaves are templates.
//!
//! Every value is treated as a secret: `Values`' `Debug` lists names, never values, and
//! render errors name the placeholder only.
//!
//! Query values pass a small fixed grammar instead of a user-written pattern (no regex
//! dependency): a length limit plus one of three character classes, see [`Charset`].
//!
//! One file per concern: `text` ([`Template`]), `vocab` (the vocabulary, [`Known`] and
//! [`Values`]), `error`, `json` ([`JsonTemplate`]) and `query` (the allowlist).

mod error;
mod json;
mod query;
mod text;
mod vocab;

pub use error::{RenderError, TemplateError};
pub use json::JsonTemplate;
pub use query::{
    Charset, DEFAULT_QUERY_MAX_LEN, MAX_QUERY_LEN, QueryError, QueryParam, extract_query,
    validate_query_params,
};
pub use text::Template;
pub use vocab::{Known, Values};

/// The longest step, value or query-parameter name.
const MAX_NAME_LEN: usize = 64;

/// Whether `s` is a valid step, value or query-parameter name: 1 to 64 characters from
/// `A-Z a-z 0-9 _ -`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests;
