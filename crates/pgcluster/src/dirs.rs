//! The cluster's private directory: creating it for the server's OS user, and sweeping
//! directories left by processes that died.

use super::*;

pub(crate) fn base_dir(requested: Option<&Path>) -> PathBuf {
    if let Some(dir) = requested {
        return dir.to_owned();
    }
    let tmp = std::env::temp_dir();
    // <base>/tenantgate-pg-<12 chars>/.s.PGSQL.<port>.lock must fit in sun_path.
    let socket_len =
        tmp.as_os_str().len() + 1 + DIR_PREFIX.len() + 12 + "/.s.PGSQL.65535.lock".len();
    if socket_len > MAX_SOCKET_PATH_LEN {
        PathBuf::from("/tmp")
    } else {
        tmp
    }
}

/// Every ancestor of a directory the server's OS user must enter needs search permission.
pub(crate) fn check_traversable(base: &Path) -> Result<(), ClusterError> {
    let base = fs::canonicalize(base).map_err(|source| ClusterError::Io {
        what: format!("resolving {}", base.display()),
        source,
    })?;
    for dir in base.ancestors() {
        let Ok(meta) = fs::metadata(dir) else {
            continue;
        };
        if meta.mode() & 0o001 == 0 {
            return Err(ClusterError::Unreachable {
                dir: dir.to_owned(),
            });
        }
    }
    Ok(())
}

/// Creates `<base>/tenantgate-pg-<random>` (0700, handed to `owner`) with our pid inside.
pub(crate) fn create_root(base: &Path, owner: Option<(u32, u32)>) -> Result<PathBuf, ClusterError> {
    let io_err = |what: String| move |source: io::Error| ClusterError::Io { what, source };
    let mut attempts = 0;
    let root = loop {
        attempts += 1;
        let candidate = base.join(format!("{DIR_PREFIX}{}", random_token(12).to_lowercase()));
        match fs::DirBuilder::new().mode(0o700).create(&candidate) {
            Ok(()) => break candidate,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 10 => continue,
            Err(e) => return Err(io_err(format!("creating {}", candidate.display()))(e)),
        }
    };
    let setup = || -> Result<(), ClusterError> {
        write_private(
            &root.join(OWNER_FILE),
            format!("{}\n", std::process::id()).as_bytes(),
            owner,
        )?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).map_err(io_err(format!(
                "chown {} to {SERVER_OS_USER}",
                root.display()
            )))?;
        }
        Ok(())
    };
    setup().inspect_err(|_| {
        let _ = fs::remove_dir_all(&root);
    })?;
    Ok(root)
}

/// Writes a 0600 file, handed to `owner` when given.
pub(crate) fn write_private(
    path: &Path,
    contents: &[u8],
    owner: Option<(u32, u32)>,
) -> Result<(), ClusterError> {
    let io_err = |source| ClusterError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(io_err)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err)?;
    }
    Ok(())
}

/// Stops and removes clusters under `base` whose owning process is gone.
pub(crate) fn sweep_stale(base: &Path, bindir: &Path, run_as: &RunAs) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let root = entry.path();
        // No (or a half-written) owner file: a cluster being created right now. Leave it.
        let Some(pid) = fs::read_to_string(root.join(OWNER_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 0)
        else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        tracing::info!(dir = %root.display(), owner_pid = pid, "removing a stale throwaway cluster");
        Instance {
            id: 0,
            data_dir: root.join("data"),
            root,
            bindir: bindir.to_owned(),
            run_as: run_as.clone(),
        }
        .shutdown();
    }
}
