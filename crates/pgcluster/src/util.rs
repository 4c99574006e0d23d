//! Small helpers: free ports, running commands, quoting, random tokens.

use super::*;

/// A port that was free a moment ago on 127.0.0.1.
pub(crate) fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| ClusterError::Io {
            what: "finding a free port on 127.0.0.1".to_owned(),
            source,
        })
}

pub(crate) fn run(cmd: &mut Command) -> Result<Output, ClusterError> {
    cmd.output().map_err(|source| ClusterError::Io {
        what: format!("running {:?}", cmd.get_program()),
        source,
    })
}

pub(crate) fn combined_output(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stderr.trim());
    }
    text
}

pub(crate) fn tail_of(path: &Path, lines: usize) -> String {
    let Ok(bytes) = fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// `"name"` with embedded quotes doubled: any string is a valid identifier this way.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A `postgresql.conf` string value: single-quoted, `'` doubled.
pub(crate) fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A libpq conninfo value: single-quoted, `\` and `'` backslash-escaped.
pub(crate) fn quote_conninfo(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}
