//! PROXY protocol header parser, versions 1 (text) and 2 (binary), as
//! specified by HAProxy in "The PROXY protocol" (haproxy.org, proxy-protocol.txt).
//!
//! No I/O: [`parse_proxy_header`] looks at bytes the accept loop has peeked
//! and says how many of them are the header, so the caller can consume exactly
//! that many and hand the rest of the stream to a worker untouched.
//!
//! The parser decides as early as it can: a connection whose first byte is
//! neither `P` nor `\r` is rejected at once, and each field is checked as soon
//! as its bytes arrive, so garbage is not kept waiting for a header that can
//! never become valid. Every strict prefix of a valid header is
//! [`Parse::Incomplete`].
//!
//! The encoders [`encode_v1`] and [`encode_v2`] exist for tests and for
//! tools that talk to the accept loop; the accept loop itself only parses.

use super::Parse;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every version 2 header starts with. Chosen by the spec to be
/// invalid as the start of HTTP, TLS, SMTP and other common protocols.
pub const V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// Longest version 1 header the spec allows, CRLF included. The spec derives
/// it from `PROXY UNKNOWN` followed by two full-length IPv6 addresses.
pub const V1_MAX_HEADER_LEN: usize = 107;

/// Longest version 2 header (the 16 fixed bytes plus addresses and TLVs) this
/// parser accepts. The spec allows up to 16 + 65535 bytes, but real senders
/// (HAProxy, AWS NLB, GCP, Azure, Envoy) stay far below: addresses take at
/// most 216 bytes and the TLVs they send (ALPN, authority, SSL details,
/// endpoint ids, CRC32C) a few hundred more. 4096 keeps the peek buffer at one
/// page while leaving more than ten times the usual room; anything longer is
/// treated as an attack or a misconfiguration and is `Invalid`.
pub const MAX_V2_HEADER_LEN: usize = 4096;

/// Signature, version/command, family and the 16-bit length.
const V2_FIXED_LEN: usize = 16;

/// Address block sizes for each family (source, destination, ports).
const V2_INET_ADDRESS_BLOCK_LEN: usize = 12;
const V2_INET6_ADDRESS_BLOCK_LEN: usize = 36;
const V2_UNIX_ADDRESS_BLOCK_LEN: usize = 216;

const V1_PREFIX: &[u8] = b"PROXY ";
const V1_UNKNOWN: &[u8] = b"UNKNOWN";
const V1_TCP4: &[u8] = b"TCP4";
const V1_TCP6: &[u8] = b"TCP6";

/// Longest textual forms that `std::net` parses and prints.
const MAX_IPV4_TEXT_LEN: usize = 15;
const MAX_IPV6_TEXT_LEN: usize = 45;
const MAX_PORT_TEXT_LEN: usize = 5;

/// A complete PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
  /// Number of bytes at the start of the stream that belong to the header,
  /// TLVs included. The application data starts right after them.
  pub header_len: usize,
  /// Protocol version: 1 (text) or 2 (binary).
  pub version: u8,
  /// Address of the client as seen by the proxy. `None` when the header
  /// carries no usable address: v1 `UNKNOWN`, v2 `LOCAL` (a health check from
  /// the proxy itself), v2 `UNSPEC` and `UNIX` families. The caller then uses
  /// the real peer address of the connection.
  pub source: Option<SocketAddr>,
  /// Address the client connected to on the proxy; `None` exactly when
  /// `source` is.
  pub destination: Option<SocketAddr>,
}

/// The field of a version 1 header that failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Field {
  SourceAddress,
  DestinationAddress,
  SourcePort,
  DestinationPort,
}

impl fmt::Display for V1Field {
  fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
    formatter.write_str(match self {
      V1Field::SourceAddress => "source address",
      V1Field::DestinationAddress => "destination address",
      V1Field::SourcePort => "source port",
      V1Field::DestinationPort => "destination port",
    })
  }
}

/// Why a byte stream can never start with a valid PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
  #[error("not a PROXY protocol header: first byte {first_byte:#04x} is neither 'P' (v1) nor '\\r' (v2)")]
  NotProxyProtocol { first_byte: u8 },

  #[error("PROXY v1 header does not start with \"PROXY \": byte {byte:#04x} at offset {offset}")]
  V1BadPrefix { offset: usize, byte: u8 },

  #[error("PROXY v1 protocol at offset {offset} is not TCP4, TCP6 or UNKNOWN")]
  V1UnknownProtocol { offset: usize },

  #[error("PROXY v1 {field} starting at offset {offset} is malformed")]
  V1MalformedField { field: V1Field, offset: usize },

  #[error("PROXY v1 header has byte {byte:#04x} at offset {offset} where {expected} was expected")]
  V1UnexpectedByte { offset: usize, byte: u8, expected: &'static str },

  #[error("PROXY v1 header has no CRLF within the first {max} bytes")]
  V1TooLong { max: usize },

  #[error("PROXY v2 signature does not match at offset {offset}")]
  V2BadSignature { offset: usize },

  #[error("PROXY v2 version is {version}, expected 2")]
  V2UnsupportedVersion { version: u8 },

  #[error("PROXY v2 command is {command}, expected 0 (LOCAL) or 1 (PROXY)")]
  V2UnknownCommand { command: u8 },

  #[error("PROXY v2 family byte {family:#04x} is not one of 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32")]
  V2UnknownFamily { family: u8 },

  #[error("PROXY v2 header of {header_len} bytes exceeds the {max}-byte limit")]
  V2TooLong { header_len: usize, max: usize },

  #[error("PROXY v2 length {declared} is shorter than the {required}-byte address block of family {family:#04x}")]
  V2AddressBlockTooShort { family: u8, declared: usize, required: usize },
}

