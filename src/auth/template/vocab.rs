//! The placeholder vocabulary ([`Var`]), the names a route declares ([`Known`]) and the values
//! one connection supplies ([`Values`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::RenderError;
use super::valid_name;
use crate::secret::Secret;

/// One placeholder of the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Var {
    AccessToken,
    SessionToken,
    Uuid,
    Step(String, String),
    Query(String),
}

impl Var {
    pub(super) fn parse(name: &str) -> Option<Var> {
        let segments: Vec<&str> = name.split('.').collect();
        Some(match segments.as_slice() {
            ["oauth", "access_token"] => Var::AccessToken,
            ["session", "token"] => Var::SessionToken,
            ["uuid"] => Var::Uuid,
            ["steps", step, value] if valid_name(step) && valid_name(value) => {
                Var::Step((*step).to_owned(), (*value).to_owned())
            }
            ["query", param] if valid_name(param) => Var::Query((*param).to_owned()),
            _ => return None,
        })
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::AccessToken => f.write_str("{{oauth.access_token}}"),
            Var::SessionToken => f.write_str("{{session.token}}"),
            Var::Uuid => f.write_str("{{uuid}}"),
            Var::Step(step, value) => write!(f, "{{{{steps.{step}.{value}}}}}"),
            Var::Query(param) => write!(f, "{{{{query.{param}}}}}"),
        }
    }
}

/// The placeholder names a route provides, for [`Template::check`](super::Template::check). `uuid` is always known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    oauth: bool,
    session: bool,
    steps: BTreeMap<String, BTreeSet<String>>,
    query: BTreeSet<String>,
}

impl Known {
    /// Nothing but `uuid`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares `oauth.access_token` (the route has an `oauth` section).
    pub fn with_oauth(mut self) -> Self {
        self.oauth = true;
        self
    }

    /// Declares `session.token` (the route has a session token).
    pub fn with_session_token(mut self) -> Self {
        self.session = true;
        self
    }

    /// Declares `steps.<step>.<value>` for each value the step extracts.
    pub fn add_step<I, S>(&mut self, step: &str, values: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let entry = self.steps.entry(step.to_owned()).or_default();
        entry.extend(values.into_iter().map(Into::into));
    }

    /// Declares `query.<param>`.
    pub fn add_query(&mut self, param: &str) {
        self.query.insert(param.to_owned());
    }

    pub(super) fn knows(&self, var: &Var) -> bool {
        match var {
            Var::AccessToken => self.oauth,
            Var::SessionToken => self.session,
            Var::Uuid => true,
            Var::Step(step, value) => self.steps.get(step).is_some_and(|v| v.contains(value)),
            Var::Query(param) => self.query.contains(param),
        }
    }
}

/// The values of one connection. `Debug` shows which are set, never what they are.
#[derive(Clone, Default)]
pub struct Values {
    access_token: Option<Secret>,
    session_token: Option<Secret>,
    steps: BTreeMap<(String, String), Secret>,
    query: HashMap<String, String>,
}

impl Values {
    /// No values; `uuid` still renders.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `oauth.access_token`.
    pub fn set_access_token(&mut self, token: Secret) {
        self.access_token = Some(token);
    }

    /// Sets `session.token`.
    pub fn set_session_token(&mut self, token: Secret) {
        self.session_token = Some(token);
    }

    /// `session.token`, if set.
    pub fn session_token(&self) -> Option<&Secret> {
        self.session_token.as_ref()
    }

    /// Sets `steps.<step>.<value>`.
    pub fn set_step_value(&mut self, step: &str, value: &str, v: Secret) {
        self.steps.insert((step.to_owned(), value.to_owned()), v);
    }

    /// `steps.<step>.<value>`, if set.
    pub fn step_value(&self, step: &str, value: &str) -> Option<&Secret> {
        self.steps.get(&(step.to_owned(), value.to_owned()))
    }

    /// Sets every `query.<param>`, replacing earlier ones; takes [`extract_query`](super::extract_query)'s result.
    pub fn set_query(&mut self, query: HashMap<String, String>) {
        self.query = query;
    }

    pub(super) fn get(&self, var: &Var, uuid: &mut Option<String>) -> Result<String, RenderError> {
        let found = match var {
            Var::AccessToken => self.access_token.as_ref().map(|s| s.expose().to_owned()),
            Var::SessionToken => self.session_token.as_ref().map(|s| s.expose().to_owned()),
            Var::Uuid => Some(
                uuid.get_or_insert_with(|| uuid::Uuid::new_v4().to_string())
                    .clone(),
            ),
            Var::Step(step, value) => self
                .steps
                .get(&(step.clone(), value.clone()))
                .map(|s| s.expose().to_owned()),
            Var::Query(param) => self.query.get(param).cloned(),
        };
        found.ok_or_else(|| RenderError::Missing {
            placeholder: var.to_string(),
        })
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self.steps.keys().map(|(s, v)| format!("{s}.{v}")).collect();
        let mut query: Vec<&String> = self.query.keys().collect();
        query.sort();
        f.debug_struct("Values")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("steps", &steps)
            .field("query", &query)
            .finish()
    }
}
