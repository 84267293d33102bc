//! Introspection off (production without `--introspection`): a document that selects
//! `__schema` or `__type` is refused as a whole with FORBIDDEN and a message that says why,
//! before anything of it runs. async-graphql's own switch (`disable_introspection`, also
//! set) would instead hand such a field to the query root, which answers null or
//! "unknown field": no reason, no code of ours. `__typename` stays allowed: clients
//! (Apollo, urql) add it to every selection.

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::ServerError;

use super::admin_only::selects_root_field;
use crate::error::ApiError;

/// The refusal for an introspection document when introspection is off.
pub(super) fn check(doc: &ExecutableDocument, allowed: bool) -> Result<(), ServerError> {
    if allowed || !selects_root_field(doc, |ty, name| ty == OperationType::Query && matches!(name, "__schema" | "__type")) {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "introspection is turned off on this server (production); the schema is published with the API (`cartsource schema`), or start the server with --introspection"
            .to_owned(),
    )
    .into_server_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(query: &str) -> bool {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        assert!(check(&doc, true).is_ok(), "allowed is allowed: {query}");
        check(&doc, false).is_err()
    }

    #[test]
    fn introspection_is_found_through_fragments_but_typename_is_not_introspection() {
        assert!(refused("{ __schema { types { name } } }"));
        assert!(refused(
            "query A { products { nodes { sku } } } query B { __type(name: \"Cart\") { name } }"
        ));
        assert!(refused("{ ... on Query { __schema { queryType { name } } } }"));
        assert!(refused("query { ...F } fragment F on Query { __type(name: \"Cart\") { name } }"));
        assert!(!refused("{ __typename products { nodes { sku __typename } } }"));
        assert!(!refused("query { ...F } fragment F on Query { ...F __typename }"));
    }
}
