//! Forwarding-header nodes and whole `X-Forwarded-For` / `Forwarded`
//! values, each with the nodes the parsers must return.

use crate::{addresses, below, broken, escape, one_in, pick, range, small_len, Bytes, Gen, NearMiss, Render};
use arbitrary::{Arbitrary, Unstructured};
use std::fmt;
use std::net::IpAddr;
use sticky_session_rs::core::parsers::forwarded::ForwardedNode;

/// Entries that no address, `unknown` or obfuscated-identifier rule accepts:
/// each must become `Unknown`.
const GARBAGE_NODES: &[&str] = &[
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

/// Header values (one per header line) and the nodes they must parse to.
pub type ValuesAndNodes = (Vec<Vec<u8>>, Vec<ForwardedNode>);

/// The input split on `\n`: one header value or trusted-proxy entry per
/// line.
#[derive(Debug)]
pub struct Lines(pub Vec<Bytes>);

impl<'a> Arbitrary<'a> for Lines {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    Self::arbitrary_take_rest(Unstructured::new(u.bytes(u.len())?))
  }

  fn arbitrary_take_rest(u: Unstructured<'a>) -> Gen<Self> {
    Ok(Lines(u.take_rest().split(|&byte| byte == b'\n').map(|line| Bytes(line.to_vec())).collect()))
  }
}

/// Generated header values (one per header line) and the nodes they must
/// parse to.
pub struct Generated {
  pub values: Vec<Vec<u8>>,
  pub nodes: Vec<ForwardedNode>,
}

impl fmt::Debug for Generated {
  fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
    let values: Vec<String> = self.values.iter().map(|value| escape(value, usize::MAX)).collect();
    formatter.debug_struct("Generated").field("values", &values).field("nodes", &self.nodes).finish()
  }
}

impl Lines {
  pub fn from_near_miss<T>(NearMiss(Bytes(bytes), _): &NearMiss<T>) -> Lines {
    Lines(bytes.split(|&byte| byte == b'\n').map(|line| Bytes(line.to_vec())).collect())
  }

  pub fn to_vecs(&self) -> Vec<Vec<u8>> {
    self.0.iter().map(|Bytes(line)| line.clone()).collect()
  }
}

/// `X-Forwarded-For` values from [`xff_values`].
#[derive(Debug)]
pub struct XffValues(pub Generated);

impl<'a> Arbitrary<'a> for XffValues {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let (values, nodes) = xff_values(u)?;
    Ok(XffValues(Generated { values, nodes }))
  }
}

impl Render for XffValues {
  const TOKENS: &'static [&'static [u8]] =
    &[b",", b", ", b"[", b"]:", b"%", b"::", b"::ffff:", b"unknown", b"_", b":80", b"\t", b"\n"];

  fn render(&self) -> Vec<u8> {
    self.0.values.join(&b'\n')
  }
}

/// `Forwarded` values from [`forwarded_values`].
#[derive(Debug)]
pub struct ForwardedValues(pub Generated);

impl<'a> Arbitrary<'a> for ForwardedValues {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let (values, nodes) = forwarded_values(u)?;
    Ok(ForwardedValues(Generated { values, nodes }))
  }
}

impl Render for ForwardedValues {
  const TOKENS: &'static [&'static [u8]] = &[
    b"for=", b"For=\"", b";", b",", b"\"", b"\\", b"\\\"", b"[", b"]:", b"=", b" ", b"by=", b"_hidden", b"unknown",
    b"\n",
  ];

  fn render(&self) -> Vec<u8> {
    self.0.values.join(&b'\n')
  }
}

/// A node's text and the node the parsers must make of it.
pub struct GenNode {
  pub text: Vec<u8>,
  pub node: ForwardedNode,
}

fn ip_node(ip: IpAddr) -> ForwardedNode {
  ForwardedNode::Ip(ip.to_canonical())
}

fn port_text(u: &mut Unstructured) -> Gen<String> {
  Ok(match below(u, 6)? {
    0 => format!("{:05}", u.int_in_range(0..=65535u32)?),
    1 => obfuscated(u)?,
    _ => addresses::port(u)?.to_string(),
  })
}

fn obfuscated(u: &mut Unstructured) -> Gen<String> {
  let rest: String =
    (0..range(u, 1, 10)?).map(|_| pick(u, b"abcXYZ019._-").map(|&byte| char::from(byte))).collect::<Gen<_>>()?;
  Ok(format!("_{rest}"))
}

