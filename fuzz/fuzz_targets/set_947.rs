//! The body of a 947 (between ST and SE): typed reading completes and write → read → write is
//! stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crossdock_edi::harness::set("947", data);
});
