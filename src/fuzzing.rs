//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus regression test
//! (`tests/fuzz_corpus.rs`), so every seed and every crash found runs in `cargo test` too.

use bytes::{Bytes, BytesMut};

use crate::auth::{parse_verifier, Verifier};
use crate::protocol::frame::{try_frame, try_startup_packet};
use crate::protocol::startup::decode;
use crate::tenant::identity::parse_options;
use crate::tenant::inspect::{inspect as run_inspect, InspectOptions};

/// Frames `data` as a client stream (small limit) and as startup packets.
pub fn framer(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(f)) = try_frame(&mut buf, 4096) {
        let declared = u32::from_be_bytes([f.raw[1], f.raw[2], f.raw[3], f.raw[4]]) as usize;
        assert_eq!(declared + 1, f.raw.len());
        let _ = crate::protocol::messages::parse_msg(f.body());
        let _ = crate::protocol::messages::split_bind(f.body());
        let _ = crate::protocol::messages::split_target(f.body());
        let _ = crate::protocol::messages::error_fields(f.body());
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(p)) = try_startup_packet(&mut buf) {
        let _ = decode(&p);
    }
}

/// Decodes `data` as a startup payload, libpq options and a PROXY header.
pub fn startup(data: &[u8]) {
    let _ = decode(&Bytes::copy_from_slice(data));
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_options(s);
    }
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let _ = crate::proxy_protocol::parse(data, peer);
}

/// Inspects `data` (read as the session reads it) with both `standard_conforming_strings`
/// values.
pub fn inspect(data: &[u8]) {
    let sql = crate::tenant::guard::sql_text(data);
    for scs in [true, false] {
        let opts = InspectOptions {
            setting: "app.tenant_id",
            tenant_column: "tenant_id",
            standard_conforming_strings: scs,
        };
        let insp = run_inspect(&sql, &opts);
        for f in &insp.findings {
            assert!(f.statement.end <= sql.len() && f.statement.start <= f.statement.end);
        }
    }
}

/// Parses `data` as a verifier and runs it through the SCRAM server as client messages.
pub fn auth(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_verifier(s);
    }
    let (first, last) = data.split_at(data.len() / 2);
    let v = Verifier::random();
    let server = pgwire::api::auth::sasl::scram::ScramServerAuth::new();
    if let Ok((_, waiting)) = server.on_client_first_message_with_secret(first, v.secret()) {
        let _ = waiting.on_client_final_message(last);
    }
}
