//! The browser-message rewrite of the Genesys preset: a page sends Genesys requests without
//! `token`; guestgate checks `action` against the route's allowlist and inserts the session
//! token the page never sees.

use serde_json::Value;

use super::GenesysConfig;
use crate::relay::MessageTransform;

impl GenesysConfig {
    /// The browser-message rewrite: only allowed actions, session token inserted.
    pub fn transform(&self, token: &str) -> Box<dyn MessageTransform> {
        Box::new(InjectToken {
            token: Value::String(token.to_owned()),
            allowed: self.allowed_actions.clone(),
        })
    }
}

/// Inserts the session token into every browser request and enforces the action allowlist.
struct InjectToken {
    token: Value,
    allowed: Vec<String>,
}

impl MessageTransform for InjectToken {
    fn transform(&mut self, opcode: u8, message: &[u8]) -> Result<Vec<u8>, &'static str> {
        if opcode != 1 {
            return Err("only JSON text messages are allowed");
        }
        let mut request: Value =
            serde_json::from_slice(message).map_err(|_| "message is not valid JSON")?;
        let Value::Object(fields) = &mut request else {
            return Err("message must be a JSON object");
        };
        match fields.get("action").and_then(Value::as_str) {
            Some(action) if self.allowed.iter().any(|a| a == action) => {}
            Some(_) => return Err("action not allowed"),
            None => return Err("message has no action"),
        }
        fields.insert("token".into(), self.token.clone());
        Ok(serde_json::to_vec(&request).expect("a JSON value serialises"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::*;

    #[test]
    fn token_is_injected_and_actions_are_limited() {
        let mut t = config().transform("secret-session-token");
        let out = t
            .transform(
                1,
                br#"{"action":"onMessage","message":{"type":"Text","text":"hi"}}"#,
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["token"], "secret-session-token");
        assert_eq!(v["message"]["text"], "hi");
        // A page cannot choose its own token either: it is overwritten.
        let out = t
            .transform(1, br#"{"action":"echo","token":"page-chosen"}"#)
            .unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("secret-session-token")
        );
        assert_eq!(
            t.transform(1, br#"{"action":"getJwt"}"#),
            Err("action not allowed")
        );
        assert_eq!(
            t.transform(1, br#"{"action":"configureSession"}"#),
            Err("action not allowed")
        );
        assert_eq!(
            t.transform(2, b"{}"),
            Err("only JSON text messages are allowed")
        );
        assert_eq!(t.transform(1, b"[1]"), Err("message must be a JSON object"));
    }
}
