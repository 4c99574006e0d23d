//! Every committed fuzz seed (and every crash turned into a seed) runs through the fuzz entry
//! points on stable Rust, so a regression fails `cargo test`, not just a fuzzing session.

use std::path::Path;

fn each(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            f(&data);
            // Every prefix too: truncation is the commonest hostile input.
            for cut in 0..data.len().min(256) {
                f(&data[..cut]);
            }
            n += 1;
        }
    }
    n
}

#[test]
fn framer_corpus() {
    assert!(each("framer", tenantgate::fuzzing::framer) > 0);
}

#[test]
fn startup_corpus() {
    assert!(each("startup", tenantgate::fuzzing::startup) > 0);
}

#[test]
fn inspect_corpus() {
    assert!(each("inspect", tenantgate::fuzzing::inspect) > 0);
}

#[test]
fn auth_corpus() {
    assert!(each("auth", tenantgate::fuzzing::auth) > 0);
}
