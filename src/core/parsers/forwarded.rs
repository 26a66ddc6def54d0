//! Client address chains from the `X-Forwarded-For` header and the RFC 7239
//! `Forwarded` header, and the policy that picks the client out of them.
//!
//! No I/O: callers pass the header values they found (see
//! `http_head::header_values`). Parsing is tolerant, because these headers
//! come from a zoo of proxies: an entry that cannot be understood becomes
//! [`ForwardedNode::Unknown`] rather than an error, and [`pick_client`]
//! refuses to guess past it.

use super::is_token_byte;
use super::trusted::TrustedProxies;
use crate::core::address::{canonical_ip, parse_ipv6_with_zone};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

/// One hop of a forwarding chain, as reported by the proxy that added it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardedNode {
  /// A concrete address. Ports and IPv6 zone ids are dropped, and
  /// IPv4-mapped IPv6 addresses are normalised to IPv4.
  Ip(IpAddr),
  /// `unknown`, a `Forwarded` element without a usable `for=`, or an entry
  /// that could not be parsed.
  Unknown,
  /// An RFC 7239 obfuscated identifier such as `_hidden`: a deliberate
  /// refusal to say who the client is.
  Obfuscated,
}

/// Parses `X-Forwarded-For` values, leftmost (closest to the client) first.
///
/// Each value is a comma-separated list; several values (header lines) are
/// one list in order. Entries may be `a.b.c.d`, `a.b.c.d:port`, a bare IPv6
/// address (with an optional `%zone`, stripped), `[v6]` or `[v6]:port`.
/// Optional whitespace around entries is trimmed and empty entries are
/// skipped, as RFC 9110's list syntax requires. `unknown` and anything
/// unparseable become `Unknown`; `_identifiers` become `Obfuscated`.
pub fn parse_x_forwarded_for(values: &[&[u8]]) -> Vec<ForwardedNode> {
  values
    .iter()
    .flat_map(|value| value.split(|&byte| byte == b','))
    .map(trim_optional_whitespace)
    .filter(|entry| !entry.is_empty())
    .map(classify_node)
    .collect()
}

/// Parses RFC 7239 `Forwarded` values into one node per element, leftmost
/// first, taken from the element's `for=` parameter.
///
/// Elements are separated by `,` and parameters by `;`; parameter names are
/// case-insensitive and values are tokens or quoted strings with `\`
/// escapes (`for="[2001:db8::1]:4711"`). Empty elements are skipped. An
/// element without `for=`, with `for=` twice, or that is malformed becomes
/// `Unknown`. Each value (header line) is parsed on its own, so an
/// unterminated quote in one line cannot swallow the elements a trusted
/// proxy appended on another.
pub fn parse_forwarded(values: &[&[u8]]) -> Vec<ForwardedNode> {
  let mut nodes = Vec::new();
  for value in values {
    let mut position = 0;
    while position < value.len() {
      let (element, next_position) = parse_forwarded_element(value, position);
      debug_assert!(next_position > position, "the element parser must make progress");
      if let Some(node) = element {
        nodes.push(node);
      }
      position = next_position.max(position.saturating_add(1));
    }
  }
  nodes
}

