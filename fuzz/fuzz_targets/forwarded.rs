//! cargo-fuzz target: parse_forwarded (one header line per input line).
//!
//! `cargo fuzz run forwarded --sanitizer none` (see fuzz/README.md). Each input
//! goes through the general invariants as raw bytes and seeds one structured
//! case. Built without cargo-fuzz, the binary replays the corpus files or
//! directories given as arguments.
#![cfg_attr(fuzzing, no_main)]

use sticky_session_rs_fuzz::runner;
use sticky_session_rs_fuzz::targets::*;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
  runner::fuzz_one::<ForwardedTarget>(data);
});

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
  runner::replay_files("forwarded", &[runner::fuzz_one::<ForwardedTarget>])
}
