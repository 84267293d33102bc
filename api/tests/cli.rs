//! The `cartsource` binary: subcommands, the production guard, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "cli-test-secret-0123456789abcdef0123456789";

fn cartsource() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cartsource"));
    for var in [
        "DATABASE_URL",
        "JWT_SECRET",
        "CARTSOURCE_ENV",
        "CARTSOURCE_DATA_DIR",
        "CARTSOURCE_MASTER_KEY_FILE",
        "CARTSOURCE_PREVIOUS_MASTER_KEY_FILES",
        "LISTEN_ADDR",
        "CARTSOURCE_ROLE",
        "RUST_LOG",
        "LOG_FORMAT",
    ] {
        command.env_remove(var);
    }
    command
}

/// A data directory that does not exist yet, removed when the tests end.
fn temp_dir() -> std::path::PathBuf {
    store::testing::temp_dir("cartsource-cli").join("data")
}

#[test]
fn token_prints_a_token_signed_with_the_configured_secret() {
    let output = cartsource()
        .args(["token", "--sub", "alice", "--role", "admin", "--ttl", "2h"])
        .env("JWT_SECRET", SECRET)
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let who = api::auth::verify_token(token.trim(), SECRET.as_bytes()).expect("a valid token");
    assert_eq!(who.id, "alice");
    assert!(who.is_admin());
}

#[test]
fn token_in_development_uses_the_generated_secret_of_the_data_dir() {
    let dir = temp_dir();
    let output = cartsource()
        .args(["token", "--sub", "bob"])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let secret = api::auth::load_or_create_secret(&dir).expect("the generated secret");
    let who = api::auth::verify_token(String::from_utf8_lossy(&output.stdout).trim(), secret.as_bytes()).expect("valid");
    assert_eq!(who.id, "bob");
    assert!(!who.is_admin());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn production_refuses_to_start_or_sign_without_a_secret() {
    let dir = temp_dir();
    let serve = cartsource()
        .args(["serve", "--env", "production", "--listen-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run");
    assert!(!serve.status.success());
    assert!(
        String::from_utf8_lossy(&serve.stdout).contains("JWT_SECRET"),
        "{}",
        String::from_utf8_lossy(&serve.stdout)
    );
    let token = cartsource()
        .args(["token", "--sub", "alice"])
        .env("CARTSOURCE_ENV", "production")
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run");
    assert!(!token.status.success());
    assert!(String::from_utf8_lossy(&token.stderr).contains("JWT_SECRET"));
    assert!(!dir.join("jwt_secret").exists(), "no secret was generated");
}

#[test]
fn production_refuses_to_start_without_a_master_key() {
    let dir = temp_dir();
    let serve = cartsource()
        .args(["serve", "--env", "production", "--listen-addr", "127.0.0.1:0"])
        .env("JWT_SECRET", "a-production-secret-of-32-bytes-or-more")
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run");
    assert!(!serve.status.success());
    let said = String::from_utf8_lossy(&serve.stdout);
    assert!(said.contains("--master-key-file"), "{said}");
    assert!(!dir.join(api::config::MASTER_KEY_FILE).exists(), "no master key was generated");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn schema_prints_the_sdl() {
    let output = cartsource().arg("schema").output().expect("run");
    assert!(output.status.success());
    let sdl = String::from_utf8(output.stdout).expect("utf-8");
    assert!(sdl.contains("type Query") && sdl.contains("type Subscription"), "{sdl}");
}

/// A server on its own SQLite data directory, and the address it logged.
struct Serving {
    child: std::process::Child,
    addr: String,
    lines: std::sync::mpsc::Receiver<String>,
}

/// A failing test must not leave its server running.
impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_sqlite(dir: &std::path::Path) -> Serving {
    let mut child = cartsource()
        .args(["serve", "--listen-addr", "127.0.0.1:0", "--log-format", "json", "--no-seed"])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server logs its address in time");
        if let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(addr) = log["addr"].as_str() {
                break addr.to_owned();
            }
        }
    };
    Serving { child, addr, lines }
}

/// SIGTERM: the process stops accepting, finishes, and exits 0.
#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = temp_dir();
    let mut server = serve_sqlite(&dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = std::net::TcpStream::connect(&server.addr);
    assert!(health.is_ok(), "the server accepts connections at {}", server.addr);
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let exited = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
        let _ = server.lines.recv_timeout(Duration::from_millis(50));
    };
    assert!(exited.success(), "{exited:?}");
}

/// A second server on the same SQLite directory refuses at once, names the first, and the
/// first keeps serving.
#[test]
fn a_second_server_on_the_same_sqlite_directory_refuses_to_start() {
    let dir = temp_dir();
    let mut first = serve_sqlite(&dir);
    let second = cartsource()
        .args(["serve", "--listen-addr", "127.0.0.1:0", "--log-format", "json", "--no-seed"])
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let second = exits_within(second, Duration::from_secs(30));
    let said = String::from_utf8_lossy(&second.stdout);
    assert!(!second.status.success(), "{said}");
    assert!(
        said.contains(&format!("process {}", first.child.id())),
        "names the running server: {said}"
    );
    assert!(said.contains("--data-dir"), "says how to fix it: {said}");
    assert!(std::net::TcpStream::connect(&first.addr).is_ok(), "the first server still serves");
    assert!(first.child.try_wait().expect("wait").is_none(), "the first server still runs");
}

/// The process's output once it exited; kills it and fails when it is still running.
fn exits_within(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Start-up against an unusable PostgreSQL fails within the connect timeout, in one line
/// with the cause and the fix, and writes nothing into the data directory.
fn refuses_to_start(database_url: &str, expected: &[&str]) {
    let dir = temp_dir();
    let started = Instant::now();
    let child = cartsource()
        .args([
            "serve",
            "--listen-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--database-url",
            database_url,
        ])
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let output = exits_within(child, Duration::from_secs(15));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{said}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let line = said
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|log| log["message"].as_str().map(str::to_owned))
        .find(|message| message.contains("cannot start"))
        .unwrap_or_else(|| panic!("a start-up error line: {said}"));
    for word in expected {
        assert!(line.contains(word), "{word:?} in {line}");
    }
    assert!(!dir.exists(), "nothing was written to the data directory");
}

#[test]
fn an_unreachable_postgres_is_named_with_its_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    // Nothing listens on the port once the listener is dropped.
    refuses_to_start(
        &format!("postgres://postgres@127.0.0.1:{port}/cartsource"),
        &[&format!("127.0.0.1:{port}"), "connection refused", "DATABASE_URL"],
    );
}

#[tokio::test]
async fn a_missing_database_and_an_unknown_user_say_so() {
    let db = store::testing::postgres().await;
    let (server, _) = db.url.rsplit_once('/').expect("a database URL");
    let missing = format!("cstest_missing_{}", std::process::id());
    refuses_to_start(&format!("{server}/{missing}"), &[&format!("{missing:?} does not exist"), "createdb"]);
    let rest = server.split_once('@').map_or(server, |(_, host)| host);
    let stranger = format!("postgres://cstest_nobody_{}@{rest}/{}", std::process::id(), db.name);
    refuses_to_start(&stranger, &["refused user", "DATABASE_URL"]);
}
