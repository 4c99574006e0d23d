//! Verifier parsing and the SCRAM server exchange never panic on client input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tenantgate::fuzzing::auth(data);
});
