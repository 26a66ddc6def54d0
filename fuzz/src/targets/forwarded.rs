//! `parse_forwarded` (RFC 7239).
//!
//! Invariants: generated values (elements with `for=` as token or quoted
//! string with escapes, other parameters with quoted `,` `;` `"`, mixed-case
//! names, missing or repeated `for=`, malformed and empty elements, several
//! header lines) give exactly the generated nodes; for any values: each
//! header line is parsed on its own (the nodes of several lines are the
//! concatenation of each line's nodes), a line yields at most one node per
//! comma, and addresses are canonical.

use crate::mutate::escape;
use crate::targets::nodes::{self, Case};
use crate::targets::x_forwarded_for::classify;
use crate::{Checked, Cx, Rng, Target, Violation};
use sticky_session_rs::parsers::forwarded::{parse_forwarded, ForwardedNode};

pub struct ForwardedTarget;

const DICTIONARY: &[&[u8]] =
  &[b"for=", b"For=\"", b";", b",", b"\"", b"\\", b"\\\"", b"[", b"]:", b"=", b" ", b"by=", b"_hidden", b"unknown"];

impl Target for ForwardedTarget {
  const NAME: &'static str = "forwarded";
  const FUNCTIONS: &'static str = "parse_forwarded";
  type Case = Case;

  fn generate(rng: &mut Rng) -> Case {
    Case::generate(rng, b"for=\";,\\ \t:[]%._0123456789abcdef", nodes::forwarded_values, DICTIONARY)
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
    let nodes = cx.call(parse_forwarded(&values));
    if let Some(expected) = &case.expect {
      if nodes != *expected {
        return fail(format!("expected {expected:?}, got {nodes:?}"));
      }
    }
    let mut concatenated = Vec::new();
    for value in &values {
      let line_nodes = cx.call(parse_forwarded(&[value]));
      let commas = value.iter().filter(|&&byte| byte == b',').count();
      if line_nodes.len() > commas + 1 {
        return Err(Violation::on(value, format!("{} nodes from a line with {commas} commas", line_nodes.len())));
      }
      concatenated.extend(line_nodes);
    }
    if concatenated != nodes {
      return fail(format!("lines parsed one by one give {concatenated:?}, together {nodes:?}"));
    }
    if let Some(node) = nodes.iter().find(|node| matches!(node, ForwardedNode::Ip(ip) if ip.to_canonical() != *ip)) {
      return fail(format!("address {node:?} is not canonical"));
    }
    Ok(classify(&nodes))
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let values: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    format!(
      "parse_forwarded({:?}) = {:?}",
      values.iter().map(|v| escape(v, 200)).collect::<Vec<_>>(),
      parse_forwarded(&values)
    )
  }
}
