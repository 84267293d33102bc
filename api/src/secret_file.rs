//! Development secrets generated once in the data directory (the JWT secret, the master
//! key of personal data), so a newcomer configures nothing and restarts keep working.

use std::io::Write;
use std::path::Path;

/// Reads the secret in `path`, or writes `generate()` there readable by the owner only
/// (0600). Two processes racing to create it agree: the loser reads the winner's file.
pub fn load_or_create(path: &Path, what: &str, generate: impl FnOnce() -> String) -> std::io::Result<String> {
    if let Some(secret) = read(path)? {
        return Ok(secret);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes()).and_then(|()| file.sync_all())?;
            tracing::info!(path = %path.display(), "generated a development {what}");
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| std::io::Error::other(format!("the {what} file is empty")))
        }
        Err(e) => Err(e),
    }
}

/// The trimmed contents, `None` when the file is missing or blank.
pub fn read(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
