//! Generators of forwarding-header nodes and whole `X-Forwarded-For` /
//! `Forwarded` values, each with the nodes the parsers must return.

use crate::gen;
use crate::rng::Rng;
use std::net::IpAddr;
use sticky_session_rs::parsers::forwarded::ForwardedNode;

/// Entries that no address, `unknown` or obfuscated-identifier rule accepts:
/// each must become `Unknown`.
pub const GARBAGE_NODES: &[&str] = &[
  "unknown",
  "UNKNOWN",
  "1.2.3",
  "256.0.0.1",
  "01.2.3.4",
  "1.2.3.4:65536",
  "1.2.3.4:123456",
  "1.2.3.4:",
  "1.2.3.4:-1",
  "[1.2.3.4]",
  "[::1",
  "::1]",
  "[::1]:",
  "[::1]x",
  "[::1]:65536",
  "1.2.3.4%eth0",
  "fe80::1%",
  "example.com",
  "localhost:80",
  "_",
  "_:80",
  "_x:",
  "_x:_",
  "a_b",
  "::1::",
  "[]",
  "[%eth0]",
];

/// A node's text and the node the parsers must make of it.
pub struct GenNode {
  pub text: Vec<u8>,
  pub node: ForwardedNode,
}

fn ip_node(ip: IpAddr) -> ForwardedNode {
  ForwardedNode::Ip(ip.to_canonical())
}

fn port_text(rng: &mut Rng) -> String {
  match rng.below(6) {
    0 => format!("{:05}", rng.below(65536)),
    1 => obfuscated(rng),
    _ => gen::port(rng).to_string(),
  }
}

fn obfuscated(rng: &mut Rng) -> String {
  let len = rng.range(1, 10);
  let rest: String = (0..len).map(|_| char::from(*rng.pick(b"abcXYZ019._-"))).collect();
  format!("_{rest}")
}

pub fn node(rng: &mut Rng) -> GenNode {
  let (text, node) = match rng.below(14) {
    0..=2 => {
      let ip = gen::ipv4(rng);
      (ip.to_string(), ip_node(IpAddr::V4(ip)))
    }
    3 => {
      let ip = gen::ipv4(rng);
      (format!("{ip}:{}", port_text(rng)), ip_node(IpAddr::V4(ip)))
    }
    4..=5 => {
      let ip = gen::ipv6(rng);
      (gen::ipv6_text(rng, ip), ip_node(IpAddr::V6(ip)))
    }
    6 => {
      let ip = gen::ipv6(rng);
      (format!("{}%{}", gen::ipv6_text(rng, ip), gen::zone(rng)), ip_node(IpAddr::V6(ip)))
    }
    7..=8 => {
      let ip = gen::ipv6(rng);
      let zone = if rng.chance(1, 3) { format!("%{}", gen::zone(rng)) } else { String::new() };
      let port = if rng.coin() { format!(":{}", port_text(rng)) } else { String::new() };
      (format!("[{}{zone}]{port}", gen::ipv6_text(rng, ip)), ip_node(IpAddr::V6(ip)))
    }
    9 => ((*rng.pick(&["unknown", "unknown:80", "unknown:_p"])).to_owned(), ForwardedNode::Unknown),
    10 => {
      let port = if rng.coin() { format!(":{}", port_text(rng)) } else { String::new() };
      (format!("{}{port}", obfuscated(rng)), ForwardedNode::Obfuscated)
    }
    11 => ((*rng.pick(GARBAGE_NODES)).to_owned(), ForwardedNode::Unknown),
    12 => {
      let ip = gen::ipv4(rng);
      let text = if rng.coin() { format!("::FFFF:{ip}") } else { ip.to_ipv6_mapped().to_string() };
      (text, ip_node(IpAddr::V4(ip)))
    }
    _ => {
      let ip = gen::ip(rng);
      (ip.to_string(), ip_node(ip))
    }
  };
  GenNode { text: text.into_bytes(), node }
}

fn optional_whitespace(rng: &mut Rng) -> &'static [u8] {
  match rng.below(6) {
    0 => b" ",
    1 => b"\t",
    2 => b"  ",
    3 => b" \t ",
    _ => b"",
  }
}

