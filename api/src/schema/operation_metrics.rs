//! Request metrics labelled from async-graphql's own parse of the operation (no second
//! parser on the hot path): the operation type and its root field, and for mutations each
//! root field's outcome. An operation that did not parse or validate is `invalid`, so the
//! labels stay the schema's root fields and cannot be made up by a client.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use async_graphql::{Response, ServerResult, Variables};

use crate::metrics;

pub struct OperationMetrics;

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Observed::default())
    }
}

/// One request as it goes: the operations its document holds, then the one executed.
#[derive(Default)]
struct Observed {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    operations: Vec<Operation>,
    /// Set when execution began (the document parsed and validated), with the name asked for.
    executed: Option<Option<String>>,
}

struct Operation {
    name: Option<String>,
    kind: &'static str,
    /// (response key, field name) of each root field.
    fields: Vec<(String, String)>,
}

impl Seen {
    /// The executed operation: the named one, or the document's only one.
    fn executed(&self) -> Option<&Operation> {
        match self.executed.as_ref()? {
            Some(name) => self.operations.iter().find(|op| op.name.as_deref() == Some(name.as_str())),
            None => match self.operations.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
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

#[async_trait::async_trait]
impl Extension for Observed {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        record(seen.executed(), &response, started.elapsed());
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).operations = operations(&document);
        Ok(document)
    }

    async fn execute(&self, ctx: &ExtensionContext<'_>, operation_name: Option<&str>, next: NextExecute<'_>) -> Response {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).executed = Some(operation_name.map(str::to_owned));
        next.run(ctx, operation_name).await
    }
}
