//! User enumeration before authentication (issue 19 item 9): an unknown user name must be
//! answered exactly like a configured one — the same exchange, a salt that is stable per name,
//! the same iteration count and salt length, and the same `28P01` at the end.
//!
//! The attacker here talks raw protocol, so it sees what any client could: the SCRAM
//! server-first message (`r=…,s=<salt>,i=<iterations>`) and the final ErrorResponse.

mod common;
mod support;

use base64::Engine;
use bytes::BytesMut;
use support::{start, Opts, TestProxy, PW};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the server answered to a SCRAM client-first message, and how the attempt ended.
#[derive(Debug)]
struct Attempt {
    /// The salt of the server-first message, decoded.
    salt: Vec<u8>,
    /// Its iteration count.
    iterations: u32,
    /// SQLSTATE and message of the final ErrorResponse.
    error: (String, String),
}

/// Reads one backend message: (tag, body).
async fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let tag = s.read_u8().await.expect("tag");
    let len = s.read_i32().await.expect("length") as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.expect("body");
    (tag, body)
}

/// The code and message fields of an ErrorResponse body.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
    }
    (code, message)
}

/// Sends a startup packet for `user` and returns the authentication request code and body.
async fn startup(p: &TestProxy, user: &str) -> (TcpStream, i32, Vec<u8>) {
    let mut s = TcpStream::connect(p.addr).await.expect("connect");
    let mut buf = BytesMut::new();
    postgres_protocol::message::frontend::startup_message(
        [("user", user), ("database", p.db.as_str())],
        &mut buf,
    )
    .unwrap();
    s.write_all(&buf).await.unwrap();
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'R', "authentication request expected for {user}");
    let code = i32::from_be_bytes(body[..4].try_into().unwrap());
    (s, code, body[4..].to_vec())
}

/// One SCRAM attempt as `user` with a made-up proof.
async fn scram_attempt(p: &TestProxy, user: &str) -> Attempt {
    let (mut s, code, _) = startup(p, user).await;
    assert_eq!(code, 10, "SASL expected for {user}");
    let nonce = "rOprNGfwEbeRWgbNEkqO";
    let mut buf = BytesMut::new();
    let first = format!("n,,n=,r={nonce}");
    postgres_protocol::message::frontend::sasl_initial_response(
        "SCRAM-SHA-256",
        first.as_bytes(),
        &mut buf,
    )
    .unwrap();
    s.write_all(&buf).await.unwrap();
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'R');
    assert_eq!(i32::from_be_bytes(body[..4].try_into().unwrap()), 11);
    let server_first = String::from_utf8(body[4..].to_vec()).unwrap();
    let attr = |k: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {server_first}"))
            .to_owned()
    };
    let salt = base64::engine::general_purpose::STANDARD
        .decode(attr("s="))
        .unwrap();
    let iterations: u32 = attr("i=").parse().unwrap();
    let proof = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let final_msg = format!("c=biws,r={},p={proof}", attr("r="));
    let mut buf = BytesMut::new();
    postgres_protocol::message::frontend::sasl_response(final_msg.as_bytes(), &mut buf).unwrap();
    s.write_all(&buf).await.unwrap();
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'E', "the made-up proof must fail for {user}");
    Attempt {
        salt,
        iterations,
        error: error_fields(&body),
    }
}

/// Stops the proxy and removes its event log.
async fn finish(p: TestProxy) {
    let path = p.events_path.clone();
    p.stop().await;
    let _ = std::fs::remove_file(path);
}

