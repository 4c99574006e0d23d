//! The injection path: what tenantgate adds to each transaction on the CPU side.
//!
//! Per transaction of a tenant session the proxy
//! 1. decides about the statement (`Policy::check`: inspection + policy),
//! 2. prepends the injection (`Injector::write`: Bind + Execute of `set_config`, or on a
//!    connection that lacks the statement Close + Parse + Bind + Execute),
//! 3. swallows the injection's answers in the relay (BindComplete, DataRow, CommandComplete)
//!    while forwarding the client's own.
//!
//! `relay/select_plain` vs `relay/select_injected` isolates step 3; `txn/*` runs 1–3 together
//! for one pgbench `-S` transaction, with and without injection (a break-glass user is not
//! injected). Run with `cargo bench --bench inject`.

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use tenantgate::config::{ProbeAction, UserKind};
use tenantgate::pool::UpstreamConn;
use tenantgate::protocol::frame::try_frame;
use tenantgate::protocol::messages;
use tenantgate::protocol::{Frame, PqStream};
use tenantgate::relay::{Expect, Msg, Relay};
use tenantgate::tenant::guard::{Asker, Policy};
use tenantgate::tenant::identity::TenantFormat;
use tenantgate::tenant::inject::Injector;

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
    let mut c = UpstreamConn::new(stream(), 1);
    c.pid = 1;
    c.secret = 2;
    c.inject_prepared = true;
    c
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

/// The server's answer to the injection (BindComplete, one row, SELECT 1).
fn injection_answer() -> BytesMut {
    let mut b = BytesMut::new();
    messages::write_msg(&mut b, b'2', |_| {});
    data_row(&mut b, TENANT.as_bytes());
    messages::write_msg(&mut b, b'C', |b| messages::put_cstr(b, b"SELECT 1"));
    b
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
        relay.on_server(f.as_ref(), conn, client);
    }
    let n = client.out().len();
    client.out().clear();
    n
}

fn inject_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("inject");

    g.bench_function("injector/new", |b| {
        b.iter(|| Injector::new(black_box(SETTING), black_box(TENANT)))
    });
    let inj = Injector::new(SETTING, TENANT);
    let mut out = BytesMut::with_capacity(4096);
    g.bench_function("injector/write_prepared", |b| {
        b.iter(|| {
            out.clear();
            inj.write_run(&mut out).len()
        })
    });
    g.bench_function("injector/write_first", |b| {
        b.iter(|| {
            out.clear();
            tenantgate::tenant::inject::write_prepare(&mut out).len()
                + inj.write_run(&mut out).len()
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
    let mut both = injection_answer();
    both.extend_from_slice(&select_answer());
    let injected: Vec<Frame> = frames(both);
    let mut conn = conn();
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
    g.bench_function("relay/select_injected", |b| {
        b.iter_batched_ref(
            Relay::default,
            |relay| {
                relay.push(Expect::Inject(Msg::Bind));
                relay.push(Expect::Inject(Msg::Execute));
                relay.push(Expect::Client(Msg::Query));
                relay_txn(relay, &mut conn, &mut client, &injected)
            },
            BatchSize::SmallInput,
        )
    });

    // One `-S -M simple` transaction's CPU work in the proxy, minus the syscalls.
    let mut q = BytesMut::new();
    messages::query(&mut q, SELECT);
    let query: Bytes = q.freeze();
    let mut upstream_out = BytesMut::with_capacity(4096);
    for (name, kind, answers) in [
        ("txn/app_injected", UserKind::App, &injected),
        ("txn/breakglass_plain", UserKind::Breakglass, &plain),
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
                    if kind == UserKind::App {
                        for m in inj.write_run(&mut upstream_out) {
                            relay.push(Expect::Inject(m.clone()));
                        }
                    }
                    upstream_out.extend_from_slice(&f.raw);
                    relay.push(Expect::Client(Msg::Query));
                    black_box(&d);
                    relay_txn(relay, &mut conn, &mut client, answers)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, inject_bench);
criterion_main!(benches);
