#![no_main]
// Invariants: fuzz/src/request_head.rs. Run: cargo fuzz run request_head --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::request_head::Input| {
  sticky_session_rs_fuzz::request_head::check(&input)
});
