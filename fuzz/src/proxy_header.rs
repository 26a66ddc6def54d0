//! `parse_proxy_header` (PROXY protocol v1 and v2).
//!
//! Invariants:
//! - a valid header (from `encode_v1`/`encode_v2`, or written by hand: other
//!   IPv6 spellings, `UNKNOWN` with junk, v2 `LOCAL`/`UNSPEC`/`UNIX`/UDP)
//!   followed by any bytes is `Complete` with `header_len` = its length and
//!   the encoded addresses (round trip), every strict prefix is `Incomplete`
//!   (never `Invalid`), and every longer prefix gives the same `Complete`; a
//!   v1 line longer than 107 bytes is `Incomplete` below 107 bytes and
//!   `Invalid(V1TooLong)` from there on;
//! - for any bytes: a `Complete` header never claims more bytes than the
//!   input has, ends where the format says (just past the first CRLF for v1,
//!   16 + declared length for v2), stays within the size caps, re-encodes to
//!   the same bytes (TCP4 and v2; TCP6 addresses survive encode and parse),
//!   and is the same when only `header_len` bytes are given; `Incomplete`
//!   only below the caps; decisions never change as bytes are added
//!   (`Complete` stays the same `Complete`, `Invalid` stays `Invalid`).

use crate::addresses;
use crate::{below, broken, bytes, cut_points, escape, one_in, pick, small_len, Bytes, Gen, NearMiss, Render};
use arbitrary::{Arbitrary, Unstructured};
use std::net::{IpAddr, SocketAddr};
use sticky_session_rs::core::parsers::proxy_protocol::{
  encode_v1, encode_v2, parse_proxy_header, ProxyError, ProxyHeader, MAX_V2_HEADER_LEN, V1_MAX_HEADER_LEN, V2_SIGNATURE,
};
use sticky_session_rs::core::parsers::Parse;

#[derive(Arbitrary, Debug)]
pub enum Input {
  Raw(Bytes),
  /// A valid header followed by any bytes.
  Valid(ValidHeader, Bytes),
  NearMiss(NearMiss<ValidHeader>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
  Complete(ProxyHeader),
  /// A v1 line that is valid except that it is longer than the spec's 107
  /// bytes.
  V1TooLong,
}

#[derive(Debug)]
pub struct ValidHeader {
  pub bytes: Bytes,
  pub expect: Expect,
}

impl<'a> Arbitrary<'a> for ValidHeader {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let (bytes, expect) = match below(u, 5)? {
      0 => encoded_v1(u)?,
      1 => hand_written_tcp6(u)?,
      2 => unknown_with_junk(u)?,
      3 => encoded_v2(u)?,
      _ => hand_built_v2(u)?,
    };
    Ok(ValidHeader { bytes: Bytes(bytes), expect })
  }
}

impl Render for ValidHeader {
  const TOKENS: &'static [&'static [u8]] = &[
    b"PROXY ",
    b"TCP4 ",
    b"TCP6 ",
    b"UNKNOWN",
    b"\r\n",
    b"::",
    b"::ffff:",
    b"255.255.255.255",
    b"65535",
    b"65536",
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

  fn render(&self) -> Vec<u8> {
    self.bytes.0.clone()
  }
}

pub fn check(input: &Input) {
  match input {
    Input::Raw(Bytes(bytes)) | Input::NearMiss(NearMiss(Bytes(bytes), _)) => check_any(bytes),
    Input::Valid(header, Bytes(trailing)) => {
      let bytes = [&header.bytes.0[..], trailing].concat();
      check_any(&bytes);
      match &header.expect {
        Expect::Complete(expected) => check_valid(&bytes, expected),
        Expect::V1TooLong => check_too_long(&bytes),
      }
    }
  }
}