/// Parses a PROXY protocol header (v1 or v2) at the start of `buf`.
///
/// Bytes after the header are never looked at; `header_len` says where they
/// start. An empty `buf` is `Incomplete`.
pub fn parse_proxy_header(buf: &[u8]) -> Parse<ProxyHeader, ProxyError> {
  match buf.first() {
    None => Parse::Incomplete,
    Some(b'P') => parse_v1(buf),
    Some(b'\r') => parse_v2(buf),
    Some(&first_byte) => Parse::Invalid(ProxyError::NotProxyProtocol { first_byte }),
  }
}

/// Encodes a version 1 header for a TCP connection from `source` to
/// `destination`. When the families differ, the IPv4 address is written as
/// an IPv4-mapped IPv6 address under `TCP6`, since v1 has no mixed form.
pub fn encode_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
  let (protocol, source_ip, destination_ip) = match (source.ip(), destination.ip()) {
    (IpAddr::V4(source_ip), IpAddr::V4(destination_ip)) => ("TCP4", source_ip.to_string(), destination_ip.to_string()),
    (source_ip, destination_ip) => ("TCP6", as_ipv6(source_ip).to_string(), as_ipv6(destination_ip).to_string()),
  };
  let header = format!("PROXY {protocol} {source_ip} {destination_ip} {} {}\r\n", source.port(), destination.port());
  debug_assert!(header.len() <= V1_MAX_HEADER_LEN);
  header.into_bytes()
}

/// Encodes a version 2 `PROXY` command header for a TCP connection from
/// `source` to `destination`, followed by `tlvs` verbatim (they are not
/// checked). Mixed families are encoded as TCP6 with the IPv4 address
/// IPv4-mapped. Note that [`parse_proxy_header`] rejects headers longer than
/// [`MAX_V2_HEADER_LEN`] even though the wire format allows them.
///
/// # Panics
///
/// If `tlvs` is so long that the length field (16 bits) cannot hold the
/// address block plus `tlvs`; that is a caller bug, not an input condition.
pub fn encode_v2(source: SocketAddr, destination: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
  const PROXY_COMMAND_VERSION_2: u8 = 0x21;
  const TCP_OVER_IPV4: u8 = 0x11;
  const TCP_OVER_IPV6: u8 = 0x21;

  let mut address_block = Vec::with_capacity(V2_INET6_ADDRESS_BLOCK_LEN);
  let family = match (source.ip(), destination.ip()) {
    (IpAddr::V4(source_ip), IpAddr::V4(destination_ip)) => {
      address_block.extend_from_slice(&source_ip.octets());
      address_block.extend_from_slice(&destination_ip.octets());
      TCP_OVER_IPV4
    }
    (source_ip, destination_ip) => {
      address_block.extend_from_slice(&as_ipv6(source_ip).octets());
      address_block.extend_from_slice(&as_ipv6(destination_ip).octets());
      TCP_OVER_IPV6
    }
  };
  address_block.extend_from_slice(&source.port().to_be_bytes());
  address_block.extend_from_slice(&destination.port().to_be_bytes());

  let declared = address_block
    .len()
    .checked_add(tlvs.len())
    .and_then(|len| u16::try_from(len).ok())
    .expect("PROXY v2 address block plus TLVs must fit the 16-bit length field");

  let mut header = Vec::with_capacity(V2_FIXED_LEN + usize::from(declared));
  header.extend_from_slice(&V2_SIGNATURE);
  header.push(PROXY_COMMAND_VERSION_2);
  header.push(family);
  header.extend_from_slice(&declared.to_be_bytes());
  header.extend_from_slice(&address_block);
  header.extend_from_slice(tlvs);
  header
}

fn as_ipv6(ip: IpAddr) -> Ipv6Addr {
  match ip {
    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
    IpAddr::V6(v6) => v6,
  }
}

// ---------------------------------------------------------------------------
// Version 2

/// The address family of a v2 `PROXY` command, from the high nibble of the
/// family byte. The transport (low nibble: stream or datagram) does not
/// change how the addresses are laid out, so it is only validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V2Family {
  Unspecified,
  Inet,
  Inet6,
  Unix,
}

impl V2Family {
  /// The combinations the spec lists; it requires receivers to reject the
  /// others.
  fn from_byte(family_byte: u8) -> Option<V2Family> {
    match family_byte {
      0x00 => Some(V2Family::Unspecified),
      0x11 | 0x12 => Some(V2Family::Inet),
      0x21 | 0x22 => Some(V2Family::Inet6),
      0x31 | 0x32 => Some(V2Family::Unix),
      _ => None,
    }
  }

  fn address_block_len(self) -> usize {
    match self {
      V2Family::Unspecified => 0,
      V2Family::Inet => V2_INET_ADDRESS_BLOCK_LEN,
      V2Family::Inet6 => V2_INET6_ADDRESS_BLOCK_LEN,
      V2Family::Unix => V2_UNIX_ADDRESS_BLOCK_LEN,
    }
  }
}

