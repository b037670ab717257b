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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Secret;

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

/// One placeholder of the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Var {
    AccessToken,
    SessionToken,
    Uuid,
    Step(String, String),
    Query(String),
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
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

/// Why a template was refused at config load. Names come from the config, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{{` with no `}}` after it.
    #[error("unclosed placeholder: `{{{{` at byte {at} has no `}}}}`")]
    Unclosed {
        /// Byte offset of the `{{` in the template (or in the JSON leaf holding it).
        at: usize,
    },
    /// Placeholders outside the vocabulary.
    #[error(
        "unknown placeholder(s) {}; allowed are {{{{oauth.access_token}}}}, {{{{session.token}}}}, {{{{uuid}}}}, {{{{steps.<step>.<value>}}}} and {{{{query.<param>}}}}",
        list(names)
    )]
    Unknown {
        /// The names as written, without braces.
        names: Vec<String>,
    },
    /// Placeholders of the vocabulary that this route does not provide.
    #[error(
        "undeclared placeholder(s) {}: step values must be extracted by an earlier step, query parameters allowlisted by the route, oauth.access_token needs an oauth section and session.token a session token",
        names.join(", ")
    )]
    Undeclared {
        /// The placeholders, with braces.
        names: Vec<String>,
    },
}

fn list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{{{{{n:?}}}}}")).collect();
    quoted.join(", ")
}

/// Why a template could not be rendered. Names the placeholder, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// This connection has no value for the placeholder (e.g. an optional query parameter
    /// the browser did not send).
    #[error("no value for {placeholder}")]
    Missing {
        /// The placeholder, with braces.
        placeholder: String,
    },
    /// The value cannot go in this context: control characters in a header, or a value of
    /// only dots (a `..` path segment) in a URL.
    #[error("the value of {placeholder} cannot be used here")]
    Unsafe {
        /// The placeholder, with braces.
        placeholder: String,
    },
}

