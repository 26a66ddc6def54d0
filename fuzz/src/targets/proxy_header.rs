//! `parse_proxy_header` (PROXY protocol v1 and v2).
//!
//! Invariants:
//! - a valid header (from `encode_v1`/`encode_v2`, or written by hand: other
//!   IPv6 spellings, `UNKNOWN` with junk, v2 `LOCAL`/`UNSPEC`/`UNIX`/UDP)
//!   followed by any bytes is `Complete` with `header_len` = its length and the
//!   encoded addresses (round trip), every strict prefix is `Incomplete`
//!   (never `Invalid`), and every longer prefix gives the same `Complete`;
//! - for any bytes: a `Complete` header never claims more bytes than the
//!   input has, ends where the format says (CRLF for v1, 16 + declared length
//!   for v2), stays within the size caps, re-encodes to the same bytes (TCP4 and
//!   v2), and is the same when only `header_len` bytes are given; `Incomplete`
//!   only below the caps; decisions never change as bytes are added
//!   (`Complete` stays the same `Complete`, `Invalid` stays `Invalid`).

use crate::gen;
use crate::mutate::{self, escape};
use crate::{cut_points, Checked, Cx, Outcome, Rng, Target, Violation};
use std::net::{IpAddr, SocketAddr};
use sticky_session_rs::parsers::proxy_protocol::{
  encode_v1, encode_v2, parse_proxy_header, ProxyError, ProxyHeader, MAX_V2_HEADER_LEN, V1_MAX_HEADER_LEN, V2_SIGNATURE,
};
use sticky_session_rs::parsers::Parse;

pub struct ProxyHeaderTarget;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
  /// Arbitrary bytes: only the general invariants apply.
  Nothing,
  /// The first `header.header_len` bytes are a valid header.
  Valid(ProxyHeader),
  /// A v1 line that is valid except that it is longer than the spec's 107
  /// bytes: `Incomplete` below 107 bytes, `Invalid(V1TooLong)` from there.
  V1TooLong,
}

#[derive(Debug)]
pub struct Case {
  pub bytes: Vec<u8>,
  pub expect: Expect,
}

const DICTIONARY: &[&[u8]] = &[
  b"PROXY ",
  b"TCP4 ",
  b"TCP6 ",
  b"UNKNOWN",
  b"\r\n",
  b"::",
  b"::ffff:",
  b"255.255.255.255",
  b"ffff:",
  b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a",
  b"\x21\x11",
  b"\x21\x21",
  b"\x20\x00",
  b"\x21\x31",
  b"\x00\x0c",
  b"\x00\x24",
  b"\x0f\xf0",
  b"\xff\xff",
];

impl Target for ProxyHeaderTarget {
  const NAME: &'static str = "proxy_header";
  const FUNCTIONS: &'static str = "parse_proxy_header (+ encode_v1, encode_v2 round trips)";
  type Case = Case;

  fn generate(rng: &mut Rng) -> Case {
    match rng.below(10) {
      0..=1 => Case { bytes: random_bytes(rng), expect: Expect::Nothing },
      2..=5 => {
        let (mut bytes, expect) = valid_header(rng);
        let trailing = rng.small_len(32);
        bytes.extend(rng.bytes(trailing));
        Case { bytes, expect }
      }
      _ => {
        let (mut bytes, _) = valid_header(rng);
        let max_len = if rng.chance(1, 16) { 6000 } else { 300 };
        mutate::mutate(rng, &mut bytes, DICTIONARY, max_len);
        Case { bytes, expect: Expect::Nothing }
      }
    }
  }

  fn parts(case: &Case) -> Vec<Vec<u8>> {
    vec![case.bytes.clone()]
  }

  fn from_parts(mut parts: Vec<Vec<u8>>) -> Case {
    Case { bytes: parts.drain(..).next().unwrap_or_default(), expect: Expect::Nothing }
  }