/// Picks the client address for a connection from `peer` whose forwarding
/// chain is `nodes` (leftmost first).
///
/// The policy is nginx's `real_ip_recursive on`, the one that cannot be
/// spoofed by a client that writes its own forwarding header:
///
/// - If `peer` is not trusted, the header is not believed and the peer is the
///   client.
/// - Otherwise the chain is walked from the right (the entry added by the
///   proxy closest to us) to the left, and the first address that is not
///   itself trusted is the client. Entries left of it were written by
///   parties we cannot vouch for and are ignored.
/// - An `Unknown` or `Obfuscated` entry met before such an address means the
///   client cannot be identified: `None`, and the caller falls back (for
///   example to the peer address or to round-robin).
/// - If every entry is trusted, the leftmost one is the client; with no
///   entries at all, the trusted peer itself is.
///
/// The result is canonical: IPv4-mapped IPv6 becomes IPv4.
pub fn pick_client(nodes: &[ForwardedNode], peer: IpAddr, trusted: &TrustedProxies) -> Option<IpAddr> {
  let peer = canonical_ip(peer);
  if !trusted.contains(peer) {
    return Some(peer);
  }
  for node in nodes.iter().rev() {
    match *node {
      ForwardedNode::Ip(ip) if !trusted.contains(ip) => return Some(canonical_ip(ip)),
      ForwardedNode::Ip(_) => {}
      ForwardedNode::Unknown | ForwardedNode::Obfuscated => return None,
    }
  }
  match nodes.first() {
    None => Some(peer),
    Some(ForwardedNode::Ip(leftmost)) => Some(canonical_ip(*leftmost)),
    // Unreachable: the walk above returned at any non-address entry.
    Some(ForwardedNode::Unknown | ForwardedNode::Obfuscated) => None,
  }
}

// ---------------------------------------------------------------------------
// Node syntax shared by both headers

/// Classifies one node: an address (with optional port), `unknown`, an
/// obfuscated identifier, or garbage (`Unknown`).
fn classify_node(node: &[u8]) -> ForwardedNode {
  if let Some(ip) = parse_node_address(node) {
    return ForwardedNode::Ip(canonical_ip(ip));
  }
  // RFC 7239 allows a port after `unknown` and obfuscated names too.
  let name = match node.iter().position(|&byte| byte == b':') {
    Some(colon) => {
      let (name, colon_and_port) = node.split_at(colon);
      if !colon_and_port.get(1..).is_some_and(is_node_port) {
        return ForwardedNode::Unknown;
      }
      name
    }
    None => node,
  };
  if is_obfuscated_identifier(name) {
    ForwardedNode::Obfuscated
  } else {
    ForwardedNode::Unknown
  }
}

