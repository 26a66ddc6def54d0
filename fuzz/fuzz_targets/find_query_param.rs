#![no_main]
// Invariants: fuzz/src/find_query_param.rs. Run: cargo fuzz run find_query_param --sanitizer none (see fuzz/README.md).
libfuzzer_sys::fuzz_target!(|input: sticky_session_rs_fuzz::find_query_param::Input| {
  sticky_session_rs_fuzz::find_query_param::check(&input)
});
