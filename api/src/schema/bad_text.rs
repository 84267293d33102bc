//! Text the database cannot store: a NUL character (Postgres `text` cannot hold one;
//! SQLite would keep it but the contract is one for both backends). Every string input
//! is checked once, here, before validation and execution: the request's variables and
//! every inline argument of every operation and fragment in the document. The answer is
//! BAD_USER_INPUT naming the field (`input.idempotencyKey`), and nothing runs.

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, Value as ConstValue, Variables};

use crate::error::ApiError;

/// The request's variables, checked before the document is even parsed.
pub(super) fn check_variables(variables: &Variables) -> Result<(), ServerError> {
    for (name, value) in variables.iter() {
        if let Some(path) = nul_in_const(value, name.as_str()) {
            return Err(refuse(&path));
        }
    }
    Ok(())
}

/// Every inline argument of every operation and fragment of a parsed document.
pub(super) fn check_document(doc: &ExecutableDocument) -> Result<(), ServerError> {
    let sets = doc
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(doc.fragments.values().map(|f| &f.node.selection_set.node));
    for set in sets {
        if let Some(path) = nul_in_selection(set) {
            return Err(refuse(&path));
        }
    }
    Ok(())
}

fn refuse(path: &str) -> ServerError {
    ApiError::BadUserInput(format!("{path} must not contain a NUL character")).into_server_error()
}

/// The path of the first string holding a NUL in a variable's value.
fn nul_in_const(value: &ConstValue, path: &str) -> Option<String> {
    match value {
        ConstValue::String(s) if s.contains('\0') => Some(path.to_owned()),
        ConstValue::List(items) => items.iter().find_map(|v| nul_in_const(v, path)),
        ConstValue::Object(fields) => fields.iter().find_map(|(k, v)| nul_in_const(v, &format!("{path}.{k}"))),
        _ => None,
    }
}

/// Inline arguments of every field (and directive) in a selection set, nested sets too.
fn nul_in_selection(set: &SelectionSet) -> Option<String> {
    set.items.iter().find_map(|item| match &item.node {
        Selection::Field(field) => {
            let field = &field.node;
            let directives = field.directives.iter().flat_map(|d| d.node.arguments.iter());
            field
                .arguments
                .iter()
                .chain(directives)
                .find_map(|(name, value)| {
                    // Variables inside are checked with the request's variables.
                    let inline = value.node.clone().into_const_with(|_| Ok::<_, ()>(ConstValue::Null)).ok()?;
                    nul_in_const(&inline, name.node.as_str())
                })
                .or_else(|| nul_in_selection(&field.selection_set.node))
        }
        Selection::InlineFragment(fragment) => nul_in_selection(&fragment.node.selection_set.node),
        Selection::FragmentSpread(_) => None,
    })
}