/// `a.b.c.d`, `a.b.c.d:port`, `v6`, `v6%zone`, `[v6]`, `[v6%zone]`,
/// `[v6]:port`. Ports must be valid but are discarded.
fn parse_node_address(node: &[u8]) -> Option<IpAddr> {
  let text = std::str::from_utf8(node).ok()?;
  if let Some(after_bracket) = text.strip_prefix('[') {
    let (inside, after) = after_bracket.split_once(']')?;
    if !after.is_empty() {
      let port = after.strip_prefix(':')?;
      if !is_node_port(port.as_bytes()) {
        return None;
      }
    }
    return parse_ipv6_with_zone(inside).map(IpAddr::V6);
  }
  if let Ok(ip) = text.parse::<IpAddr>() {
    return Some(ip);
  }
  if let Some(ipv6) = parse_ipv6_with_zone(text) {
    return Some(IpAddr::V6(ipv6));
  }
  // Only IPv4 may carry a port without brackets: in `::1:80` the port
  // cannot be told apart from the last group.
  let (host, port) = text.split_once(':')?;
  if !is_node_port(port.as_bytes()) {
    return None;
  }
  host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// RFC 7239 `node-port`: 1 to 5 digits up to 65535, or an obfuscated port.
fn is_node_port(port: &[u8]) -> bool {
  let is_decimal_port = !port.is_empty()
    && port.len() <= 5
    && port.iter().all(u8::is_ascii_digit)
    && std::str::from_utf8(port).ok().and_then(|text| text.parse::<u16>().ok()).is_some();
  is_decimal_port || is_obfuscated_identifier(port)
}

/// RFC 7239 `obfnode` / `obfport`: `_` followed by ALPHA, DIGIT, `.`, `_`
/// or `-`.
fn is_obfuscated_identifier(text: &[u8]) -> bool {
  match text.split_first() {
    Some((b'_', rest)) => {
      !rest.is_empty() && rest.iter().all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    }
    _ => false,
  }
}

/// Optional whitespace (RFC 9110 OWS): spaces and horizontal tabs.
fn is_optional_whitespace(byte: u8) -> bool {
  byte == b' ' || byte == b'\t'
}

fn trim_optional_whitespace(text: &[u8]) -> &[u8] {
  let start = text.iter().position(|&byte| !is_optional_whitespace(byte)).unwrap_or(text.len());
  let end = text.iter().rposition(|&byte| !is_optional_whitespace(byte)).map_or(start, |last| last.saturating_add(1));
  text.get(start..end).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// RFC 7239 element syntax

/// What ends a `Forwarded` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairsEnd {
  /// A `,` (consumed) or the end of the value.
  ElementEnd,
  /// The syntax broke; the element is `Unknown`.
  Malformed,
}

/// Parses the element starting at `position` and returns its node (`None`
/// for an empty element) and the position after its terminating comma.
fn parse_forwarded_element(value: &[u8], mut position: usize) -> (Option<ForwardedNode>, usize) {
  let mut has_pairs = false;
  let mut for_values: Vec<Cow<'_, [u8]>> = Vec::new();
  let end = loop {
    position = skip_optional_whitespace(value, position);
    match value.get(position) {
      None => break PairsEnd::ElementEnd,
      Some(b',') => {
        position = position.saturating_add(1);
        break PairsEnd::ElementEnd;
      }
      Some(b';') => {
        position = position.saturating_add(1);
        continue;
      }
      Some(_) => {}
    }
    has_pairs = true;
    let Some(pair) = parse_forwarded_pair(value, position) else {
      break PairsEnd::Malformed;
    };
    if pair.name.eq_ignore_ascii_case(b"for") {
      for_values.push(pair.value);
    }
    position = skip_optional_whitespace(value, pair.end);
    match value.get(position) {
      None | Some(b',' | b';') => {}
      Some(_) => break PairsEnd::Malformed,
    }
  };

  match end {
    PairsEnd::Malformed => (Some(ForwardedNode::Unknown), skip_past_element(value, position)),
    PairsEnd::ElementEnd if !has_pairs => (None, position),
    PairsEnd::ElementEnd => {
      // RFC 7239 §4: a parameter must not occur twice in one element; with
      // two `for=` values there is no telling which one is true.
      let node = match for_values.as_slice() {
        [for_value] => classify_node(for_value),
        _ => ForwardedNode::Unknown,
      };
      (Some(node), position)
    }
  }
}

/// One `name=value` parameter of a `Forwarded` element.
struct ForwardedPair<'a> {
  name: &'a [u8],
  /// Unescaped when it was a quoted string.
  value: Cow<'a, [u8]>,
  /// Position just after the value.
  end: usize,
}

/// Parses `token "=" ( token / quoted-string )` at `position`, or returns
/// `None` when the pair is malformed.
fn parse_forwarded_pair(value: &[u8], position: usize) -> Option<ForwardedPair<'_>> {
  let rest = value.get(position..)?;
  let name_len = rest.iter().position(|&byte| !is_token_byte(byte))?;
  let (name, after_name) = rest.split_at(name_len);
  if name.is_empty() || after_name.first() != Some(&b'=') {
    return None;
  }
  let value_start = position.checked_add(name_len)?.checked_add(1)?;
  let after_equals = value.get(value_start..)?;
  if after_equals.first() == Some(&b'"') {
    let (unescaped, quoted_len) = parse_quoted_string(after_equals)?;
    return Some(ForwardedPair { name, value: unescaped, end: value_start.checked_add(quoted_len)? });
  }
  // Unquoted values are read up to the next delimiter rather than strictly
  // as tokens, so that the common mistake `for=[2001:db8::1]` still parses.
  let token_len = after_equals
    .iter()
    .position(|&byte| matches!(byte, b';' | b',' | b'"') || is_optional_whitespace(byte))
    .unwrap_or(after_equals.len());
  let token = after_equals.get(..token_len)?;
  Some(ForwardedPair { name, value: Cow::Borrowed(token), end: value_start.checked_add(token_len)? })
}

