//! Which NATS server (with JetStream) the tests use, found once per test process.

use std::sync::OnceLock;

use super::{configured_or_default, free_port, start_listening, temp_dir};

static URL: OnceLock<String> = OnceLock::new();

/// `NATS_URL`; else 127.0.0.1:4222 when it accepts a connection; else `nats-server -js` from
/// the PATH on a free port (stopped when the process exits); else a container when Docker is
/// reachable; else the test fails naming all four.
pub fn nats_url() -> String {
    URL.get_or_init(find).clone()
}

fn find() -> String {
    if let Some(url) = configured_or_default("NATS_URL", "nats", 4222) {
        return url;
    }
    let local = match start_local() {
        Ok(url) => return url,
        Err(e) => e,
    };
    if super::server::docker_available() {
        return start_container();
    }
    panic!(
        "these tests need NATS with JetStream, found none:\n\
         1. NATS_URL is not set;\n\
         2. nothing accepts connections on 127.0.0.1:4222;\n\
         3. no nats-server could be started from the PATH: {local};\n\
         4. Docker is not reachable for testcontainers.\n\
         Provide any one of them (on Debian: apt-get install nats-server)."
    )
}

fn start_local() -> Result<String, String> {
    let port = free_port();
    let store_dir = temp_dir("cartsource-nats");
    let mut server = std::process::Command::new("nats-server");
    server.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"]).arg(&store_dir);
    start_listening(server, port)?;
    Ok(format!("nats://127.0.0.1:{port}"))
}

fn start_container() -> String {
    use testcontainers_modules::testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    use testcontainers_modules::testcontainers::{GenericImage, ImageExt};
    // A runtime of its own on a thread of its own: callers may be inside a runtime.
    let started = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let container = GenericImage::new("nats", "2")
                .with_exposed_port(4222.tcp())
                .with_wait_for(WaitFor::message_on_stderr("Server is ready"))
                .with_cmd(["-js"])
                .start()
                .await
                .expect("start a NATS container (Docker reachable?)");
            let port = container.get_host_port_ipv4(4222).await.expect("container port");
            // The container lives as long as the test process.
            std::mem::forget(container);
            port
        })
    });
    let port = started.join().expect("start a NATS container");
    format!("nats://127.0.0.1:{port}")
}
