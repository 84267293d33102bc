//! "Admin-only operations check the role first: a customer gets FORBIDDEN whatever the
//! arguments." A resolver's own role check runs only after its arguments were parsed,
//! and arguments that do not coerce (a price of "abc", a missing input field) are
//! refused before any resolver runs. So the role is checked once more, right after
//! parsing and before validation's verdict is given: an operation document that selects
//! an admin-only root field, sent by a caller who is not an admin, is answered FORBIDDEN
//! (UNAUTHENTICATED without a token) as a whole, and nothing of it runs. The check
//! looks at every operation in the document, whichever one `operationName` picks.

use std::collections::HashSet;

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::ServerError;

use crate::auth::Principal;
use crate::error::ApiError;

/// Root fields only an admin may use, by operation type.
const ADMIN_ONLY: &[(OperationType, &str)] = &[
    (OperationType::Query, "projections"),
    (OperationType::Query, "streamEvents"),
    (OperationType::Mutation, "shipOrder"),
    (OperationType::Mutation, "registerProduct"),
    (OperationType::Mutation, "changeProductPrice"),
    (OperationType::Mutation, "receiveStock"),
    (OperationType::Mutation, "rebuildProjection"),
    (OperationType::Mutation, "archiveStream"),
    (OperationType::Mutation, "truncateStream"),
    (OperationType::Subscription, "events"),
];

/// The refusal for a document that selects an admin-only root field, when `who` is not
/// an admin.
pub(super) fn check(doc: &ExecutableDocument, who: Option<&Principal>) -> Result<(), ServerError> {
    if !selects_admin_only(doc) {
        return Ok(());
    }
    match who {
        Some(who) if who.is_admin() => Ok(()),
        Some(_) => Err(ApiError::admin_only().into_server_error()),
        None => Err(ApiError::unauthenticated().into_server_error()),
    }
}

fn selects_admin_only(doc: &ExecutableDocument) -> bool {
    selects_root_field(doc, |ty, name| ADMIN_ONLY.iter().any(|(t, n)| *t == ty && name == *n))
}

/// Whether any operation of the document selects a root field that `matches` (by its
/// operation type and name), looking through fragments.
pub(super) fn selects_root_field(doc: &ExecutableDocument, matches: impl Fn(OperationType, &str) -> bool) -> bool {
    doc.operations.iter().any(|(_, op)| {
        let mut seen = HashSet::new();
        root_fields_match(doc, op.node.ty, &op.node.selection_set.node, &matches, &mut seen)
    })
}

/// Walks the root selection set through inline fragments and fragment spreads (each
/// fragment once, so a cycle cannot loop; validation reports cycles itself).
fn root_fields_match<'a>(
    doc: &'a ExecutableDocument,
    ty: OperationType,
    set: &'a SelectionSet,
    matches: &impl Fn(OperationType, &str) -> bool,
    seen: &mut HashSet<&'a str>,
) -> bool {
    set.items.iter().any(|item| match &item.node {
        Selection::Field(field) => matches(ty, field.node.name.node.as_str()),
        Selection::InlineFragment(fragment) => root_fields_match(doc, ty, &fragment.node.selection_set.node, matches, seen),
        Selection::FragmentSpread(spread) => {
            let name = spread.node.fragment_name.node.as_str();
            seen.insert(name)
                && doc
                    .fragments
                    .get(name)
                    .is_some_and(|f| root_fields_match(doc, ty, &f.node.selection_set.node, matches, seen))
        }
    })
}
