#![no_main]
// Invariants: fuzz/src/takeover.rs. Run: cargo fuzz run takeover_records --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::takeover::Input| sticky_session_rs_fuzz::takeover::check(
  &input
));