fn parse_v2(buf: &[u8]) -> Parse<ProxyHeader, ProxyError> {
  // Compare only the signature bytes that have arrived: a matching prefix may
  // still become a header, a mismatch never can.
  for (offset, (&received, &expected)) in buf.iter().zip(V2_SIGNATURE.iter()).enumerate() {
    if received != expected {
      return Parse::Invalid(ProxyError::V2BadSignature { offset });
    }
  }

  let Some(&version_and_command) = buf.get(V2_SIGNATURE.len()) else {
    return Parse::Incomplete;
  };
  let version = version_and_command >> 4;
  if version != 2 {
    return Parse::Invalid(ProxyError::V2UnsupportedVersion { version });
  }
  let is_local_command = match version_and_command & 0x0F {
    0x0 => true,
    0x1 => false,
    command => return Parse::Invalid(ProxyError::V2UnknownCommand { command }),
  };

  let Some(&family_byte) = buf.get(13) else {
    return Parse::Incomplete;
  };
  // The spec tells receivers of LOCAL to ignore the family and the address
  // block entirely, so neither is validated for it.
  let family = if is_local_command {
    None
  } else {
    match V2Family::from_byte(family_byte) {
      Some(family) => Some(family),
      None => return Parse::Invalid(ProxyError::V2UnknownFamily { family: family_byte }),
    }
  };

  let (Some(&length_high), Some(&length_low)) = (buf.get(14), buf.get(15)) else {
    return Parse::Incomplete;
  };
  let declared = usize::from(u16::from_be_bytes([length_high, length_low]));
  // Cannot overflow: at most 16 + 65535.
  let header_len = V2_FIXED_LEN + declared;
  if header_len > MAX_V2_HEADER_LEN {
    return Parse::Invalid(ProxyError::V2TooLong { header_len, max: MAX_V2_HEADER_LEN });
  }
  let required = family.map_or(0, V2Family::address_block_len);
  if declared < required {
    return Parse::Invalid(ProxyError::V2AddressBlockTooShort { family: family_byte, declared, required });
  }

  let Some(header) = buf.get(..header_len) else {
    return Parse::Incomplete;
  };
  // TLVs follow the address block; they are skipped, not parsed, because
  // routing needs only the addresses.
  let address_block = header.get(V2_FIXED_LEN..).unwrap_or_default();
  let addresses = match family {
    Some(V2Family::Inet) => decode_v2_addresses::<4>(address_block, |octets| IpAddr::V4(Ipv4Addr::from(octets))),
    Some(V2Family::Inet6) => decode_v2_addresses::<16>(address_block, |octets| IpAddr::V6(Ipv6Addr::from(octets))),
    Some(V2Family::Unspecified) | Some(V2Family::Unix) | None => {
      return Parse::Complete(ProxyHeader { header_len, version: 2, source: None, destination: None })
    }
  };
  match addresses {
    Some((source, destination)) => {
      Parse::Complete(ProxyHeader { header_len, version: 2, source: Some(source), destination: Some(destination) })
    }
    // Unreachable: `declared >= required` was checked above. Kept as an
    // error rather than a panic so that a future edit cannot crash the
    // accept loop.
    None => Parse::Invalid(ProxyError::V2AddressBlockTooShort { family: family_byte, declared, required }),
  }
}

/// Reads source address, destination address, source port and destination
/// port, in that order, from the start of a v2 address block whose addresses
/// are `N` bytes long.
fn decode_v2_addresses<const N: usize>(
  address_block: &[u8],
  to_ip: impl Fn([u8; N]) -> IpAddr,
) -> Option<(SocketAddr, SocketAddr)> {
  let (source_ip, rest) = address_block.split_first_chunk::<N>()?;
  let (destination_ip, rest) = rest.split_first_chunk::<N>()?;
  let (source_port, rest) = rest.split_first_chunk::<2>()?;
  let (destination_port, _tlvs) = rest.split_first_chunk::<2>()?;
  Some((
    SocketAddr::new(to_ip(*source_ip), u16::from_be_bytes(*source_port)),
    SocketAddr::new(to_ip(*destination_ip), u16::from_be_bytes(*destination_port)),
  ))
}

// ---------------------------------------------------------------------------
// Version 1

/// Why the v1 parser stopped before the end of the header.
enum Stop {
  Incomplete,
  Invalid(ProxyError),
}

impl From<ProxyError> for Stop {
  fn from(error: ProxyError) -> Self {
    Stop::Invalid(error)
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V1AddressFamily {
  Tcp4,
  Tcp6,
}

/// Walks a v1 line left to right. It only ever sees the first
/// [`V1_MAX_HEADER_LEN`] bytes, so running out of them means the line is too
/// long, while running out of a shorter buffer means more bytes are needed.
struct V1Cursor<'a> {
  window: &'a [u8],
  position: usize,
}

impl<'a> V1Cursor<'a> {
  fn new(buf: &'a [u8]) -> Self {
    V1Cursor { window: buf.get(..V1_MAX_HEADER_LEN).unwrap_or(buf), position: 0 }
  }

  fn out_of_bytes(&self) -> Stop {
    if self.window.len() >= V1_MAX_HEADER_LEN {
      Stop::Invalid(ProxyError::V1TooLong { max: V1_MAX_HEADER_LEN })
    } else {
      Stop::Incomplete
    }
  }

  fn remaining(&self) -> &'a [u8] {
    self.window.get(self.position..).unwrap_or_default()
  }

  fn advance(&mut self, count: usize) {
    debug_assert!(count <= self.remaining().len());
    self.position = self.position.saturating_add(count).min(self.window.len());
  }

