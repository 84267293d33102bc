//! Which Redis server the tests use, found once per test process.

use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{cleanup, free_port, temp_dir};

static URL: OnceLock<String> = OnceLock::new();

/// `REDIS_URL`; else 127.0.0.1:6379 when it accepts a connection; else `redis-server` from
/// the PATH on a free port (no persistence, stopped when the process exits); else the test
/// fails naming all three. Tests share the server: give keys a namespace of your own.
pub fn redis_url() -> String {
    URL.get_or_init(find).clone()
}

fn find() -> String {
    if let Ok(url) = std::env::var("REDIS_URL") {
        if !url.is_empty() {
            return url;
        }
    }
    if reachable(6379, Duration::from_secs(1)) {
        return "redis://127.0.0.1:6379".to_owned();
    }
    match start_local() {
        Ok(url) => url,
        Err(local) => panic!(
            "these tests need Redis, found none:\n\
             1. REDIS_URL is not set;\n\
             2. nothing accepts connections on 127.0.0.1:6379;\n\
             3. no redis-server could be started from the PATH: {local}.\n\
             Provide any one of them (on Debian: apt-get install redis-server)."
        ),
    }
}

fn reachable(port: u16, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout).is_ok()
}

fn start_local() -> Result<String, String> {
    let port = free_port();
    let dir = temp_dir("cartsource-redis");
    let child = std::process::Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    cleanup::child(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if reachable(port, Duration::from_millis(200)) {
            return Ok(format!("redis://127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("redis-server did not listen on 127.0.0.1:{port} within 10 s"))
}
