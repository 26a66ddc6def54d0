#![no_main]
// Invariants: fuzz/src/forwarded.rs. Run: cargo fuzz run forwarded --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(
  |input: sticky_session_rs_fuzz::forwarded::Input| sticky_session_rs_fuzz::forwarded::check(&input)
);
