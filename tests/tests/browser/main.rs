//! The storefront and the admin console in a real browser: headless Chromium driven
//! through chromedriver (fantoccini), against the real server on a free port with the
//! demo catalog. A binary of its own so `cargo test -p tests --test browser` runs just
//! these; they need Debian's `chromium` and `chromium-driver` (see `harness`), and never
//! skip. With `UPDATE_SCREENSHOTS=1` the first test also writes the README's screenshots
//! to `docs/screenshots/`.

#[allow(dead_code, unused_macros)]
#[path = "../it/support.rs"]
mod support;

mod harness;

use std::time::{Duration, Instant};

use fantoccini::Client;
use harness::{click, text, type_into, wait_for_absent, wait_for_text};
use support::{eventually, test_config};

/// The bar for a change to reach another tab.
const LIVE: Duration = Duration::from_secs(1);
/// Longer waits: page loads, reactors, rebuilds, reconnects.
const SLOW: Duration = Duration::from_secs(30);

fn config_with_catalog(database_url: String) -> api::Config {
    api::Config {
        no_seed: false,
        ..test_config(database_url)
    }
}

/// Signs `client` in as `customer` on the storefront at `url` (development: the page gets a token itself).
async fn sign_in(client: &Client, url: &str, customer: &str) {
    client.goto(url).await.expect("open the storefront");
    type_into(client, "#customer", customer).await;
    click(client, "#signin-form button[type=submit]").await;
    wait_for_text(client, "#who", customer, SLOW).await;
    wait_for_text(client, "#products tr[data-sku=apple]", "Apple", SLOW).await;
}

/// Waits for the cart shown by `client` to reach `version`.
async fn cart_at(client: &Client, version: u32) {
    wait_for_text(client, "#cart-version", &version.to_string(), SLOW).await;
}

/// How long after `since` the cart line of `sku` appears in `client` (waits up to 10 s).
async fn line_appears(client: &Client, sku: &str, since: Instant) -> Duration {
    wait_for_text(client, &format!("#cart-lines tr[data-sku='{sku}']"), "", Duration::from_secs(10)).await;
    since.elapsed()
}

#[tokio::test]
async fn two_shoppers_on_one_cart_an_order_and_the_admin_console() {
    harness::run("two_shoppers_on_one_cart", async |browsers| {
        let base = browsers.serve(config_with_catalog(store::testing::sqlite())).await;
        let home = format!("{base}/");
        let a = browsers.open("shopper-a").await;
        sign_in(&a, &home, "alice").await;
        click(&a, "#new-cart").await;
        cart_at(&a, 1).await;
        let url = a.current_url().await.expect("url");
        let cart_id = url
            .fragment()
            .and_then(|f| f.strip_prefix("cart="))
            .expect("the cart id in the URL")
            .to_owned();

        let b = browsers.open("shopper-b").await;
        sign_in(&b, &format!("{home}#cart={cart_id}"), "alice").await;
        cart_at(&b, 1).await;

        // An add in one tab appears in the other within a second.
        type_into(&a, "#qty-apple", "2").await;
        click(&a, "#products tr[data-sku=apple] button.add").await;
        let clicked = Instant::now();
        let took = line_appears(&b, "apple", clicked).await;
        eprintln!("the add reached the other tab {} ms after the click", took.as_millis());
        assert!(took <= LIVE, "the add took {took:?} to reach the other tab");
        cart_at(&b, 2).await;

        // A remove, the other way round.
        click(&b, "#cart-lines tr[data-sku=apple] button.remove").await;
        let clicked = Instant::now();
        wait_for_absent(&a, "#cart-lines tr[data-sku=apple]", Duration::from_secs(10)).await;
        let took = clicked.elapsed();
        eprintln!("the remove reached the other tab {} ms after the click", took.as_millis());
        assert!(took <= LIVE, "the remove took {took:?} to reach the other tab");

        click(&a, "#products tr[data-sku=banana] button.add").await;
        cart_at(&b, 4).await;
        cart_at(&a, 4).await;

        // A stale expectedVersion is refused and explained; nothing changes.
        click(&b, "#stale-write").await;
        let message = wait_for_text(&b, "#cart-message", "Conflict", SLOW).await;
        assert!(message.contains("version 3") && message.contains("version 4"), "{message}");
        assert_eq!(text(&b, "#cart-version").await.as_deref(), Some("4"));

        // The cart as it was, beside its history.
        click(&a, "#history tbody tr:nth-child(2) button").await;
        let then = wait_for_text(&a, "#as-of", "Version 2", SLOW).await;
        assert!(then.contains("2 × Apple"), "{then}");

        // The order: PREPARING (fulfilment picked it up) and a notification, live.
        click(&a, "#place-order").await;
        wait_for_text(&a, "#order-status", "PREPARING", SLOW).await;
        wait_for_text(&a, "#notifications li", "ORDER", SLOW).await;
        wait_for_text(&b, "#cart-status", "CHECKED_OUT", SLOW).await;
        wait_for_text(&b, "#order-status", "PREPARING", SLOW).await;

        let admin = browsers.open("admin").await;
        admin.goto(&format!("{base}/admin")).await.expect("open the admin console");
        wait_for_text(&admin, "#signed-in", "admin token", SLOW).await;
        wait_for_text(&admin, "#feed tr[data-type=OrderPlaced]", &cart_id[..0], SLOW).await;
        wait_for_text(&admin, &format!("#feed tr[data-stream='cart-{cart_id}']"), "CartCheckedOut", SLOW).await;

        screenshot(&a, "storefront", 1280).await;
        screenshot(&a, "storefront-phone", 390).await;

        // A new event shows in the feed live.
        click(&a, "#next-cart").await;
        let next = eventually(SLOW, "a new cart in the URL", || async {
            let url = a.current_url().await.ok()?;
            let id = url.fragment()?.strip_prefix("cart=")?.to_owned();
            (id != cart_id).then_some(id)
        })
        .await;
        wait_for_text(&admin, &format!("#feed tr[data-stream='cart-{next}']"), "CartCreated", SLOW).await;

        // A rebuild completes: the projection runs again with no lag.
        let name = eventually(SLOW, "a projection", || async {
            admin
                .execute(
                    "const r = document.querySelector('#projections tbody tr'); return r && r.dataset.name;",
                    vec![],
                )
                .await
                .ok()?
                .as_str()
                .map(str::to_owned)
        })
        .await;
        click(&admin, &format!("#projections tr[data-name='{name}'] button.rebuild")).await;
        wait_for_text(&admin, "#projections-message", &format!("Rebuild of {name} finished"), SLOW).await;
        let state = text(&admin, &format!("#projections tr[data-name='{name}'] .state")).await;
        assert_eq!(state.as_deref(), Some("RUNNING"));

        // A stream's history by id, from the feed.
        click(&admin, "#feed tr[data-type=OrderPlaced] button").await;
        wait_for_text(&admin, "#stream tbody", "OrderPreparationStarted", SLOW).await;
        // A category filter: without products, no product stream is listed.
        click(&admin, "#cat-product").await;
        wait_for_absent(&admin, "#feed tr[data-stream^='product-']", SLOW).await;
        wait_for_text(&admin, "#feed tr[data-type=OrderPlaced]", "", SLOW).await;
        click(&admin, "#cat-product").await;
        wait_for_text(&admin, "#feed tr[data-stream='product-apple']", "", SLOW).await;

        // The catalog: a new product, then stock for it.
        for (field, value) in [("#reg-sku", "kiwi"), ("#reg-name", "Kiwi"), ("#reg-price", "0.35"), ("#reg-stock", "10")] {
            type_into(&admin, field, value).await;
        }
        click(&admin, "#register-form button[type=submit]").await;
        wait_for_text(&admin, "#products tr[data-sku=kiwi] .available", "10", SLOW).await;
        wait_for_text(&admin, "#feed tr[data-stream='product-kiwi'][data-type=ProductRegistered]", "kiwi", SLOW).await;
        let select = admin.find(fantoccini::Locator::Css("#stock-sku")).await.expect("the product select");
        select.select_by_value("kiwi").await.expect("select kiwi");
        type_into(&admin, "#stock-qty", "5").await;
        click(&admin, "#stock-form button[type=submit]").await;
        wait_for_text(&admin, "#products tr[data-sku=kiwi] .available", "15", SLOW).await;

        screenshot(&admin, "admin", 1280).await;

        browsers.assert_clean_consoles().await;
    })
    .await;
}

