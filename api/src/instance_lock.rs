//! One server per SQLite database: SQLite is single-process here (the read side elects no
//! leader on it), so a second `cartsource` on the same data directory must refuse to start
//! before it touches anything, naming the process that holds it, and leave that one alone.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::server::StartError;

/// The file next to the SQLite database that the running server keeps locked.
pub const LOCK_FILE: &str = "cartsource.lock";

/// Held for the life of the server; the OS releases the lock when the process ends, also
/// after kill -9, so a stale file never blocks a restart.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

/// Locks the directory of the SQLite database `url` names; `None` for Postgres.
pub fn lock(database_url: &str) -> Result<Option<InstanceLock>, StartError> {
    let Some(database) = store::sqlite::database_file(database_url) else {
        return Ok(None);
    };
    let dir = database.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let path = dir.join(LOCK_FILE);
    let failed = |source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the message a second process prints.
            file.set_len(0).map_err(failed)?;
            write!(file, "{}", std::process::id()).map_err(failed)?;
            Ok(Some(InstanceLock { _file: file }))
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Locked {
            path: path.display().to_string(),
            holder: holder(&mut file),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
    }
}

fn holder(file: &mut File) -> String {
    let mut pid = String::new();
    let _ = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut pid));
    match pid.trim() {
        "" => "another process".to_owned(),
        pid => format!("process {pid}"),
    }
}