  fn check(case: &Case, cx: &mut Cx) -> Checked {
    let bytes = &case.bytes[..];
    let outcome = check_any(bytes, cx)?;
    match &case.expect {
      Expect::Nothing => {}
      Expect::Valid(expected) => check_valid(bytes, expected, cx)?,
      Expect::V1TooLong => check_too_long(bytes, cx)?,
    }
    Ok(outcome)
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let bytes = parts.first().map(Vec::as_slice).unwrap_or_default();
    format!("parse_proxy_header({}) = {:?}", escape(bytes, 200), parse_proxy_header(bytes))
  }
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
  let len = if rng.chance(1, 32) { rng.range(0, 5000) } else { rng.small_len(300) };
  let mut bytes = rng.bytes(len);
  // Most random first bytes are rejected at once; steer half of the inputs
  // into the v1 or v2 code paths.
  let start: &[u8] = match rng.below(8) {
    0 => b"P",
    1 => b"PROXY ",
    2 => b"PROXY TCP4 ",
    3 => b"PROXY TCP6 ",
    4 => &V2_SIGNATURE,
    5 => b"\r",
    _ => b"",
  };
  bytes.splice(0..0, start.iter().copied());
  bytes
}

/// A valid header and its expected parse.
fn valid_header(rng: &mut Rng) -> (Vec<u8>, Expect) {
  match rng.below(12) {
    0..=2 => {
      let (source, destination) = address_pair(rng);
      let bytes = encode_v1(source, destination);
      let expected = v1_expected(&bytes, Some((mapped(source, destination), mapped(destination, source))));
      (bytes, expected)
    }
    3..=4 => v1_hand_written_tcp6(rng),
    5 => {
      let junk_len = rng.small_len(V1_MAX_HEADER_LEN - 15);
      let mut line = b"PROXY UNKNOWN".to_vec();
      for _ in 0..junk_len {
        // Anything but the CRLF that would end the line early.
        let byte = if rng.chance(1, 8) { *rng.pick(b"\r\n \0") } else { rng.byte() };
        if byte == b'\n' && line.last() == Some(&b'\r') {
          continue;
        }
        line.push(byte);
      }
      if line.last() == Some(&b'\r') && rng.coin() {
        line.pop();
      }
      line.extend_from_slice(b"\r\n");
      let expected = v1_expected(&line, None);
      (line, expected)
    }
    6..=8 => {
      let (source, destination) = address_pair(rng);
      let tlv_len = if rng.chance(1, 16) {
        // Up to the 4096-byte cap exactly.
        let block = if source.is_ipv4() && destination.is_ipv4() { 12 } else { 36 };
        MAX_V2_HEADER_LEN - 16 - block - rng.small_len(8)
      } else {
        rng.small_len(64)
      };
      let tlvs = rng.bytes(tlv_len);
      let bytes = encode_v2(source, destination, &tlvs);
      let header = ProxyHeader {
        header_len: bytes.len(),
        version: 2,
        source: Some(mapped(source, destination)),
        destination: Some(mapped(destination, source)),
      };
      (bytes, Expect::Valid(header))
    }
    _ => v2_hand_built(rng),
  }
}

fn address_pair(rng: &mut Rng) -> (SocketAddr, SocketAddr) {
  let source_ip = gen::ip(rng);
  let destination_ip = match (rng.chance(1, 8), source_ip) {
    (true, _) => gen::ip(rng),
    (false, IpAddr::V4(_)) => IpAddr::V4(gen::ipv4(rng)),
    (false, IpAddr::V6(_)) => IpAddr::V6(gen::ipv6(rng)),
  };
  (gen::socket_addr(rng, source_ip), gen::socket_addr(rng, destination_ip))
}

/// What the encoders do with mixed families: the IPv4 side becomes
/// IPv4-mapped IPv6.
fn mapped(address: SocketAddr, other: SocketAddr) -> SocketAddr {
  match (address.ip(), other.ip()) {
    (IpAddr::V4(v4), IpAddr::V6(_)) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), address.port()),
    _ => address,
  }
}