/// Parses a quoted string starting with `"`; returns its unescaped content
/// and the number of bytes it spans (both quotes included), or `None` if it
/// is not terminated.
fn parse_quoted_string(text: &[u8]) -> Option<(Cow<'_, [u8]>, usize)> {
  let content = text.strip_prefix(b"\"")?;
  let mut unescaped: Option<Vec<u8>> = None;
  let mut index = 0;
  while let Some(&byte) = content.get(index) {
    match byte {
      b'"' => {
        let spanned = index.checked_add(2)?;
        let content = match unescaped {
          Some(owned) => Cow::Owned(owned),
          None => Cow::Borrowed(content.get(..index)?),
        };
        return Some((content, spanned));
      }
      b'\\' => {
        let escaped = *content.get(index.checked_add(1)?)?;
        unescaped.get_or_insert_with(|| content.get(..index).unwrap_or_default().to_vec()).push(escaped);
        index = index.checked_add(2)?;
      }
      _ => {
        if let Some(owned) = unescaped.as_mut() {
          owned.push(byte);
        }
        index = index.checked_add(1)?;
      }
    }
  }
  None
}

/// Skips to just after the next `,` outside a quoted string, or to the end.
fn skip_past_element(value: &[u8], mut position: usize) -> usize {
  let mut in_quotes = false;
  while let Some(&byte) = value.get(position) {
    position = position.saturating_add(1);
    match byte {
      b'\\' if in_quotes => position = position.saturating_add(1),
      b'"' => in_quotes = !in_quotes,
      b',' if !in_quotes => return position,
      _ => {}
    }
  }
  value.len()
}