pub fn node(u: &mut Unstructured) -> Gen<GenNode> {
  let (text, node) = match below(u, 14)? {
    0..=2 => {
      let ip = addresses::ipv4(u)?;
      (ip.to_string(), ip_node(IpAddr::V4(ip)))
    }
    3 => {
      let ip = addresses::ipv4(u)?;
      (format!("{ip}:{}", port_text(u)?), ip_node(IpAddr::V4(ip)))
    }
    4..=5 => {
      let ip = addresses::ipv6(u)?;
      (addresses::ipv6_text(u, ip)?, ip_node(IpAddr::V6(ip)))
    }
    6 => {
      let ip = addresses::ipv6(u)?;
      (format!("{}%{}", addresses::ipv6_text(u, ip)?, addresses::zone(u)?), ip_node(IpAddr::V6(ip)))
    }
    7..=8 => {
      let ip = addresses::ipv6(u)?;
      let text = addresses::ipv6_text(u, ip)?;
      let zone = if one_in(u, 3)? { format!("%{}", addresses::zone(u)?) } else { String::new() };
      let port = if u.arbitrary()? { format!(":{}", port_text(u)?) } else { String::new() };
      (format!("[{text}{zone}]{port}"), ip_node(IpAddr::V6(ip)))
    }
    9 => ((*pick(u, &["unknown", "unknown:80", "unknown:_p"])?).to_owned(), ForwardedNode::Unknown),
    10 => {
      let port = if u.arbitrary()? { format!(":{}", port_text(u)?) } else { String::new() };
      (format!("{}{port}", obfuscated(u)?), ForwardedNode::Obfuscated)
    }
    11 => ((*pick(u, GARBAGE_NODES)?).to_owned(), ForwardedNode::Unknown),
    12 => {
      let ip = addresses::ipv4(u)?;
      let text = if u.arbitrary()? { format!("::FFFF:{ip}") } else { ip.to_ipv6_mapped().to_string() };
      (text, ip_node(IpAddr::V4(ip)))
    }
    _ => {
      let ip = addresses::ip(u)?;
      (ip.to_string(), ip_node(ip))
    }
  };
  Ok(GenNode { text: text.into_bytes(), node })
}

fn optional_whitespace(u: &mut Unstructured) -> Gen<&'static [u8]> {
  pick(u, &[&b""[..], b"", b" ", b"\t", b"  ", b" \t "]).copied()
}

/// Splits `items` into 1 to 3 consecutive groups (header lines).
fn split_into_lines<T>(u: &mut Unstructured, items: Vec<T>) -> Gen<Vec<Vec<T>>> {
  let mut lines: Vec<Vec<T>> = vec![Vec::new()];
  let lines_wanted = range(u, 1, 3)?;
  let len = items.len();
  for (index, item) in items.into_iter().enumerate() {
    if index > 0 && lines.len() < lines_wanted && below(u, len)? < lines_wanted {
      lines.push(Vec::new());
    }
    if let Some(line) = lines.last_mut() {
      line.push(item);
    }
  }
  Ok(lines)
}

/// `X-Forwarded-For` header values (one per header line) and their nodes,
/// leftmost first: empty elements, optional whitespace, every kind of node.
pub fn xff_values(u: &mut Unstructured) -> Gen<ValuesAndNodes> {
  let mut entries: Vec<Vec<u8>> = Vec::new();
  let mut nodes = Vec::new();
  for _ in 0..small_len(u, 8)? {
    if one_in(u, 10)? {
      // An empty list element, which must be skipped.
      entries.push(optional_whitespace(u)?.to_vec());
    }
    let generated = node(u)?;
    let mut entry = optional_whitespace(u)?.to_vec();
    entry.extend_from_slice(&generated.text);
    entry.extend_from_slice(optional_whitespace(u)?);
    entries.push(entry);
    nodes.push(generated.node);
  }
  let values = split_into_lines(u, entries)?.into_iter().map(|line| line.join(&b","[..])).collect();
  Ok((values, nodes))
}