/// One of the README's pictures (with `UPDATE_SCREENSHOTS=1`), at a size that shows a whole page.
async fn screenshot(client: &Client, name: &str, width: u32) {
    if std::env::var_os("UPDATE_SCREENSHOTS").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir).expect("create docs/screenshots");
    client.set_window_size(width, 1500).await.expect("resize");
    client.execute("window.scrollTo(0, 0)", vec![]).await.expect("scroll to the top");
    // Let the layout settle on the new size (a picture, not an assertion).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    client.set_window_size(1280, 1100).await.expect("resize back");
}

#[tokio::test]
async fn the_storefront_says_when_the_server_is_down_and_recovers() {
    harness::run("server_down_and_back", async |browsers| {
        let config = config_with_catalog(store::testing::sqlite());
        let base = browsers.serve(config.clone()).await;
        let a = browsers.open("shopper").await;
        sign_in(&a, &format!("{base}/"), "carol").await;
        click(&a, "#new-cart").await;
        click(&a, "#products tr[data-sku=apple] button.add").await;
        cart_at(&a, 2).await;

        browsers.stop_server().await;
        wait_for_text(&a, "#connection", "server is unreachable", SLOW).await;

        // The same database, on the same address.
        let address = base.trim_start_matches("http://").to_owned();
        browsers
            .serve(api::Config {
                listen_addr: address,
                ..config
            })
            .await;
        wait_for_text(&a, "#connection", "Connected again", SLOW).await;
        click(&a, "#products tr[data-sku=banana] button.add").await;
        cart_at(&a, 3).await;
        line_appears(&a, "banana", Instant::now()).await;
    })
    .await;
}

/// GraphiQL (production with `--graphiql`) under the server's strict policy: it renders,
/// loads the schema by introspection and runs a query, and the browser refused nothing.
#[tokio::test]
async fn graphiql_runs_under_the_content_security_policy() {
    harness::run("graphiql_csp", async |browsers| {
        let mut config = config_with_catalog(store::testing::sqlite());
        config.secret.environment = api::config::Environment::Production;
        config.exposure.graphiql = true;
        let base = browsers.serve(config).await;
        let page = browsers.open("graphiql").await;
        page.goto(&format!("{base}/graphql")).await.expect("open GraphiQL");
        click(&page, "[aria-label='Show Documentation Explorer']").await;
        wait_for_text(&page, ".graphiql-doc-explorer", "Query", SLOW).await;
        click(&page, ".graphiql-execute-button").await;
        // The default document has several operations: the button offers them.
        click(&page, "[role=menuitem]").await;
        wait_for_text(&page, ".result-window", "\"products\"", SLOW).await;
        browsers.assert_clean_consoles().await;
    })
    .await;
}
