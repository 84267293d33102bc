//! What a test process leaves behind is removed when it exits, passed or failed: test
//! databases, temporary directories and the helper servers it started. Registered items are
//! cleaned up by an `atexit` handler (the test harness ends with `exit`, also after a
//! failed test); a process killed outright leaves its databases, which the next test process
//! on the same server drops (their names carry the creator's pid, see `stale_databases`).

use std::path::PathBuf;
use std::process::Child;
use std::sync::{Mutex, Once};

#[derive(Default)]
struct Registry {
    /// (admin URL of the server, database name)
    databases: Vec<(String, String)>,
    dirs: Vec<PathBuf>,
    /// Servers started for this process, stopped before their directories are removed.
    children: Vec<Child>,
    /// Commands run before the directories are removed (e.g. `pg_ctl stop`).
    stop_commands: Vec<std::process::Command>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
static HOOK: Once = Once::new();

fn with_registry(f: impl FnOnce(&mut Registry)) {
    HOOK.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no arguments, as atexit requires.
        unsafe {
            libc::atexit(at_exit);
        }
    });
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(Registry::default));
}

pub(crate) fn database(admin_url: &str, name: &str) {
    with_registry(|r| r.databases.push((admin_url.to_owned(), name.to_owned())));
}

pub(crate) fn dir(path: PathBuf) {
    with_registry(|r| r.dirs.push(path));
}

pub(crate) fn child(child: Child) {
    with_registry(|r| r.children.push(child));
}

pub(crate) fn stop_command(command: std::process::Command) {
    with_registry(|r| r.stop_commands.push(command));
}

extern "C" fn at_exit() {
    let Some(registry) = REGISTRY.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    let Registry {
        databases,
        dirs,
        mut children,
        stop_commands,
    } = registry;
    if !databases.is_empty() {
        // A thread of its own: no runtime of the exiting process is usable here.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(runtime) => runtime.block_on(drop_databases(databases)),
                Err(e) => eprintln!("cannot drop the test databases: {e}"),
            }
        });
        let _ = dropper.join();
    }
    for mut command in stop_commands {
        let _ = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status();
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Drops several at a time: each DROP DATABASE waits for a checkpoint, and concurrent
/// drops share one, so a process that made 80 databases spent 40 s here one by one.
async fn drop_databases(databases: Vec<(String, String)>) {
    use futures::StreamExt;
    use sqlx::Connection;
    futures::stream::iter(databases)
        .for_each_concurrent(DROPS_AT_ONCE, |(admin_url, name)| async move {
            match sqlx::PgConnection::connect(&admin_url).await {
                Ok(mut admin) => {
                    if let Err(e) = drop_database(&mut admin, &name).await {
                        eprintln!("cannot drop test database {name}: {e}");
                    }
                    let _ = admin.close().await;
                }
                Err(e) => eprintln!("cannot drop test database {name}: {e}"),
            }
        })
        .await;
}

/// Connections the clean-up opens at once (the server's default limit is 100).
const DROPS_AT_ONCE: usize = 16;

pub(crate) async fn drop_database(admin: &mut sqlx::PgConnection, name: &str) -> Result<(), sqlx::Error> {
    // `name` is one of ours (prefix, pid, hex); identifiers cannot be bound as parameters.
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(admin)
        .await?;
    Ok(())
}

/// Test databases on this server whose creating process is gone (killed before its
/// `atexit`): `<prefix><pid>_<hex>` with no process `<pid>` on this machine.
pub(crate) async fn stale_databases(admin: &mut sqlx::PgConnection, prefix: &str) -> Result<Vec<String>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar("select datname from pg_database where starts_with(datname, $1)")
        .bind(prefix)
        .fetch_all(&mut *admin)
        .await?;
    Ok(names
        .into_iter()
        .filter(|name| {
            let pid = name[prefix.len()..].split('_').next().and_then(|p| p.parse::<u32>().ok());
            pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect())
}
