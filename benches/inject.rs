//! The injection path: what tenantgate adds to each transaction on the CPU side.
//!
//! Per transaction of a tenant session the proxy
//! 1. decides about the statement (`Policy::check`: inspection + policy),
//! 2. compares the connection's identity with the session's (equal: nothing to inject; else the
//!    prelude, `prelude/write`, one round trip of its own),
//! 3. relays the answers.
//!
//! `txn/*` runs 1–3 together for one pgbench `-S` transaction on a connection that already
//! carries the identity (the common case under tenant affinity), for an app and a break-glass
//! user. Run with `cargo bench --bench inject`.

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use tenantgate::config::{ProbeAction, UserKind};
use tenantgate::pool::UpstreamConn;
use tenantgate::protocol::frame::{try_frame, FrameRef};
use tenantgate::protocol::messages;
use tenantgate::protocol::{Frame, PqStream};
use tenantgate::relay::{Expect, Msg, Relay};
use tenantgate::tenant::guard::{Asker, Policy};
use tenantgate::tenant::inject::Prelude;
use tenantgate::tenant_id::TenantFormat;

const SETTING: &str = "app.tenant_id";
const TENANT: &str = "11111111-1111-1111-1111-111111111111";
const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
const MAX: usize = 64 * 1024 * 1024;

fn policy() -> Policy {
    Policy {
        setting: SETTING.into(),
        column: "tenant_id".into(),
        format: TenantFormat::Uuid,
        probe_action: ProbeAction::Block,
        allow_do_blocks: false,
        catalog_monitors: Vec::new(),
        user_names: Vec::new(),
    }
}

fn asker(kind: UserKind) -> Asker<'static> {
    Asker {
        kind,
        tenant: if kind == UserKind::App {
            Some(TENANT)
        } else {
            None
        },
        login: "app",
        allow_switch: false,
    }
}

/// A stream that is never read or written: the relay only queues into its buffer.
fn stream() -> PqStream {
    let (a, _b) = tokio::io::duplex(64);
    PqStream::new(
        Box::new(a),
        BytesMut::new(),
        MAX,
        tenantgate::protocol::stream::SERVER_READ_CHUNK,
    )
}

fn conn() -> UpstreamConn {
    UpstreamConn::new(stream(), 1)
}

fn frames(buf: BytesMut) -> Vec<Frame> {
    let mut b = buf;
    let mut out = Vec::new();
    while let Some(f) = try_frame(&mut b, MAX).unwrap() {
        out.push(f);
    }
    out
}

fn data_row(b: &mut BytesMut, value: &[u8]) {
    messages::write_msg(b, b'D', |b| {
        b.put_i16(1);
        b.put_i32(value.len() as i32);
        b.put_slice(value);
    });
}

/// The server's answer to pgbench's `-S` Query.
fn select_answer() -> BytesMut {
    let mut b = BytesMut::new();
    messages::write_msg(&mut b, b'T', |b| {
        b.put_i16(1);
        messages::put_cstr(b, b"abalance");
        b.put_u32(16_396);
        b.put_i16(3);
        b.put_u32(23);
        b.put_i16(4);
        b.put_i32(-1);
        b.put_i16(0);
    });
    data_row(&mut b, b"-4211");
    messages::write_msg(&mut b, b'C', |b| messages::put_cstr(b, b"SELECT 1"));
    messages::ready_for_query(&mut b, b'I');
    b
}

/// Runs the relay over one transaction's answers; returns the bytes queued for the client.
fn relay_txn(
    relay: &mut Relay,
    conn: &mut UpstreamConn,
    client: &mut PqStream,
    answers: &[Frame],
) -> usize {
    for f in answers {
        relay.on_server(FrameRef { raw: &f.raw }, conn, client);
    }
    let n = client.out().len();
    client.out().clear();
    n
}

fn inject_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("inject");

    g.bench_function("prelude/new", |b| {
        b.iter(|| Prelude::new(black_box(SETTING), black_box(Some(TENANT)), &[]))
    });
    let prelude = Prelude::new(SETTING, Some(TENANT), &[]);
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("prelude/write", |b| {
        b.iter(|| {
            out.clear();
            prelude.write(&mut out, &[], &[], true, 4242);
            out.len()
        })
    });
    // The same prelude with signing on: one more Bind/Execute and one HMAC-SHA-256.
    let mut signed = Prelude::new(SETTING, Some(TENANT), &[]);
    let key = tenantgate::signing::SigningKey::new("bench", [7; 32]);
    signed.set_signing(key.as_ref());
    g.bench_function("prelude/write_signed", |b| {
        b.iter(|| {
            out.clear();
            signed.write(&mut out, &[], &[], true, black_box(4242));
            out.len()
        })
    });

    let p = policy();
    g.bench_function("guard/app_select", |b| {
        b.iter(|| p.check(asker(UserKind::App), black_box(SELECT)))
    });
    g.bench_function("guard/breakglass_select", |b| {
        b.iter(|| p.check(asker(UserKind::Breakglass), black_box(SELECT)))
    });

    let plain: Vec<Frame> = frames(select_answer());
    let mut conn = conn();
    conn.carry(prelude.identity, prelude.applied_keys());
    let mut client = stream();

    g.bench_function("relay/select_plain", |b| {
        b.iter_batched_ref(
            Relay::default,
            |relay| {
                relay.push(Expect::Client(Msg::Query));
                relay_txn(relay, &mut conn, &mut client, &plain)
            },
            BatchSize::SmallInput,
        )
    });

    // One `-S -M simple` transaction's CPU work in the proxy, minus the syscalls.
    let mut q = BytesMut::new();
    messages::query(&mut q, SELECT);
    let query: Bytes = q.freeze();
    let mut upstream_out = BytesMut::with_capacity(4096);
    for (name, kind) in [
        ("txn/app_same_identity", UserKind::App),
        ("txn/breakglass_plain", UserKind::Breakglass),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                Relay::default,
                |relay| {
                    let mut rbuf = BytesMut::from(&query[..]);
                    let f = try_frame(&mut rbuf, MAX).unwrap().unwrap();
                    let text = messages::query_text(f.body()).unwrap();
                    let sql = String::from_utf8_lossy(text);
                    let d = p.check(asker(kind), &sql);
                    upstream_out.clear();
                    if kind == UserKind::App && conn.identity() != prelude.identity {
                        prelude.write(&mut upstream_out, &[], &[], true, 4242);
                    }
                    upstream_out.extend_from_slice(&f.raw);
                    relay.push(Expect::Client(Msg::Query));
                    black_box(&d);
                    relay_txn(relay, &mut conn, &mut client, &plain)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, inject_bench);
criterion_main!(benches);