/// Quotes `text` as an RFC 7230 quoted-string, escaping `"` and `\`, and
/// every other byte too when `escape_all` (any byte may be escaped).
pub fn quote(text: &[u8], escape_all: bool) -> Vec<u8> {
  let mut quoted = vec![b'"'];
  for &byte in text {
    if byte == b'"' || byte == b'\\' || escape_all {
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

fn pair_name(u: &mut Unstructured, name: &str) -> Gen<Vec<u8>> {
  name.bytes().map(|byte| Ok(if u.arbitrary()? { byte.to_ascii_uppercase() } else { byte })).collect()
}

/// One `Forwarded` element and the node it must become (`None` for an empty
/// element, which is skipped): `for=` as a token or a quoted string with
/// escapes, other parameters with quoted `,` `;` `"`, mixed-case names,
/// missing or repeated `for=`, malformed elements.
fn forwarded_element(u: &mut Unstructured) -> Gen<(Vec<u8>, Option<ForwardedNode>)> {
  match below(u, 20)? {
    18 => return Ok(((*pick(u, MALFORMED_ELEMENTS)?).as_bytes().to_vec(), Some(ForwardedNode::Unknown))),
    19 => return Ok((pick(u, &[&b""[..], b" ", b";", b" ; "])?.to_vec(), None)),
    _ => {}
  }
  let for_count = match below(u, 10)? {
    8 => 0,
    9 => 2,
    _ => 1,
  };
  let mut pairs: Vec<Vec<u8>> = Vec::new();
  let mut node_of_element = ForwardedNode::Unknown;
  for _ in 0..for_count {
    let generated = node(u)?;
    let needs_quotes = generated.text.iter().any(|byte| matches!(byte, b';' | b',' | b'"' | b' ' | b'\t'));
    let mut pair = pair_name(u, "for")?;
    pair.push(b'=');
    if needs_quotes || u.arbitrary()? {
      pair.extend(quote(&generated.text, one_in(u, 4)?));
    } else {
      pair.extend_from_slice(&generated.text);
    }
    pairs.push(pair);
    node_of_element = generated.node;
  }
  if for_count != 1 {
    node_of_element = ForwardedNode::Unknown;
  }
  for _ in 0..small_len(u, 3)? {
    let name = *pick(u, &["by", "proto", "host", "secret", "for-x", "_for", "x"])?;
    let mut pair = pair_name(u, name)?;
    pair.push(b'=');
    if u.arbitrary()? {
      let value: Vec<u8> = (0..small_len(u, 12)?).map(|_| pick(u, b"abc123.-_:[]").copied()).collect::<Gen<_>>()?;
      pair.extend(if value.is_empty() { b"x".to_vec() } else { value });
    } else {
      let value: Vec<u8> =
        (0..small_len(u, 16)?).map(|_| pick(u, b"a1 ,;=\"\\:[]\t\x80\xff").copied()).collect::<Gen<_>>()?;
      pair.extend(quote(&value, one_in(u, 4)?));
    }
    pairs.push(pair);
  }
  // Shuffle the pairs.
  for index in (1..pairs.len()).rev() {
    let other = range(u, 0, index)?;
    pairs.swap(index, other);
  }
  let mut element = optional_whitespace(u)?.to_vec();
  if one_in(u, 10)? {
    element.push(b';');
  }
  for (index, pair) in pairs.iter().enumerate() {
    if index > 0 {
      element.extend_from_slice(optional_whitespace(u)?);
      element.push(b';');
      element.extend_from_slice(optional_whitespace(u)?);
    }
    element.extend_from_slice(pair);
  }
  if one_in(u, 10)? {
    element.push(b';');
  }
  element.extend_from_slice(optional_whitespace(u)?);
  let node = if pairs.is_empty() { None } else { Some(node_of_element) };
  Ok((element, node))
}

/// `Forwarded` header values (one per header line) and their nodes.
pub fn forwarded_values(u: &mut Unstructured) -> Gen<ValuesAndNodes> {
  let elements: Vec<(Vec<u8>, Option<ForwardedNode>)> =
    (0..small_len(u, 6)?).map(|_| forwarded_element(u)).collect::<Gen<_>>()?;
  let nodes = elements.iter().filter_map(|(_, node)| *node).collect();
  let values = split_into_lines(u, elements)?
    .into_iter()
    .map(|line| line.into_iter().map(|(text, _)| text).collect::<Vec<_>>().join(&b","[..]))
    .collect();
  Ok((values, nodes))
}

/// The input of a forwarding-header target: any bytes (one header line per
/// `\n`), lines `V` generated with the nodes they must give, or a near miss
/// of those.
#[derive(Arbitrary, Debug)]
#[arbitrary(bound = "V: Arbitrary<'arbitrary> + Render")]
pub enum LinesInput<V> {
  Raw(Lines),
  Generated(V),
  NearMiss(NearMiss<V>),
}

impl<V: AsRef<Generated>> LinesInput<V> {
  /// Runs `check_any` (the target's checks, returning the nodes parsed) on
  /// the lines; generated lines must give the nodes they were made from.
  pub fn check(&self, check_any: impl Fn(&[Vec<u8>]) -> Vec<ForwardedNode>) {
    match self {
      LinesInput::Raw(lines) => {
        check_any(&lines.to_vecs());
      }
      LinesInput::NearMiss(near_miss) => {
        check_any(&Lines::from_near_miss(near_miss).to_vecs());
      }
      LinesInput::Generated(generated) => {
        let Generated { values, nodes } = generated.as_ref();
        let got = check_any(values);
        if got != *nodes {
          broken(&values.join(&b'\n'), format!("expected {nodes:?}, got {got:?}"));
        }
      }
    }
  }
}

impl AsRef<Generated> for XffValues {
  fn as_ref(&self) -> &Generated {
    &self.0
  }
}

impl AsRef<Generated> for ForwardedValues {
  fn as_ref(&self) -> &Generated {
    &self.0
  }
}