  /// Consumes `literal`, failing at the first byte that differs.
  fn expect_literal(&mut self, literal: &[u8], on_mismatch: impl Fn(usize, u8) -> ProxyError) -> Result<(), Stop> {
    for &expected in literal {
      match self.remaining().first() {
        None => return Err(self.out_of_bytes()),
        Some(&received) if received != expected => return Err(Stop::Invalid(on_mismatch(self.position, received))),
        Some(_) => self.advance(1),
      }
    }
    Ok(())
  }

  /// Takes the bytes up to the next space or CR, leaving the cursor on that
  /// separator. Returns the field and the separator, or `None` as separator
  /// when the window ended first.
  fn take_field(&mut self) -> (&'a [u8], Option<u8>) {
    let remaining = self.remaining();
    let field_len = remaining.iter().position(|&byte| byte == b' ' || byte == b'\r').unwrap_or(remaining.len());
    let (field, after) = remaining.split_at(field_len);
    self.advance(field_len);
    (field, after.first().copied())
  }

  /// Consumes the separator that `take_field` stopped on, which must be
  /// `expected`.
  fn expect_separator(&mut self, separator: Option<u8>, expected: u8, description: &'static str) -> Result<(), Stop> {
    match separator {
      None => Err(self.out_of_bytes()),
      Some(received) if received == expected => {
        self.advance(1);
        Ok(())
      }
      Some(received) => Err(Stop::Invalid(ProxyError::V1UnexpectedByte {
        offset: self.position,
        byte: received,
        expected: description,
      })),
    }
  }

  fn address(
    &mut self,
    family: V1AddressFamily,
    field: V1Field,
    separator_expected: u8,
    separator_description: &'static str,
  ) -> Result<IpAddr, Stop> {
    let offset = self.position;
    let malformed = ProxyError::V1MalformedField { field, offset };
    let (text, separator) = self.take_field();
    if separator.is_none() {
      return Err(if is_address_prefix(family, text) { self.out_of_bytes() } else { Stop::Invalid(malformed) });
    }
    let address = parse_address(family, text).ok_or(malformed)?;
    self.expect_separator(separator, separator_expected, separator_description)?;
    Ok(address)
  }

  fn port(&mut self, field: V1Field, separator_expected: u8, separator_description: &'static str) -> Result<u16, Stop> {
    let offset = self.position;
    let malformed = ProxyError::V1MalformedField { field, offset };
    let (text, separator) = self.take_field();
    if separator.is_none() {
      return Err(if is_port_prefix(text) { self.out_of_bytes() } else { Stop::Invalid(malformed) });
    }
    let port = parse_port(text).ok_or(malformed)?;
    self.expect_separator(separator, separator_expected, separator_description)?;
    Ok(port)
  }
}

fn parse_v1(buf: &[u8]) -> Parse<ProxyHeader, ProxyError> {
  let mut cursor = V1Cursor::new(buf);
  match parse_v1_line(&mut cursor) {
    Ok(header) => {
      debug_assert!(header.header_len <= V1_MAX_HEADER_LEN);
      Parse::Complete(header)
    }
    Err(Stop::Incomplete) => Parse::Incomplete,
    Err(Stop::Invalid(error)) => Parse::Invalid(error),
  }
}

fn parse_v1_line(cursor: &mut V1Cursor<'_>) -> Result<ProxyHeader, Stop> {
  cursor.expect_literal(V1_PREFIX, |offset, byte| ProxyError::V1BadPrefix { offset, byte })?;

  // The spec tells receivers to ignore everything between UNKNOWN and CRLF.
  if cursor.remaining().starts_with(V1_UNKNOWN) {
    cursor.advance(V1_UNKNOWN.len());
    let Some(line_rest) = cursor.remaining().windows(2).position(|pair| pair == b"\r\n") else {
      return Err(cursor.out_of_bytes());
    };
    cursor.advance(line_rest.saturating_add(2));
    return Ok(ProxyHeader { header_len: cursor.position, version: 1, source: None, destination: None });
  }

  let protocol_offset = cursor.position;
  let unknown_protocol = ProxyError::V1UnknownProtocol { offset: protocol_offset };
  let (protocol, separator) = cursor.take_field();
  let family = match protocol {
    _ if separator.is_none() => {
      let could_still_match = [V1_TCP4, V1_TCP6, V1_UNKNOWN].iter().any(|known| known.starts_with(protocol));
      return Err(if could_still_match { cursor.out_of_bytes() } else { Stop::Invalid(unknown_protocol) });
    }
    V1_TCP4 => V1AddressFamily::Tcp4,
    V1_TCP6 => V1AddressFamily::Tcp6,
    _ => return Err(Stop::Invalid(unknown_protocol)),
  };
  cursor.expect_separator(separator, b' ', "a single space")?;

  let source_ip = cursor.address(family, V1Field::SourceAddress, b' ', "a single space")?;
  let destination_ip = cursor.address(family, V1Field::DestinationAddress, b' ', "a single space")?;
  let source_port = cursor.port(V1Field::SourcePort, b' ', "a single space")?;
  let destination_port = cursor.port(V1Field::DestinationPort, b'\r', "CR")?;
  cursor.expect_literal(b"\n", |offset, byte| ProxyError::V1UnexpectedByte {
    offset,
    byte,
    expected: "LF after CR",
  })?;

  Ok(ProxyHeader {
    header_len: cursor.position,
    version: 1,
    source: Some(SocketAddr::new(source_ip, source_port)),
    destination: Some(SocketAddr::new(destination_ip, destination_port)),
  })
}

