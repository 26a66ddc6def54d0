//! `find_query_param`.
//!
//! Invariants: the result equals an independent reference implementation
//! (first parameter whose whole name matches, in the query before any
//! fragment), is a sub-slice of the target at the same offset, never
//! contains `&` or `#`, and for generated targets equals the first value
//! given for that name; an empty name never matches.

use crate::mutate::{self, escape};
use crate::targets::http_gen;
use crate::{is_within, offset_in, Checked, Cx, Outcome, Rng, Target, Violation};
use sticky_session_rs::parsers::http_head::find_query_param;

pub struct FindQueryParamTarget;

#[derive(Debug)]
pub struct Case {
  pub target: Vec<u8>,
  pub name: Vec<u8>,
  /// For generated targets: the value of the first parameter called `name`.
  pub expect: Option<Option<Vec<u8>>>,
}

const DICTIONARY: &[&[u8]] = &[b"?", b"&", b"=", b"#", b"sid", b"sid=", b"&sid=", b"?sid=", b"%73id", b"&&", b"#?"];

impl Target for FindQueryParamTarget {
  const NAME: &'static str = "find_query_param";
  const FUNCTIONS: &'static str = "find_query_param";
  type Case = Case;

  fn generate(rng: &mut Rng) -> Case {
    match rng.below(10) {
      0..=1 => {
        let len = rng.small_len(120);
        let target = (0..len).map(|_| if rng.chance(1, 4) { *rng.pick(b"?&=#s") } else { rng.byte() }).collect();
        let name = random_name(rng);
        Case { target, name, expect: None }
      }
      2..=6 => {
        let generated = http_gen::target(rng);
        let name = if !generated.params.is_empty() && rng.chance(7, 10) {
          rng.pick(&generated.params).0.clone()
        } else {
          random_name(rng)
        };
        let expect = if name.is_empty() {
          None
        } else {
          generated.params.iter().find(|(param, _)| *param == name).map(|(_, value)| value.clone())
        };
        Case { target: generated.bytes, name, expect: Some(expect) }
      }
      _ => {
        let mut target = http_gen::target(rng).bytes;
        mutate::mutate(rng, &mut target, DICTIONARY, 2000);
        Case { target, name: random_name(rng), expect: None }
      }
    }
  }

  fn parts(case: &Case) -> Vec<Vec<u8>> {
    vec![case.target.clone(), case.name.clone()]
  }

  fn from_parts(parts: Vec<Vec<u8>>) -> Case {
    let mut parts = parts.into_iter();
    let target = parts.next().unwrap_or_default();
    let name = parts.next().unwrap_or_else(|| b"sid".to_vec());
    Case { target, name, expect: None }
  }

  fn from_fuzz_input(data: &[u8]) -> Case {
    // `name\ntarget`, or just a target searched for `sid`.
    match data.iter().position(|&byte| byte == b'\n') {
      Some(newline) => Case { target: data[newline + 1..].to_vec(), name: data[..newline].to_vec(), expect: None },
      None => Case { target: data.to_vec(), name: b"sid".to_vec(), expect: None },
    }
  }

  fn check(case: &Case, cx: &mut Cx) -> Checked {
    let (target, name) = (&case.target[..], &case.name[..]);
    let input = || vec![target.to_vec(), name.to_vec()];
    let got = cx.call(find_query_param(target, name));
    let model = reference(target, name);
    let agrees = match (got, model) {
      (None, None) => true,
      (Some(value), Some((start, end))) => {
        value == &target[start..end]
          && (value.is_empty() || (is_within(target, value) && offset_in(target, value) == start))
      }
      _ => false,
    };
    if !agrees {
      let model = model.map(|(start, end)| escape(&target[start..end], 80));
      return Err(Violation::on_parts(
        input(),
        format!("find_query_param returned {:?}, the reference finds {model:?}", got.map(|value| escape(value, 80))),
      ));
    }
    if let Some(value) = got {
      if name.is_empty() || value.contains(&b'&') || value.contains(&b'#') {
        return Err(Violation::on_parts(input(), format!("impossible value {:?}", escape(value, 80))));
      }
    }
    if let Some(expected) = &case.expect {
      if got != expected.as_deref() {
        return Err(Violation::on_parts(
          input(),
          format!(
            "generated target: expected {:?}, got {:?}",
            expected.as_deref().map(|value| escape(value, 80)),
            got.map(|value| escape(value, 80))
          ),
        ));
      }
    }
    Ok(if got.is_some() { Outcome::Complete } else { Outcome::Invalid })
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let target = parts.first().map(Vec::as_slice).unwrap_or_default();
    let name = parts.get(1).map(Vec::as_slice).unwrap_or(b"sid");
    format!(
      "find_query_param({}, {}) = {:?}",
      escape(target, 200),
      escape(name, 40),
      find_query_param(target, name).map(|value| escape(value, 200))
    )
  }
}

fn random_name(rng: &mut Rng) -> Vec<u8> {
  match rng.below(4) {
    0 => {
      let len = rng.small_len(6);
      rng.bytes(len)
    }
    _ => rng.pick(&[&b"sid"[..], b"", b"a", b"EIO", b"s", b"SID", b"t", b"transport", b"%73id", b"sid="]).to_vec(),
  }
}

/// The specification, written out by index: cut at the first `#`, start
/// after the first `?` before it, split on `&`, skip empty parameters, split
/// each at its first `=`; the first parameter with the exact name wins.
/// Returns the value's range in `target`.
pub fn reference(target: &[u8], name: &[u8]) -> Option<(usize, usize)> {
  if name.is_empty() {
    return None;
  }
  let end = target.iter().position(|&byte| byte == b'#').unwrap_or(target.len());
  let mut start = target[..end].iter().position(|&byte| byte == b'?')? + 1;
  while start <= end {
    let param_end = target[start..end].iter().position(|&byte| byte == b'&').map_or(end, |at| start + at);
    if param_end > start {
      let (name_end, value_start) = match target[start..param_end].iter().position(|&byte| byte == b'=') {
        Some(at) => (start + at, start + at + 1),
        None => (param_end, param_end),
      };
      if &target[start..name_end] == name {
        return Some((value_start, param_end));
      }
    }
    start = param_end + 1;
  }
  None
}
