//! Any bytes through every reader: slice and stream agree, typed reading completes, 997s read
//! back clean.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    crossdock_edi::harness::input(data);
});
