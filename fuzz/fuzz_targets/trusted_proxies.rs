#![no_main]
// Invariants: fuzz/src/trusted_proxies.rs. Run: cargo fuzz run trusted_proxies --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::trusted_proxies::Input| {
  sticky_session_rs_fuzz::trusted_proxies::check(&input)
});
