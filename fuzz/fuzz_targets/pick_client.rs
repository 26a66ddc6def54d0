#![no_main]
// Invariants: fuzz/src/pick_client.rs. Run: cargo fuzz run pick_client --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::pick_client::Input| {
  sticky_session_rs_fuzz::pick_client::check(&input)
});
