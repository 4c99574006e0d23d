//! The SQL inspector never panics, whatever the text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tenantgate::fuzzing::inspect(data);
});
