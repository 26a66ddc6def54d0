//! cargo-fuzz target: TrustedProxies::parse (one entry per input line) and parse_ip_literal.
//!
//! `cargo fuzz run trusted_proxies --sanitizer none` (see fuzz/README.md). Each input
//! goes through the general invariants as raw bytes and seeds one structured
//! case. Built without cargo-fuzz, the binary replays the corpus files or
//! directories given as arguments.
#![cfg_attr(fuzzing, no_main)]

use sticky_session_rs_fuzz::runner;
use sticky_session_rs_fuzz::targets::*;

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
  runner::fuzz_one::<TrustedProxiesTarget>(data);
  runner::fuzz_one::<IpLiteralTarget>(data);
});

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
  runner::replay_files(
    "trusted_proxies",
    &[runner::fuzz_one::<TrustedProxiesTarget>, runner::fuzz_one::<IpLiteralTarget>],
  )
}