fn failed(user: &str) -> (String, String) {
    (
        "28P01".to_owned(),
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Before the fix an unknown name got a fresh random salt on every attempt while a configured
/// name kept its own: two attempts told which names exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_get_a_stable_salt_per_name_shaped_like_a_real_one() {
    let p = start(Opts::default()).await;
    let real = scram_attempt(&p, "acme_app").await;
    let ghost = scram_attempt(&p, "ghost_app").await;
    let ghost_again = scram_attempt(&p, "ghost_app").await;
    let other = scram_attempt(&p, "phantom_app").await;

    assert_eq!(ghost.salt, ghost_again.salt, "same name, same salt");
    assert_ne!(ghost.salt, other.salt, "different names, different salts");
    assert_ne!(ghost.salt, real.salt);
    assert_eq!(ghost.iterations, real.iterations);
    assert_eq!(ghost.salt.len(), real.salt.len());
    assert_eq!(real.error, failed("acme_app"));
    assert_eq!(ghost.error, failed("ghost_app"));
    assert_eq!(other.error, failed("phantom_app"));
    finish(p).await;
}

/// A configured `name` also answers `name.<tenant>` with its own salt; an unknown name must
/// behave the same, or comparing `x` with `x.<anything>` tells whether `x` exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_suffix_does_not_tell_known_from_unknown() {
    let p = start(Opts::default()).await;
    let real = scram_attempt(&p, "acme_app").await;
    let real_suffixed = scram_attempt(&p, "acme_app.whatever").await;
    assert_eq!(real.salt, real_suffixed.salt);
    let ghost = scram_attempt(&p, "ghost_app").await;
    let ghost_suffixed = scram_attempt(&p, "ghost_app.whatever").await;
    assert_eq!(ghost.salt, ghost_suffixed.salt);
    assert_eq!(ghost_suffixed.error, failed("ghost_app.whatever"));
    finish(p).await;
}

/// Through a real driver: an unknown user and a wrong password end in the same error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_fail_alike() {
    let p = start(Opts::default()).await;
    for (user, password) in [
        ("ghost_app", PW),
        ("acme_app", "wrong"),
        ("md5_app", "wrong"),
    ] {
        let e = p
            .try_connect(user, password)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} must fail"));
        let (code, message) = failed(user);
        assert_eq!(common::assert_sqlstate(&e, &code).message(), message);
    }
    finish(p).await;
}

/// md5 salts are random per attempt for everyone (as in PostgreSQL), so they tell nothing;
/// what an unknown name is asked for is the exchange most configured users get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_are_asked_for_the_most_common_exchange() {
    let p = start(Opts::default()).await;
    // The standard users are all SCRAM but one md5 user.
    let (_s, code, _) = startup(&p, "ghost_app").await;
    assert_eq!(code, 10);
    let (_s, a, salt_a) = startup(&p, "md5_app").await;
    let (_s, b, salt_b) = startup(&p, "md5_app").await;
    assert_eq!((a, b), (5, 5));
    // Random per attempt (a collision of 4 random bytes is out of reach).
    assert_ne!(salt_a, salt_b);
    finish(p).await;
}

/// When most configured users are md5 users, an unknown name is asked for md5 too (before the
/// fix it was always asked for SCRAM, so an md5 challenge proved the name existed), and the
/// md5 exchange ends in the same `28P01`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_majority_makes_unknown_users_md5_users() {
    let extra: String = (0..12)
        .map(|i| {
            format!(
                "[[users]]\nname = \"md5_{i}\"\npassword = \"{PW}\"\nauth = \"md5\"\ntenant = \"{}\"\n\n",
                common::ACME.id
            )
        })
        .collect();
    let p = start(Opts {
        extra,
        ..Opts::default()
    })
    .await;
    let (mut s, code, salt) = startup(&p, "ghost_app").await;
    assert_eq!(code, 5, "unknown users blend in with the md5 majority");
    let salt: [u8; 4] = salt.try_into().unwrap();
    let hash = postgres_protocol::authentication::md5_hash(b"ghost_app", PW.as_bytes(), salt);
    let mut buf = BytesMut::new();
    postgres_protocol::message::frontend::password_message(hash.as_bytes(), &mut buf).unwrap();
    s.write_all(&buf).await.unwrap();
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!(tag, b'E');
    assert_eq!(error_fields(&body), failed("ghost_app"));
    // The configured SCRAM users are still asked for SCRAM.
    let (_s, code, _) = startup(&p, "acme_app").await;
    assert_eq!(code, 10);
    finish(p).await;
}
