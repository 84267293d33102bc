//! The files of the pages, compiled in from `api/web/`. A table rather than a crate
//! that walks the folder: a dozen files, and a test below keeps the table and the folder
//! the same. `vendor/` holds third-party code with its licence (see `vendor/README.md`).

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

pub const STOREFRONT: &str = include_str!("../../web/index.html");
pub const ADMIN: &str = include_str!("../../web/admin.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
/// The GraphQL documents are served too: the pages load their operations from them.
const GRAPHQL: &str = "application/graphql; charset=utf-8";

macro_rules! assets {
    ($($path:literal => $type:expr),* $(,)?) => {
        &[$(Asset { path: $path, content_type: $type, bytes: include_bytes!(concat!("../../web/", $path)) }),*]
    };
}

pub const ASSETS: &[Asset] = assets![
    "app.css" => CSS,
    "js/api.js" => JS,
    "js/dom.js" => JS,
    "js/storefront.js" => JS,
    "js/admin.js" => JS,
    "graphql/storefront.graphql" => GRAPHQL,
    "graphql/admin.graphql" => GRAPHQL,
    "vendor/README.md" => TEXT,
    "vendor/graphql-ws-6.4.2/client.js" => JS,
    "vendor/graphql-ws-6.4.2/common-CGW11Fyb.js" => JS,
    "vendor/graphql-ws-6.4.2/LICENSE.md" => TEXT,
];

pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn web_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
    }

    fn files_under(dir: &Path, into: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read api/web") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files_under(&path, into);
            } else {
                let relative = path.strip_prefix(web_dir()).expect("under api/web");
                into.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_of_the_folder_is_served_and_nothing_else() {
        let mut files = Vec::new();
        files_under(&web_dir(), &mut files);
        files.retain(|f| !f.ends_with(".html"));
        files.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        served.sort();
        assert_eq!(files, served, "api/web/ and the table in web/assets.rs differ");
    }

    /// The pages run under `default-src 'self'`: an inline script, style or handler, or
    /// anything from another origin, would be blocked in the browser.
    #[test]
    fn the_pages_have_nothing_inline_and_nothing_from_elsewhere() {
        for (name, html) in [("index.html", STOREFRONT), ("admin.html", ADMIN)] {
            let lower = html.to_ascii_lowercase();
            assert!(!lower.contains("<style"), "{name} has a <style> element");
            assert!(!lower.contains(" style="), "{name} has a style attribute");
            assert!(!lower.contains("javascript:"), "{name} has a javascript: URL");
            for (at, _) in lower.match_indices("<script") {
                let tag = &lower[at..at + lower[at..].find('>').expect("tag ends")];
                assert!(tag.contains(" src=\"/web/"), "{name}: inline or foreign script {tag}");
            }
            for word in lower.split(|c: char| c.is_whitespace() || c == '<') {
                assert!(!(word.starts_with("on") && word.contains('=')), "{name}: inline handler {word}");
            }
        }
        for asset in ASSETS.iter().filter(|a| a.path.starts_with("js/") || a.path.ends_with(".css")) {
            let text = std::str::from_utf8(asset.bytes).expect("utf-8");
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} names another origin",
                asset.path
            );
            assert!(!text.contains(".innerHTML"), "{} writes HTML from strings", asset.path);
        }
    }
}