fn v1_expected(line: &[u8], addresses: Option<(SocketAddr, SocketAddr)>) -> Expect {
  if line.len() > V1_MAX_HEADER_LEN {
    return Expect::V1TooLong;
  }
  Expect::Valid(ProxyHeader {
    header_len: line.len(),
    version: 1,
    source: addresses.map(|(source, _)| source),
    destination: addresses.map(|(_, destination)| destination),
  })
}

/// `PROXY TCP6` with IPv6 spellings the encoder never prints (expanded,
/// zero-padded, upper case, `::` anywhere, IPv4 tails). Some of these exceed
/// the spec's 107 bytes, which must be `Invalid`, not a parse.
fn v1_hand_written_tcp6(rng: &mut Rng) -> (Vec<u8>, Expect) {
  let source = gen::ipv6(rng);
  let destination = gen::ipv6(rng);
  let source_port = gen::port(rng);
  let destination_port = gen::port(rng);
  let line = format!(
    "PROXY TCP6 {} {} {source_port} {destination_port}\r\n",
    gen::ipv6_text(rng, source),
    gen::ipv6_text(rng, destination)
  );
  let addresses =
    (SocketAddr::new(IpAddr::V6(source), source_port), SocketAddr::new(IpAddr::V6(destination), destination_port));
  let expected = v1_expected(line.as_bytes(), Some(addresses));
  (line.into_bytes(), expected)
}

/// v2 headers the encoder does not produce: `LOCAL` with any family,
/// `UNSPEC`, `UNIX` and the UDP families.
fn v2_hand_built(rng: &mut Rng) -> (Vec<u8>, Expect) {
  let (command, family) = match rng.below(6) {
    0 => (0x20, rng.byte()),
    1 => (0x20, 0x00),
    2 => (0x21, 0x00),
    3 => (0x21, *rng.pick(&[0x31, 0x32])),
    4 => (0x21, 0x12),
    _ => (0x21, 0x22),
  };
  let block = match (command, family) {
    (0x21, 0x31 | 0x32) => 216,
    (0x21, 0x12) => 12,
    (0x21, 0x22) => 36,
    _ => 0,
  };
  let max_extra = if rng.chance(1, 16) { MAX_V2_HEADER_LEN - 16 - block } else { 48 };
  let payload_len = block + rng.small_len(max_extra);
  let payload = rng.bytes(payload_len);
  let mut bytes = V2_SIGNATURE.to_vec();
  bytes.push(command);
  bytes.push(family);
  bytes.extend_from_slice(&(payload_len as u16).to_be_bytes());
  bytes.extend_from_slice(&payload);
  let addresses = match (command, family) {
    (0x21, 0x12) => {
      let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&payload[at..at + 4]).unwrap_or_default());
      let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
      Some((SocketAddr::new(ip(0), port(8)), SocketAddr::new(ip(4), port(10))))
    }
    (0x21, 0x22) => {
      let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&payload[at..at + 16]).unwrap_or_default());
      let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
      Some((SocketAddr::new(ip(0), port(32)), SocketAddr::new(ip(16), port(34))))
    }
    _ => None,
  };
  let header = ProxyHeader {
    header_len: bytes.len(),
    version: 2,
    source: addresses.map(|(source, _)| source),
    destination: addresses.map(|(_, destination)| destination),
  };
  (bytes, Expect::Valid(header))
}

fn parse(cx: &mut Cx, bytes: &[u8]) -> Parse<ProxyHeader, ProxyError> {
  cx.call(parse_proxy_header(bytes))
}