fn address_pair(u: &mut Unstructured) -> Gen<(SocketAddr, SocketAddr)> {
  let source_ip = addresses::ip(u)?;
  let destination_ip = match (one_in(u, 8)?, source_ip) {
    (true, _) => addresses::ip(u)?,
    (false, IpAddr::V4(_)) => IpAddr::V4(addresses::ipv4(u)?),
    (false, IpAddr::V6(_)) => IpAddr::V6(addresses::ipv6(u)?),
  };
  Ok((addresses::socket_addr(u, source_ip)?, addresses::socket_addr(u, destination_ip)?))
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
  Expect::Complete(ProxyHeader {
    header_len: line.len(),
    version: 1,
    source: addresses.map(|(source, _)| source),
    destination: addresses.map(|(_, destination)| destination),
  })
}

fn encoded_v1(u: &mut Unstructured) -> Gen<(Vec<u8>, Expect)> {
  let (source, destination) = address_pair(u)?;
  let bytes = encode_v1(source, destination);
  let expect = v1_expected(&bytes, Some((mapped(source, destination), mapped(destination, source))));
  Ok((bytes, expect))
}

/// `PROXY TCP6` with IPv6 spellings the encoder never prints (expanded,
/// zero-padded, upper case, `::` anywhere, IPv4 tails). Some of these exceed
/// the spec's 107 bytes, which must be `Invalid`, not a parse.
fn hand_written_tcp6(u: &mut Unstructured) -> Gen<(Vec<u8>, Expect)> {
  let source = SocketAddr::new(IpAddr::V6(addresses::ipv6(u)?), addresses::port(u)?);
  let destination = SocketAddr::new(IpAddr::V6(addresses::ipv6(u)?), addresses::port(u)?);
  let text = |u: &mut Unstructured, address: SocketAddr| match address.ip() {
    IpAddr::V6(ip) => addresses::ipv6_text(u, ip),
    IpAddr::V4(ip) => Ok(ip.to_string()),
  };
  let line =
    format!("PROXY TCP6 {} {} {} {}\r\n", text(u, source)?, text(u, destination)?, source.port(), destination.port());
  let expect = v1_expected(line.as_bytes(), Some((source, destination)));
  Ok((line.into_bytes(), expect))
}

/// `PROXY UNKNOWN` and anything but a CRLF up to the line end.
fn unknown_with_junk(u: &mut Unstructured) -> Gen<(Vec<u8>, Expect)> {
  let mut line = b"PROXY UNKNOWN".to_vec();
  for _ in 0..small_len(u, V1_MAX_HEADER_LEN - 15)? {
    let byte = if one_in(u, 8)? { *pick(u, b"\r\n \0")? } else { u.arbitrary()? };
    if byte == b'\n' && line.last() == Some(&b'\r') {
      continue;
    }
    line.push(byte);
  }
  // `\r\r\n` still ends the line at its CRLF: keep a last CR sometimes.
  if line.last() == Some(&b'\r') && u.arbitrary()? {
    line.pop();
  }
  line.extend_from_slice(b"\r\n");
  let expect = v1_expected(&line, None);
  Ok((line, expect))
}

fn encoded_v2(u: &mut Unstructured) -> Gen<(Vec<u8>, Expect)> {
  let (source, destination) = address_pair(u)?;
  let tlv_len = if one_in(u, 16)? {
    // Up to the 4096-byte cap exactly.
    let block = if source.is_ipv4() && destination.is_ipv4() { 12 } else { 36 };
    MAX_V2_HEADER_LEN - 16 - block - small_len(u, 8)?
  } else {
    small_len(u, 64)?
  };
  let bytes = encode_v2(source, destination, &bytes(u, tlv_len)?);
  let header = ProxyHeader {
    header_len: bytes.len(),
    version: 2,
    source: Some(mapped(source, destination)),
    destination: Some(mapped(destination, source)),
  };
  Ok((bytes, Expect::Complete(header)))
}

