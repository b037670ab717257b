//! String templates: parse `{{name}}` placeholders, check them against a route, and render
//! them into one output context (verbatim, header, URL or JSON string).

use std::fmt;

use serde_json::Value;

use super::vocab::{Known, Values, Var};
use super::{RenderError, TemplateError};

/// How substituted values are treated in one output context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Context {
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

    pub(super) fn undeclared(&self, known: &Known, names: &mut Vec<String>) {
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

    pub(super) fn render_in(
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
