#![no_main]
// Invariants: fuzz/src/wire.rs. Run: cargo fuzz run wire_records --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::wire::Input| sticky_session_rs_fuzz::wire::check(&input));
