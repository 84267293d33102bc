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
fn schema_prints_the_sdl() {
    let output = cartsource().arg("schema").output().expect("run");
    assert!(output.status.success());
    let sdl = String::from_utf8(output.stdout).expect("utf-8");
    assert!(sdl.contains("type Query") && sdl.contains("type Subscription"), "{sdl}");
}

/// SIGTERM: the process stops accepting, finishes, and exits 0.
#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = temp_dir();
    let mut child = cartsource()
        .args(["serve", "--listen-addr", "127.0.0.1:0", "--log-format", "json", "--no-seed"])
        .arg("--data-dir")
        .arg(&dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = loop {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server logs its address in time");
        if let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(addr) = log["addr"].as_str() {
                break addr.to_owned();
            }
        }
    };
    let health = std::net::TcpStream::connect(&addr);
    assert!(health.is_ok(), "the server accepts connections at {addr}");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let exited = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
        let _ = lines_rx.recv_timeout(Duration::from_millis(50));
    };
    assert!(exited.success(), "{exited:?}");
    let _ = std::fs::remove_dir_all(dir);
}
