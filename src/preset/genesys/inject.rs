//! The browser-message rewrite of the Genesys preset: a page sends Genesys requests without
//! `token`; guestgate checks `action` against the route's allowlist and inserts the session
//! token the page never sees.
//!
//! Only the top level of a request is parsed: each field's value stays a borrowed
//! [`RawValue`] (its bytes in the message, checked as JSON but not built into a tree) and is
//! copied verbatim into the rewritten request. So a hostile value (a huge `[0,0,...]` array, a
//! deep nesting) costs about its own size, not a `serde_json::Value` per element. At most
//! [`MAX_FIELDS`] top-level fields are accepted, which bounds the field list too.
//!
//! The rewritten request is the page's fields in order, minus every `token` field the page
//! sent (the page can never choose the token, not even through a duplicate key or an escaped
//! spelling such as `"tok\u0065n"`), followed by guestgate's `token`. A request with two
//! `action` fields, or any other repeated field, is refused: parsers disagree on which copy
//! wins, and the allowlist must judge the one Genesys acts on.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::GenesysConfig;
use crate::relay::MessageTransform;

/// The most top-level fields a browser request may have. Genesys requests have a handful
/// (`action`, `message`, `tracingId`, ...).
pub const MAX_FIELDS: usize = 32;

impl GenesysConfig {
    /// The browser-message rewrite: only allowed actions, session token inserted.
    pub fn transform(&self, token: &str) -> Box<dyn MessageTransform> {
        Box::new(InjectToken {
            token_json: serde_json::to_string(token).expect("a string serialises"),
            allowed: self.allowed_actions.clone(),
        })
    }
}

/// Inserts the session token into every browser request and enforces the action allowlist.
struct InjectToken {
    /// The session token as a JSON string literal, quotes included.
    token_json: String,
    allowed: Vec<String>,
}

impl MessageTransform for InjectToken {
    fn transform(&mut self, opcode: u8, message: &[u8]) -> Result<Vec<u8>, &'static str> {
        let request = Request::parse(opcode, message)?;
        if !self.allowed.contains(&request.action) {
            return Err("action not allowed");
        }
        Ok(request.with_token(&self.token_json))
    }
}

/// A browser request checked for shape: a JSON object with one string `action` and no
/// repeated field (but `token`, which is dropped anyway).
pub(crate) struct Request<'a> {
    /// The request's `action`.
    pub action: String,
    fields: Vec<(String, &'a RawValue)>,
    size: usize,
}

impl<'a> Request<'a> {
    /// Parses the top level of a browser message (see the module docs for what is refused).
    pub fn parse(opcode: u8, message: &'a [u8]) -> Result<Self, &'static str> {
        if opcode != 1 {
            return Err("only JSON text messages are allowed");
        }
        // Anything but an object is refused before any parsing.
        if message.trim_ascii_start().first() != Some(&b'{') {
            return Err("message must be a JSON object");
        }
        let Fields(fields) = serde_json::from_slice(message).map_err(|e| {
            if e.is_data() {
                "message has too many fields"
            } else {
                "message is not valid JSON"
            }
        })?;
        let mut action = None;
        for (i, (name, value)) in fields.iter().enumerate() {
            if fields[..i].iter().any(|(earlier, _)| earlier == name) && name != "token" {
                return Err("message repeats a field");
            }
            if name == "action" {
                action = Some(*value);
            }
        }
        let action = action.ok_or("message has no action")?;
        let action =
            serde_json::from_str::<String>(action.get()).map_err(|_| "message has no action")?;
        Ok(Request {
            action,
            fields,
            size: message.len(),
        })
    }

    /// A field's raw JSON value.
    pub fn field(&self, name: &str) -> Option<&'a RawValue> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The page's fields (but any `token`) copied verbatim, then guestgate's `token`, given as
    /// a JSON string literal with its quotes.
    pub fn with_token(&self, token_json: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size + token_json.len() + 16);
        out.push(b'{');
        for (name, value) in self.fields.iter().filter(|(name, _)| name != "token") {
            serde_json::to_writer(&mut out, name).expect("writing to a Vec cannot fail");
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
            out.push(b',');
        }
        out.extend_from_slice(b"\"token\":");
        out.extend_from_slice(token_json.as_bytes());
        out.push(b'}');
        out
    }
}

/// A request's top-level fields in order: names unescaped, values raw.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de> de::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON object with at most {MAX_FIELDS} fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if fields.len() == MAX_FIELDS {
                return Err(de::Error::custom("too many fields"));
            }
            let value: &'de RawValue = map.next_value()?;
            fields.push((name, value));
        }
        Ok(Fields(fields))
    }
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
