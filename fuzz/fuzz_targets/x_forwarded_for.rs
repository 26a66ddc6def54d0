#![no_main]
// Invariants: fuzz/src/x_forwarded_for.rs. Run: cargo fuzz run x_forwarded_for --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::x_forwarded_for::Input| {
  sticky_session_rs_fuzz::x_forwarded_for::check(&input)
});