/// Invariants that hold for any input.
pub fn check_any(bytes: &[u8], cx: &mut Cx) -> Checked {
  let result = parse(cx, bytes);
  let outcome = match &result {
    Parse::Complete(header) => {
      check_complete(bytes, header, cx)?;
      Outcome::Complete
    }
    Parse::Incomplete => {
      let declared_v2_len = bytes.get(14..16).map(|len| 16 + usize::from(u16::from_be_bytes([len[0], len[1]])));
      let plausible = match bytes.first() {
        None => true,
        Some(b'P') => bytes.len() < V1_MAX_HEADER_LEN,
        Some(b'\r') => match declared_v2_len {
          None => bytes.len() < 16,
          Some(declared) => declared <= MAX_V2_HEADER_LEN && bytes.len() < declared,
        },
        Some(_) => false,
      };
      if !plausible {
        return Err(Violation::on(bytes, format!("Incomplete for {} bytes, which is past the cap", bytes.len())));
      }
      Outcome::Incomplete
    }
    Parse::Invalid(_) => {
      let mut longer = bytes.to_vec();
      let extra = cx.rng.small_len(16);
      longer.extend((0..extra).map(|_| *cx.rng.pick(b"\r\n 0123456789.:abcdefPROXYTCUNKW\0")));
      if !parse(cx, &longer).is_invalid() {
        return Err(Violation::on(&longer, "Invalid input became valid or Incomplete when bytes were appended"));
      }
      Outcome::Invalid
    }
  };
  check_monotonic(bytes, &result, cx)?;
  Ok(outcome)
}

fn check_complete(bytes: &[u8], header: &ProxyHeader, cx: &mut Cx) -> Result<(), Violation> {
  let fail = |message: String| Err(Violation::on(bytes, format!("{message}; got {header:?}")));
  let len = header.header_len;
  if len > bytes.len() {
    return fail(format!("header_len {len} exceeds the {} input bytes", bytes.len()));
  }
  if header.source.is_some() != header.destination.is_some() {
    return fail("source and destination must both be present or both absent".into());
  }
  if let (Some(source), Some(destination)) = (header.source, header.destination) {
    if source.is_ipv4() != destination.is_ipv4() {
      return fail("source and destination families differ".into());
    }
  }
  match header.version {
    1 => {
      if !bytes.starts_with(b"PROXY ") {
        return fail("v1 header does not start with \"PROXY \"".into());
      }
      if len > V1_MAX_HEADER_LEN {
        return fail(format!("v1 header_len {len} exceeds {V1_MAX_HEADER_LEN}"));
      }
      let first_crlf = bytes.windows(2).position(|pair| pair == b"\r\n");
      if first_crlf != Some(len - 2) {
        return fail(format!("v1 header_len {len} is not just past the first CRLF ({first_crlf:?})"));
      }
      let protocol = bytes.get(6..10).unwrap_or_default();
      match (protocol, header.source) {
        (b"TCP4", Some(source)) if source.is_ipv4() => {
          // IPv4 text has one spelling, so the encoder must reproduce it.
          let destination = header.destination.unwrap_or(source);
          let encoded = encode_v1(source, destination);
          if encoded != bytes[..len] {
            return fail(format!("TCP4 header re-encodes differently: {}", escape(&encoded, 120)));
          }
        }
        (b"TCP6", Some(source)) if !source.is_ipv4() => {
          let destination = header.destination.unwrap_or(source);
          let reparsed = parse(cx, &encode_v1(source, destination));
          if !matches!(reparsed, Parse::Complete(h) if h.source == header.source && h.destination == header.destination)
          {
            return fail(format!("TCP6 addresses do not survive encode_v1 and parse: {reparsed:?}"));
          }
        }
        (_, None) if bytes[6..].starts_with(b"UNKNOWN") => {}
        _ => return fail("v1 protocol does not match the addresses".into()),
      }
    }
    2 => {
      if !bytes.starts_with(&V2_SIGNATURE) || bytes.len() < 16 {
        return fail("v2 header without the signature".into());
      }
      let declared = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
      if len != declared || len > MAX_V2_HEADER_LEN {
        return fail(format!("v2 header_len {len}, declared {declared}, cap {MAX_V2_HEADER_LEN}"));
      }
      let (command, family) = (bytes[12], bytes[13]);
      let expected_family = match family {
        0x11 | 0x12 => Some(true),
        0x21 | 0x22 => Some(false),
        _ => None,
      };
      match (header.source, header.destination) {
        (Some(source), Some(destination)) => {
          if command != 0x21 || expected_family != Some(source.is_ipv4()) {
            return fail(format!("v2 addresses for command {command:#04x} family {family:#04x}"));
          }
          let block = if source.is_ipv4() { 12 } else { 36 };
          if len < 16 + block {
            return fail(format!("v2 addresses from a {len}-byte header"));
          }
          let mut encoded = encode_v2(source, destination, &bytes[16 + block..len]);
          encoded[13] = family;
          if encoded != bytes[..len] {
            return fail(format!("v2 header re-encodes differently: {}", escape(&encoded, 120)));
          }
        }
        _ => {
          if command == 0x21 && expected_family.is_some() {
            return fail(format!("v2 PROXY family {family:#04x} without addresses"));
          }
        }
      }
    }
    version => return fail(format!("version {version}")),
  }
  // Bytes after the header are never looked at.
  let exact = parse(cx, &bytes[..len]);
  if exact != Parse::Complete(*header) {
    return Err(Violation::on(&bytes[..len], format!("only the header_len bytes parse as {exact:?}, not {header:?}")));
  }
  Ok(())
}

