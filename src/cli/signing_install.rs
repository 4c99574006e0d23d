//! `tenantgate signing install` and `tenantgate signing remove-key`: the key file and the
//! database objects, kept in step.
//!
//! Order matters for a zero-downtime rotation: a proxy signs with the key file's last key after
//! its next SIGHUP, so a new key must be in the database *before* it is in the file (else every
//! signature would fail, and every tenant would see no rows), and an old key must leave the
//! database only once no proxy signs with it. So `install` applies the SQL first and writes the
//! file after; `remove-key` refuses to remove the file's signing key. With `--print` nothing is
//! applied: the file is written and the SQL printed, to be run before any proxy is reloaded.

use std::path::{Path, PathBuf};

use crate::signing::keys::{fresh_key_id, valid_key_id, KeyFileError, KeyRing, SigningKey};
use crate::signing::sql::{self, InstallOptions};
use crate::verify::{Target, VerifyError};

/// Why `signing install` / `remove-key` stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The key file is unusable.
    #[error("key file {0}")]
    Keys(#[from] KeyFileError),
    /// Connecting or applying the SQL failed (the server's SQLSTATE and message).
    #[error("{0}")]
    Database(#[from] VerifyError),
    /// The arguments contradict each other or the file.
    #[error("{0}")]
    Usage(String),
}

/// What `signing install` is asked to do.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// Where to apply the SQL (None with `print`).
    pub database_url: Option<String>,
    /// The key file (created when missing).
    pub key_file: PathBuf,
    /// Print the SQL instead of applying it.
    pub print: bool,
    /// Append a new key (rotation), which the proxies sign with after their next SIGHUP.
    pub add_key: bool,
    /// The id of the new key (default `k<UTC time>`).
    pub key_id: Option<String>,
    /// Tenant setting and owner role.
    pub options: InstallOptions,
}

/// What was done, for the command's output.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The SQL (printed with `--print`).
    pub sql: String,
    /// The key the proxies sign with once they read the file.
    pub signing_key: String,
    /// A key was created (first install or `--add-key`).
    pub new_key: Option<String>,
    /// False with `--print`: the SQL still has to be run.
    pub applied: bool,
}

fn new_key(ring: Option<&KeyRing>, id: Option<&str>) -> Result<SigningKey, InstallError> {
    let id = match id {
        Some(id) => id.to_owned(),
        None => fresh_key_id(ring.map(KeyRing::keys).unwrap_or_default()),
    };
    if !valid_key_id(&id) {
        return Err(InstallError::Usage(format!(
            "--key-id \"{id}\": must be 1 to 64 of A-Z a-z 0-9 _ -"
        )));
    }
    SigningKey::generate(&id)
        .ok_or_else(|| InstallError::Usage(format!("--key-id \"{id}\" is not a valid key id")))
}

/// `tenantgate signing install`: the SQL first, then the key file (the module documentation says
/// why).
pub async fn install(req: &InstallRequest) -> Result<Installed, InstallError> {
    let existing = match req.key_file.try_exists() {
        Ok(true) => Some(KeyRing::load(&req.key_file)?),
        Ok(false) => None,
        Err(e) => {
            return Err(KeyFileError::Read {
                path: req.key_file.clone(),
                reason: e.to_string(),
            }
            .into())
        }
    };
    let (ring, created) = match (existing, req.add_key) {
        (None, _) => {
            let k = new_key(None, req.key_id.as_deref())?;
            let id = k.id().to_owned();
            (KeyRing::single(k), Some(id))
        }
        (Some(mut ring), true) => {
            let k = new_key(Some(&ring), req.key_id.as_deref())?;
            let id = k.id().to_owned();
            ring.push(k).map_err(InstallError::Usage)?;
            (ring, Some(id))
        }
        (Some(ring), false) => {
            if req.key_id.is_some() {
                return Err(InstallError::Usage(format!(
                    "{} exists: --key-id names a new key, give --add-key too",
                    req.key_file.display()
                )));
            }
            (ring, None)
        }
    };
    let sql = sql::install(&req.options, &ring);
    let applied = if req.print {
        false
    } else {
        apply(req.database_url.as_deref(), &sql).await?;
        true
    };
    if created.is_some() {
        ring.write(&req.key_file)?;
    }
    Ok(Installed {
        sql,
        signing_key: ring.current().id().to_owned(),
        new_key: created,
        applied,
    })
}

/// `tenantgate signing remove-key`: the key leaves the database, then the file. Returns the
/// SQL (applied unless `print`).
pub async fn remove_key(
    database_url: Option<&str>,
    key_file: &Path,
    key_id: &str,
    print: bool,
) -> Result<String, InstallError> {
    let mut ring = KeyRing::load(key_file)?;
    ring.remove(key_id).map_err(InstallError::Usage)?;
    let sql = sql::remove_key(key_id);
    if !print {
        apply(database_url, &sql).await?;
    }
    ring.write(key_file)?;
    Ok(sql)
}

/// Connects to `url` and runs `sql` as one simple-query batch (its own transaction control).
async fn apply(url: Option<&str>, sql: &str) -> Result<(), InstallError> {
    let url = url.ok_or_else(|| {
        InstallError::Usage("--database-url is required unless --print is given".into())
    })?;
    let session = Target::from_url(url)?.connect().await?;
    // Its own Query: the SQL's transaction must start after the default changed.
    let writable = session
        .client
        .batch_execute("SET default_transaction_read_only = off")
        .await;
    let done = match writable {
        Ok(()) => session.client.batch_execute(sql).await,
        Err(e) => Err(e),
    }
    .map_err(|e| VerifyError::query("applying the signing SQL", e));
    session.close().await;
    done?;
    Ok(())
}
