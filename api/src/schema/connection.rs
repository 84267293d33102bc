//! Relay connections (forward pagination with `first`/`after`), one concrete type per
//! node as the contract names them. Cursors are opaque to clients: the read models'
//! own cursors for views, the stream version for a cart's history.

use async_graphql::{Object, SimpleObject};

use super::types::{Cart, CartEvent, Notification, Order, Product};

#[derive(Clone, Debug, Default, SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// True when `after` was given: forward pagination does not look back further.
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

impl PageInfo {
    pub fn new<E>(edges: &[E], cursor: impl Fn(&E) -> &String, has_next_page: bool, has_previous_page: bool) -> Self {
        PageInfo {
            has_next_page,
            has_previous_page,
            start_cursor: edges.first().map(|e| cursor(e).clone()),
            end_cursor: edges.last().map(|e| cursor(e).clone()),
        }
    }
}

macro_rules! connection {
    ($connection:ident, $edge:ident, $node:ty) => {
        #[derive(Clone, Debug, SimpleObject)]
        pub struct $edge {
            pub cursor: String,
            pub node: $node,
        }

        #[derive(Clone, Debug)]
        pub struct $connection {
            pub edges: Vec<$edge>,
            pub page_info: PageInfo,
        }

        #[Object]
        impl $connection {
            async fn edges(&self) -> &[$edge] {
                &self.edges
            }

            async fn nodes(&self) -> Vec<&$node> {
                self.edges.iter().map(|e| &e.node).collect()
            }

            async fn page_info(&self) -> &PageInfo {
                &self.page_info
            }
        }

        impl $connection {
            /// A page of a read model as a connection.
            #[allow(dead_code)]
            pub fn from_page<T>(page: projections::Page<T>, after_given: bool, node: impl Fn(T) -> $node) -> Self {
                let edges: Vec<$edge> = page
                    .items
                    .into_iter()
                    .map(|(cursor, item)| $edge { cursor, node: node(item) })
                    .collect();
                let page_info = PageInfo::new(&edges, |e| &e.cursor, page.has_next_page, after_given);
                $connection { edges, page_info }
            }
        }
    };
}

connection!(ProductConnection, ProductEdge, Product);
connection!(CartConnection, CartEdge, Cart);
connection!(CartEventConnection, CartEventEdge, CartEvent);
connection!(OrderConnection, OrderEdge, Order);
connection!(NotificationConnection, NotificationEdge, Notification);
