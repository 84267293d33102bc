//! Request metrics labelled from async-graphql's own parse of the operation (no second
//! parser on the hot path): the operation type and its root field, and for mutations each
//! root field's outcome. An operation that did not parse or validate is `invalid`, so the
//! labels stay the schema's root fields and cannot be made up by a client.

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use async_graphql::Response;

use crate::metrics;

/// The operations a parsed document holds, and the one the request asks for by name.
pub(super) struct Seen {
    operations: Vec<Operation>,
    name: Option<String>,
}

struct Operation {
    name: Option<String>,
    kind: &'static str,
    /// (response key, field name) of each root field.
    fields: Vec<(String, String)>,
}

impl Seen {
    pub(super) fn of(document: &ExecutableDocument, operation_name: Option<&str>) -> Seen {
        Seen {
            operations: operations(document),
            name: operation_name.map(str::to_owned),
        }
    }

    /// The operation that ran: the named one, or the document's only one; none when the
    /// response shows that nothing ran (validation refused it: its errors have no path).
    fn executed(&self, response: &Response) -> Option<&Operation> {
        let ran = response.data != async_graphql::Value::Null || response.errors.iter().any(|e| !e.path.is_empty());
        if !ran {
            return None;
        }
        match &self.name {
            Some(name) => self.operations.iter().find(|op| op.name.as_deref() == Some(name.as_str())),
            None => match self.operations.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }

    /// Counts a finished request (a refused one has no `Seen`: `invalid`).
    pub(super) fn record(seen: Option<&Seen>, response: &Response, elapsed: std::time::Duration) {
        record(seen.and_then(|seen| seen.executed(response)), response, elapsed);
    }
}

fn operations(document: &ExecutableDocument) -> Vec<Operation> {
    document
        .operations
        .iter()
        .map(|(name, op)| Operation {
            name: name.map(|n| n.to_string()),
            kind: match op.node.ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            },
            fields: op
                .node
                .selection_set
                .node
                .items
                .iter()
                .filter_map(|item| match &item.node {
                    Selection::Field(field) => Some((field.node.response_key().node.to_string(), field.node.name.node.to_string())),
                    _ => None,
                })
                .collect(),
        })
        .collect()
}

fn record(operation: Option<&Operation>, response: &Response, elapsed: std::time::Duration) {
    let Some(operation) = operation else {
        metrics::request("invalid", "none", false, elapsed);
        return;
    };
    let label = match operation.fields.as_slice() {
        [] => "none",
        [(_, name)] => name.as_str(),
        _ => "multiple",
    };
    metrics::request(operation.kind, label, response.errors.is_empty(), elapsed);
    if operation.kind != "mutation" {
        return;
    }
    for (key, name) in &operation.fields {
        let error = response
            .errors
            .iter()
            .find(|e| matches!(e.path.first(), Some(async_graphql::PathSegment::Field(f)) if f == key));
        let outcome = error
            .and_then(|e| e.extensions.as_ref())
            .and_then(|x| x.get("code"))
            .and_then(|code| match code {
                async_graphql::Value::String(code) => Some(code.as_str()),
                _ => None,
            })
            .unwrap_or(if error.is_some() { "INTERNAL_SERVER_ERROR" } else { "ok" });
        metrics::command(name, outcome);
    }
}
