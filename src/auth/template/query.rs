//! The browser query-parameter allowlist: which `query.*` values a route accepts, and how a
//! browser's raw query string is checked against it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::valid_name;

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
mod tests {
    //! Tests for the query allowlist.

    use super::*;

    #[test]
    fn charsets() {
        assert!(Charset::Uuid.allows("0f8fad5b-d9cb-469f-A165-70867728950e"));
        assert!(!Charset::Uuid.allows("0f8fad5bd9cb469fa16570867728950e"));
        assert!(!Charset::Uuid.allows("0f8fad5b-d9cb-469f-a165-70867728950g"));
        assert!(Charset::Alnum.allows("abcXYZ019"));
        assert!(!Charset::Alnum.allows("a-b"));
        assert!(Charset::Token.allows("a-b_c.d~e"));
        assert!(!Charset::Token.allows("a b"));
        assert!(!Charset::Token.allows("é"));
    }

    #[test]
    fn extract_query_applies_allowlist() {
        let allow = [
            QueryParam::new("lang", Charset::Alnum),
            QueryParam {
                max_len: 4,
                ..QueryParam::new("tag", Charset::Token)
            },
        ];
        let got = extract_query(&allow, Some("lang=en&other=%3Cscript%3E&tag=a.b")).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["lang"], "en");
        assert_eq!(got["tag"], "a.b");
        assert!(extract_query(&allow, None).unwrap().is_empty());

        let err = extract_query(&allow, Some("tag=abcde")).unwrap_err();
        assert_eq!(
            err,
            QueryError::TooLong {
                name: "tag".into(),
                max_len: 4
            }
        );
        let err = extract_query(&allow, Some("lang=e%26n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "query parameter lang: not a valid alnum value"
        );
        assert!(!err.to_string().contains("e&n"));
        assert!(matches!(
            extract_query(&allow, Some("lang=en&lang=fr")),
            Err(QueryError::Duplicate { .. })
        ));
        assert!(matches!(
            extract_query(&allow, Some("lang=")),
            Err(QueryError::Empty { .. })
        ));
    }

    #[test]
    fn query_param_config() {
        let p: QueryParam = toml::from_str("name = \"lang\"").unwrap();
        assert_eq!(p, QueryParam::new("lang", Charset::Token));
        assert!(toml::from_str::<QueryParam>("name = \"x\"\nregex = \".*\"").is_err());
        let bad = [
            QueryParam::new("a.b", Charset::Token),
            QueryParam {
                max_len: 10,
                ..QueryParam::new("id", Charset::Uuid)
            },
            QueryParam::new("a.b", Charset::Alnum),
        ];
        let err = validate_query_params(&bad, "routes[0].query").unwrap_err();
        assert!(err.contains("routes[0].query[0].name:"), "{err}");
        assert!(
            err.contains("routes[0].query[1].max_len: must be at least 36"),
            "{err}"
        );
        assert!(
            err.contains("routes[0].query[2].name: \"a.b\" is listed twice"),
            "{err}"
        );
        assert!(validate_query_params(&[QueryParam::new("lang", Charset::Alnum)], "q").is_ok());
    }
}