/// Splits `items` into 1 to 3 consecutive groups (header lines).
fn split_into_lines<T>(rng: &mut Rng, items: Vec<T>) -> Vec<Vec<T>> {
  let mut lines: Vec<Vec<T>> = vec![Vec::new()];
  let lines_wanted = rng.range(1, 3);
  let len = items.len();
  for (index, item) in items.into_iter().enumerate() {
    if index > 0 && lines.len() < lines_wanted && rng.below(len) < lines_wanted {
      lines.push(Vec::new());
    }
    if let Some(line) = lines.last_mut() {
      line.push(item);
    }
  }
  lines
}

/// `X-Forwarded-For` header values (one per header line) and their nodes,
/// leftmost first.
pub fn xff_values(rng: &mut Rng) -> ValuesAndNodes {
  let count = rng.small_len(8);
  let mut entries: Vec<Vec<u8>> = Vec::new();
  let mut nodes = Vec::new();
  for _ in 0..count {
    if rng.chance(1, 10) {
      // An empty list element, which must be skipped.
      entries.push(optional_whitespace(rng).to_vec());
    }
    let generated = node(rng);
    let mut entry = optional_whitespace(rng).to_vec();
    entry.extend_from_slice(&generated.text);
    entry.extend_from_slice(optional_whitespace(rng));
    entries.push(entry);
    nodes.push(generated.node);
  }
  let values = split_into_lines(rng, entries).into_iter().map(|line| line.join(&b","[..])).collect();
  (values, nodes)
}

/// Quotes `text` as an RFC 7230 quoted-string, escaping `"` and `\` and,
/// at random, other bytes too (any byte may be escaped).
pub fn quote(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
  let mut quoted = vec![b'"'];
  for &byte in text {
    if byte == b'"' || byte == b'\\' || rng.chance(1, 10) {
      quoted.push(b'\\');
    }
    quoted.push(byte);
  }
  quoted.push(b'"');
  quoted
}

/// Elements that break the RFC 7239 syntax but contain no `,` or `"` that
/// could bleed into the next element; each must become `Unknown`.
const MALFORMED_ELEMENTS: &[&str] =
  &["for", "a b", "x=1 y=2", "=1", "for=1.2.3.4 junk", "@", "for=\"1.2.3.4\"x", "for=;=", "by=a b;for=1.2.3.4"];

fn pair_name(rng: &mut Rng, name: &str) -> Vec<u8> {
  name.bytes().map(|byte| if rng.coin() { byte.to_ascii_uppercase() } else { byte }).collect()
}

/// One `Forwarded` element and the node it must become (`None` for an empty
/// element, which is skipped).
fn forwarded_element(rng: &mut Rng) -> (Vec<u8>, Option<ForwardedNode>) {
  match rng.below(20) {
    0 => return ((*rng.pick(MALFORMED_ELEMENTS)).as_bytes().to_vec(), Some(ForwardedNode::Unknown)),
    1 => return (rng.pick(&[&b""[..], b" ", b";", b" ; "]).to_vec(), None),
    _ => {}
  }
  let for_count = match rng.below(10) {
    0 => 0,
    1 => 2,
    _ => 1,
  };
  let mut pairs: Vec<Vec<u8>> = Vec::new();
  let mut node_of_element = ForwardedNode::Unknown;
  for _ in 0..for_count {
    let generated = node(rng);
    let needs_quotes = generated.text.iter().any(|byte| matches!(byte, b';' | b',' | b'"' | b' ' | b'\t'));
    let mut pair = pair_name(rng, "for");
    pair.push(b'=');
    if needs_quotes || rng.coin() {
      pair.extend(quote(rng, &generated.text));
    } else {
      pair.extend_from_slice(&generated.text);
    }
    pairs.push(pair);
    node_of_element = generated.node;
  }
  if for_count != 1 {
    node_of_element = ForwardedNode::Unknown;
  }
  for _ in 0..rng.small_len(3) {
    let name = *rng.pick(&["by", "proto", "host", "secret", "for-x", "_for", "x"]);
    let mut pair = pair_name(rng, name);
    pair.push(b'=');
    if rng.coin() {
      let len = rng.small_len(12);
      let value: Vec<u8> = (0..len).map(|_| *rng.pick(b"abc123.-_:[]")).collect();
      pair.extend(if value.is_empty() { b"x".to_vec() } else { value });
    } else {
      let len = rng.small_len(16);
      let value: Vec<u8> = (0..len).map(|_| *rng.pick(b"a1 ,;=\"\\:[]\t\x80\xff")).collect();
      pair.extend(quote(rng, &value));
    }
    pairs.push(pair);
  }
  // Shuffle the pairs.
  for index in (1..pairs.len()).rev() {
    let other = rng.below(index + 1);
    pairs.swap(index, other);
  }
  let mut element = optional_whitespace(rng).to_vec();
  if rng.chance(1, 10) {
    element.push(b';');
  }
  for (index, pair) in pairs.iter().enumerate() {
    if index > 0 {
      element.extend_from_slice(optional_whitespace(rng));
      element.push(b';');
      element.extend_from_slice(optional_whitespace(rng));
    }
    element.extend_from_slice(pair);
  }
  if rng.chance(1, 10) {
    element.push(b';');
  }
  element.extend_from_slice(optional_whitespace(rng));
  let node = if pairs.is_empty() { None } else { Some(node_of_element) };
  (element, node)
}

