#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| irqtune_test_support::fuzz::softnet(data));
