//! The body of a 810 (between ST and SE): typed reading completes and write → read → write is
//! stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crossdock_edi::harness::set("810", data);
});
