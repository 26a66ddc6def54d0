//! `parse_forwarded` (RFC 7239).
//!
//! Invariants: generated values (elements with `for=` as a token or a quoted
//! string with escapes, other parameters with quoted `,` `;` `"`, mixed-case
//! names, missing or repeated `for=`, malformed and empty elements, several
//! header lines) give exactly the generated nodes; for any values: each
//! header line is parsed on its own (the nodes of several lines are the
//! concatenation of each line's nodes), a line yields at most one node per
//! comma, and addresses are canonical.

use crate::broken;
use crate::nodes::{ForwardedValues, LinesInput};
use sticky_session_rs::core::parsers::forwarded::{parse_forwarded, ForwardedNode};

pub type Input = LinesInput<ForwardedValues>;

pub fn check(input: &Input) {
  input.check(check_any)
}

fn check_any(values: &[Vec<u8>]) -> Vec<ForwardedNode> {
  let lines: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
  let nodes = parse_forwarded(&lines);
  let mut concatenated = Vec::new();
  for line in &lines {
    let line_nodes = parse_forwarded(&[line]);
    let commas = line.iter().filter(|&&byte| byte == b',').count();
    if line_nodes.len() > commas + 1 {
      broken(line, format!("{} nodes from a line with {commas} commas", line_nodes.len()));
    }
    concatenated.extend(line_nodes);
  }
  let fail = |message: String| -> ! { broken(&values.join(&b'\n'), message) };
  if concatenated != nodes {
    fail(format!("lines parsed one by one give {concatenated:?}, together {nodes:?}"));
  }
  if let Some(node) = nodes.iter().find(|node| matches!(node, ForwardedNode::Ip(ip) if ip.to_canonical() != *ip)) {
    fail(format!("address {node:?} is not canonical"));
  }
  nodes
}
