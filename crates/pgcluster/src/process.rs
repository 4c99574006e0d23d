//! Running the server's programs as the `postgres` OS user when we are root, and signalling
//! processes safely.

use super::*;

/// SIGKILLs the postmaster named in `pidfile`, but only if that process still runs in
/// `data_dir` (Linux `/proc`), so a recycled pid is never hit. Its children exit by themselves
/// once they notice the postmaster is gone.
pub(crate) fn kill_postmaster(pidfile: &Path, data_dir: &Path) {
    let Some(pid) = fs::read_to_string(pidfile)
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .and_then(|line| line.trim().parse::<i32>().ok())
        })
        .filter(|pid| *pid > 0)
    else {
        return;
    };
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let ours = match (cwd, fs::canonicalize(data_dir).ok()) {
        (Some(cwd), Some(data)) => cwd == data,
        _ => false,
    };
    if ours {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid was checked above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

impl RunAs {
    pub(crate) fn detect() -> Result<RunAs, ClusterError> {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(RunAs::CurrentUser);
        }
        if let Some(setpriv) = find_system_tool("setpriv") {
            Ok(RunAs::Setpriv(setpriv))
        } else if let Some(runuser) = find_system_tool("runuser") {
            Ok(RunAs::Runuser(runuser))
        } else {
            Err(ClusterError::CannotDropRoot {
                reason: "neither `setpriv` nor `runuser` is installed (util-linux)".to_owned(),
            })
        }
    }

    pub(crate) fn command(&self, program: &Path) -> Command {
        match self {
            RunAs::CurrentUser => Command::new(program),
            RunAs::Setpriv(setpriv) => {
                let mut cmd = Command::new(setpriv);
                cmd.arg(format!("--reuid={SERVER_OS_USER}"))
                    .arg(format!("--regid={SERVER_OS_USER}"))
                    .args(["--init-groups", "--"])
                    .arg(program);
                cmd
            }
            RunAs::Runuser(runuser) => {
                let mut cmd = Command::new(runuser);
                cmd.args(["-u", SERVER_OS_USER, "--"]).arg(program);
                cmd
            }
        }
    }
}

pub(crate) fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is delivered.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub(crate) fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: `passwd` is plain old data; all-zero is a valid value to be overwritten.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf.len()` is the buffer's real size;
    // getpwnam_r (unlike getpwnam) uses no static storage, so it is thread-safe.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}