fn skip_optional_whitespace(value: &[u8], position: usize) -> usize {
  let skipped =
    value.get(position..).unwrap_or_default().iter().take_while(|&&byte| is_optional_whitespace(byte)).count();
  position.saturating_add(skipped)
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;
  use std::net::Ipv6Addr;

  fn ip(text: &str) -> ForwardedNode {
    ForwardedNode::Ip(text.parse().expect("test address"))
  }

  fn addr(text: &str) -> IpAddr {
    text.parse().expect("test address")
  }

  fn xff(value: &str) -> Vec<ForwardedNode> {
    parse_x_forwarded_for(&[value.as_bytes()])
  }

  fn forwarded(value: &str) -> Vec<ForwardedNode> {
    parse_forwarded(&[value.as_bytes()])
  }

  fn trusted(entries: &[&str]) -> TrustedProxies {
    TrustedProxies::parse(entries).expect("valid trusted proxies")
  }

  use ForwardedNode::{Obfuscated, Unknown};

  // --- X-Forwarded-For -----------------------------------------------------

  #[test]
  fn x_forwarded_for_lists_parse_left_to_right() {
    assert_eq!(
      xff("203.0.113.195, 70.41.3.18,150.172.238.178"),
      vec![ip("203.0.113.195"), ip("70.41.3.18"), ip("150.172.238.178")]
    );
  }

  #[test]
  fn x_forwarded_for_entries_tolerate_ports_brackets_zones_and_mapping() {
    let cases: &[(&str, ForwardedNode)] = &[
      ("2001:db8:85a3:8d3:1319:8a2e:370:7348", ip("2001:db8:85a3:8d3:1319:8a2e:370:7348")),
      ("203.0.113.195:41237", ip("203.0.113.195")),
      ("[2001:db8::1]:4711", ip("2001:db8::1")),
      ("[2001:db8::1]", ip("2001:db8::1")),
      ("[fe80::1%eth0]:80", ip("fe80::1")),
      ("fe80::1%eth0", ip("fe80::1")),
      ("::ffff:192.0.2.1", ip("192.0.2.1")),
      ("[::ffff:192.0.2.1]:443", ip("192.0.2.1")),
      ("\t 10.0.0.1 \t", ip("10.0.0.1")),
      ("unknown", Unknown),
      ("UNKNOWN", Unknown),
      ("_hidden", Obfuscated),
      ("_hidden:_port", Obfuscated),
      ("garbage", Unknown),
      ("1.2.3.4.5", Unknown),
      ("256.1.1.1", Unknown),
      ("01.2.3.4", Unknown),
      ("1.2.3.4:99999", Unknown),
      ("1.2.3.4:", Unknown),
      ("1.2.3.4:+80", Unknown),
      ("[::1", Unknown),
      ("::1]:80", Unknown),
      ("[1.2.3.4]:80", Unknown),
      ("[::1]80", Unknown),
      ("fe80::1%", Unknown),
      ("[fe80::1%]:80", Unknown),
      ("[fe80::1%25eth0]:80", ip("fe80::1")),
      ("fe80::1%lo:0", ip("fe80::1")),
      ("\"1.2.3.4\"", Unknown),
      ("_", Unknown),
      ("1.2.3.4 5.6.7.8", Unknown),
    ];
    for (entry, expected) in cases {
      assert_eq!(xff(entry), vec![*expected], "entry {entry:?}");
    }
  }

  #[test]
  fn a_zone_follows_the_one_rule_of_address_rs_in_both_headers() {
    for zone in ["eth0", "25eth0", "lo:0", "", "a b", "\u{e9}t", "x\u{7f}"] {
      for address in ["fe80::1", "::ffff:10.0.0.1", "1.2.3.4"] {
        let text = format!("{address}%{zone}");
        let literal = crate::core::address::parse_ip_literal(&text);
        let expected = literal.map_or(Unknown, ForwardedNode::Ip);
        assert_eq!(xff(&text), vec![expected], "X-Forwarded-For {text:?}");
        let bracketed = format!("for=\"[{text}]:80\"");
        assert_eq!(parse_forwarded(&[bracketed.as_bytes()]), vec![expected], "Forwarded {bracketed:?}");
      }
    }
  }

  #[test]
  fn x_forwarded_for_skips_empty_entries_and_joins_header_lines() {
    assert_eq!(xff(""), vec![]);
    assert_eq!(xff(" , ,"), vec![]);
    assert_eq!(
      parse_x_forwarded_for(&[b"1.1.1.1, ,2.2.2.2", b"3.3.3.3"]),
      vec![ip("1.1.1.1"), ip("2.2.2.2"), ip("3.3.3.3")]
    );
  }

  // --- Forwarded -----------------------------------------------------------

  #[test]
  fn the_rfc_7239_examples_parse() {
    let cases: &[(&str, Vec<ForwardedNode>)] = &[
      ("for=\"_gazonk\"", vec![Obfuscated]),
      ("For=\"[2001:db8:cafe::17]:4711\"", vec![ip("2001:db8:cafe::17")]),
      ("for=192.0.2.60;proto=http;by=203.0.113.43", vec![ip("192.0.2.60")]),
      ("for=192.0.2.43, for=198.51.100.17", vec![ip("192.0.2.43"), ip("198.51.100.17")]),
      ("for=unknown", vec![Unknown]),
      (
        "for=192.0.2.43,for=\"[2001:db8:cafe::17]\",for=unknown",
        vec![ip("192.0.2.43"), ip("2001:db8:cafe::17"), Unknown],
      ),
      ("for=\"_mdn\"", vec![Obfuscated]),
      ("for=\"unknown:_port\"", vec![Unknown]),
    ];
    for (value, expected) in cases {
      assert_eq!(&forwarded(value), expected, "value {value:?}");
    }
  }

  #[test]
  fn forwarded_values_handle_quoting_escapes_and_case() {
    let cases: &[(&str, Vec<ForwardedNode>)] = &[
      ("FOR=10.0.0.1", vec![ip("10.0.0.1")]),
      ("for=\"\\[2001:db8::1\\]:80\"", vec![ip("2001:db8::1")]),
      ("for=\"10.0.0.1\";proto=\"h\\\"ttps\"", vec![ip("10.0.0.1")]),
      ("by=1.1.1.1;for=10.0.0.1", vec![ip("10.0.0.1")]),
      ("for=[2001:db8::1]:80", vec![ip("2001:db8::1")]),
      ("for=\"1.2.3.4, for=6.6.6.6\"", vec![Unknown]),
      ("for=\"::ffff:10.0.0.1\"", vec![ip("10.0.0.1")]),
      (" ; for=10.0.0.1 ; ", vec![ip("10.0.0.1")]),
      ("for=10.0.0.1, , ,for=10.0.0.2", vec![ip("10.0.0.1"), ip("10.0.0.2")]),
    ];
    for (value, expected) in cases {
      assert_eq!(&forwarded(value), expected, "value {value:?}");
    }
  }

  #[test]
  fn malformed_forwarded_elements_become_unknown_without_hiding_later_ones() {
    let cases: &[(&str, Vec<ForwardedNode>)] = &[
      ("proto=https", vec![Unknown]),
      ("for=1.1.1.1;for=2.2.2.2", vec![Unknown]),
      ("for=\"1.2.3.4", vec![Unknown]),
      ("for = 1.2.3.4, for=5.6.7.8", vec![Unknown, ip("5.6.7.8")]),
      ("for=1.2.3.4 x, for=5.6.7.8", vec![Unknown, ip("5.6.7.8")]),
      ("x=\"a,b\" y, for=5.6.7.8", vec![Unknown, ip("5.6.7.8")]),
      ("for=, for=5.6.7.8", vec![Unknown, ip("5.6.7.8")]),
      ("=1.2.3.4", vec![Unknown]),
      ("for", vec![Unknown]),
      ("for=\"1.2.3.4\"x", vec![Unknown]),
      ("for=\"\\", vec![Unknown]),
    ];
    for (value, expected) in cases {
      assert_eq!(&forwarded(value), expected, "value {value:?}");
    }
  }

  #[test]
  fn an_unterminated_quote_cannot_swallow_a_later_header_line() {
    assert_eq!(parse_forwarded(&[b"for=\"1.2.3.4, for=6.6.6.6", b"for=10.0.0.1"]), vec![Unknown, ip("10.0.0.1")]);
  }

  // --- pick_client ---------------------------------------------------------

  #[test]
  fn an_untrusted_peer_is_the_client_whatever_it_claims() {
    let trusted = trusted(&["10.0.0.0/8"]);
    let nodes = xff("1.1.1.1, 10.0.0.5");
    assert_eq!(pick_client(&nodes, addr("203.0.113.9"), &trusted), Some(addr("203.0.113.9")));
  }

  #[test]
  fn the_rightmost_untrusted_address_is_the_client() {
    let trusted = trusted(&["10.0.0.0/8"]);
    // The client wrote "6.6.6.6" itself; our proxies appended the rest.
    let nodes = xff("6.6.6.6, 203.0.113.7, 10.0.0.2");
    assert_eq!(pick_client(&nodes, addr("10.0.0.1"), &trusted), Some(addr("203.0.113.7")));
  }

  #[test]
  fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
    let trusted = trusted(&["10.0.0.0/8"]);
    let nodes = xff("10.0.0.9, 10.0.0.2");
    assert_eq!(pick_client(&nodes, addr("10.0.0.1"), &trusted), Some(addr("10.0.0.9")));
    assert_eq!(pick_client(&[], addr("10.0.0.1"), &trusted), Some(addr("10.0.0.1")));
  }

  #[test]
  fn an_unidentifiable_hop_before_the_client_gives_no_answer() {
    let trusted = trusted(&["10.0.0.0/8"]);
    for header in ["1.1.1.1, unknown, 10.0.0.2", "1.1.1.1, _hidden", "garbage"] {
      assert_eq!(pick_client(&xff(header), addr("10.0.0.1"), &trusted), None, "{header}");
    }
    // Beyond the client it does not matter.
    assert_eq!(pick_client(&xff("unknown, 1.1.1.1, 10.0.0.2"), addr("10.0.0.1"), &trusted), Some(addr("1.1.1.1")));
  }

  #[test]
  fn mapped_addresses_are_judged_and_returned_as_ipv4() {
    let trusted = trusted(&["10.0.0.0/8"]);
    let nodes = [ForwardedNode::Ip(addr("::ffff:10.0.0.3"))];
    assert_eq!(pick_client(&nodes, addr("::ffff:10.0.0.1"), &trusted), Some(addr("10.0.0.3")));
    assert_eq!(pick_client(&[], addr("::ffff:192.0.2.1"), &trusted), Some(addr("192.0.2.1")));
  }

  #[test]
  fn the_forwarded_header_feeds_the_same_policy() {
    let trusted = trusted(&["loopback", "fd00::/8"]);
    let nodes = forwarded("for=6.6.6.6, for=\"[2001:db8::7]:1234\", for=\"[fd00::2]\"");
    assert_eq!(pick_client(&nodes, addr("::1"), &trusted), Some(addr("2001:db8::7")));
  }

  // --- properties ----------------------------------------------------------

  fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
      any::<Ipv4Addr>().prop_map(IpAddr::V4),
      any::<Ipv6Addr>().prop_map(IpAddr::V6),
      // Keep some addresses inside the trusted networks below.
      (0u8..=255).prop_map(|last| IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))),
      (0u8..=255).prop_map(|last| IpAddr::V6(Ipv4Addr::new(10, 0, 0, last).to_ipv6_mapped())),
    ]
  }

  fn any_node() -> impl Strategy<Value = ForwardedNode> {
    prop_oneof![
      6 => any_ip().prop_map(ForwardedNode::Ip),
      1 => Just(Unknown),
      1 => Just(Obfuscated),
    ]
  }

  /// How an address may be written in an `X-Forwarded-For` entry.
  fn written_entry(ip: IpAddr, port: u16, style: u8) -> String {
    match (ip, style % 3) {
      (IpAddr::V4(v4), 0) => v4.to_string(),
      (IpAddr::V4(v4), _) => format!("{v4}:{port}"),
      (IpAddr::V6(v6), 0) => v6.to_string(),
      (IpAddr::V6(v6), 1) => format!("[{v6}]"),
      (IpAddr::V6(v6), _) => format!("[{v6}]:{port}"),
    }
  }

  proptest! {
    #[test]
    fn pick_client_returns_the_peer_or_an_address_from_the_list(
      nodes in proptest::collection::vec(any_node(), 0..8),
      peer in any_ip(),
    ) {
      let trusted = trusted(&["10.0.0.0/8"]);
      if let Some(client) = pick_client(&nodes, peer, &trusted) {
        let from_list = nodes.iter().any(|node| {
          matches!(node, ForwardedNode::Ip(ip) if canonical_ip(*ip) == client)
        });
        prop_assert!(client == canonical_ip(peer) || from_list);
        prop_assert_eq!(canonical_ip(client), client);
      }
    }

    #[test]
    fn written_addresses_parse_back_from_both_headers(
      entries in proptest::collection::vec((any_ip(), any::<u16>(), any::<u8>()), 0..6),
    ) {
      let expected: Vec<ForwardedNode> = entries
        .iter()
        .map(|(ip, _, _)| ForwardedNode::Ip(canonical_ip(*ip)))
        .collect();
      let x_forwarded_for = entries
        .iter()
        .map(|(ip, port, style)| written_entry(*ip, *port, *style))
        .collect::<Vec<_>>()
        .join(" ,\t");
      prop_assert_eq!(xff(&x_forwarded_for), expected.clone());
      let forwarded_value = entries
        .iter()
        .map(|(ip, port, style)| format!("for=\"{}\";proto=https", written_entry(*ip, *port, *style)))
        .collect::<Vec<_>>()
        .join(", ");
      prop_assert_eq!(forwarded(&forwarded_value), expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
      first in proptest::collection::vec(any::<u8>(), 0..200),
      second in "[ -~]{0,80}",
    ) {
      let values: [&[u8]; 2] = [&first, second.as_bytes()];
      let _ = parse_x_forwarded_for(&values);
      let nodes = parse_forwarded(&values);
      prop_assert!(nodes.len() <= first.len() + second.len());
    }
  }
}
