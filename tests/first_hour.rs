//! The operator's first hour (issue 16), through the binary as an operator runs it:
//! `check-config` refuses every config `serve` would refuse and names key and line; listen
//! addresses and durations are written as PgBouncer users write them; `hash-password` prompts
//! without echo on a terminal; logs carry colour only on a terminal; the example config, the
//! README and the event schema agree with the binary. Nothing here needs PostgreSQL.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_tenantgate");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn manifest(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A private temporary directory, removed with everything in it when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "tenantgate-first-hour-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check_config(path: &Path) -> Output {
    Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(path)
        .env_remove("RUST_LOG")
        .output()
        .expect("tenantgate runs")
}

/// A valid config in `dir` (event log inside it); `server_extra`/`user_extra` are spliced in.
fn config(dir: &TempDir, server_extra: &str, users: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:6432"
{server_extra}

[upstream]
host = "127.0.0.1"
database = "autoshop"
user = "app_user"
password = "app_password"

[security]
event_log = "{events}"

{users}"#,
        events = dir.path("events.jsonl").display()
    )
}

const ONE_USER: &str = "[[users]]\nname = \"acme_app\"\npassword = \"pw\"\ntenant = \"11111111-1111-1111-1111-111111111111\"\n";

/// Runs check-config on `contents`; asserts it fails naming `key` with a line, and that the
/// message contains `words`. Returns stderr.
fn refused(dir: &TempDir, contents: &str, key: &str, words: &str) -> String {
    let path = dir.write("tenantgate.toml", contents);
    let out = check_config(&path);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "accepted:\n{contents}\n{err}");
    assert!(err.contains(key), "key {key} not named: {err}");
    assert!(err.contains(words), "{words:?} missing: {err}");
    assert!(err.contains("line "), "no line: {err}");
    assert_eq!(err.lines().count(), 1, "one line per error: {err}");
    err
}

