//! The pages' GraphQL documents (`api/web/graphql/*.graphql`) checked against the
//! server's schema with async-graphql's own validation (the rules every request passes,
//! depth and complexity limits included): a renamed or dropped field fails `cargo test`,
//! not a page in a browser.
//!
//! async-graphql keeps its validator to itself; an extension stops each request right
//! after the validation phase, so what comes back is validation's verdict alone and no
//! resolver runs (the schema has no database behind it).

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::parser::types::DocumentOperations;
use async_graphql::{Request, ServerError, ValidationResult};

/// The message that stands for "validation passed".
const VALID: &str = "cartsource: validation passed";

struct StopAfterValidation;

impl ExtensionFactory for StopAfterValidation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StopAfterValidation)
    }
}

#[async_trait::async_trait]
impl Extension for StopAfterValidation {
    async fn validation(&self, ctx: &ExtensionContext<'_>, next: NextValidation<'_>) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await?;
        Err(vec![ServerError::new(VALID, None)])
    }
}

/// The validation errors of each operation of `document`, by operation name.
async fn validate(document: &str) -> Vec<(String, Vec<String>)> {
    let schema = crate::schema::builder().extension(StopAfterValidation).finish();
    let parsed = match async_graphql::parser::parse_query(document) {
        Ok(parsed) => parsed,
        Err(e) => return vec![("(parse)".to_owned(), vec![e.to_string()])],
    };
    let names: Vec<String> = match &parsed.operations {
        DocumentOperations::Single(_) => vec![String::new()],
        DocumentOperations::Multiple(operations) => operations.keys().map(|n| n.to_string()).collect(),
    };
    let mut verdicts = Vec::new();
    for name in names {
        let mut request = Request::new(document);
        if !name.is_empty() {
            request = request.operation_name(name.clone());
        }
        let response = schema.execute(request).await;
        let errors: Vec<String> = response.errors.iter().filter(|e| e.message != VALID).map(|e| e.message.clone()).collect();
        let stopped = response.errors.iter().any(|e| e.message == VALID);
        if !stopped && errors.is_empty() {
            verdicts.push((name, vec!["the request never reached validation".to_owned()]));
        } else {
            verdicts.push((name, errors));
        }
    }
    verdicts
}

fn invalid(verdicts: &[(String, Vec<String>)]) -> Vec<String> {
    verdicts
        .iter()
        .filter(|(_, errors)| !errors.is_empty())
        .map(|(name, errors)| format!("{name}: {}", errors.join("; ")))
        .collect()
}

#[tokio::test]
async fn the_pages_documents_are_valid_against_the_schema() {
    for asset in super::assets::ASSETS.iter().filter(|a| a.path.ends_with(".graphql")) {
        let document = std::str::from_utf8(asset.bytes).expect("utf-8");
        let verdicts = validate(document).await;
        assert!(verdicts.len() >= 5, "{}: only {} operations", asset.path, verdicts.len());
        let bad = invalid(&verdicts);
        assert!(bad.is_empty(), "{} does not match the schema:\n{}", asset.path, bad.join("\n"));
    }
}

#[tokio::test]
async fn a_renamed_field_or_argument_fails_validation() {
    let document = std::str::from_utf8(super::assets::find("graphql/storefront.graphql").expect("served").bytes).expect("utf-8");
    for (from, to) in [("itemCount", "itemCounts"), ("afterVersion:", "fromVersion:"), ("available", "inStock")] {
        assert!(document.contains(from), "the storefront uses {from}");
        let renamed = document.replace(from, to);
        let bad = invalid(&validate(&renamed).await);
        assert!(!bad.is_empty(), "renaming {from} to {to} went unnoticed");
        let name = to.trim_end_matches(':');
        assert!(bad.iter().all(|e| e.contains(name)), "validation names {name}: {bad:?}");
    }
}
