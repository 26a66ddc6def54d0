//! Fuzzing harness for the pure parsers of sticky-session-rs.
//!
//! Every target implements [`Target`]: it generates cases from a seeded
//! [`Rng`] (uniform random bytes, valid inputs built from the modules'
//! encoders or by hand, and mutations of those), and checks a case against
//! invariants stronger than "does not panic". The same checks run in the
//! stable driver (`src/bin/fuzz_parsers.rs`) and in the cargo-fuzz targets
//! (`fuzz_targets/`), which feed raw libFuzzer inputs through
//! [`Target::from_fuzz_input`] and a structured case seeded by those bytes.

pub mod gen;
pub mod mutate;
pub mod rng;
pub mod runner;
pub mod targets;

pub use rng::Rng;

use std::fmt;

/// How a parser classified one input, for the per-parser summary. Parsers
/// that return `Option` or `Result` count `Some`/`Ok` as complete and
/// `None`/`Err` as invalid; see each target for its mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
  Complete,
  Incomplete,
  Invalid,
}

/// A broken invariant: what was expected, and the exact parser input that
/// broke it (when that is not the whole case, e.g. one prefix of it).
#[derive(Debug, Clone)]
pub struct Violation {
  pub input: Option<Vec<Vec<u8>>>,
  pub message: String,
}

impl Violation {
  pub fn new(message: impl Into<String>) -> Violation {
    Violation { input: None, message: message.into() }
  }

  /// Names the exact input that broke the invariant.
  pub fn on(input: &[u8], message: impl Into<String>) -> Violation {
    Violation { input: Some(vec![input.to_vec()]), message: message.into() }
  }

  pub fn on_parts(input: Vec<Vec<u8>>, message: impl Into<String>) -> Violation {
    Violation { input: Some(input), message: message.into() }
  }
}

impl fmt::Display for Violation {
  fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
    formatter.write_str(&self.message)
  }
}

pub type Checked = Result<Outcome, Violation>;

/// Per-check state: a generator for randomized checks (random cuts and
/// extensions) and a count of parser calls made.
pub struct Cx {
  pub rng: Rng,
  pub calls: u64,
}

impl Cx {
  pub fn new(seed: u64) -> Cx {
    Cx { rng: Rng::new(seed), calls: 0 }
  }

  /// Counts one parser call and passes its result through.
  pub fn call<T>(&mut self, result: T) -> T {
    self.calls += 1;
    result
  }
}

/// One fuzzed parser (or a group of closely related functions).
pub trait Target {
  /// Short name used on the command line, in artifacts and in summaries.
  const NAME: &'static str;
  /// The functions exercised.
  const FUNCTIONS: &'static str;

  type Case: fmt::Debug;

  /// A fresh case: random bytes, a valid input with its expected result, or
  /// a mutated valid input.
  fn generate(rng: &mut Rng) -> Self::Case;

  /// The case as byte strings, for artifacts.
  fn parts(case: &Self::Case) -> Vec<Vec<u8>>;

  /// A case without expectations from byte strings (artifact replay).
  fn from_parts(parts: Vec<Vec<u8>>) -> Self::Case;

  /// A case from one libFuzzer input; multi-part targets split it on `\n`.
  fn from_fuzz_input(data: &[u8]) -> Self::Case {
    Self::from_parts(vec![data.to_vec()])
  }

  /// Runs the parser(s) on the case and checks every invariant.
  fn check(case: &Self::Case, cx: &mut Cx) -> Checked;

  /// What the parser returns for these parts, for replaying an artifact.
  fn describe(parts: &[Vec<u8>]) -> String;
}

/// Whether `inner` lies within `outer` (same allocation, by address).
pub fn is_within(outer: &[u8], inner: &[u8]) -> bool {
  let outer_start = outer.as_ptr() as usize;
  let inner_start = inner.as_ptr() as usize;
  inner_start >= outer_start && inner_start + inner.len() <= outer_start + outer.len()
}

/// Offset of `inner` in `outer`; callers check [`is_within`] first.
pub fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
  (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize)
}

/// Cut positions to test for a byte string of `len` bytes: all of them when
/// short, otherwise the edges, `extra` given positions and a random sample.
pub fn cut_points(rng: &mut Rng, len: usize, all_below: usize, sample: usize, extra: &[usize]) -> Vec<usize> {
  if len <= all_below {
    return (0..=len).collect();
  }
  let mut cuts: Vec<usize> = (0..8.min(len)).chain(len.saturating_sub(4)..=len).collect();
  cuts.extend(extra.iter().copied().filter(|&cut| cut <= len));
  cuts.extend((0..sample).map(|_| rng.below(len + 1)));
  cuts.sort_unstable();
  cuts.dedup();
  cuts
}
