//! The fast layer: the data path (handshake, authentication, the per-transaction injection, the
//! relay, the session and its pool, pipelining, COPY, cancel routing) against a scripted
//! upstream, with no PostgreSQL.
//! Every test takes milliseconds; `scripted.rs` is the harness. Behaviour that needs
//! PostgreSQL's own answers (RLS, the SQL the guard lets through) is tested in the other test
//! binaries, against a real server (docs/architecture.md, "Testing").

mod harness;
#[path = "../support/raw.rs"]
mod raw;
mod scripted;
#[path = "../common/sqlstate.rs"]
mod sqlstate;

mod auth;
mod cancel;
mod copy;
mod handshake;
mod injection;
mod pipeline;
mod relay;
mod session;