/// Walks prefixes: a decision, once made, must not change as bytes arrive.
fn check_monotonic(bytes: &[u8], full: &Parse<ProxyHeader, ProxyError>, cx: &mut Cx) -> Result<(), Violation> {
  let cuts = cut_points(&mut cx.rng, bytes.len(), 128, 16, &[]);
  for cut in cuts {
    let prefix = &bytes[..cut];
    match parse(cx, prefix) {
      Parse::Complete(header) if *full != Parse::Complete(header) => {
        return Err(Violation::on(
          bytes,
          format!("prefix of {cut} bytes is Complete({header:?}) but the whole input is {full:?}"),
        ));
      }
      Parse::Invalid(error) if !full.is_invalid() => {
        return Err(Violation::on(
          bytes,
          format!("prefix of {cut} bytes is Invalid({error:?}) but the whole input is {full:?}"),
        ));
      }
      _ => {}
    }
  }
  Ok(())
}

fn check_valid(bytes: &[u8], expected: &ProxyHeader, cx: &mut Cx) -> Result<(), Violation> {
  let header_len = expected.header_len;
  let got = parse(cx, bytes);
  if got != Parse::Complete(*expected) {
    return Err(Violation::on(bytes, format!("valid header parsed as {got:?}, expected Complete({expected:?})")));
  }
  let boundaries: Vec<usize> = (0..=20).chain(header_len.saturating_sub(8)..header_len).collect();
  for cut in cut_points(&mut cx.rng, header_len, 256, 16, &boundaries) {
    if cut >= header_len {
      continue;
    }
    let prefix = &bytes[..cut];
    let got = parse(cx, prefix);
    if got != Parse::Incomplete {
      return Err(Violation::on(
        prefix,
        format!("strict prefix ({cut} of {header_len} bytes) of a valid header is {got:?}, expected Incomplete"),
      ));
    }
  }
  for cut in header_len..=bytes.len() {
    let got = parse(cx, &bytes[..cut]);
    if got != Parse::Complete(*expected) {
      return Err(Violation::on(&bytes[..cut], format!("valid header plus trailing bytes parsed as {got:?}")));
    }
  }
  Ok(())
}

fn check_too_long(bytes: &[u8], cx: &mut Cx) -> Result<(), Violation> {
  for cut in 0..=bytes.len() {
    let prefix = &bytes[..cut];
    let got = parse(cx, prefix);
    let ok = if cut < V1_MAX_HEADER_LEN {
      got == Parse::Incomplete
    } else {
      got == Parse::Invalid(ProxyError::V1TooLong { max: V1_MAX_HEADER_LEN })
    };
    if !ok {
      return Err(Violation::on(
        prefix,
        format!("prefix ({cut} bytes) of a v1 line longer than {V1_MAX_HEADER_LEN} bytes parsed as {got:?}"),
      ));
    }
  }
  Ok(())
}
