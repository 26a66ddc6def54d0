//! Structured inputs and invariant checks for the cargo-fuzz targets in
//! `fuzz_targets/`, one module per fuzzed parser.
//!
//! Each target's input is an [`arbitrary::Arbitrary`] enum. Raw variants
//! hand the fuzzer's bytes to the parser, and only the general invariants
//! apply ("no panic", consumed lengths within bounds, decisions that never
//! change as bytes arrive, agreement with a reference, ...). Generated
//! variants build valid inputs (with the crate's encoders, or by hand in
//! spellings the encoders never produce) together with the result the parser
//! must return. [`NearMiss`] variants are valid inputs with a few edits.
//! Every broken invariant panics, so libFuzzer records the input as a crash.

pub mod addresses;
pub mod find_query_param;
pub mod forwarded;
pub mod http;
pub mod ip_literal;
pub mod nodes;
pub mod pick_client;
pub mod proxy_header;
pub mod request_head;
pub mod request_line_sid;
pub mod takeover;
pub mod trusted_proxies;
pub mod wire;
pub mod x_forwarded_for;

use arbitrary::{Arbitrary, Unstructured};
use std::fmt;
use std::marker::PhantomData;

/// What generators return: `Err` only when the fuzzer's bytes cannot form
/// the value, and libFuzzer then moves on to the next input.
pub type Gen<T> = arbitrary::Result<T>;

/// Raw parser input, printed escaped (`cargo fuzz fmt` shows it that way).
#[derive(Arbitrary, Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
  fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(formatter, "b\"{}\"", escape(&self.0, usize::MAX))
  }
}

/// A generated valid input, rendered to the bytes a parser sees.
pub trait Render {
  /// Tokens that matter to the parser, for [`NearMiss`] edits.
  const TOKENS: &'static [&'static [u8]];
  fn render(&self) -> Vec<u8>;
}

/// A valid input with one to four edits: a token or a byte inserted or
/// written over, or a few bytes deleted. libFuzzer mutates the bytes a
/// valid input is generated from, which gives another valid input, never
/// one that is almost valid. Where a parser hands text to `std`, whose code
/// is not instrumented, coverage cannot lead libFuzzer there from raw bytes
/// either. That is how `parse_ip_literal("5.2.1.2%:")` escaped libFuzzer
/// without this variant (fuzz/README.md has the measurement).
pub struct NearMiss<T>(pub Bytes, PhantomData<T>);

impl<T> fmt::Debug for NearMiss<T> {
  fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
    formatter.debug_tuple("NearMiss").field(&self.0).finish()
  }
}

impl<'a, T: Arbitrary<'a> + Render> Arbitrary<'a> for NearMiss<T> {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let mut bytes = T::arbitrary(u)?.render();
    for _ in 0..range(u, 1, 4)? {
      let at = range(u, 0, bytes.len())?;
      let end = (at + 1).min(bytes.len());
      match below(u, 5)? {
        0 | 1 => drop(bytes.splice(at..at, pick(u, T::TOKENS)?.iter().copied())),
        2 => drop(bytes.splice(at..end, pick(u, T::TOKENS)?.iter().copied())),
        3 => drop(bytes.splice(at..end, [u.arbitrary::<u8>()?])),
        _ => drop(bytes.drain(at..(at + small_len(u, 8)?).min(bytes.len()))),
      }
    }
    Ok(NearMiss(Bytes(bytes), PhantomData))
  }
}

/// `bytes` printable on one line: CR, LF, tab and backslash escaped, other
/// non-printable bytes as `\xNN`, cut after `max` bytes.
pub fn escape(bytes: &[u8], max: usize) -> String {
  let mut out = String::new();
  for &byte in bytes.iter().take(max) {
    match byte {
      b'\r' => out.push_str("\\r"),
      b'\n' => out.push_str("\\n"),
      b'\t' => out.push_str("\\t"),
      b'\\' => out.push_str("\\\\"),
      b'"' => out.push_str("\\\""),
      0x20..=0x7e => out.push(char::from(byte)),
      _ => out.push_str(&format!("\\x{byte:02x}")),
    }
  }
  if bytes.len() > max {
    out.push_str(&format!("... ({} bytes)", bytes.len()));
  }
  out
}

/// Reports a broken invariant: the message and the exact parser input that
/// broke it (often a prefix or extension of the fuzzer's input).
#[track_caller]
pub fn broken(input: &[u8], message: impl fmt::Display) -> ! {
  panic!("invariant broken: {message}\n  parser input ({} bytes): {}", input.len(), escape(input, 600))
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

/// The prefix lengths of `bytes` to parse again when checking that a
/// decision never changes as bytes arrive. Re-parsing every prefix of a
/// 16 KiB head would cost as much as 16 K whole parses, so above
/// `all_below` bytes this is the first and last few, the `boundaries` the
/// caller names (line ends, header edges), and `spread` positions evenly
/// spaced, shifted by a hash of the input so that different inputs probe
/// different positions while a crash file still reproduces exactly.
pub fn cut_points(bytes: &[u8], all_below: usize, spread: usize, boundaries: &[usize]) -> Vec<usize> {
  let len = bytes.len();
  if len <= all_below {
    return (0..=len).collect();
  }
  let mut cuts: Vec<usize> = (0..8).chain(len - 4..=len).collect();
  cuts.extend(boundaries.iter().copied().filter(|&cut| cut <= len));
  let step = len / spread.max(1) + 1;
  let shift = bytes.iter().fold(len, |hash, &byte| hash.wrapping_mul(31).wrapping_add(usize::from(byte))) % step;
  cuts.extend((shift..len).step_by(step));
  cuts.sort_unstable();
  cuts.dedup();
  cuts
}

// Choices for the generators. When the fuzzer's bytes run out, `arbitrary`
// returns the low end of every range, so index 0 of each choice is the
// cheap, common one and rare, large cases sit at the top.

/// An index in `0..n` (`n` > 0).
pub fn below(u: &mut Unstructured, n: usize) -> Gen<usize> {
  u.choose_index(n)
}

/// A number in `low..=high`.
pub fn range(u: &mut Unstructured, low: usize, high: usize) -> Gen<usize> {
  u.int_in_range(low..=high.max(low))
}

/// True about once in `n` draws, false when the bytes have run out.
pub fn one_in(u: &mut Unstructured, n: usize) -> Gen<bool> {
  Ok(u.int_in_range(1..=n)? == n)
}

pub fn pick<'a, T>(u: &mut Unstructured, items: &'a [T]) -> Gen<&'a T> {
  u.choose(items)
}

/// A length in `0..=max` biased towards small values: a bit width first,
/// then a value of that width. Short inputs find most bugs and run fastest;
/// long ones still turn up.
pub fn small_len(u: &mut Unstructured, max: usize) -> Gen<usize> {
  let bits = u.int_in_range(0..=usize::BITS - max.leading_zeros())?;
  let limit = if bits == 0 { 0 } else { (1usize << (bits - 1)).min(max) };
  u.int_in_range(0..=limit)
}

/// `len` bytes from the input, zero-padded when it runs out: for payloads
/// whose length matters more than their content.
pub fn bytes(u: &mut Unstructured, len: usize) -> Gen<Vec<u8>> {
  let available = u.len().min(len);
  let mut out = u.bytes(available)?.to_vec();
  out.resize(len, 0);
  Ok(out)
}

/// Tokens as RFC 9110 defines them (method names, header names). Written out
/// here rather than imported, so the checks do not rely on the parsers' own
/// table.
pub fn is_token_byte(byte: u8) -> bool {
  byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}
