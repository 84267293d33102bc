//! Parsed documents by query text. Clients send the same few documents over and over, and
//! parsing one (async-graphql's pest grammar) was about a tenth of the server's CPU per
//! `cart(id)` read (perf, bench reads at 32 clients). A parsed document is a pure function
//! of its text, so a copy of an earlier parse is the parse. Validation still runs on every
//! request: it depends on the variables too.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError};
use lru::LruCache;

/// Documents kept, least recently used out first.
const CAPACITY: NonZeroUsize = NonZeroUsize::new(256).expect("not zero");
/// Longer query texts are parsed each time: the cache holds at most
/// `CAPACITY * MAX_CACHED_QUERY` bytes of text (2 MiB) and what it parses into.
const MAX_CACHED_QUERY: usize = 8 * 1024;

pub struct Documents(Mutex<LruCache<String, ExecutableDocument>>);

impl Default for Documents {
    fn default() -> Self {
        Documents(Mutex::new(LruCache::new(CAPACITY)))
    }
}

impl Documents {
    /// The request's parsed document: a copy of the cached one, or parsed now (and kept).
    pub fn parse<'r>(&self, request: &'r mut Request) -> Result<&'r ExecutableDocument, ServerError> {
        let cacheable = request.query.len() <= MAX_CACHED_QUERY;
        if cacheable {
            let cached = self.lock().get(&request.query).cloned();
            if let Some(doc) = cached {
                request.set_parsed_query(doc);
                return request.parsed_query();
            }
        }
        let query = cacheable.then(|| request.query.clone());
        let doc = request.parsed_query()?;
        if let Some(query) = query {
            self.lock().put(query, doc.clone());
        }
        Ok(doc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, ExecutableDocument>> {
        // A panic inside `get` or `put` leaves at worst a document missing.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