/// v2 headers the encoder does not produce: `LOCAL` with any family,
/// `UNSPEC`, `UNIX` and the UDP families.
fn hand_built_v2(u: &mut Unstructured) -> Gen<(Vec<u8>, Expect)> {
  let (command, family) = match below(u, 6)? {
    0 => (0x20, 0x00),
    1 => (0x20, u.arbitrary()?),
    2 => (0x21, 0x00),
    3 => (0x21, *pick(u, &[0x31, 0x32])?),
    4 => (0x21, 0x12),
    _ => (0x21, 0x22),
  };
  let block = match (command, family) {
    (0x21, 0x31 | 0x32) => 216,
    (0x21, 0x12) => 12,
    (0x21, 0x22) => 36,
    _ => 0,
  };
  let max_extra = if one_in(u, 16)? { MAX_V2_HEADER_LEN - 16 - block } else { 48 };
  let payload_len = block + small_len(u, max_extra)?;
  let payload = bytes(u, payload_len)?;
  let mut bytes = V2_SIGNATURE.to_vec();
  bytes.extend_from_slice(&[command, family]);
  bytes.extend_from_slice(&(payload_len as u16).to_be_bytes());
  bytes.extend_from_slice(&payload);
  let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
  let addresses = match (command, family) {
    (0x21, 0x12) => {
      let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&payload[at..at + 4]).unwrap_or_default());
      Some((SocketAddr::new(ip(0), port(8)), SocketAddr::new(ip(4), port(10))))
    }
    (0x21, 0x22) => {
      let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&payload[at..at + 16]).unwrap_or_default());
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
  Ok((bytes, Expect::Complete(header)))
}

/// Bytes appended to an `Invalid` input, which must stay `Invalid`.
const APPENDED: &[&[u8]] = &[b"\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", b"\0\r\n\r\n\0\r\nQUIT\n"];

/// Invariants that hold for any input.
pub fn check_any(bytes: &[u8]) {
  let result = parse_proxy_header(bytes);
  match &result {
    Parse::Complete(header) => check_complete(bytes, header),
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
        broken(bytes, format!("Incomplete for {} bytes, which is past the cap", bytes.len()));
      }
    }
    Parse::Invalid(_) => {
      for appended in APPENDED {
        let longer = [bytes, appended].concat();
        if !parse_proxy_header(&longer).is_invalid() {
          broken(&longer, "Invalid input became valid or Incomplete when bytes were appended");
        }
      }
    }
  }
  check_monotonic(bytes, &result);
}

fn check_complete(bytes: &[u8], header: &ProxyHeader) {
  let fail = |message: String| -> ! { broken(bytes, format!("{message}; got {header:?}")) };
  let len = header.header_len;
  if len > bytes.len() {
    fail(format!("header_len {len} exceeds the {} input bytes", bytes.len()));
  }
  if header.source.is_some() != header.destination.is_some() {
    fail("source and destination must both be present or both absent".into());
  }
  if let (Some(source), Some(destination)) = (header.source, header.destination) {
    if source.is_ipv4() != destination.is_ipv4() {
      fail("source and destination families differ".into());
    }
  }
  match header.version {
    1 => {
      if !bytes.starts_with(b"PROXY ") {
        fail("v1 header does not start with \"PROXY \"".into());
      }
      if len > V1_MAX_HEADER_LEN {
        fail(format!("v1 header_len {len} exceeds {V1_MAX_HEADER_LEN}"));
      }
      let first_crlf = bytes.windows(2).position(|pair| pair == b"\r\n");
      if first_crlf != Some(len - 2) {
        fail(format!("v1 header_len {len} is not just past the first CRLF ({first_crlf:?})"));
      }
      let protocol = bytes.get(6..10).unwrap_or_default();
      match (protocol, header.source, header.destination) {
        (b"TCP4", Some(source), Some(destination)) if source.is_ipv4() => {
          // IPv4 text has one spelling, so the encoder must reproduce it.
          let encoded = encode_v1(source, destination);
          if encoded != bytes[..len] {
            fail(format!("TCP4 header re-encodes differently: {}", escape(&encoded, 120)));
          }
        }
        (b"TCP6", Some(source), Some(destination)) if !source.is_ipv4() => {
          let reparsed = parse_proxy_header(&encode_v1(source, destination));
          if !matches!(reparsed, Parse::Complete(h) if h.source == header.source && h.destination == header.destination)
          {
            fail(format!("TCP6 addresses do not survive encode_v1 and parse: {reparsed:?}"));
          }
        }
        (_, None, _) if bytes[6..].starts_with(b"UNKNOWN") => {}
        _ => fail("v1 protocol does not match the addresses".into()),
      }
    }
    2 => {
      if !bytes.starts_with(&V2_SIGNATURE) || bytes.len() < 16 {
        fail("v2 header without the signature".into());
      }
      let declared = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
      if len != declared || len > MAX_V2_HEADER_LEN {
        fail(format!("v2 header_len {len}, declared {declared}, cap {MAX_V2_HEADER_LEN}"));
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
            fail(format!("v2 addresses for command {command:#04x} family {family:#04x}"));
          }
          let block = if source.is_ipv4() { 12 } else { 36 };
          if len < 16 + block {
            fail(format!("v2 addresses from a {len}-byte header"));
          }
          let mut encoded = encode_v2(source, destination, &bytes[16 + block..len]);
          encoded[13] = family;
          if encoded != bytes[..len] {
            fail(format!("v2 header re-encodes differently: {}", escape(&encoded, 120)));
          }
        }
        _ => {
          if command == 0x21 && expected_family.is_some() {
            fail(format!("v2 PROXY family {family:#04x} without addresses"));
          }
        }
      }
    }
    version => fail(format!("version {version}")),
  }
  // Bytes after the header are never looked at.
  let exact = parse_proxy_header(&bytes[..len]);
  if exact != Parse::Complete(*header) {
    broken(&bytes[..len], format!("only the header_len bytes parse as {exact:?}, not {header:?}"));
  }
}

