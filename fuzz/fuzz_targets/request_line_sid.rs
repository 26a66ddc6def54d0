#![no_main]
// Invariants: fuzz/src/request_line_sid.rs. Run: cargo fuzz run request_line_sid --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::request_line_sid::Input| {
  sticky_session_rs_fuzz::request_line_sid::check(&input)
});
