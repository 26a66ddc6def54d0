//! `parse_x_forwarded_for`.
//!
//! Invariants: generated values (IPv4 with ports, IPv6 in every spelling,
//! zones, brackets, `unknown`, obfuscated names, garbage, empty elements,
//! optional whitespace, split over several header lines) give exactly the
//! generated nodes; for any values: at most one node per comma-separated
//! element, addresses are canonical (no IPv4-mapped IPv6), several header
//! lines mean the same as one line joined with commas, each element parses
//! on its own to the same node, and the same elements sent as RFC 7239
//! `for="..."` quoted strings give the same nodes from `parse_forwarded`.

use crate::mutate::escape;
use crate::targets::nodes::{self, Case};
use crate::{Checked, Cx, Outcome, Rng, Target, Violation};
use sticky_session_rs::parsers::forwarded::{parse_forwarded, parse_x_forwarded_for, ForwardedNode};

pub struct XForwardedForTarget;

const DICTIONARY: &[&[u8]] = &[b",", b", ", b"[", b"]:", b"%", b"::", b"::ffff:", b"unknown", b"_", b":80", b"\t"];

impl Target for XForwardedForTarget {
  const NAME: &'static str = "x_forwarded_for";
  const FUNCTIONS: &'static str = "parse_x_forwarded_for (+ parse_forwarded on the same entries)";
  type Case = Case;

  fn generate(rng: &mut Rng) -> Case {
    Case::generate(rng, b",  \t:[]%.0123456789abcdef_", nodes::xff_values, DICTIONARY)
  }

  fn parts(case: &Case) -> Vec<Vec<u8>> {
    case.values.clone()
  }

  fn from_parts(parts: Vec<Vec<u8>>) -> Case {
    Case::from_parts(parts)
  }

  fn from_fuzz_input(data: &[u8]) -> Case {
    Case::from_lines(data)
  }

  fn check(case: &Case, cx: &mut Cx) -> Checked {
    let values: Vec<&[u8]> = case.values.iter().map(Vec::as_slice).collect();
    let fail = |message: String| Err(Violation::on_parts(case.values.clone(), message));
    let nodes = cx.call(parse_x_forwarded_for(&values));
    if let Some(expected) = &case.expect {
      if nodes != *expected {
        return fail(format!("expected {expected:?}, got {nodes:?}"));
      }
    }
    let elements: usize = values.iter().map(|value| value.iter().filter(|&&byte| byte == b',').count() + 1).sum();
    if nodes.len() > elements {
      return fail(format!("{} nodes from {elements} elements", nodes.len()));
    }
    if let Some(node) = nodes.iter().find(|node| matches!(node, ForwardedNode::Ip(ip) if ip.to_canonical() != *ip)) {
      return fail(format!("address {node:?} is not canonical"));
    }
    let joined = values.join(&b","[..]);
    let from_joined = cx.call(parse_x_forwarded_for(&[&joined]));
    if from_joined != nodes {
      return fail(format!("one line joined with commas gives {from_joined:?}, the lines give {nodes:?}"));
    }
    let entries: Vec<&[u8]> =
      joined.split(|&byte| byte == b',').map(trim_optional_whitespace).filter(|entry| !entry.is_empty()).collect();
    if entries.len() != nodes.len() {
      return fail(format!("{} non-empty elements but {} nodes", entries.len(), nodes.len()));
    }
    {
      for (entry, node) in entries.iter().zip(&nodes) {
        let alone = cx.call(parse_x_forwarded_for(&[entry]));
        if alone != [*node] {
          return fail(format!("element {:?} alone gives {alone:?}, in the list {node:?}", escape(entry, 80)));
        }
      }
    }
    // The same entries as RFC 7239 quoted `for=` values.
    let mut forwarded = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
      if index > 0 {
        forwarded.extend_from_slice(b", ");
      }
      forwarded.extend_from_slice(b"for=");
      forwarded.extend(nodes::quote(&mut cx.rng, entry));
    }
    let from_forwarded = cx.call(parse_forwarded(&[&forwarded]));
    if from_forwarded != nodes {
      return Err(Violation::on_parts(
        vec![forwarded.clone()],
        format!(
          "as Forwarded {:?} the entries give {from_forwarded:?}, as X-Forwarded-For {nodes:?}",
          escape(&forwarded, 200)
        ),
      ));
    }
    Ok(classify(&nodes))
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let values: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    format!(
      "parse_x_forwarded_for({:?}) = {:?}",
      values.iter().map(|v| escape(v, 200)).collect::<Vec<_>>(),
      parse_x_forwarded_for(&values)
    )
  }
}

/// Optional whitespace (space, tab) trimmed from both ends, as the parser does.
pub fn trim_optional_whitespace(text: &[u8]) -> &[u8] {
  let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
  let start = text.iter().position(|byte| !is_space(byte)).unwrap_or(text.len());
  let end = text.iter().rposition(|byte| !is_space(byte)).map_or(start, |last| last + 1);
  &text[start..end]
}

/// Complete: a non-empty chain of addresses; Invalid: empty, or with an
/// `Unknown`/`Obfuscated` hop.
pub fn classify(nodes: &[ForwardedNode]) -> Outcome {
  if !nodes.is_empty() && nodes.iter().all(|node| matches!(node, ForwardedNode::Ip(_))) {
    Outcome::Complete
  } else {
    Outcome::Invalid
  }
}
