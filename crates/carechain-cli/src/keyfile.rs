//! Key files: JSON `{ "did": "...", "secret_key": "<hex seed>" }`, written with mode 0600.

use std::{fs, io::Write, path::Path};

use anyhow::{Context, Result, bail};
use carechain_crypto::SecretKey;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct KeyFile {
    did: String,
    secret_key: String,
}

/// Writes a new key file; refuses to overwrite.
pub fn write(path: &Path, key: &SecretKey) -> Result<()> {
    let kf = KeyFile {
        did: key.public().did().to_string(),
        secret_key: hex::encode(*key.seed()),
    };
    let text = serde_json::to_string_pretty(&kf)?;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// Reads a key file and checks that its DID matches its secret.
pub fn read(path: &Path) -> Result<SecretKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let kf: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a carechain key file", path.display()))?;
    let seed = hex::decode(kf.secret_key.trim()).context("secret_key is not hex")?;
    let key = SecretKey::from_seed_slice(&seed).context("secret_key must be 32 bytes")?;
    if key.public().did().to_string() != kf.did {
        bail!(
            "key file {}: did does not match the secret key",
            path.display()
        );
    }
    Ok(key)
}