/// Walks prefixes: a decision, once made, must not change as bytes arrive.
fn check_monotonic(bytes: &[u8], full: &Parse<ProxyHeader, ProxyError>) {
  for cut in cut_points(bytes, 128, 16, &[]) {
    match parse_proxy_header(&bytes[..cut]) {
      Parse::Complete(header) if *full != Parse::Complete(header) => {
        broken(bytes, format!("prefix of {cut} bytes is Complete({header:?}) but the whole input is {full:?}"))
      }
      Parse::Invalid(error) if !full.is_invalid() => {
        broken(bytes, format!("prefix of {cut} bytes is Invalid({error:?}) but the whole input is {full:?}"))
      }
      _ => {}
    }
  }
}

fn check_valid(bytes: &[u8], expected: &ProxyHeader) {
  let header_len = expected.header_len;
  let got = parse_proxy_header(bytes);
  if got != Parse::Complete(*expected) {
    broken(bytes, format!("valid header parsed as {got:?}, expected Complete({expected:?})"));
  }
  let boundaries: Vec<usize> = (0..=20).chain(header_len.saturating_sub(8)..header_len).collect();
  for cut in cut_points(&bytes[..header_len], 256, 16, &boundaries) {
    if cut == header_len {
      continue;
    }
    let got = parse_proxy_header(&bytes[..cut]);
    if got != Parse::Incomplete {
      broken(
        &bytes[..cut],
        format!("strict prefix ({cut} of {header_len} bytes) of a valid header is {got:?}, expected Incomplete"),
      );
    }
  }
  for cut in header_len..=bytes.len() {
    let got = parse_proxy_header(&bytes[..cut]);
    if got != Parse::Complete(*expected) {
      broken(&bytes[..cut], format!("valid header plus trailing bytes parsed as {got:?}"));
    }
  }
}

fn check_too_long(bytes: &[u8]) {
  for cut in 0..=bytes.len() {
    let got = parse_proxy_header(&bytes[..cut]);
    let ok = if cut < V1_MAX_HEADER_LEN {
      got == Parse::Incomplete
    } else {
      got == Parse::Invalid(ProxyError::V1TooLong { max: V1_MAX_HEADER_LEN })
    };
    if !ok {
      broken(
        &bytes[..cut],
        format!("prefix ({cut} bytes) of a v1 line longer than {V1_MAX_HEADER_LEN} bytes parsed as {got:?}"),
      );
    }
  }
}
