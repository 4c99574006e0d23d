//! Where the PostgreSQL binaries are.

use super::*;

/// Finds the PostgreSQL server binaries: `$TENANTGATE_PG_BINDIR`, then `initdb` on PATH
/// (symlinks resolved), then `pg_config --bindir`, then the highest
/// `/usr/lib/postgresql/<major>/bin` (Debian/Ubuntu), then Homebrew's keg-only
/// `postgresql@<major>`. A directory counts if it has `initdb`, `pg_ctl` and `postgres`.
pub fn find_bindir() -> Result<PathBuf, ClusterError> {
    let mut looked = Vec::new();
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        looked.push(format!("${BINDIR_ENV}={}", dir.display()));
    }

    match which("initdb") {
        Some(initdb) => {
            let real = fs::canonicalize(&initdb).unwrap_or(initdb);
            if let Some(dir) = real.parent() {
                if has_server_binaries(dir) {
                    return Ok(dir.to_owned());
                }
                looked.push(dir.display().to_string());
            }
        }
        None => looked.push("initdb on PATH".to_owned()),
    }

    let pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output();
    match pg_config {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server_binaries(&dir) {
                return Ok(dir);
            }
            looked.push(format!("pg_config --bindir ({})", dir.display()));
        }
        _ => looked.push("pg_config --bindir".to_owned()),
    }

    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/opt/homebrew/opt", "postgresql@", "bin"),
        ("/usr/local/opt", "postgresql@", "bin"),
    ] {
        if let Some(dir) = highest_versioned(Path::new(parent), prefix, suffix) {
            return Ok(dir);
        }
        looked.push(format!("{parent}/{prefix}*/{suffix}"));
    }
    Err(ClusterError::NotInstalled {
        looked_in: looked.join(", "),
    })
}

/// `parent/<prefix><version>/<suffix>` with the highest version that has the server binaries.
pub(crate) fn highest_versioned(parent: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(parent)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name
                .strip_prefix(prefix)?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let dir = entry.path().join(suffix);
            has_server_binaries(&dir).then_some((version, dir))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, dir)| dir)
}

pub(crate) fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|name| is_executable(&dir.join(name)))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// `which`, falling back to the sbin directories a root PATH may lack.
pub(crate) fn find_system_tool(name: &str) -> Option<PathBuf> {
    which(name).or_else(|| {
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|candidate| is_executable(candidate))
    })
}

/// A client program from the server's bindir, else from PATH (Debian ships clients apart).
pub(crate) fn client_tool(bindir: &Path, name: &str) -> PathBuf {
    let own = bindir.join(name);
    if is_executable(&own) {
        own
    } else {
        which(name).unwrap_or(own)
    }
}