#[test]
fn check_config_refuses_what_serve_refuses_and_names_key_and_line() {
    let dir = TempDir::new();
    let ok = dir.write("ok.toml", &config(&dir, "", ONE_USER));
    let out = check_config(&ok);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The event log's directory must exist and be writable.
    let missing_dir = config(&dir, "", ONE_USER).replace(
        &dir.path("events.jsonl").display().to_string(),
        &dir.path("no/such/dir/events.jsonl").display().to_string(),
    );
    let err = refused(&dir, &missing_dir, "security.event_log", "does not exist");
    assert!(err.contains("line 12"), "{err}");
    let is_dir = config(&dir, "", ONE_USER).replace(
        &dir.path("events.jsonl").display().to_string(),
        &dir.0.display().to_string(),
    );
    refused(&dir, &is_dir, "security.event_log", "is a directory");

    // TLS files: missing, garbage, a directory, a key that is not a key.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert_path = dir.write("server.crt", &cert.cert.pem());
    let key_path = dir.write("server.key", &cert.key_pair.serialize_pem());
    let garbage = dir.write("garbage.pem", "not a certificate\n");
    let tls = |c: &Path, k: &Path| {
        config(
            &dir,
            &format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"",
                c.display(),
                k.display()
            ),
            ONE_USER,
        )
    };
    let out = check_config(&dir.write("tls.toml", &tls(&cert_path, &key_path)));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = refused(
        &dir,
        &tls(&dir.path("missing.crt"), &key_path),
        "server.tls_cert",
        "No such file",
    );
    assert!(err.contains("line 3"), "{err}");
    refused(
        &dir,
        &tls(&garbage, &key_path),
        "server.tls_cert",
        "garbage.pem",
    );
    refused(
        &dir,
        &tls(&dir.0, &key_path),
        "server.tls_cert",
        "is a directory",
    );
    refused(
        &dir,
        &tls(&cert_path, &garbage),
        "server.tls_key",
        "garbage.pem",
    );
    refused(
        &dir,
        &tls(&cert_path, &dir.path("nokey")),
        "server.tls_key",
        "No such file",
    );

    // The upstream CA bundle.
    let ca = |p: &Path| {
        config(&dir, "", ONE_USER).replace(
            "password = \"app_password\"",
            &format!(
                "password = \"app_password\"\ntls = \"verify-full\"\ntls_ca = \"{}\"",
                p.display()
            ),
        )
    };
    let out = check_config(&dir.write("ca.toml", &ca(&cert_path)));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    refused(
        &dir,
        &ca(&dir.path("ca.pem")),
        "upstream.tls_ca",
        "No such file",
    );
    refused(&dir, &ca(&garbage), "upstream.tls_ca", "garbage.pem");

    // Nobody could log in (no users at all: there is no line to point at).
    let out = check_config(&dir.write("nousers.toml", &config(&dir, "", "")));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("`users`") && err.contains("no client could log in"),
        "{err}"
    );
    refused(
        &dir,
        &format!("users = []\n{}", config(&dir, "", "")),
        "`users`",
        "no client could log in",
    );
    // A cleartext-password user without client TLS can never log in.
    let cleartext = ONE_USER.replace(
        "password = \"pw\"",
        "password = \"pw\"\nauth = \"password\"",
    );
    refused(&dir, &config(&dir, "", &cleartext), "users[0].auth", "TLS");
    let out = check_config(&dir.write(
        "cleartext-tls.toml",
        &config(
            &dir,
            &format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"",
                cert_path.display(),
                key_path.display()
            ),
            &cleartext,
        ),
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn errors_use_words_name_keys_and_lines() {
    let dir = TempDir::new();
    let base = config(&dir, "", ONE_USER);
    // Rust type names never reach the operator.
    for (from, to, key) in [
        (
            "host = \"127.0.0.1\"",
            "host = \"127.0.0.1\"\nport = \"five\"",
            "upstream.port",
        ),
        (
            "listen = \"127.0.0.1:6432\"",
            "listen = \"127.0.0.1:6432\"\nmax_client_conn = \"many\"",
            "server.max_client_conn",
        ),
        (
            "listen = \"127.0.0.1:6432\"",
            "listen = \"127.0.0.1:6432\"\nauth_timeout = \"soon\"",
            "server.auth_timeout",
        ),
    ] {
        let err = refused(&dir, &base.replace(from, to), key, "expected");
        for rust in ["u16", "usize", "f64", "u64"] {
            assert!(!err.contains(rust), "{err}");
        }
    }
    // Which of host, database and user is empty.
    refused(
        &dir,
        &base.replace("database = \"autoshop\"", "database = \"\""),
        "upstream.database",
        "must not be empty",
    );
    refused(
        &dir,
        &base.replace("user = \"app_user\"", "user = \"\""),
        "upstream.user",
        "must not be empty",
    );
    // A duplicate user: its own line, and which entry it repeats.
    let err = refused(
        &dir,
        &format!("{base}\n{ONE_USER}"),
        "users[1].name",
        "users[0]",
    );
    assert!(err.contains("line 20"), "{err}");
    // A missing section is named, not pinned on line 1 (a comment).
    let path = dir.write(
        "nosection.toml",
        "# my proxy\n[server]\nlisten = \"127.0.0.1:6432\"\n",
    );
    let out = check_config(&path);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("[upstream]") && !err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn durations_and_listen_addresses_as_operators_write_them() {
    let dir = TempDir::new();
    let base = config(&dir, "", ONE_USER);
    let durations = base.replace(
        "password = \"app_password\"",
        "password = \"app_password\"\npool_timeout = \"30s\"\nidle_timeout = \"5m\"\nconnect_timeout = 5\nserver_lifetime = \"1h\"",
    );
    let out = check_config(&dir.write("durations.toml", &durations));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for listen in [
        "*:6432",
        ":6432",
        "localhost:6432",
        "[::1]:6432",
        "0.0.0.0:6432",
    ] {
        let c = base.replace("127.0.0.1:6432", listen);
        let out = check_config(&dir.write("listen.toml", &c));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{listen}: {}",
            text(&out.stderr)
        );
    }
    // A Unix socket: a directory that exists (`<dir>/.s.PGSQL.6432`), or the socket file.
    let socket_dir = dir.path("sockets");
    std::fs::create_dir_all(&socket_dir).expect("socket dir");
    let socket_dir = socket_dir.display().to_string();
    for listen in [socket_dir.clone(), format!("{socket_dir}/.s.PGSQL.5433")] {
        let c = base.replace("127.0.0.1:6432", &listen);
        let out = check_config(&dir.write("unix-listen.toml", &c));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{listen}: {}",
            text(&out.stderr)
        );
    }
    let err = refused(
        &dir,
        &base.replace("127.0.0.1:6432", "/nonexistent/tenantgate"),
        "server.listen",
        "does not exist",
    );
    assert!(err.contains("line 2"), "{err}");
    refused(
        &dir,
        &base.replace("127.0.0.1:6432", &format!("{socket_dir}/.s.PGSQL.x")),
        "server.listen",
        ".s.PGSQL.<port>",
    );
    refused(
        &dir,
        &base.replace("127.0.0.1:6432", "127.0.0.1"),
        "server.listen",
        "no port",
    );
    // Unix-socket upstream: a directory, without TLS.
    let unix = base.replace("host = \"127.0.0.1\"", "host = \"/var/run/postgresql\"");
    let out = check_config(&dir.write("unix.toml", &unix));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    refused(
        &dir,
        &unix.replace(
            "password = \"app_password\"",
            "password = \"app_password\"\ntls = \"require\"",
        ),
        "upstream.tls",
        "Unix",
    );
}

