//! The body of a 850 (between ST and SE): typed reading completes and write → read → write is
//! stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crossdock_edi::harness::set("850", data);
});
