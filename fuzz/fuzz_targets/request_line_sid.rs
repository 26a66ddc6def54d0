//! cargo-fuzz target: request_line_sid, request_line_target and find_query_param (input `name\\ntarget`).
//!
//! `cargo fuzz run request_line_sid --sanitizer none` (see fuzz/README.md). Each input
//! goes through the general invariants as raw bytes and seeds one structured
//! case. Built without cargo-fuzz, the binary replays the corpus files or
//! directories given as arguments.
#![cfg_attr(fuzzing, no_main)]

use sticky_session_rs_fuzz::runner;
use sticky_session_rs_fuzz::targets::*;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
  runner::fuzz_one::<RequestLineSidTarget>(data);
  runner::fuzz_one::<FindQueryParamTarget>(data);
});

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
  runner::replay_files(
    "request_line_sid",
    &[runner::fuzz_one::<RequestLineSidTarget>, runner::fuzz_one::<FindQueryParamTarget>],
  )
}
