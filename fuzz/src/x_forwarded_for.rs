//! `parse_x_forwarded_for`.
//!
//! Invariants: generated values (IPv4 with ports, IPv6 in every spelling,
//! zones, brackets, `unknown`, obfuscated names, garbage, empty elements,
//! optional whitespace, split over several header lines) give exactly the
//! generated nodes; for any values: at most one node per comma-separated
//! element, addresses are canonical (no IPv4-mapped IPv6), several header
//! lines mean the same as one line joined with commas, each element parses
//! on its own to the same node, and the same elements sent as RFC 7239
//! `for="..."` quoted strings (escaping only `"` and `\`, or every byte)
//! give the same nodes from `parse_forwarded`.

use crate::nodes::{self, LinesInput, XffValues};
use crate::{broken, escape};
use sticky_session_rs::core::parsers::forwarded::{parse_forwarded, parse_x_forwarded_for, ForwardedNode};

pub type Input = LinesInput<XffValues>;

pub fn check(input: &Input) {
  input.check(check_any)
}

fn check_any(values: &[Vec<u8>]) -> Vec<ForwardedNode> {
  let lines: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
  let all_lines = values.join(&b'\n');
  let fail = |message: String| -> ! { broken(&all_lines, message) };
  let nodes = parse_x_forwarded_for(&lines);
  let elements: usize = lines.iter().map(|value| value.iter().filter(|&&byte| byte == b',').count() + 1).sum();
  if nodes.len() > elements {
    fail(format!("{} nodes from {elements} elements", nodes.len()));
  }
  if let Some(node) = nodes.iter().find(|node| matches!(node, ForwardedNode::Ip(ip) if ip.to_canonical() != *ip)) {
    fail(format!("address {node:?} is not canonical"));
  }
  let joined = lines.join(&b","[..]);
  let from_joined = parse_x_forwarded_for(&[&joined]);
  if from_joined != nodes {
    fail(format!("one line joined with commas gives {from_joined:?}, the lines give {nodes:?}"));
  }
  let entries: Vec<&[u8]> =
    joined.split(|&byte| byte == b',').map(trim_optional_whitespace).filter(|entry| !entry.is_empty()).collect();
  if entries.len() != nodes.len() {
    fail(format!("{} non-empty elements but {} nodes", entries.len(), nodes.len()));
  }
  for (entry, node) in entries.iter().zip(&nodes) {
    let alone = parse_x_forwarded_for(&[entry]);
    if alone != [*node] {
      fail(format!("element {:?} alone gives {alone:?}, in the list {node:?}", escape(entry, 80)));
    }
  }
  // The same entries as RFC 7239 quoted `for=` values.
  for escape_all in [false, true] {
    let forwarded: Vec<Vec<u8>> =
      entries.iter().map(|entry| [&b"for="[..], &nodes::quote(entry, escape_all)].concat()).collect();
    let forwarded = forwarded.join(&b", "[..]);
    let from_forwarded = parse_forwarded(&[&forwarded]);
    if from_forwarded != nodes {
      broken(&forwarded, format!("as Forwarded the entries give {from_forwarded:?}, as X-Forwarded-For {nodes:?}"));
    }
  }
  nodes
}

/// Optional whitespace (space, tab) trimmed from both ends, as the parser does.
fn trim_optional_whitespace(text: &[u8]) -> &[u8] {
  let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
  let start = text.iter().position(|byte| !is_space(byte)).unwrap_or(text.len());
  let end = text.iter().rposition(|byte| !is_space(byte)).map_or(start, |last| last + 1);
  &text[start..end]
}
