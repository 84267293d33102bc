//! The GraphQL-over-HTTP audit suite that ships with the `graphql-http` npm package
//! (`serverAudits`), run by Node.js against the real server: no audit may fail or warn.
//! Notices are allowed only for GET requests, which the server refuses on purpose
//! (operations over GET invite CSRF and bypass the body limit; see the README).
//! Needs `node` and `npm` (the package comes from the npm registry); never skipped.

use std::path::Path;
use std::process::Command;

use crate::support::spawn_server;
use serde_json::Value;

#[tokio::test]
async fn the_graphql_http_audits_pass() {
    let dir = store::testing::temp_dir("cartsource-graphql-http-audit");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("graphql-http-audit");
    for file in ["package.json", "package-lock.json", "audit.mjs"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    let installed = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("this test needs Node.js and npm on the PATH (apt-get install nodejs npm): {e}"));
    assert!(installed.status.success(), "npm ci: {}", String::from_utf8_lossy(&installed.stderr));

    let server = spawn_server(store::testing::sqlite()).await;
    let url = format!("{}/graphql", server.base_url);
    // On a thread of its own: the server runs on this test's runtime meanwhile.
    let audit = tokio::task::spawn_blocking(move || Command::new("node").arg("audit.mjs").arg(&url).current_dir(&dir).output())
        .await
        .expect("join")
        .expect("run node");
    assert!(audit.status.success(), "node audit.mjs: {}", String::from_utf8_lossy(&audit.stderr));
    let results: Vec<Value> = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(results.len() > 20, "the suite ran: {} audits", results.len());
    let bad: Vec<&Value> = results
        .iter()
        .filter(|r| match r["status"].as_str() {
            Some("ok") => false,
            Some("notice") => !r["name"].as_str().is_some_and(|n| n.contains("GET")),
            _ => true,
        })
        .collect();
    assert!(bad.is_empty(), "audits that did not pass: {bad:#?}");
}
