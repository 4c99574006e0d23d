//! The framer never panics and never yields a frame that lies about its length.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tenantgate::fuzzing::framer(data);
});
