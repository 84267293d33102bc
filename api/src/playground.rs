//! GraphiQL served entirely from this binary: the page, React, ReactDOM and GraphiQL's
//! bundle are compiled in (`api/assets/`, licenses and the recipe in
//! `api/assets/LICENSES.md`), so the playground works with no internet access. Asset
//! names carry their versions, so browsers may cache them for good.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "graphiql-3.8.3.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/graphiql.min.js"),
    },
    Asset {
        name: "graphiql-3.8.3.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/graphiql.min.css"),
    },
    Asset {
        name: "react-18.3.1.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/react.production.min.js"),
    },
    Asset {
        name: "react-dom-18.3.1.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/react-dom.production.min.js"),
    },
    // Versioned by hand: bump the suffix when the file changes.
    Asset {
        name: "playground-1.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/playground.css"),
    },
    Asset {
        name: "playground-2.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/playground.js"),
    },
];

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cartsource GraphiQL</title>
<link rel="stylesheet" href="/graphql/assets/graphiql-3.8.3.min.css">
<link rel="stylesheet" href="/graphql/assets/playground-1.css">
</head>
<body>
<div id="graphiql">Loading GraphiQL&hellip;</div>
<script src="/graphql/assets/react-18.3.1.min.js"></script>
<script src="/graphql/assets/react-dom-18.3.1.min.js"></script>
<script src="/graphql/assets/graphiql-3.8.3.min.js"></script>
<script src="/graphql/assets/playground-2.js"></script>
</body>
</html>
"#;

/// True when the client asked for a web page (a browser), not for GraphQL.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// The one `<style>` the bundle injects: react-remove-scroll's scroll lock, added when a
/// menu or dialog opens (`body[data-scroll-locked] { overflow: hidden ... }`, with a gap of
/// 0 px on this full-height page without scroll bars). Chromium prints the hash of a
/// refused one in its console; the browser test fails when an upgrade changes it.
const INJECTED_STYLE_SHA256: &str = "Y/huXlwoYkVyQlxwSVcCi1RCDGDCSVBzDt0hYP9qlTc=";

/// The page, under the same Content-Security-Policy as every page of the server: no inline
/// script, no `'unsafe-eval'` (the bundle's one `new Function`, a fallback to find the
/// global object, is caught and falls back to `window`), and of inline styles only the
/// one above, by its hash.
pub fn page(headers: &HeaderMap) -> Response {
    crate::web::html_page(headers, PAGE, &[INJECTED_STYLE_SHA256])
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
                (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            ],
            asset.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSETS_PATH: &str = "/graphql/assets";

    #[test]
    fn the_page_names_only_assets_we_serve() {
        let mut rest = PAGE;
        let mut found = 0;
        while let Some(at) = rest.find(ASSETS_PATH) {
            let tail = &rest[at + ASSETS_PATH.len() + 1..];
            let end = tail.find('"').expect("closing quote");
            assert!(ASSETS.iter().any(|a| a.name == &tail[..end]), "{} is not served", &tail[..end]);
            found += 1;
            rest = &tail[end..];
        }
        assert_eq!(found, 6);
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "the page must not load anything from elsewhere"
        );
        assert!(
            !PAGE.contains("<style") && !PAGE.contains(" style=") && !PAGE.contains("<script>"),
            "nothing inline: the page runs under a strict Content-Security-Policy"
        );
    }
}
