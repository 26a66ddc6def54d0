//! cargo-fuzz target: parse_request_head and header_values.
//!
//! `cargo fuzz run request_head --sanitizer none` (see fuzz/README.md). Each input
//! goes through the general invariants as raw bytes and seeds one structured
//! case. Built without cargo-fuzz, the binary replays the corpus files or
//! directories given as arguments.
#![cfg_attr(fuzzing, no_main)]

use sticky_session_rs_fuzz::runner;
use sticky_session_rs_fuzz::targets::*;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
  runner::fuzz_one::<RequestHeadTarget>(data);
});

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
  runner::replay_files("request_head", &[runner::fuzz_one::<RequestHeadTarget>])
}
