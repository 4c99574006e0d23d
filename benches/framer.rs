//! Framer throughput: how many protocol messages per second `try_frame` splits off a buffer.
//!
//! Three traffic shapes, each as the bytes one `read` would hand the framer:
//! - `client_simple`: pgbench `-S -M simple` client traffic (one Query per transaction);
//! - `client_extended`: pgbench `-S -M extended` (Parse/Bind/Describe/Execute/Sync);
//! - `server_select`: the server's answer to `-S` (RowDescription, DataRow, CommandComplete,
//!   ReadyForQuery), plus a 100-row result to show the DataRow path.
//!
//! Throughput is reported in messages (criterion "elements"), so `Melem/s` is millions of
//! messages per second. Run with `cargo bench --bench framer`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tenantgate::protocol::frame::{has_complete_frame, try_frame};
use tenantgate::protocol::messages;

/// The proxy's default `max_message_size` (64 MiB).
const MAX: usize = 64 * 1024 * 1024;

/// A named way of filling a buffer with messages.
type Shape = (&'static str, fn(&mut BytesMut));

/// `n` copies of the messages `one` appends, and how many messages that is.
fn repeat(n: usize, one: impl Fn(&mut BytesMut)) -> (Bytes, u64) {
    let mut probe = BytesMut::new();
    one(&mut probe);
    let per = count(&probe);
    let mut buf = BytesMut::with_capacity(probe.len() * n);
    for _ in 0..n {
        one(&mut buf);
    }
    (buf.freeze(), per * n as u64)
}

fn count(buf: &[u8]) -> u64 {
    let mut b = BytesMut::from(buf);
    let mut n = 0;
    while try_frame(&mut b, MAX).unwrap().is_some() {
        n += 1;
    }
    n
}

fn client_simple(b: &mut BytesMut) {
    messages::query(
        b,
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    );
}

fn client_extended(b: &mut BytesMut) {
    messages::parse(
        b,
        b"",
        b"SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
        &[],
    );
    messages::bind_text(b, b"", b"", &[b"48213"]);
    messages::write_msg(b, b'D', |b| messages::put_cstr(b, b"P"));
    messages::execute(b, b"");
    messages::sync(b);
}

fn row_description(b: &mut BytesMut) {
    use bytes::BufMut;
    messages::write_msg(b, b'T', |b| {
        b.put_i16(1);
        messages::put_cstr(b, b"abalance");
        b.put_u32(16_396);
        b.put_i16(3);
        b.put_u32(23);
        b.put_i16(4);
        b.put_i32(-1);
        b.put_i16(0);
    });
}

fn data_row(b: &mut BytesMut, value: &[u8]) {
    use bytes::BufMut;
    messages::write_msg(b, b'D', |b| {
        b.put_i16(1);
        b.put_i32(value.len() as i32);
        b.put_slice(value);
    });
}

fn server_select(b: &mut BytesMut) {
    row_description(b);
    data_row(b, b"-4211");
    messages::write_msg(b, b'C', |b| messages::put_cstr(b, b"SELECT 1"));
    messages::ready_for_query(b, b'I');
}

fn server_100_rows(b: &mut BytesMut) {
    row_description(b);
    for i in 0..100 {
        data_row(b, format!("{}", i * 7919).as_bytes());
    }
    messages::write_msg(b, b'C', |b| messages::put_cstr(b, b"SELECT 100"));
    messages::ready_for_query(b, b'I');
}

fn framer(c: &mut Criterion) {
    let mut g = c.benchmark_group("framer");
    let shapes: [Shape; 4] = [
        ("client_simple", client_simple),
        ("client_extended", client_extended),
        ("server_select", server_select),
        ("server_100_rows", server_100_rows),
    ];
    for (name, one) in shapes {
        // About 16 KiB per batch: what one `fill` reads under load.
        let mut probe = BytesMut::new();
        one(&mut probe);
        let reps = (16 * 1024 / probe.len()).max(1);
        let (bytes, msgs) = repeat(reps, one);
        g.throughput(Throughput::Elements(msgs));
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| {
                    let mut n = 0u64;
                    while let Some(f) = try_frame(buf, MAX).unwrap() {
                        n += black_box(f.tag()) as u64;
                    }
                    n
                },
                BatchSize::SmallInput,
            )
        });
    }
    // The session loop's "is another frame already buffered?" check, run after every message.
    let (bytes, _) = repeat(1, server_select);
    g.throughput(Throughput::Elements(1));
    g.bench_function("has_complete_frame", |b| {
        b.iter(|| has_complete_frame(black_box(&bytes[..]), MAX))
    });
    g.finish();
}

criterion_group!(benches, framer);
criterion_main!(benches);
