//! The command line as users run it: `check-config` on the shipped example and on a typo,
//! `hash-password` feeding `check-config`, and the hidden `healthcheck` used by the Dockerfile.
//! More of the operator's first hour (check-config refusing what serve refuses, pty prompts,
//! log colours, README and example agreeing with the binary) is in `tests/first_hour.rs`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_tenantgate");

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

fn tenantgate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("tenantgate runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config file in the temp dir, removed when dropped.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(contents: &str) -> TempConfig {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tenantgate-cli-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write temp config");
        TempConfig(path)
    }

    fn check(&self) -> Output {
        tenantgate(&[
            "check-config",
            "--config",
            self.0.to_str().expect("utf-8 path"),
        ])
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:6432"

[upstream]
host = "127.0.0.1"
database = "autoshop"
user = "app_user"
password = "app_password"
"#;

#[test]
fn unknown_key_fails_check_config_and_is_named() {
    let cfg = TempConfig::new(&MINIMAL.replace(
        "listen = \"127.0.0.1:6432\"",
        "listen = \"127.0.0.1:6432\"\nlisten_adress = \"0.0.0.0\"",
    ));
    let out = cfg.check();
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("listen_adress"), "{err}");

    let cfg = TempConfig::new(&format!(
        "{MINIMAL}\n[tenant]\nsettting = \"app.tenant_id\"\n"
    ));
    let out = cfg.check();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("settting"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn hash_password_verifier_is_accepted_as_scram() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tenantgate runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse battery staple\n")
        .expect("write password");
    let out = child.wait_with_output().expect("hash-password finishes");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let verifier = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    assert!(!verifier.contains("correct horse"), "{verifier}");

    let cfg = TempConfig::new(&format!(
        "{MINIMAL}\n[[users]]\nname = \"acme_app\"\nscram = \"{verifier}\"\n\
         tenant = \"11111111-1111-1111-1111-111111111111\"\n"
    ));
    let out = cfg.check();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A damaged verifier is refused, naming the user's key.
    let cfg = TempConfig::new(&format!(
        "{MINIMAL}\n[[users]]\nname = \"acme_app\"\nscram = \"{}\"\n\
         tenant = \"11111111-1111-1111-1111-111111111111\"\n",
        verifier.replace("$4096:", "$4096")
    ));
    let out = cfg.check();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("users[0].scram"),
        "{}",
        text(&out.stderr)
    );
}

/// Every key `src/config/mod.rs` accepts appears in the example (set, or commented out).
#[test]
fn example_documents_every_config_key() {
    let source = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/config/mod.rs"),
    )
    .expect("read src/config/mod.rs");
    let example = std::fs::read_to_string(example_path()).expect("read the example");
    let sections = [
        "server",
        "upstream",
        "tenant",
        "security",
        "users",
        "breakglass",
    ];
    let mut in_config_struct = false;
    let mut deserialize = false;
    let mut skip_next = false;
    let mut missing = Vec::new();
    for line in source.lines() {
        let t = line.trim();
        if t.starts_with("#[derive(") {
            deserialize = t.contains("Deserialize");
        } else if t.starts_with("pub struct") && t.ends_with('{') {
            in_config_struct = deserialize;
        } else if line.starts_with('}') {
            in_config_struct = false;
        } else if in_config_struct && t.starts_with("#[serde(") && t.contains("skip") {
            skip_next = true;
        } else if in_config_struct && t.starts_with("pub ") {
            let key = t["pub ".len()..].split(':').next().unwrap_or("").trim();
            if !std::mem::take(&mut skip_next) && !sections.contains(&key) {
                let documented = example.lines().any(|l| {
                    let l = l.trim_start_matches('#').trim_start();
                    l.strip_prefix(key)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
                });
                if !documented {
                    missing.push(key.to_owned());
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "config.example.toml lacks keys: {missing:?}"
    );
}

/// Serves one HTTP answer on a free port; returns the URL to check.
fn one_shot_http(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(answer.as_bytes());
        String::from_utf8_lossy(&req).into_owned()
    });
    (format!("http://127.0.0.1:{port}/health/live"), handle)
}

#[test]
fn healthcheck_exit_code_follows_the_http_status() {
    let (url, server) = one_shot_http("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let out = tenantgate(&["healthcheck", "--url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let request = server.join().expect("server thread");
    assert!(request.starts_with("GET /health/live HTTP/1."), "{request}");

    let (url, server) = one_shot_http("HTTP/1.1 503 Service Unavailable\r\n\r\n");
    let out = tenantgate(&["healthcheck", "--url", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("503"), "{}", text(&out.stderr));
    let _ = server.join();

    // Nothing listening: a closed port fails fast.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let out = tenantgate(&[
        "healthcheck",
        "--url",
        &format!("http://127.0.0.1:{port}/health/live"),
        "--timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
}
