//! `[server] auth_file`: client secrets kept out of the main file, in PgBouncer's format:
//!
//! ```text
//! "acme_app" "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"
//! "dev_user" "plaintext password"
//! ```
//!
//! Two double-quoted fields a line (a `""` inside a field is one `"`); the rest of the line is
//! ignored, as PgBouncer does; empty lines and lines starting with `;` or `#` are skipped.
//!
//! The file supplies secrets only: who a user is (its kind and tenants) stays in `[[users]]`.
//! So every name in the file must have a `[[users]]` entry, and that entry must not give a
//! `password` or `scram` of its own: a secret in both places is an error, never a silent
//! precedence. A SCRAM verifier becomes the entry's `scram`, plaintext its `password` (PgBouncer
//! accepts plaintext, and so does `[[users]]`). An `md5…` hash is refused: tenantgate's md5
//! exchange needs the plaintext. The file is read with the configuration, so SIGHUP (and the
//! console's RELOAD) re-read it; a reload with a bad file keeps the running configuration.

use std::path::Path;

use super::{invalid, ConfigError, UserConfig};

/// One line of the file.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// 1-based line number.
    line: usize,
    name: String,
    /// The SCRAM verifier or plaintext password.
    secret: String,
}

/// Reads `path` and gives each listed `[[users]]` entry its secret.
pub fn merge(path: &Path, users: &mut [UserConfig]) -> Result<(), ConfigError> {
    let key = "server.auth_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    let entries = parse(&text).map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
    let mut seen = std::collections::HashSet::new();
    for e in entries {
        let at = format!("{} line {}", path.display(), e.line);
        if !seen.insert(e.name.clone()) {
            return Err(invalid(
                key,
                format!("{at}: user \"{}\" is listed twice", e.name),
            ));
        }
        let Some(user) = users.iter_mut().find(|u| u.name == e.name) else {
            return Err(invalid(
                key,
                format!(
                    "{at}: user \"{}\" has no [[users]] entry (its kind and tenant are set there)",
                    e.name
                ),
            ));
        };
        if user.password.is_some() || user.scram.is_some() {
            return Err(invalid(
                key,
                format!(
                    "{at}: user \"{}\" also has a password or scram in [[users]]: keep its secret in one place",
                    e.name
                ),
            ));
        }
        if e.secret.starts_with("SCRAM-SHA-256$") {
            user.scram = Some(e.secret);
        } else if is_md5_hash(&e.secret) {
            return Err(invalid(
                key,
                format!(
                    "{at}: user \"{}\" has an md5 hash; tenantgate needs a SCRAM-SHA-256 verifier (`tenantgate hash-password`) or the plaintext",
                    e.name
                ),
            ));
        } else if e.secret.is_empty() {
            return Err(invalid(
                key,
                format!("{at}: user \"{}\" has an empty password", e.name),
            ));
        } else {
            user.password = Some(e.secret);
        }
    }
    Ok(())
}

/// `md5` followed by 32 hex digits (PostgreSQL's stored md5 format).
fn is_md5_hash(s: &str) -> bool {
    s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The entries of the file, or what is wrong with which line.
fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: expected \"user\" \"secret\"", i + 1);
        let (name, rest) = quoted(line).ok_or_else(bad)?;
        let (secret, _) = quoted(rest.trim_start()).ok_or_else(bad)?;
        if name.is_empty() {
            return Err(format!("line {}: empty user name", i + 1));
        }
        out.push(Entry {
            line: i + 1,
            name,
            secret,
        });
    }
    Ok(out)
}

/// A leading double-quoted field (`""` is a quote) and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices().peekable();
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if matches!(chars.peek(), Some((_, '"'))) {
                chars.next();
                value.push('"');
                continue;
            }
            return Some((value, &s[i + 2..]));
        }
        value.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbouncer_lines() {
        let e = parse("; comment\n\"a\" \"SCRAM-SHA-256$x\" extra\n\n\"q\"\"uote\" \"p\"\"w\"\n")
            .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].line, e[0].name.as_str()), (2, "a"));
        assert_eq!(e[0].secret, "SCRAM-SHA-256$x");
        assert_eq!(
            (e[1].name.as_str(), e[1].secret.as_str()),
            ("q\"uote", "p\"w")
        );
        assert!(parse("a b\n").is_err());
        assert!(parse("\"a\"\n").is_err());
        assert!(parse("\"a\" \"unterminated\n").is_err());
        assert!(is_md5_hash("md545f2603610af569b6155c45067268c6b"));
        assert!(!is_md5_hash("md5 is a fine password"));
    }
}
