#![no_main]
// Invariants: fuzz/src/proxy_header.rs. Run: cargo fuzz run proxy_header --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::proxy_header::Input| {
  sticky_session_rs_fuzz::proxy_header::check(&input)
});
