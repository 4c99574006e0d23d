//! COPY through the relay: FROM STDIN data flows to the server while it is in COPY IN (in both
//! protocols), TO STDOUT data flows back, and the session goes on afterwards.

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};

use crate::harness::*;
use crate::raw::rows;
use crate::scripted::*;

fn copying() -> Script {
    Script::default().when("from stdin", Reply::CopyIn).when(
        "to stdout",
        Reply::CopyOut(vec!["1\tacme".into(), "2\tglobex".into()]),
    )
}

#[tokio::test]
async fn copy_from_stdin_reaches_the_server_in_extended_protocol() {
    let f = Fast::start(copying()).await;
    let c = f.connect("acme_app").await;
    let sink = c.copy_in("copy t from stdin").await.expect("copy in");
    futures_util::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\tone\n2\ttwo\n"))
        .await
        .expect("data");
    sink.send(Bytes::from_static(b"3\tthree\n"))
        .await
        .expect("data");
    assert_eq!(within(sink.finish()).await.expect("copy done"), 3);
    let log = f.upstream.conn(0);
    let data: Vec<u8> = log
        .sent
        .iter()
        .filter_map(|m| m.copy_data())
        .flatten()
        .copied()
        .collect();
    assert_eq!(data, b"1\tone\n2\ttwo\n3\tthree\n");
    // The session is back in step with the server.
    let row = within(c.query_one("select 5", &[]))
        .await
        .expect("after copy");
    assert_eq!(row.get::<_, String>(0), "1");
}

#[tokio::test]
async fn copy_to_stdout_reaches_the_client() {
    let f = Fast::start(copying()).await;
    let c = f.connect("acme_app").await;
    let stream = c.copy_out("copy t to stdout").await.expect("copy out");
    let chunks: Vec<Bytes> = within(stream.try_collect()).await.expect("data");
    let text: Vec<u8> = chunks.concat();
    assert_eq!(text, b"1\tacme\n2\tglobex\n");
    c.simple_query("select 1").await.expect("after copy");
}

#[tokio::test]
async fn copy_from_stdin_in_simple_protocol() {
    let f = Fast::start(copying()).await;
    let mut c = f.raw("acme_app").await;
    c.query("copy t from stdin").flush().await;
    let g = c.recv().await;
    assert_eq!(g.tag, b'G');
    copy_data(&mut c, b"x\ny\n");
    copy_done(&mut c);
    let got = c.round(1).await;
    let done: Vec<_> = got.iter().filter_map(|m| m.command()).collect();
    assert_eq!(done, ["COPY 2"]);
    assert_eq!(rows(&c.query("select 1").round(1).await), ["1"]);
}

fn copy_data(c: &mut crate::raw::Raw, data: &[u8]) {
    use bytes::BufMut;
    c.out.put_u8(b'd');
    c.out.put_i32(data.len() as i32 + 4);
    c.out.put_slice(data);
}

fn copy_done(c: &mut crate::raw::Raw) {
    use bytes::BufMut;
    c.out.put_u8(b'c');
    c.out.put_i32(4);
}
