//! The probes answer on both backends.

use crate::support::spawn_server;

async fn probes_answer(database_url: String) {
    let server = spawn_server(database_url).await;
    let client = reqwest::Client::new();
    let health = client.get(format!("{}/healthz", server.base_url)).send().await.expect("GET /healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "ok");
    let ready = client.get(format!("{}/readyz", server.base_url)).send().await.expect("GET /readyz");
    assert_eq!(ready.status(), 200);
    let missing = client.get(format!("{}/nope", server.base_url)).send().await.expect("GET /nope");
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn probes_answer_on_sqlite() {
    probes_answer(store::testing::sqlite()).await;
}

#[tokio::test]
async fn probes_answer_on_postgres() {
    probes_answer(store::testing::postgres().await.url).await;
}
