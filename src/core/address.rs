//! Routing keys from client addresses. No I/O.
//!
//! Every mode ends in the same place: the bytes that identify a client, fed to
//! the rendezvous hash. For IP routing that is the client's IP address in a
//! canonical form, so the same client always produces the same bytes:
//! `::ffff:a.b.c.d` is the IPv4 client `a.b.c.d` (a dual-stack listener reports
//! IPv4 peers that way), and IPv6 zone ids / scope ids are not part of the key
//! (a link-local client keeps its worker when the interface index changes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The canonical form of an IP address for routing and comparison:
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes plain IPv4.
///
/// IPv4-compatible addresses (`::a.b.c.d`, deprecated by RFC 4291) are left as
/// IPv6: they are not what a dual-stack socket reports for IPv4 peers, and
/// `::1` is one of them.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
  ip.to_canonical()
}

/// Bytes that identify a client for hashing: 4 bytes for IPv4, 16 for IPv6.
///
/// A fixed-size value, so building one on the accept path never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
  bytes: [u8; 16],
  len: u8,
}

impl ClientKey {
  pub fn from_ip(ip: IpAddr) -> Self {
    let mut bytes = [0u8; 16];
    let len = match canonical_ip(ip) {
      IpAddr::V4(v4) => {
        bytes[..4].copy_from_slice(&v4.octets());
        4
      }
      IpAddr::V6(v6) => {
        bytes.copy_from_slice(&v6.octets());
        16
      }
    };
    ClientKey { bytes, len }
  }

  /// The key of a socket peer; the port and the IPv6 scope id are not part of it.
  pub fn from_peer(peer: SocketAddr) -> Self {
    Self::from_ip(peer.ip())
  }

  pub fn as_bytes(&self) -> &[u8] {
    &self.bytes[..usize::from(self.len)]
  }

  pub fn ip(&self) -> IpAddr {
    if self.len == 4 {
      IpAddr::V4(Ipv4Addr::new(self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]))
    } else {
      IpAddr::V6(Ipv6Addr::from(self.bytes))
    }
  }
}

impl std::fmt::Debug for ClientKey {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "ClientKey({})", self.ip())
  }
}

/// Parses an address as users and proxies write it, for configuration and
/// headers: `1.2.3.4`, `::1`, `[::1]`, `::ffff:1.2.3.4`, `fe80::1%eth0`,
/// `[fe80::1%25eth0]`. Ports are not accepted here. Returns `None` for anything
/// else; it never panics, whatever the input.
pub fn parse_ip_literal(text: &str) -> Option<IpAddr> {
  let text = text.trim();
  let unbracketed = match text.strip_prefix('[') {
    Some(rest) => rest.strip_suffix(']')?,
    None => text,
  };
  let ip = match unbracketed.parse::<Ipv4Addr>() {
    Ok(v4) => IpAddr::V4(v4),
    Err(_) => IpAddr::V6(parse_ipv6_with_zone(unbracketed)?),
  };
  Some(canonical_ip(ip))
}

/// An IPv6 address, with an optional zone id that is dropped: `fe80::1%eth0`,
/// or `fe80::1%25eth0` as written inside a URI. A zone names an interface of
/// the host that wrote it, not a client. The one rule for zones, wherever an
/// address is read (`parse_ip_literal`, forwarding headers): only after an
/// IPv6 address, not empty, visible ASCII only.
pub fn parse_ipv6_with_zone(text: &str) -> Option<Ipv6Addr> {
  let (address, zone) = match text.split_once('%') {
    Some((address, zone)) => (address, Some(zone)),
    None => (text, None),
  };
  let zone_is_valid = zone.is_none_or(|zone| !zone.is_empty() && zone.bytes().all(|byte| byte.is_ascii_graphic()));
  if !zone_is_valid {
    return None;
  }
  address.parse::<Ipv6Addr>().ok()
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  #[test]
  fn normalisation_table_gives_the_canonical_client() {
    let table: &[(&str, Option<&str>)] = &[
      ("127.0.0.1", Some("127.0.0.1")),
      ("::ffff:127.0.0.1", Some("127.0.0.1")),
      ("::FFFF:10.1.2.3", Some("10.1.2.3")),
      ("[::ffff:10.1.2.3]", Some("10.1.2.3")),
      ("::1", Some("::1")),
      ("[::1]", Some("::1")),
      ("fe80::1%eth0", Some("fe80::1")),
      ("[fe80::1%25eth0]", Some("fe80::1")),
      ("2001:db8::1", Some("2001:db8::1")),
      ("  192.168.0.1  ", Some("192.168.0.1")),
      ("::127.0.0.1", Some("::7f00:1")),
      ("1.2.3.4%eth0", None),
      // A zone is not empty, and is visible ASCII (the rule forwarding headers follow too).
      ("fe80::1%", None),
      ("[fe80::1%]", None),
      ("fe80::1%e\u{e9}", None),
      ("fe80::1%a b", None),
      ("fe80::1%lo:0", Some("fe80::1")),
      // Found by the fuzzer: a colon inside the zone does not make IPv4 into IPv6.
      ("5.2.1.2%:", None),
      ("1.2.3", None),
      ("1.2.3.4:80", None),
      ("[::1", None),
      ("::1]", None),
      ("", None),
      ("unknown", None),
      ("%", None),
      ("[]", None),
    ];
    for (input, expected) in table {
      let got = parse_ip_literal(input).map(|ip| ip.to_string());
      assert_eq!(got.as_deref(), *expected, "input {input:?}");
    }
  }

  #[test]
  fn mapped_and_plain_ipv4_peers_have_the_same_key() {
    let plain: SocketAddr = "10.0.0.7:1234".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:10.0.0.7]:999".parse().unwrap();
    assert_eq!(ClientKey::from_peer(plain), ClientKey::from_peer(mapped));
    assert_eq!(ClientKey::from_peer(plain).as_bytes(), &[10, 0, 0, 7]);
  }

  #[test]
  fn scope_id_is_not_part_of_the_key() {
    let a = SocketAddr::V6(std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 1, 0, 2));
    let b = SocketAddr::V6(std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 2, 0, 7));
    assert_eq!(ClientKey::from_peer(a), ClientKey::from_peer(b));
    assert_eq!(ClientKey::from_peer(a).as_bytes().len(), 16);
  }

  proptest! {
    #[test]
    fn any_text_parses_or_is_refused_without_panic(text in ".{0,64}") {
      let _ = parse_ip_literal(&text);
    }

    #[test]
    fn every_ipv4_address_round_trips_through_its_mapped_form(raw in any::<u32>()) {
      let v4 = Ipv4Addr::from(raw);
      let mapped = IpAddr::V6(v4.to_ipv6_mapped());
      prop_assert_eq!(canonical_ip(mapped), IpAddr::V4(v4));
      prop_assert_eq!(ClientKey::from_ip(mapped).ip(), IpAddr::V4(v4));
      prop_assert_eq!(parse_ip_literal(&mapped.to_string()), Some(IpAddr::V4(v4)));
    }

    #[test]
    fn every_ipv6_address_round_trips_through_its_key(raw in any::<u128>()) {
      let ip = canonical_ip(IpAddr::V6(Ipv6Addr::from(raw)));
      prop_assert_eq!(ClientKey::from_ip(ip).ip(), ip);
    }
  }
}
