//! Which Redis server the tests use, found once per test process.

use std::sync::OnceLock;

use super::{configured_or_default, free_port, start_listening, temp_dir};

static URL: OnceLock<String> = OnceLock::new();

/// `REDIS_URL`; else 127.0.0.1:6379 when it accepts a connection; else `redis-server` from
/// the PATH on a free port (no persistence, stopped when the process exits); else the test
/// fails naming all three. Tests share the server: give keys a namespace of your own.
pub fn redis_url() -> String {
    URL.get_or_init(find).clone()
}

fn find() -> String {
    if let Some(url) = configured_or_default("REDIS_URL", "redis", 6379) {
        return url;
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

fn start_local() -> Result<String, String> {
    let port = free_port();
    let dir = temp_dir("cartsource-redis");
    let mut server = std::process::Command::new("redis-server");
    server
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
        .arg(&dir);
    start_listening(server, port)?;
    Ok(format!("redis://127.0.0.1:{port}"))
}

#[cfg(test)]
mod tests {
    /// The third way to find Redis, which a machine with one on 6379 never takes otherwise.
    #[test]
    fn a_redis_server_from_the_path_starts_on_a_free_port() {
        let url = super::start_local().unwrap_or_else(|e| panic!("{e}"));
        let port: u16 = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
        assert_ne!(port, 6379);
        assert!(crate::testing::reachable(port, std::time::Duration::from_secs(1)), "{url}");
    }
}
