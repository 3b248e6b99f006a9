//! The body of a 846 (between ST and SE): typed reading completes and write → read → write is
//! stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crossdock_edi::harness::set("846", data);
});
