//! JSON-document templates: a JSON value whose string leaves are [`Template`]s.

use serde_json::Value;

use super::text::{Context, Template};
use super::vocab::{Known, Values};
use super::{RenderError, TemplateError};

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