#[test]
fn serve_errors_say_each_cause_once_and_name_the_key() {
    let dir = TempDir::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    // The upstream is a closed port: the start-up check is deferred, then binding fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let c = config(&dir, "", ONE_USER)
        .replace("127.0.0.1:6432", &format!("127.0.0.1:{port}"))
        .replace(
            "host = \"127.0.0.1\"",
            &format!("host = \"127.0.0.1\"\nport = {closed}"),
        );
    let path = dir.write("serve.toml", &c);
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .expect("tenantgate runs");
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    assert!(err.contains("server.listen"), "{err}");
    drop(taken);

    // A config check failure stops serve with the same words as check-config.
    let bad = dir.write(
        "bad.toml",
        &c.replace(
            &dir.path("events.jsonl").display().to_string(),
            "/nonexistent-dir/e.jsonl",
        ),
    );
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&bad)
        .env("RUST_LOG", "off")
        .output()
        .expect("tenantgate runs");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("security.event_log") && err.contains("does not exist"),
        "{err}"
    );
}

/// The example with its absolute paths moved under `root` (directories created), so that
/// "the paths it names exist".
fn example_under(root: &TempDir) -> String {
    let example = std::fs::read_to_string(manifest("config.example.toml")).expect("example");
    std::fs::create_dir_all(root.path("var/log/tenantgate")).expect("mkdir");
    std::fs::create_dir_all(root.path("etc/tenantgate/tls")).expect("mkdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    std::fs::write(root.path("etc/tenantgate/tls/server.crt"), cert.cert.pem()).expect("write");
    std::fs::write(
        root.path("etc/tenantgate/tls/server.key"),
        cert.key_pair.serialize_pem(),
    )
    .expect("write");
    std::fs::write(
        root.path("etc/tenantgate/tls/upstream-ca.pem"),
        cert.cert.pem(),
    )
    .expect("write");
    // An auth_file (every example user already has its secret in [[users]], so none here).
    std::fs::write(
        root.path("etc/tenantgate/userlist.txt"),
        "; \"user\" \"SCRAM-SHA-256$...\"\n",
    )
    .expect("write");
    // The signing key file, as `tenantgate signing install` writes it (mode 0600).
    let key = tenantgate::signing::SigningKey::generate("k1").expect("key id");
    tenantgate::signing::KeyRing::single(key)
        .write(&root.path("etc/tenantgate/signing.keys"))
        .expect("key file");
    example
        .replace("\"/var/log/", &format!("\"{}/var/log/", root.0.display()))
        .replace(
            "\"/etc/tenantgate/",
            &format!("\"{}/etc/tenantgate/", root.0.display()),
        )
}

#[test]
fn example_config_passes_once_its_paths_exist() {
    let root = TempDir::new();
    let path = root.write("example.toml", &example_under(&root));
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("OK"));
    // As shipped, on a machine without its log directory, the key is named.
    if !Path::new("/var/log/tenantgate").exists() {
        let out = check_config(&manifest("config.example.toml"));
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("security.event_log"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// Every optional key shown commented out in the example is accepted when uncommented (with
/// its neighbours: `tls_cert` and `tls_key` go together; `password_env` replaces `password`).
#[test]
fn every_commented_key_in_the_example_is_accepted() {
    let root = TempDir::new();
    let example = example_under(&root);
    let lines: Vec<&str> = example.lines().collect();
    let is_key = |l: &str| {
        let t = l.trim_start();
        t.strip_prefix("# ").is_some_and(|r| {
            let k = r.split('=').next().unwrap_or("").trim();
            r.contains(" = ")
                && !k.is_empty()
                && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
    };
    let mut i = 0;
    let mut tried = Vec::new();
    while i < lines.len() {
        if !is_key(lines[i]) {
            i += 1;
            continue;
        }
        // A group: consecutive commented key lines.
        let start = i;
        while i < lines.len() && is_key(lines[i]) {
            i += 1;
        }
        let mut out_lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let mut env = Vec::new();
        let mut replaces_password = false;
        for (j, line) in out_lines.iter_mut().enumerate().take(i).skip(start) {
            let uncommented = lines[j].trim_start().trim_start_matches("# ").to_owned();
            let key = uncommented
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            if key.ends_with("_env") {
                let var = uncommented.split('"').nth(1).unwrap_or("").to_owned();
                env.push(var);
                replaces_password |= key == "password_env";
            }
            tried.push(key);
            *line = uncommented;
        }
        // password_env replaces the inline password of the same section.
        if replaces_password {
            if let Some(p) = (0..start)
                .rev()
                .find(|&j| out_lines[j].starts_with("password = "))
            {
                out_lines[p] = String::new();
            }
        }
        let contents = out_lines.join("\n");
        let path = root.write("uncommented.toml", &contents);
        let mut cmd = Command::new(BIN);
        cmd.args(["check-config", "--config"]).arg(&path);
        for var in &env {
            cmd.env(var, "from-the-environment");
        }
        let out = cmd.output().expect("tenantgate runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "uncommenting lines {}..{} of config.example.toml: {}",
            start + 1,
            i,
            text(&out.stderr)
        );
    }
    for key in [
        "tls_cert",
        "tls_key",
        "password_env",
        "tls_ca",
        "sni_suffix",
        "directory_query",
        "signing_key_file",
    ] {
        assert!(tried.iter().any(|k| k == key), "{key} not tried: {tried:?}");
    }
}

#[test]
fn example_and_readme_describe_the_binary() {
    let example = std::fs::read_to_string(manifest("config.example.toml")).expect("example");
    assert!(
        !example.contains("scram-sha256"),
        "the example spells auth values wrong"
    );
    let readme = std::fs::read_to_string(manifest("README.md")).expect("README");
    for needle in [
        "cargo install --path .",
        "demo --port",
        "healthcheck",
        "security.on_drift",
        "drift_check_interval",
        "--fail-fast",
        "NO_COLOR",
        "0600",
    ] {
        assert!(readme.contains(needle), "README does not mention {needle}");
    }
    // Every admin user name the README's console example uses exists in the example config.
    for line in readme.lines().filter(|l| l.contains("dbname=tenantgate")) {
        if let Some(user) = line
            .split("user=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        {
            assert!(
                example.contains(&format!("name = \"{user}\"")),
                "README's console user {user} is not in config.example.toml"
            );
        }
    }
    // Every key src/config/mod.rs accepts has a row in the README's configuration table.
    let source = std::fs::read_to_string(manifest("src/config/mod.rs")).expect("config/mod.rs");
    let table: String = readme
        .split("## Configuration reference")
        .nth(1)
        .and_then(|r| r.split("\n## ").next())
        .expect("README has a Configuration reference section")
        .to_owned();
    let mut missing = Vec::new();
    let (mut in_struct, mut deserialize, mut skip) = (false, false, false);
    for line in source.lines() {
        let t = line.trim();
        if t.starts_with("#[derive(") {
            deserialize = t.contains("Deserialize");
        } else if t.starts_with("pub struct") && t.ends_with('{') {
            in_struct = deserialize;
        } else if line.starts_with('}') {
            in_struct = false;
        } else if in_struct
            && t.starts_with("#[serde(")
            && t.contains("skip")
            && !t.contains("skip_serializing")
        {
            skip = true;
        } else if in_struct && t.starts_with("pub ") {
            let key = t["pub ".len()..].split(':').next().unwrap_or("").trim();
            let section = [
                "server",
                "upstream",
                "tenant",
                "security",
                "users",
                "breakglass",
            ];
            if !std::mem::take(&mut skip) && !section.contains(&key) && !table.contains(key) {
                missing.push(key.to_owned());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README's configuration table lacks {missing:?}"
    );
}

/// A pseudo-terminal pair: (master, slave).
fn pty() -> (std::fs::File, std::fs::File) {
    // SAFETY: plain libc calls on a descriptor we own; ptsname_r writes into our buffer.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0, "grantpt");
        assert_eq!(libc::unlockpt(master), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr()).to_owned();
        let slave = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        assert!(slave >= 0, "open pty slave");
        (
            std::fs::File::from(OwnedFd::from_raw_fd(master)),
            std::fs::File::from(OwnedFd::from_raw_fd(slave)),
        )
    }
}

/// Reads `r` until `needle` has been seen (blocking reads; no clock).
fn read_until(r: &mut impl Read, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !text(&seen).contains(needle) {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    text(&seen)
}

/// Whatever the pty echoed back so far (non-blocking).
fn drain(master: &std::fs::File) -> String {
    // SAFETY: switches our own descriptor to non-blocking mode.
    unsafe {
        let fd = master.as_raw_fd();
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        );
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = (&*master).read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    text(&out)
}

fn hash_password_on_a_tty(first: &str, second: &str) -> (Output, String) {
    let (mut master, slave) = pty();
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tenantgate runs");
    drop(slave);
    let mut stderr = child.stderr.take().expect("stderr");
    // A binary that never prompts would wait on the terminal forever: a watchdog turns that
    // hang into a failure (a bound on a bug, not a timing assertion).
    let (watchdog, done) = std::sync::mpsc::channel::<()>();
    let pid = child.id() as i32;
    let guard = std::thread::spawn(move || {
        if done
            .recv_timeout(std::time::Duration::from_secs(120))
            .is_err()
        {
            // SAFETY: signals our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    // Type only once the prompt is shown: echo is off by then.
    let prompt = read_until(&mut stderr, "Password: ");
    assert!(prompt.contains("Password: "), "no prompt: {prompt:?}");
    master
        .write_all(format!("{first}\n").as_bytes())
        .expect("type");
    let again = read_until(&mut stderr, ": ");
    assert!(!again.is_empty(), "no second prompt");
    master
        .write_all(format!("{second}\n").as_bytes())
        .expect("type");
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    let mut out = child.wait_with_output().expect("finishes");
    let _ = watchdog.send(());
    let _ = guard.join();
    out.stderr = format!("{prompt}{again}{rest}").into_bytes();
    (out, drain(&master))
}

#[test]
fn hash_password_prompts_twice_without_echo_on_a_terminal() {
    let (out, echoed) = hash_password_on_a_tty("s3cret-horse", "s3cret-horse");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !echoed.contains("s3cret"),
        "the password was echoed: {echoed:?}"
    );
    assert!(!text(&out.stderr).contains("s3cret"));
    let verifier = text(&out.stdout).trim().to_owned();
    let v = tenantgate::auth::parse_verifier(&verifier).expect("a verifier");
    let again = tenantgate::auth::Verifier::derive("s3cret-horse", v.salt.clone(), v.iterations);
    assert_eq!(
        again.to_pg_string(),
        verifier,
        "the verifier is not of the typed password"
    );

    let (out, echoed) = hash_password_on_a_tty("one-password", "another-one");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("do not match"),
        "{}",
        text(&out.stderr)
    );
    assert!(!echoed.contains("password"), "{echoed:?}");
    assert!(out.stdout.is_empty());
}

fn hash_password_stdin(input: &[u8], args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tenantgate runs");
    // clap may refuse the arguments before reading stdin: a broken pipe is fine then.
    let _ = child.stdin.take().expect("stdin").write_all(input);
    child.wait_with_output().expect("finishes")
}

#[test]
fn hash_password_strips_one_line_ending_and_refuses_weak_iterations() {
    for (input, password) in [
        (&b"pw one\n"[..], "pw one"),
        (b"pw one\r\n", "pw one"),
        (b"pw one", "pw one"),
    ] {
        let out = hash_password_stdin(input, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let verifier = text(&out.stdout).trim().to_owned();
        let v = tenantgate::auth::parse_verifier(&verifier).expect("a verifier");
        let again = tenantgate::auth::Verifier::derive(password, v.salt.clone(), v.iterations);
        assert_eq!(again.to_pg_string(), verifier, "{input:?}");
    }
    let out = hash_password_stdin(b"pw\n\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line break"),
        "{}",
        text(&out.stderr)
    );
    for n in ["0", "1", "4095"] {
        let out = hash_password_stdin(b"pw\n", &["--iterations", n]);
        assert_eq!(out.status.code(), Some(2), "--iterations {n} accepted");
        assert!(text(&out.stderr).contains("4096"), "{}", text(&out.stderr));
    }
    let out = hash_password_stdin(b"pw\n", &["--iterations", "8192"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("SCRAM-SHA-256$8192:"));
}

/// Runs `serve` against a closed upstream port until its first log line about the upstream,
/// with stderr on a pipe or a pty, then stops it. Returns what it logged.
fn serve_log(stderr_on_tty: bool, no_color: bool) -> String {
    let dir = TempDir::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let c = config(&dir, "", ONE_USER)
        .replace("127.0.0.1:6432", "127.0.0.1:0")
        .replace(
            "host = \"127.0.0.1\"",
            &format!("host = \"127.0.0.1\"\nport = {closed}"),
        );
    let path = dir.write("serve.toml", &c);
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info");
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let (mut child, mut reader): (_, Box<dyn Read>) = if stderr_on_tty {
        let (master, slave) = pty();
        let child = cmd.stderr(Stdio::from(slave)).spawn().expect("serve runs");
        (child, Box::new(master))
    } else {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("serve runs");
        let err = child.stderr.take().expect("stderr");
        (child, Box::new(err))
    };
    let mut log = String::new();
    let mut lines = BufReader::new(&mut reader);
    while !log.contains("listening") {
        let mut line = String::new();
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => log.push_str(&line),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    log
}

#[test]
fn logs_are_coloured_only_on_a_terminal_and_honour_no_color() {
    let piped = serve_log(false, false);
    assert!(piped.contains("upstream"), "{piped}");
    assert!(
        !piped.contains('\u{1b}'),
        "colour codes on a pipe: {piped:?}"
    );
    let tty = serve_log(true, false);
    assert!(tty.contains('\u{1b}'), "no colour on a terminal: {tty:?}");
    let tty_no_color = serve_log(true, true);
    assert!(tty_no_color.contains("listening"), "{tty_no_color}");
    assert!(
        !tty_no_color.contains('\u{1b}'),
        "NO_COLOR ignored: {tty_no_color:?}"
    );
}

/// docs/security-events.md lists every event the code can write, with exactly the actions and
/// fields the code declares (`EventKind::actions`, `optional_fields`), and every field.
#[test]
fn event_schema_doc_matches_the_code() {
    use tenantgate::events::{ALL_KINDS, COMMON_FIELDS};
    let doc = std::fs::read_to_string(manifest("docs/security-events.md")).expect("doc");
    let cell_words = |cell: &str| -> Vec<String> {
        cell.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut documented_fields = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        documented_fields.push(name.to_owned());
    }
    for f in COMMON_FIELDS {
        assert!(
            documented_fields.iter().any(|d| d == f),
            "field {f} undocumented"
        );
    }
    for kind in ALL_KINDS {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", kind.as_str())))
            .unwrap_or_else(|| panic!("event {} undocumented", kind.as_str()));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let mut actions = cell_words(cells[2]);
        actions.sort();
        let mut declared: Vec<String> = kind
            .actions()
            .iter()
            .map(|a| {
                serde_json::to_value(a)
                    .expect("action")
                    .as_str()
                    .expect("str")
                    .to_owned()
            })
            .collect();
        declared.sort();
        assert_eq!(actions, declared, "actions of {}", kind.as_str());
        let mut fields = cell_words(cells[3]);
        fields.sort();
        let mut declared: Vec<String> = kind
            .optional_fields()
            .iter()
            .map(|s| s.to_string())
            .collect();
        declared.sort();
        assert_eq!(fields, declared, "fields of {}", kind.as_str());
        for f in kind.optional_fields() {
            assert!(
                documented_fields.iter().any(|d| d == f),
                "field {f} undocumented"
            );
        }
    }
}

/// The README says `scripts/test` installs the PostgreSQL server (as root or through sudo) and
/// that `.ci/run` runs exactly `scripts/test`: the scripts must say and do the same.
#[test]
fn test_scripts_install_what_the_readme_says() {
    let deps = std::fs::read_to_string(manifest("scripts/install-test-deps.sh")).expect("script");
    assert!(
        deps.contains("pg+=(postgresql)"),
        "the server is not installed"
    );
    assert!(deps.contains("as_root=(sudo)"), "sudo is never used");
    assert!(deps.contains("say \"installing"), "installs silently");
    let test = std::fs::read_to_string(manifest("scripts/test")).expect("scripts/test");
    assert!(test.contains("scripts/install-test-deps.sh"));
    let ci = std::fs::read_to_string(manifest(".ci/run")).expect(".ci/run");
    assert!(ci.contains("exec scripts/test"));
    for script in ["scripts/install-test-deps.sh", "scripts/test", ".ci/run"] {
        let out = Command::new("bash")
            .arg("-n")
            .arg(manifest(script))
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    }
}

/// Client-visible errors are built in one place (`src/error.rs`), so their wording and SQLSTATEs
/// can be reviewed together and no internal detail reaches a client by accident.
#[test]
fn client_errors_are_built_only_in_error_rs() {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("src/error.rs")
                && !path.ends_with("src/protocol/messages.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                for (n, line) in text.lines().enumerate() {
                    if line.contains("PgError::error(") || line.contains("PgError::fatal(") {
                        found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(
        found.is_empty(),
        "build these in src/error.rs:\n{}",
        found.join("\n")
    );
}
