//! One scenario's outcome: named figures plus the bounds that did not hold.

use serde_json::{Map, Value};

/// Figures and failed checks of one scenario.
#[derive(Debug, Default)]
pub struct Report {
    figures: Map<String, Value>,
    problems: Vec<String>,
}

impl Report {
    /// An empty, passing report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a figure.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_owned(), value.into());
    }

    /// Records a bound that did not hold.
    pub fn fail(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// Fails with `problem` unless `ok`.
    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.fail(problem());
        }
    }

    /// Whether every check held.
    pub fn pass(&self) -> bool {
        self.problems.is_empty()
    }

    /// The JSON line printed for the scenario.
    pub fn to_json(&self, scenario: &str) -> String {
        let mut out = Map::new();
        out.insert("scenario".into(), scenario.into());
        out.insert("pass".into(), self.pass().into());
        out.insert("problems".into(), self.problems.clone().into());
        for (k, v) in &self.figures {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out).to_string()
    }
}
