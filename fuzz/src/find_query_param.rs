//! `find_query_param`.
//!
//! Invariants: the result equals an independent reference implementation
//! (the first parameter whose whole name matches, in the query before any
//! fragment) and lies in the target at the same offset; it never contains
//! `&` or `#`; an empty name never matches; for generated targets it is the
//! first value given for that name.

use crate::http;
use crate::{broken, escape, is_within, offset_in, pick, Bytes, Gen, NearMiss, Render};
use arbitrary::{Arbitrary, Unstructured};
use sticky_session_rs::core::parsers::http_head::find_query_param;

#[derive(Arbitrary, Debug)]
pub enum Input {
  /// A parameter name and any target.
  Raw(Name, Bytes),
  Generated(Generated),
  NearMiss(Name, NearMiss<Generated>),
}

/// A parameter name, mostly one that matters.
#[derive(Debug)]
pub struct Name(pub Bytes);

impl<'a> Arbitrary<'a> for Name {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let names: &[&[u8]] = &[b"sid", b"", b"a", b"EIO", b"s", b"SID", b"t", b"transport", b"%73id", b"sid="];
    Ok(Name(Bytes(if u.arbitrary()? { pick(u, names)?.to_vec() } else { u.arbitrary::<Vec<u8>>()? })))
  }
}

/// A generated target, a name, and the value of the first parameter with
/// that name.
#[derive(Debug)]
pub struct Generated {
  pub target: Bytes,
  pub name: Bytes,
  pub expect: Option<Bytes>,
}

impl<'a> Arbitrary<'a> for Generated {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let target = http::target(u)?;
    let name = if !target.params.is_empty() && u.arbitrary()? {
      pick(u, &target.params)?.0.clone()
    } else {
      Name::arbitrary(u)?.0 .0
    };
    let expect = if name.is_empty() {
      None
    } else {
      target.params.iter().find(|(param, _)| *param == name).map(|(_, value)| Bytes(value.clone()))
    };
    Ok(Generated { target: Bytes(target.bytes), name: Bytes(name), expect })
  }
}

impl Render for Generated {
  const TOKENS: &'static [&'static [u8]] =
    &[b"?", b"&", b"=", b"#", b"sid", b"sid=", b"&sid=", b"?sid=", b"%73id", b"&&", b"#?"];

  fn render(&self) -> Vec<u8> {
    self.target.0.clone()
  }
}

pub fn check(input: &Input) {
  match input {
    Input::Raw(Name(Bytes(name)), Bytes(target)) | Input::NearMiss(Name(Bytes(name)), NearMiss(Bytes(target), _)) => {
      check_any(target, name);
    }
    Input::Generated(Generated { target: Bytes(target), name: Bytes(name), expect }) => {
      let got = check_any(target, name);
      if got != expect.as_ref().map(|Bytes(value)| &value[..]) {
        broken(
          target,
          format!("name {:?}: expected {expect:?}, got {:?}", escape(name, 40), got.map(|v| escape(v, 80))),
        );
      }
    }
  }
}

fn check_any<'a>(target: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
  let got = find_query_param(target, name);
  let agrees = match (got, reference(target, name)) {
    (None, None) => true,
    (Some(value), Some((start, end))) => {
      value == &target[start..end]
        && (value.is_empty() || (is_within(target, value) && offset_in(target, value) == start))
    }
    _ => false,
  };
  let describe = || format!("name {:?}: find_query_param returned {:?}", escape(name, 40), got.map(|v| escape(v, 80)));
  if !agrees {
    let model = reference(target, name).map(|(start, end)| escape(&target[start..end], 80));
    broken(target, format!("{}, the reference finds {model:?}", describe()));
  }
  if let Some(value) = got {
    if name.is_empty() || value.contains(&b'&') || value.contains(&b'#') {
      broken(target, format!("{}, an impossible value", describe()));
    }
  }
  got
}

/// The specification, written out by index: cut at the first `#`, start
/// after the first `?` before it, split on `&`, skip empty parameters, split
/// each at its first `=`; the first parameter with the exact name wins.
/// Returns the value's range in `target`.
fn reference(target: &[u8], name: &[u8]) -> Option<(usize, usize)> {
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