fn parse_address(family: V1AddressFamily, text: &[u8]) -> Option<IpAddr> {
  let text = std::str::from_utf8(text).ok()?;
  match family {
    V1AddressFamily::Tcp4 => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    V1AddressFamily::Tcp6 => text.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
  }
}

fn is_address_prefix(family: V1AddressFamily, text: &[u8]) -> bool {
  match family {
    V1AddressFamily::Tcp4 => is_ipv4_prefix(text),
    V1AddressFamily::Tcp6 => is_ipv6_prefix(text),
  }
}

/// Whether `text` can be extended into a dotted-quad IPv4 address as
/// `std::net::Ipv4Addr` parses it (four decimal octets, no leading zeros).
/// Exact: every prefix of a valid address passes, nothing else does.
fn is_ipv4_prefix(text: &[u8]) -> bool {
  if text.len() > MAX_IPV4_TEXT_LEN {
    return false;
  }
  let last_octet_index = text.split(|&byte| byte == b'.').count().saturating_sub(1);
  if last_octet_index > 3 {
    return false;
  }
  // Every octet but the last is finished; the last may still be growing, and
  // every prefix of a valid octet is empty or itself a valid octet.
  text
    .split(|&byte| byte == b'.')
    .enumerate()
    .all(|(index, octet)| (index == last_octet_index && octet.is_empty()) || is_ipv4_octet(octet))
}

fn is_ipv4_octet(text: &[u8]) -> bool {
  let has_leading_zero = text.len() > 1 && text.first() == Some(&b'0');
  !text.is_empty() && text.len() <= 3 && !has_leading_zero && parse_decimal(text).is_some_and(|value| value <= 255)
}

/// Whether `text` might be extended into an IPv6 address. Not exact (it
/// does not count groups), but sound: it only rejects text that no
/// continuation can make valid, which is what the prefix guarantee needs.
fn is_ipv6_prefix(text: &[u8]) -> bool {
  let allowed = |byte: &u8| byte.is_ascii_hexdigit() || *byte == b':' || *byte == b'.';
  if text.len() > MAX_IPV6_TEXT_LEN || !text.iter().all(allowed) {
    return false;
  }
  // `::` may appear once; `:::` counts as two.
  if text.windows(2).filter(|pair| *pair == b"::").count() > 1 {
    return false;
  }
  // A dot starts the embedded IPv4 tail, which follows the last colon.
  let (groups, ipv4_tail) = match text.iter().position(|&byte| byte == b'.') {
    None => (text, None),
    Some(first_dot) => {
      let before_dot = text.get(..first_dot).unwrap_or_default();
      let Some(last_colon) = before_dot.iter().rposition(|&byte| byte == b':') else {
        return false;
      };
      let (groups, tail) = text.split_at(last_colon.saturating_add(1));
      (groups, Some(tail))
    }
  };
  let groups_fit = groups.split(|&byte| byte == b':').all(|group| group.len() <= 4 && !group.contains(&b'.'));
  groups_fit && ipv4_tail.is_none_or(is_ipv4_prefix)
}

/// A decimal port in 0..=65535, without sign or leading zeros.
fn parse_port(text: &[u8]) -> Option<u16> {
  let has_leading_zero = text.len() > 1 && text.first() == Some(&b'0');
  if text.is_empty() || text.len() > MAX_PORT_TEXT_LEN || has_leading_zero {
    return None;
  }
  u16::try_from(parse_decimal(text)?).ok()
}

fn is_port_prefix(text: &[u8]) -> bool {
  text.is_empty() || parse_port(text).is_some()
}

