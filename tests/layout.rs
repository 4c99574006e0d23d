//! The layout rules of docs/architecture.md, checked on the source tree (no PostgreSQL).
//!
//! - No import cycle between top-level modules: the data path reads in one direction, and a
//!   module can be understood (and tested) with only the ones below it.
//! - No source file over 800 lines outside its tests.
//! - Every top-level module is in the module map of `src/lib.rs`.
//! - The library's one public module is `cli`; the rest is public only with the `internals`
//!   feature (tests, benches, fuzz).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The part of a file that is not unit tests: everything before its first `#[cfg(test)]`.
fn non_test(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// A file of unit tests only (`tests.rs`, `*_tests.rs`, declared `#[cfg(test)]`): tests may
/// reach any layer.
fn is_test_file(file: &Path) -> bool {
    file.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == "tests" || s.ends_with("_tests"))
}

/// The top-level module a file under `src/` belongs to (`None` for lib.rs and main.rs).
fn top_module(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Every `crate::<module>` a text names.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some(top) = top_module(&root, &f) else {
            continue;
        };
        if is_test_file(&f) {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read source");
        let deps = g.entry(top.clone()).or_default();
        for d in crate_paths(non_test(&text)) {
            if d != top {
                deps.insert(d);
            }
        }
    }
    g
}

/// A cycle through `start`, if any, as the path of modules.
fn cycle_from(g: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in g.get(&node).into_iter().flatten() {
            if next == start {
                let mut p = path.clone();
                p.push(start.to_owned());
                return Some(p);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let g = graph();
    assert!(g.len() > 10, "the walk found the modules: {g:?}");
    let cycles: Vec<String> = g
        .keys()
        .filter_map(|m| cycle_from(&g, m))
        .map(|p| p.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    g.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycle_from(&g, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(cycle_from(&g, "c"), None);
    assert_eq!(
        crate_paths("use crate::pool::Pool; crate::tls::x(); // crate::"),
        BTreeSet::from(["pool".to_owned(), "tls".to_owned()])
    );
}

#[test]
fn no_source_file_over_800_lines_outside_tests() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&manifest.join("src"), &mut files);
    sources(&manifest.join("crates"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.to_string_lossy().contains("/tests/") && !is_test_file(f))
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).expect("read source");
            let n = non_test(&text).lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

#[test]
fn every_top_level_module_is_in_the_module_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("lib.rs");
    let map: String = lib.lines().take_while(|l| l.starts_with("//!")).collect();
    for module in graph().keys() {
        assert!(
            map.contains(&format!("[`{module}`]")) || map.contains(&format!("`{module}`")),
            "src/lib.rs's module map does not name `{module}`"
        );
    }
}

/// A `pub mod` outside the `internal!` block would make that module an API of the proxy
/// binary's library for good; the tests, benches and fuzz targets reach the rest through the
/// `internals` feature instead.
#[test]
fn only_cli_is_public_without_the_internals_feature() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("lib.rs");
    let mut public = Vec::new();
    let mut pending_cfg = String::new();
    for line in lib.lines().map(str::trim) {
        if line.starts_with("#[") {
            pending_cfg.push_str(line);
            continue;
        }
        if let Some(name) = line.strip_prefix("pub mod ") {
            if !pending_cfg.contains("feature = \"internals\"") {
                public.push(name.trim_end_matches(';').to_string());
            }
        }
        if !line.starts_with("///") {
            pending_cfg.clear();
        }
    }
    assert_eq!(
        public,
        ["cli"],
        "modules public without the `internals` feature"
    );
}

/// The release policy (ROLLBACK, the resets, cancel-then-close) lives in `pool/reset.rs`
/// behind `PoolGuard::release`: a session that cleaned a connection itself could leave the
/// next client something the policy would not.
#[test]
fn sessions_never_clean_a_server_connection_themselves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/client");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(!files.is_empty());
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read source");
        for (i, line) in non_test(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in [
                "\"ROLLBACK",
                "DISCARD ALL\"",
                "reset_and_release",
                "reset::plan",
                "send_cancel",
                "close_gracefully",
            ] {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "release policy outside pool/: {found:?}");
}
