//! Why a template was refused at config load ([`TemplateError`]) or could not be rendered
//! ([`RenderError`]).

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
