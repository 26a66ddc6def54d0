//! cargo-fuzz target: decode_handoff and decode_reply.
//!
//! `cargo fuzz run wire_records --sanitizer none` (see fuzz/README.md). Each input
//! goes through the general invariants as raw bytes and seeds one structured
//! case. Built without cargo-fuzz, the binary replays the corpus files or
//! directories given as arguments.
#![cfg_attr(fuzzing, no_main)]

use sticky_session_rs_fuzz::runner;
use sticky_session_rs_fuzz::targets::*;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
  runner::fuzz_one::<DecodeHandoffTarget>(data);
  runner::fuzz_one::<DecodeReplyTarget>(data);
});

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
  runner::replay_files(
    "wire_records",
    &[runner::fuzz_one::<DecodeHandoffTarget>, runner::fuzz_one::<DecodeReplyTarget>],
  )
}
