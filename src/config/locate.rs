//! Where in the file a key is: error messages name the key *and* its line, because an operator
//! with a 200-line config should not have to count `[[users]]` entries to find `users[7]`.
//! Parse errors get the same treatment, with Rust's type names put into words.

use toml_edit::{ImDocument, TableLike};

use super::ConfigError;

/// 1-based line of byte `offset` in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// One step of a dotted key path: `users[2].tenant` is `users`, `[2]`, `tenant`.
enum Step<'a> {
    Name(&'a str),
    Index(usize),
}

fn steps(key: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Step::Name(name));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].parse() {
                out.push(Step::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

/// The line of `key` (e.g. `upstream.port`, `users[2].tenant`) in `text`: the key itself when it
/// is written, else the nearest enclosing table that is (`[upstream]`, the third `[[users]]`).
/// `None` when the text does not parse or nothing of the path is there.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let doc = ImDocument::parse(text).ok()?;
    span_of(doc.as_table(), key).map(|s| line_at(text, s.start))
}

fn span_of(root: &dyn TableLike, key: &str) -> Option<std::ops::Range<usize>> {
    let mut table = root;
    let mut found = None;
    let mut steps = steps(key).into_iter().peekable();
    while let Some(step) = steps.next() {
        let Step::Name(name) = step else {
            return found;
        };
        let Some((k, item)) = table.get_key_value(name) else {
            return found;
        };
        found = k.span().or_else(|| item.span()).or(found);
        if let Some(Step::Index(i)) = steps.peek() {
            let i = *i;
            steps.next();
            let Some(t) = item.as_array_of_tables().and_then(|a| a.get(i)) else {
                return found;
            };
            found = t.span().or(found);
            table = t;
        } else if let Some(t) = item.as_table_like() {
            if let Some(span) = item.as_table().and_then(|t| t.span()) {
                found = Some(span);
            }
            table = t;
        } else if steps.peek().is_some() {
            return found;
        }
    }
    found
}

/// The dotted key written on `line` (1-based): the table header above it plus the key before
/// `=`, with `[[users]]` entries numbered from 0 as in validation errors.
pub fn key_on_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    let mut arrays: Vec<(String, usize)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            let i = match arrays.iter_mut().find(|(a, _)| *a == name) {
                Some((_, i)) => {
                    *i += 1;
                    *i
                }
                None => {
                    arrays.push((name.clone(), 0));
                    0
                }
            };
            table = format!("{name}[{i}]");
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_owned();
        }
        if n + 1 == line {
            let key = l.split('=').next().filter(|_| l.contains('='))?.trim();
            if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
                return None;
            }
            return Some(if table.is_empty() {
                key.to_owned()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

/// A TOML or type error, with its line, the key on it, and types in words rather than Rust's
/// (`expected u16` means nothing to an operator).
pub fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let mut message = humane_types(e.message().trim());
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let table = e
            .span()
            .filter(|s| s.start > 0)
            .map(|s| line_at(text, s.start));
        return match table {
            // Inside a table: serde points at the table; say which key it lacks.
            Some(line) => ConfigError::At {
                line,
                source: Box::new(ConfigError::Parse(format!(
                    "missing required key `{field}` in this table"
                ))),
            },
            // At the top level there is no line to point at: name the section.
            None => ConfigError::Parse(format!(
                "missing required section [{field}] (see config.example.toml)"
            )),
        };
    }
    let Some(span) = e.span() else {
        return ConfigError::Parse(message);
    };
    let line = line_at(text, span.start);
    if let Some(key) = key_on_line(text, line) {
        if !message.contains(&format!("`{key}`")) {
            message = format!("`{key}`: {message}");
        }
    }
    ConfigError::At {
        line,
        source: Box::new(ConfigError::Parse(message)),
    }
}

/// Rewrites serde's Rust type names in an error message into words.
fn humane_types(message: &str) -> String {
    let mut m = message.to_owned();
    for (rust, words) in [
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ] {
        m = m.replace(rust, words);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\n[server]\nlisten = \"x\"\n\n[upstream]\nhost = \"h\"\n\n[[users]]\nname = \"a\"\n\n[[users]]\nname = \"b\"\ntenant = \"t\"\n";

    #[test]
    fn keys_and_tables_have_lines() {
        assert_eq!(line_of(TEXT, "server.listen"), Some(3));
        assert_eq!(line_of(TEXT, "upstream.host"), Some(6));
        assert_eq!(
            line_of(TEXT, "upstream.port"),
            Some(5),
            "missing key: its table"
        );
        assert_eq!(line_of(TEXT, "users[1].tenant"), Some(13));
        assert_eq!(line_of(TEXT, "users[1].password"), Some(11));
        assert_eq!(line_of(TEXT, "users[0].name"), Some(9));
        assert_eq!(line_of(TEXT, "tenant.setting"), None);
    }

    #[test]
    fn key_on_a_line() {
        assert_eq!(key_on_line(TEXT, 3).as_deref(), Some("server.listen"));
        assert_eq!(key_on_line(TEXT, 13).as_deref(), Some("users[1].tenant"));
        assert_eq!(key_on_line(TEXT, 1), None);
    }
}
