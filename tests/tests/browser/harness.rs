//! What the browser tests share: chromedriver on a free port (installed with apt-get
//! when missing and allowed, otherwise a failure naming the packages: never a skip),
//! headless Chromium sessions, waiting for conditions, and on failure a screenshot and
//! the browser console of every session under `<target>/browser-tests/<test>/`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{json, Value};

use crate::support::{eventually, spawn_server_with, TestServer};

const CHROMIUM: &str = "/usr/bin/chromium";
const PACKAGES: &str = "chromium chromium-driver";

/// One browser test at a time: each drives one or more Chromium instances, and the
/// machines that run them have few cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn chromedriver_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return PathBuf::from(path);
    }
    let found = || {
        ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(path) = found() {
        return path;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(
        root,
        "the browser tests need Chromium and chromedriver: apt-get install {PACKAGES} (or set CHROMEDRIVER)"
    );
    eprintln!("browser tests: installing {PACKAGES} with apt-get");
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "chromium", "chromium-driver"][..]] {
        let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status();
        assert!(status.is_ok_and(|s| s.success()), "apt-get {args:?} failed: install {PACKAGES} by hand");
    }
    found().unwrap_or_else(|| panic!("apt-get installed {PACKAGES} but no chromedriver is in /usr/bin"))
}

/// A chromedriver process, killed when dropped (also when the test panics).
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    async fn start() -> Self {
        let binary = chromedriver_binary();
        assert!(
            Path::new(CHROMIUM).exists(),
            "the browser tests need {CHROMIUM}: apt-get install {PACKAGES}"
        );
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        // Chromium leaves a singleton-socket directory in TMPDIR per browser
        // (`org.chromium.Chromium.*`); a directory of our own, removed at exit, takes them.
        let scratch = store::testing::temp_dir("cartsource-chromium");
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .env("TMPDIR", &scratch)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let status = format!("{}/status", driver.url);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = reqwest::get(&status).await.ok().filter(|r| r.status().is_success());
            if let Some(response) = ready {
                let body: Value = response.json().await.unwrap_or_default();
                if body["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer on {status} within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browsers of one test, and its server: kept here so that it still runs while the
/// artifacts of a failure are taken.
pub struct Browsers {
    driver: Chromedriver,
    sessions: Vec<(String, Client)>,
    server: Option<TestServer>,
}

impl Browsers {
    /// Starts the real server; returns its base URL (`http://127.0.0.1:<port>`).
    pub async fn serve(&mut self, config: api::Config) -> String {
        let server = spawn_server_with(config).await;
        let url = server.base_url.clone();
        self.server = Some(server);
        url
    }

    /// Stops the server gracefully, as SIGTERM would.
    pub async fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// A new headless Chromium session (its own profile: storage is not shared).
    pub async fn open(&mut self, name: &str) -> Client {
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100"]
            },
            "goog:loggingPrefs": { "browser": "ALL" }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.driver.url)
            .await
            .unwrap_or_else(|e| panic!("start a Chromium session through chromedriver: {e}"));
        self.sessions.push((name.to_owned(), client.clone()));
        client
    }

    /// Saves what each session shows and logged, for a failed test.
    async fn save_artifacts(&self, test: &str) {
        let dir = target_dir().join("browser-tests").join(test);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            return;
        }
        for (name, client) in &self.sessions {
            match client.screenshot().await {
                Ok(png) => save(&dir.join(format!("{name}.png")), &png),
                Err(e) => eprintln!("no screenshot of {name}: {e}"),
            }
            let log = self.console_log(client).await;
            save(&dir.join(format!("{name}.console.log")), log.as_bytes());
        }
        eprintln!("browser test {test} failed: screenshots and console logs in {}", dir.display());
    }

    /// The browser console, from chromedriver's log endpoint (not part of WebDriver).
    async fn console_log(&self, client: &Client) -> String {
        let Ok(Some(session)) = client.session_id().await else {
            return "no session".to_owned();
        };
        let url = format!("{}/session/{session}/se/log", self.driver.url);
        let response = reqwest::Client::new().post(&url).json(&json!({"type": "browser"})).send().await;
        let Ok(body) = (match response {
            Ok(response) => response.json::<Value>().await,
            Err(e) => return format!("cannot read the console: {e}"),
        }) else {
            return "the console log was not JSON".to_owned();
        };
        body["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {} {}",
                            e["timestamp"],
                            e["level"].as_str().unwrap_or(""),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_else(|| body.to_string())
    }

    /// Fails when a page broke its Content-Security-Policy (an inline script or style,
    /// or a request elsewhere, which the browser refused and logged), or said the server
    /// was unreachable when it never went away.
    pub async fn assert_clean_consoles(&self) {
        for (name, client) in &self.sessions {
            let log = self.console_log(client).await;
            assert!(!log.contains("Content Security Policy"), "{name} broke the CSP:\n{log}");
            assert!(!log.contains("the server is unreachable"), "{name} raised a false alarm:\n{log}");
        }
    }

    async fn close(self) {
        for (_, client) in self.sessions {
            let _ = client.close().await;
        }
        drop(self.driver);
        if let Some(server) = self.server {
            server.stop().await;
        }
    }
}

fn save(path: &Path, bytes: &[u8]) {
    if let Err(e) = std::fs::write(path, bytes) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

/// `CARGO_TARGET_DIR`, or the target folder this test binary was built into.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // <target>/debug/deps/browser-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Runs a browser test: chromedriver up, `scenario` with the browsers, and on a failure
/// the artifacts saved before the panic goes on; chromedriver and the sessions end in
/// every case.
pub async fn run(test: &str, scenario: impl AsyncFnOnce(&mut Browsers)) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut browsers = Browsers {
        driver: Chromedriver::start().await,
        sessions: Vec::new(),
        server: None,
    };
    let outcome = std::panic::AssertUnwindSafe(scenario(&mut browsers)).catch_unwind().await;
    if outcome.is_err() {
        browsers.save_artifacts(test).await;
    }
    browsers.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

// ---------------------------------------------------------------- page helpers

/// The text of the first element matching `css`, or None when there is none (or it is hidden).
pub async fn text(client: &Client, css: &str) -> Option<String> {
    let script = "const e = document.querySelector(arguments[0]); return e && !e.closest('[hidden]') ? e.textContent : null;";
    match client.execute(script, vec![json!(css)]).await {
        Ok(Value::String(text)) => Some(text),
        _ => None,
    }
}

/// Waits until the element matching `css` shows text containing `expected`; returns the text.
pub async fn wait_for_text(client: &Client, css: &str, expected: &str, within: Duration) -> String {
    eventually(within, &format!("{css} to show {expected:?}"), || async {
        text(client, css).await.filter(|t| t.contains(expected))
    })
    .await
}

/// Waits until nothing matches `css`.
pub async fn wait_for_absent(client: &Client, css: &str, within: Duration) {
    eventually(within, &format!("{css} to go away"), || async {
        match client.find_all(Locator::Css(css)).await {
            Ok(found) if found.is_empty() => Some(()),
            _ => None,
        }
    })
    .await
}

/// Clicks the element matching `css` once it is there and enabled. Found again after a
/// failed click: the pages re-render lists, which replaces their buttons.
pub async fn click(client: &Client, css: &str) {
    eventually(Duration::from_secs(10), &format!("{css} to be clickable"), || async {
        let element = client.find(Locator::Css(css)).await.ok()?;
        if !element.is_enabled().await.ok()? {
            return None;
        }
        element.click().await.ok()
    })
    .await
}

/// Replaces the value of the input matching `css`.
pub async fn type_into(client: &Client, css: &str, value: &str) {
    let element = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"));
    element.clear().await.unwrap_or_else(|e| panic!("clear {css}: {e}"));
    element.send_keys(value).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
}