/// The placeholder names a route provides, for [`Template::check`]. `uuid` is always known.
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

    fn knows(&self, var: &Var) -> bool {
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

    /// Sets every `query.<param>`, replacing earlier ones; takes [`extract_query`]'s result.
    pub fn set_query(&mut self, query: HashMap<String, String>) {
        self.query = query;
    }

    fn get(&self, var: &Var, uuid: &mut Option<String>) -> Result<String, RenderError> {
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

/// How substituted values are treated in one output context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Verbatim,
    Header,
    Url,
    JsonString,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(Var),
}

/// A parsed template. `Display` shows the source text (placeholders, no values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `src`, listing every placeholder outside the vocabulary.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut unknown = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                let at = src.len() - rest.len() + open;
                return Err(TemplateError::Unclosed { at });
            };
            let name = after[..close].trim();
            match Var::parse(name) {
                Some(var) => parts.push(Part::Var(var)),
                None => unknown.push(name.to_owned()),
            }
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        if !unknown.is_empty() {
            return Err(TemplateError::Unknown { names: unknown });
        }
        Ok(Template {
            source: src.to_owned(),
            parts,
        })
    }

    /// Parses `src` and [checks](Template::check) it against `known`.
    pub fn parse_checked(src: &str, known: &Known) -> Result<Template, TemplateError> {
        let template = Self::parse(src)?;
        template.check(known)?;
        Ok(template)
    }

    /// Lists every placeholder the route does not provide.
    pub fn check(&self, known: &Known) -> Result<(), TemplateError> {
        let mut names = Vec::new();
        self.undeclared(known, &mut names);
        if names.is_empty() {
            Ok(())
        } else {
            Err(TemplateError::Undeclared { names })
        }
    }

    fn undeclared(&self, known: &Known, names: &mut Vec<String>) {
        for part in &self.parts {
            if let Part::Var(var) = part {
                let name = var.to_string();
                if !known.knows(var) && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template has no placeholders.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// For URL templates: checks that the scheme (one of `schemes`) and the host are literal,
    /// with placeholders only after the first `/`, `?` or `#` that follows the host, so no
    /// value can choose where the request goes. Returns `scheme://host[:port]/`.
    pub fn fixed_origin(&self, schemes: &[&str]) -> Result<url::Url, String> {
        let prefix = match self.parts.first() {
            Some(Part::Lit(lit)) => lit.as_str(),
            _ => "",
        };
        let Some((scheme, rest)) = prefix.split_once("://") else {
            return Err("must start with a literal scheme://host".to_owned());
        };
        if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
            return Err(format!("the scheme must be one of {}", schemes.join(", ")));
        }
        let authority = match rest.find(['/', '?', '#']) {
            Some(end) => &rest[..end],
            None if self.parts.len() == 1 => rest,
            None => return Err("the host must be literal, not from a placeholder".to_owned()),
        };
        if authority.contains('@') {
            return Err("must not contain credentials".to_owned());
        }
        let origin = url::Url::parse(&format!("{scheme}://{authority}/"))
            .map_err(|e| format!("is not a valid url ({e})"))?;
        if origin.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".to_owned());
        }
        Ok(origin)
    }

    /// Renders with values inserted as they are. Use only where the result is checked
    /// afterwards; prefer a context-specific variant.
    pub fn render(&self, values: &Values) -> Result<String, RenderError> {
        self.render_in(values, &mut None, Context::Verbatim)
    }

    /// Renders a header value: values with control characters (CR, LF, NUL...) are refused.
    pub fn render_header(&self, values: &Values) -> Result<String, RenderError> {
        self.render_in(values, &mut None, Context::Header)
    }

    /// Renders a URL: every value byte outside `A-Z a-z 0-9 - . _ ~` is percent-encoded, so a
    /// value cannot add a path segment, query parameter or fragment; a value of only dots
    /// (`.`, `..`) is refused since URL parsing would resolve it as a path segment.
    pub fn render_url(&self, values: &Values) -> Result<String, RenderError> {
        self.render_in(values, &mut None, Context::Url)
    }

    /// Renders into the inside of a JSON string (e.g. a hello frame written as JSON text):
    /// values are JSON-escaped, so quotes and backslashes cannot end the string.
    pub fn render_json_string(&self, values: &Values) -> Result<String, RenderError> {
        self.render_in(values, &mut None, Context::JsonString)
    }

    fn render_in(
        &self,
        values: &Values,
        uuid: &mut Option<String>,
        ctx: Context,
    ) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            let var = match part {
                Part::Lit(lit) => {
                    out.push_str(lit);
                    continue;
                }
                Part::Var(var) => var,
            };
            let value = values.get(var, uuid)?;
            let unsafe_value = match ctx {
                Context::Header => value.chars().any(char::is_control),
                Context::Url => !value.is_empty() && value.bytes().all(|b| b == b'.'),
                Context::Verbatim | Context::JsonString => false,
            };
            if unsafe_value {
                return Err(RenderError::Unsafe {
                    placeholder: var.to_string(),
                });
            }
            match ctx {
                Context::Verbatim | Context::Header => out.push_str(&value),
                Context::Url => percent_encode(&value, &mut out),
                Context::JsonString => {
                    let quoted = Value::String(value).to_string();
                    out.push_str(&quoted[1..quoted.len() - 1]);
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Percent-encodes every byte but RFC 3986 unreserved ones.
fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A JSON document whose string leaves are templates (object keys are literal), e.g. a step's
/// request body. One `{{uuid}}` value is shared by the whole document per render.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonTemplate {
    source: Value,
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Lit(Value),
    Str(Template),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl JsonTemplate {
    /// Parses every string leaf, listing every unknown placeholder in the document.
    pub fn parse(source: &Value) -> Result<JsonTemplate, TemplateError> {
        let mut unknown = Vec::new();
        let root = Node::parse(source, &mut unknown)?;
        if !unknown.is_empty() {
            return Err(TemplateError::Unknown { names: unknown });
        }
        Ok(JsonTemplate {
            source: source.clone(),
            root,
        })
    }

    /// Lists every placeholder in the document that the route does not provide.
    pub fn check(&self, known: &Known) -> Result<(), TemplateError> {
        let mut names = Vec::new();
        self.root.undeclared(known, &mut names);
        if names.is_empty() {
            Ok(())
        } else {
            Err(TemplateError::Undeclared { names })
        }
    }

    /// The document as written.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Renders the document; values become JSON strings, escaped by serialization.
    pub fn render(&self, values: &Values) -> Result<Value, RenderError> {
        self.root.render(values, &mut None)
    }
}

impl Node {
    fn parse(v: &Value, unknown: &mut Vec<String>) -> Result<Node, TemplateError> {
        Ok(match v {
            Value::String(s) => match Template::parse(s) {
                Ok(t) if t.is_literal() => Node::Lit(v.clone()),
                Ok(t) => Node::Str(t),
                Err(TemplateError::Unknown { names }) => {
                    unknown.extend(names);
                    Node::Lit(Value::Null)
                }
                Err(e) => return Err(e),
            },
            Value::Array(items) => Node::Array(
                items
                    .iter()
                    .map(|i| Node::parse(i, unknown))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Node::Object(
                map.iter()
                    .map(|(k, i)| Ok((k.clone(), Node::parse(i, unknown)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            _ => Node::Lit(v.clone()),
        })
    }

    fn undeclared(&self, known: &Known, names: &mut Vec<String>) {
        match self {
            Node::Lit(_) => {}
            Node::Str(t) => t.undeclared(known, names),
            Node::Array(items) => items.iter().for_each(|i| i.undeclared(known, names)),
            Node::Object(fields) => fields.iter().for_each(|(_, i)| i.undeclared(known, names)),
        }
    }

    fn render(&self, values: &Values, uuid: &mut Option<String>) -> Result<Value, RenderError> {
        Ok(match self {
            Node::Lit(v) => v.clone(),
            Node::Str(t) => Value::String(t.render_in(values, uuid, Context::Verbatim)?),
            Node::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| i.render(values, uuid))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, i)| Ok((k.clone(), i.render(values, uuid)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }
}

/// The default `max_len` of an allowlisted query parameter.
pub const DEFAULT_QUERY_MAX_LEN: usize = 128;
/// The largest `max_len` accepted.
pub const MAX_QUERY_LEN: usize = 1024;

/// The characters an allowlisted query value may hold: a fixed grammar instead of a regex.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    /// A hyphenated UUID, `8-4-4-4-12` hex digits of either case (36 characters).
    Uuid,
    /// `A-Z a-z 0-9`.
    Alnum,
    /// `A-Z a-z 0-9 - _ . ~` (URL-unreserved characters).
    #[default]
    Token,
}

impl Charset {
    /// Whether `value` is in this charset (length is checked separately).
    pub fn allows(self, value: &str) -> bool {
        let b = value.as_bytes();
        match self {
            Charset::Uuid => {
                b.len() == 36
                    && b.iter().enumerate().all(|(i, c)| match i {
                        8 | 13 | 18 | 23 => *c == b'-',
                        _ => c.is_ascii_hexdigit(),
                    })
            }
            Charset::Alnum => b.iter().all(u8::is_ascii_alphanumeric),
            Charset::Token => b
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~')),
        }
    }

    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Charset::Uuid => "uuid",
            Charset::Alnum => "alnum",
            Charset::Token => "token",
        }
    }
}

/// One browser query parameter a route allowlists for `{{query.<name>}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParam {
    /// The parameter name ([`valid_name`] grammar).
    pub name: String,
    /// Longest accepted value, in bytes (1 to [`MAX_QUERY_LEN`]).
    #[serde(default = "default_query_max_len")]
    pub max_len: usize,
    /// The characters the value may hold.
    #[serde(default)]
    pub charset: Charset,
}

fn default_query_max_len() -> usize {
    DEFAULT_QUERY_MAX_LEN
}

impl QueryParam {
    /// A parameter with the default `max_len`.
    pub fn new(name: impl Into<String>, charset: Charset) -> Self {
        Self {
            name: name.into(),
            max_len: DEFAULT_QUERY_MAX_LEN,
            charset,
        }
    }

    /// Checks one entry; problems are `; `-separated and prefixed with `{key_prefix}.`.
    pub fn validate(&self, key_prefix: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        if !valid_name(&self.name) {
            problems.push(format!(
                "{key_prefix}.name: must be 1 to 64 characters from A-Z a-z 0-9 _ -"
            ));
        }
        if self.max_len == 0 || self.max_len > MAX_QUERY_LEN {
            problems.push(format!(
                "{key_prefix}.max_len: must be between 1 and {MAX_QUERY_LEN}"
            ));
        } else if self.charset == Charset::Uuid && self.max_len < 36 {
            problems.push(format!(
                "{key_prefix}.max_len: must be at least 36 for charset \"uuid\""
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Checks an allowlist (`key_prefix` like `routes[0].query`): every entry, and no name twice.
pub fn validate_query_params(allow: &[QueryParam], key_prefix: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    for (i, param) in allow.iter().enumerate() {
        if let Err(e) = param.validate(&format!("{key_prefix}[{i}]")) {
            problems.push(e);
        }
        if allow[..i].iter().any(|p| p.name == param.name) {
            problems.push(format!(
                "{key_prefix}[{i}].name: {:?} is listed twice",
                param.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Why a browser's query was refused. Names the parameter, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The value is longer than `max_len`.
    #[error("query parameter {name}: longer than {max_len} bytes")]
    TooLong {
        /// The parameter.
        name: String,
        /// Its limit.
        max_len: usize,
    },
    /// The value has characters outside the charset.
    #[error("query parameter {name}: not a valid {} value", charset.as_str())]
    Charset {
        /// The parameter.
        name: String,
        /// Its charset.
        charset: Charset,
    },
    /// The value is empty.
    #[error("query parameter {name}: empty")]
    Empty {
        /// The parameter.
        name: String,
    },
    /// The parameter appears more than once (ambiguous, so refused).
    #[error("query parameter {name}: given more than once")]
    Duplicate {
        /// The parameter.
        name: String,
    },
}

/// The allowlisted parameters of a browser's raw (still percent-encoded) query string,
/// decoded. Parameters not in the allowlist are ignored; allowlisted ones that are absent are
/// simply missing from the map (a template naming one then fails to render).
pub fn extract_query(
    allow: &[QueryParam],
    raw_query: Option<&str>,
) -> Result<HashMap<String, String>, QueryError> {
    let mut found = HashMap::new();
    let Some(raw) = raw_query else {
        return Ok(found);
    };
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let Some(param) = allow.iter().find(|p| p.name == name) else {
            continue;
        };
        let name = param.name.clone();
        if found.contains_key(&name) {
            return Err(QueryError::Duplicate { name });
        }
        if value.is_empty() {
            return Err(QueryError::Empty { name });
        }
        if value.len() > param.max_len {
            let max_len = param.max_len;
            return Err(QueryError::TooLong { name, max_len });
        }
        if !param.charset.allows(&value) {
            let charset = param.charset;
            return Err(QueryError::Charset { name, charset });
        }
        found.insert(name, value.into_owned());
    }
    Ok(found)
}

#[cfg(test)]
mod tests;
