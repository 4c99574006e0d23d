//! Startup packets, libpq options and PROXY headers never panic the parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tenantgate::fuzzing::startup(data);
});