/// `Forwarded` header values (one per header line) and their nodes.
pub fn forwarded_values(rng: &mut Rng) -> ValuesAndNodes {
  let count = rng.small_len(6);
  let elements: Vec<(Vec<u8>, Option<ForwardedNode>)> = (0..count).map(|_| forwarded_element(rng)).collect();
  let nodes = elements.iter().filter_map(|(_, node)| *node).collect();
  let values = split_into_lines(rng, elements)
    .into_iter()
    .map(|line| line.into_iter().map(|(text, _)| text).collect::<Vec<_>>().join(&b","[..]))
    .collect();
  (values, nodes)
}

#[cfg(test)]
mod tests {
  use super::*;
  use sticky_session_rs::parsers::forwarded::{parse_forwarded, parse_x_forwarded_for};

  #[test]
  fn garbage_nodes_are_unknown() {
    for garbage in GARBAGE_NODES {
      assert_eq!(parse_x_forwarded_for(&[garbage.as_bytes()]), vec![ForwardedNode::Unknown], "{garbage}");
    }
  }

  #[test]
  fn malformed_elements_are_unknown() {
    for element in MALFORMED_ELEMENTS {
      assert_eq!(parse_forwarded(&[element.as_bytes()]), vec![ForwardedNode::Unknown], "{element}");
    }
  }
}

/// Header values (one per header line) and the nodes they must parse to.
pub type ValuesAndNodes = (Vec<Vec<u8>>, Vec<ForwardedNode>);

/// A case for the forwarding-header targets: header values (one per header
/// line) and, for generated values, the nodes they must give.
#[derive(Debug)]
pub struct Case {
  pub values: Vec<Vec<u8>>,
  pub expect: Option<Vec<ForwardedNode>>,
}

impl Case {
  /// 20% random bytes sprinkled with `sprinkle`, 40% values from `valid`
  /// with their expected nodes, 40% valid values with one of them mutated.
  pub fn generate(rng: &mut Rng, sprinkle: &[u8], valid: fn(&mut Rng) -> ValuesAndNodes, dictionary: &[&[u8]]) -> Case {
    match rng.below(10) {
      0..=1 => Case { values: random_values(rng, sprinkle), expect: None },
      2..=5 => {
        let (values, nodes) = valid(rng);
        Case { values, expect: Some(nodes) }
      }
      _ => {
        let (mut values, _) = valid(rng);
        if values.is_empty() {
          values.push(Vec::new());
        }
        let index = rng.below(values.len());
        crate::mutate::mutate(rng, &mut values[index], dictionary, 4000);
        Case { values, expect: None }
      }
    }
  }

  pub fn from_parts(parts: Vec<Vec<u8>>) -> Case {
    Case { values: parts, expect: None }
  }

  /// A fuzzer's input: one header line per `\n`.
  pub fn from_lines(data: &[u8]) -> Case {
    Case::from_parts(data.split(|&byte| byte == b'\n').map(<[u8]>::to_vec).collect())
  }
}

pub fn random_values(rng: &mut Rng, sprinkle: &[u8]) -> Vec<Vec<u8>> {
  let count = rng.range(1, 3);
  (0..count)
    .map(|_| {
      let len = rng.small_len(80);
      (0..len).map(|_| if rng.chance(1, 3) { *rng.pick(sprinkle) } else { rng.byte() }).collect()
    })
    .collect()
}
