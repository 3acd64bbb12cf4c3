#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| posedge_fuzz::checks::payment_body(data));