/// Parses ASCII digits with checked arithmetic; `None` on any other byte.
fn parse_decimal(text: &[u8]) -> Option<u32> {
  text.iter().try_fold(0u32, |value, &byte| {
    let digit = char::from(byte).to_digit(10)?;
    value.checked_mul(10)?.checked_add(digit)
  })
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;
  use std::net::{SocketAddrV4, SocketAddrV6};

  fn complete(buf: &[u8]) -> ProxyHeader {
    match parse_proxy_header(buf) {
      Parse::Complete(header) => header,
      other => panic!("expected Complete for {:?}, got {other:?}", String::from_utf8_lossy(buf)),
    }
  }

  fn invalid(buf: &[u8]) -> ProxyError {
    match parse_proxy_header(buf) {
      Parse::Invalid(error) => error,
      other => panic!("expected Invalid for {:?}, got {other:?}", String::from_utf8_lossy(buf)),
    }
  }

  fn socket(text: &str) -> SocketAddr {
    text.parse().expect("test address")
  }

  /// Builds a v2 header by hand, for the cases the encoder does not produce.
  fn v2_header(version_and_command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(version_and_command);
    header.push(family);
    let declared = u16::try_from(payload.len()).expect("test payload fits");
    header.extend_from_slice(&declared.to_be_bytes());
    header.extend_from_slice(payload);
    header
  }

  // --- v1 ------------------------------------------------------------------

  #[test]
  fn the_spec_examples_of_v1_headers_parse() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    assert_eq!(
      complete(line),
      ProxyHeader {
        header_len: line.len(),
        version: 1,
        source: Some(socket("192.168.0.1:56324")),
        destination: Some(socket("192.168.0.11:443")),
      }
    );

    let worst_tcp4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(complete(worst_tcp4).header_len, 56);

    let worst_tcp6 = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    let header = complete(worst_tcp6);
    assert_eq!(header.header_len, 104);
    assert_eq!(header.source, Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from([0xff; 16])), 65535)));

    let worst_unknown = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(worst_unknown.len(), V1_MAX_HEADER_LEN);
    let header = complete(worst_unknown);
    assert_eq!(header.header_len, V1_MAX_HEADER_LEN);
    assert_eq!(header.source, None);

    let short_unknown = b"PROXY UNKNOWN\r\n";
    assert_eq!(complete(short_unknown), ProxyHeader { header_len: 15, version: 1, source: None, destination: None });
  }

  #[test]
  fn v1_application_bytes_after_the_header_are_not_consumed() {
    let stream = b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\nGET / HTTP/1.1\r\n\r\n";
    let header = complete(stream);
    assert_eq!(stream.get(header.header_len..), Some(&b"GET / HTTP/1.1\r\n\r\n"[..]));
  }

  #[test]
  fn v1_unknown_ignores_anything_up_to_crlf() {
    assert_eq!(complete(b"PROXY UNKNOWN junk \x00\xff\r\nrest").header_len, 23);
    assert_eq!(complete(b"PROXY UNKNOWNjunk\r\n").header_len, 19);
  }

  #[test]
  fn v1_ipv4_mapped_addresses_stay_ipv6_under_tcp6() {
    let header = complete(b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n");
    assert_eq!(header.source, Some(socket("[::ffff:1.2.3.4]:1")));
  }

  #[test]
  fn malformed_v1_headers_are_invalid() {
    let cases: &[&[u8]] = &[
      b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
      b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
      b"PROXY TCP4 ::1 ::1 1 2\r\n",
      b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
      b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
      b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
      b"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
      b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
      b"PROXY TCP6 [::1] ::1 1 2\r\n",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
      b"PROXY TCP4\r\n",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 1\t2\r\n",
      b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
      b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
      b"PROXY UNKNOW\r\n",
      b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
      b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    ];
    for case in cases {
      invalid(case);
    }
  }

  #[test]
  fn v1_errors_name_the_failing_field_and_offset() {
    assert_eq!(
      invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n"),
      ProxyError::V1MalformedField { field: V1Field::SourcePort, offset: 27 }
    );
    assert_eq!(invalid(b"PROXY TCP9"), ProxyError::V1UnknownProtocol { offset: 6 });
    assert_eq!(invalid(b"PROXI"), ProxyError::V1BadPrefix { offset: 4, byte: b'I' });
  }

  #[test]
  fn v1_garbage_is_rejected_before_the_line_ends() {
    let cases: &[&[u8]] = &[
      b"PROXY TCP4 1.2.3.4x",
      b"PROXY TCP4 256",
      b"PROXY TCP4 1..",
      b"PROXY TCP4 00",
      b"PROXY TCP4 1.2.3.4.",
      b"PROXY TCP6 1.2",
      b"PROXY TCP6 :::",
      b"PROXY TCP6 1::2::",
      b"PROXY TCP6 12345",
      b"PROXY TCP6 g",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 65536",
      b"PROXY TCP4 1.2.3.4 5.6.7.8 1 01",
      b"PROXY TCP5",
      b"PROXY UNKNOWX",
      b"PROXY X",
      b"PRX",
    ];
    for case in cases {
      invalid(case);
    }
  }

  #[test]
  fn a_v1_line_without_crlf_in_107_bytes_is_too_long() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_HEADER_LEN - 1, b'x');
    assert!(parse_proxy_header(&line).is_incomplete());
    line.push(b'\r');
    assert_eq!(invalid(&line), ProxyError::V1TooLong { max: V1_MAX_HEADER_LEN });
    line.push(b'\n');
    invalid(&line);
  }

  #[test]
  fn a_first_byte_other_than_p_or_cr_is_invalid_at_once() {
    for first_byte in [b'G', 0x16, b'\n', 0x00, b'p'] {
      assert_eq!(invalid(&[first_byte]), ProxyError::NotProxyProtocol { first_byte });
    }
  }

  #[test]
  fn empty_input_is_incomplete() {
    assert!(parse_proxy_header(b"").is_incomplete());
  }

  // --- v2 ------------------------------------------------------------------

  #[test]
  fn a_v2_tcp4_header_parses_and_skips_its_tlvs() {
    let mut payload = vec![192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb];
    let alpn_tlv = [0x01, 0x00, 0x02, b'h', b'2'];
    payload.extend_from_slice(&alpn_tlv);
    let mut stream = v2_header(0x21, 0x11, &payload);
    stream.extend_from_slice(b"\x16\x03\x01");
    assert_eq!(
      complete(&stream),
      ProxyHeader {
        header_len: 16 + 12 + 5,
        version: 2,
        source: Some(socket("192.168.0.1:56324")),
        destination: Some(socket("192.168.0.11:443")),
      }
    );
  }

  #[test]
  fn v2_udp_families_carry_addresses() {
    let header = complete(&v2_header(0x21, 0x12, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]));
    assert_eq!(header.source, Some(socket("1.2.3.4:1")));
    let mut payload = [0u8; 36];
    payload[15] = 1;
    payload[31] = 2;
    let header = complete(&v2_header(0x21, 0x22, &payload));
    assert_eq!(header.destination, Some(socket("[::2]:0")));
  }

  #[test]
  fn v2_headers_without_usable_addresses_are_complete_with_the_right_length() {
    let cases: [(Vec<u8>, usize); 6] = [
      (v2_header(0x20, 0x00, b""), 16),
      (v2_header(0x20, 0x11, &[0; 12]), 28),
      // LOCAL ignores the family, even one PROXY would reject.
      (v2_header(0x20, 0x77, &[9; 3]), 19),
      (v2_header(0x21, 0x00, b""), 16),
      (v2_header(0x21, 0x00, &[1, 2, 3]), 19),
      (v2_header(0x21, 0x31, &[0; 216]), 232),
    ];
    for (mut stream, header_len) in cases {
      stream.extend_from_slice(b"application bytes");
      let header = complete(&stream);
      assert_eq!(header.header_len, header_len);
      assert_eq!(header.version, 2);
      assert_eq!((header.source, header.destination), (None, None));
    }
  }

  #[test]
  fn malformed_v2_headers_are_invalid() {
    assert_eq!(invalid(&v2_header(0x11, 0x11, &[0; 12])), ProxyError::V2UnsupportedVersion { version: 1 });
    assert_eq!(invalid(&v2_header(0x22, 0x11, &[0; 12])), ProxyError::V2UnknownCommand { command: 2 });
    assert_eq!(invalid(&v2_header(0x21, 0x13, &[0; 12])), ProxyError::V2UnknownFamily { family: 0x13 });
    assert_eq!(
      invalid(&v2_header(0x21, 0x11, &[0; 11])),
      ProxyError::V2AddressBlockTooShort { family: 0x11, declared: 11, required: 12 }
    );
    invalid(&v2_header(0x21, 0x21, &[0; 35]));
    invalid(&v2_header(0x21, 0x31, &[0; 215]));
    let mut bad_signature = v2_header(0x21, 0x11, &[0; 12]);
    bad_signature[11] = b'X';
    assert_eq!(invalid(&bad_signature), ProxyError::V2BadSignature { offset: 11 });
  }

  #[test]
  fn a_v2_length_beyond_the_cap_is_invalid_before_the_bytes_arrive() {
    let largest_payload = MAX_V2_HEADER_LEN - 16;
    let largest = v2_header(0x21, 0x11, &vec![0; largest_payload]);
    assert_eq!(complete(&largest).header_len, MAX_V2_HEADER_LEN);

    let mut too_long_prefix = V2_SIGNATURE.to_vec();
    too_long_prefix.extend_from_slice(&[0x21, 0x11]);
    let declared = u16::try_from(largest_payload + 1).expect("fits");
    too_long_prefix.extend_from_slice(&declared.to_be_bytes());
    assert_eq!(
      invalid(&too_long_prefix),
      ProxyError::V2TooLong { header_len: MAX_V2_HEADER_LEN + 1, max: MAX_V2_HEADER_LEN }
    );
  }

  #[test]
  fn v2_garbage_is_rejected_at_the_first_wrong_byte() {
    assert_eq!(invalid(b"\r\n\r\nX"), ProxyError::V2BadSignature { offset: 4 });
    assert!(parse_proxy_header(&V2_SIGNATURE[..7]).is_incomplete());
    let mut wrong_version = V2_SIGNATURE.to_vec();
    wrong_version.push(0x31);
    invalid(&wrong_version);
  }

  #[test]
  fn every_prefix_of_hand_written_ipv6_literals_is_incomplete() {
    // Forms that `Ipv6Addr`'s Display never prints, but senders may.
    for literal in [
      "0:0:0:0:0:0:0:1",
      "FFFF::ABCD",
      "::",
      "1::",
      "::1.2.3.4",
      "1::2:3.4.5.6",
      "1:2:3:4:5:6:1.2.3.4",
      "1:2:3:4:5:6:7::",
      "::2:3:4:5:6:7:8",
      "2001:DB8:0:0:8:800:200C:417A",
    ] {
      let line = format!("PROXY TCP6 {literal} {literal} 1 2\r\n");
      let header = complete(line.as_bytes());
      assert_eq!(header.header_len, line.len(), "{literal}");
      for cut in 0..line.len() {
        assert!(parse_proxy_header(&line.as_bytes()[..cut]).is_incomplete(), "{literal} cut at {cut}");
      }
    }
  }

  #[test]
  fn mixed_families_are_encoded_as_ipv4_mapped_ipv6() {
    let source = socket("192.0.2.1:1234");
    let destination = socket("[2001:db8::1]:443");
    let mapped_source = socket("[::ffff:192.0.2.1]:1234");
    for encoded in [encode_v1(source, destination), encode_v2(source, destination, b"")] {
      let header = complete(&encoded);
      assert_eq!(header.source, Some(mapped_source));
      assert_eq!(header.destination, Some(destination));
    }
  }

  // --- properties ----------------------------------------------------------

  /// Uniformly random IPv6 addresses almost never print with `::` or an
  /// embedded IPv4 tail, so those forms are generated on purpose.
  fn ipv6_address() -> BoxedStrategy<Ipv6Addr> {
    prop_oneof![
      any::<Ipv6Addr>(),
      proptest::array::uniform8(prop_oneof![
        3 => Just(0u16),
        1 => Just(0xffff),
        1 => any::<u16>(),
      ])
      .prop_map(Ipv6Addr::from),
      any::<Ipv4Addr>().prop_map(|ipv4| ipv4.to_ipv6_mapped()),
    ]
    .boxed()
  }

  fn socket_addr() -> BoxedStrategy<SocketAddr> {
    prop_oneof![
      (any::<Ipv4Addr>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip, port))),
      (ipv6_address(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))),
    ]
    .boxed()
  }

  fn same_family_pair() -> BoxedStrategy<(SocketAddr, SocketAddr)> {
    prop_oneof![
      (any::<Ipv4Addr>(), any::<u16>(), any::<Ipv4Addr>(), any::<u16>())
        .prop_map(|(a, p, b, q)| (SocketAddr::new(IpAddr::V4(a), p), SocketAddr::new(IpAddr::V4(b), q))),
      (ipv6_address(), any::<u16>(), ipv6_address(), any::<u16>())
        .prop_map(|(a, p, b, q)| (SocketAddr::new(IpAddr::V6(a), p), SocketAddr::new(IpAddr::V6(b), q))),
    ]
    .boxed()
  }

  /// Any valid header this module should accept, with its expected length.
  fn valid_header() -> BoxedStrategy<Vec<u8>> {
    let unknown_junk =
      proptest::collection::vec(any::<u8>().prop_filter("no CR", |byte| *byte != b'\r'), 0..=(V1_MAX_HEADER_LEN - 15));
    prop_oneof![
      same_family_pair().prop_map(|(source, destination)| encode_v1(source, destination)),
      unknown_junk.prop_map(|junk| {
        let mut line = b"PROXY UNKNOWN".to_vec();
        line.extend_from_slice(&junk);
        line.extend_from_slice(b"\r\n");
        line
      }),
      (socket_addr(), socket_addr(), proptest::collection::vec(any::<u8>(), 0..64))
        .prop_map(|(source, destination, tlvs)| encode_v2(source, destination, &tlvs)),
      (
        prop_oneof![
          Just((0x21u8, 0x00u8, 0usize)),
          Just((0x21, 0x31, 216)),
          Just((0x21, 0x32, 216)),
          Just((0x20, 0x00, 0)),
          (any::<u8>(), 0usize..40).prop_map(|(family, len)| (0x20, family, len)),
        ],
        proptest::collection::vec(any::<u8>(), 0..40)
      )
        .prop_map(|((command, family, address_len), tlvs)| {
          let mut payload = vec![0u8; address_len];
          payload.extend_from_slice(&tlvs);
          v2_header(command, family, &payload)
        }),
    ]
    .boxed()
  }

  proptest! {
    #[test]
    fn every_strict_prefix_of_a_valid_header_is_incomplete(
      header in valid_header(),
      trailing in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
      let mut stream = header.clone();
      stream.extend_from_slice(&trailing);
      let expected = complete(&stream);
      prop_assert_eq!(expected.header_len, header.len());
      for cut in 0..header.len() {
        let prefix = &stream[..cut];
        prop_assert_eq!(parse_proxy_header(prefix), Parse::Incomplete, "prefix {:?}", prefix);
      }
      for cut in header.len()..=stream.len() {
        prop_assert_eq!(parse_proxy_header(&stream[..cut]), Parse::Complete(expected));
      }
    }

    #[test]
    fn encoding_then_parsing_gives_back_the_addresses(
      (source, destination) in same_family_pair(),
      tlvs in proptest::collection::vec(any::<u8>(), 0..64),
      trailing in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
      for (version, mut encoded) in [
        (1, encode_v1(source, destination)),
        (2, encode_v2(source, destination, &tlvs)),
      ] {
        let header_len = encoded.len();
        encoded.extend_from_slice(&trailing);
        prop_assert_eq!(
          parse_proxy_header(&encoded),
          Parse::Complete(ProxyHeader {
            header_len,
            version,
            source: Some(source),
            destination: Some(destination),
          })
        );
      }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
      let _ = parse_proxy_header(&bytes);
      let mut after_v1_prefix = b"PROXY ".to_vec();
      after_v1_prefix.extend_from_slice(&bytes);
      let _ = parse_proxy_header(&after_v1_prefix);
      let mut after_v2_signature = V2_SIGNATURE.to_vec();
      after_v2_signature.extend_from_slice(&bytes);
      let _ = parse_proxy_header(&after_v2_signature);
    }

    #[test]
    fn a_decision_never_changes_when_more_bytes_arrive(
      start in prop_oneof![
        valid_header(),
        Just(b"PROXY TCP4 ".to_vec()),
        Just(b"PROXY TCP6 ".to_vec()),
        Just(V2_SIGNATURE.to_vec()),
      ],
      mutation in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
      extra in proptest::collection::vec(
        prop_oneof![Just(b' '), Just(b'\r'), Just(b'\n'), Just(b':'), Just(b'.'), b'0'..=b'9', any::<u8>()],
        0..48,
      ),
    ) {
      let mut stream = start;
      for (index, byte) in mutation {
        let position = index.index(stream.len().max(1));
        if let Some(slot) = stream.get_mut(position) {
          *slot = byte;
        }
      }
      stream.extend_from_slice(&extra);
      let mut earlier: Parse<ProxyHeader, ProxyError> = Parse::Incomplete;
      for cut in 0..=stream.len() {
        let now = parse_proxy_header(&stream[..cut]);
        match &earlier {
          Parse::Complete(header) => prop_assert_eq!(&now, &Parse::Complete(*header)),
          Parse::Invalid(_) => prop_assert!(now.is_invalid(), "{:?} after Invalid", now),
          Parse::Incomplete => {}
        }
        earlier = now;
      }
    }
  }
}
