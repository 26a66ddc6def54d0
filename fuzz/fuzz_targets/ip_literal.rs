#![no_main]
// Invariants: fuzz/src/ip_literal.rs. Run: cargo fuzz run ip_literal --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::ip_literal::Input| {
  sticky_session_rs_fuzz::ip_literal::check(&input)
});
