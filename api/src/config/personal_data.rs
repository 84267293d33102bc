//! Where the master key of personal data comes from (see the `vault` crate).

use std::path::{Path, PathBuf};

use clap::Args;
use vault::MasterKey;

/// Name of the generated development master key inside the data directory.
pub const MASTER_KEY_FILE: &str = "master_key";

#[derive(Debug, Clone, Default, Args)]
pub struct PersonalDataConfig {
    /// File holding the master key that wraps each customer's data key: 64 hex digits
    /// (`openssl rand -hex 32`). Required in production; development generates
    /// `<data-dir>/master_key`. Losing it loses all personal data.
    #[arg(long, env = "CARTSOURCE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Master keys being rotated away from, comma separated: still accepted, and every data
    /// key they wrapped is re-wrapped with --master-key-file at start. Remove them after.
    #[arg(long, env = "CARTSOURCE_PREVIOUS_MASTER_KEY_FILES", value_delimiter = ',')]
    pub previous_master_key_files: Vec<PathBuf>,
}

impl PersonalDataConfig {
    /// The master key and the previous ones; `generated_in` (development) is where a
    /// missing master key is generated, `None` (production) makes it required.
    pub fn master_keys(&self, generated_in: Option<&Path>) -> Result<(MasterKey, Vec<MasterKey>), String> {
        let master = match (&self.master_key_file, generated_in) {
            (Some(path), _) => read(path)?,
            (None, Some(dir)) => {
                let path = dir.join(MASTER_KEY_FILE);
                let hex = crate::secret_file::load_or_create(&path, "master key for personal data", MasterKey::generate_hex)
                    .map_err(|e| format!("cannot read or create the master key {}: {e}", path.display()))?;
                MasterKey::from_hex(&hex).map_err(|e| format!("{}: {e}", path.display()))?
            }
            (None, None) => {
                return Err("production mode needs --master-key-file (CARTSOURCE_MASTER_KEY_FILE): \
                            refusing to start with a generated master key"
                    .to_owned())
            }
        };
        let previous = self.previous_master_key_files.iter().map(|p| read(p)).collect::<Result<_, _>>()?;
        Ok((master, previous))
    }
}

fn read(path: &Path) -> Result<MasterKey, String> {
    let text = crate::secret_file::read(path)
        .map_err(|e| format!("cannot read the master key file {}: {e}", path.display()))?
        .ok_or_else(|| format!("the master key file {} is missing or empty", path.display()))?;
    MasterKey::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_generates_a_key_once_and_production_requires_one() {
        let dir = std::env::temp_dir().join(format!("cartsource-master-key-{}", uuid::Uuid::new_v4().simple()));
        let config = PersonalDataConfig::default();
        let (first, _) = config.master_keys(Some(&dir)).unwrap();
        let (again, _) = config.master_keys(Some(&dir)).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint());
        let refused = config.master_keys(None).unwrap_err();
        assert!(refused.contains("--master-key-file"), "{refused}");

        let file = dir.join("other");
        std::fs::write(&file, "not hex").unwrap();
        let configured = PersonalDataConfig {
            master_key_file: Some(file.clone()),
            previous_master_key_files: vec![dir.join(MASTER_KEY_FILE)],
        };
        let bad = configured.master_keys(None).unwrap_err();
        assert!(bad.contains("64 hex digits"), "{bad}");
        std::fs::write(&file, MasterKey::generate_hex()).unwrap();
        let (master, previous) = configured.master_keys(None).unwrap();
        assert_ne!(master.fingerprint(), first.fingerprint());
        assert_eq!(previous[0].fingerprint(), first.fingerprint());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
