//! The trusted proxy list: which peers are believed when they report a
//! client address in `X-Forwarded-For` or `Forwarded`. Parsed from
//! configuration strings such as `"10.0.0.0/8"`, `"::1"` or `"loopback"`.
//!
//! No I/O: names are never resolved; only literal addresses, CIDR networks
//! and the keywords below are accepted.

use crate::core::address::canonical_ip;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an entry may look like; repeated in every error so that a user
/// fixing a configuration sees the accepted forms.
const EXPECTED_FORMAT: &str = "expected an IP address (\"127.0.0.1\", \"::1\"), \
a CIDR network (\"10.0.0.0/8\", \"fd00::/8\") or one of the keywords \
\"loopback\", \"linklocal\", \"uniquelocal\"";

/// The keywords follow Express's `trust proxy` setting (the `proxy-addr`
/// package), which Node users already know.
const LOOPBACK: &[IpNet] = &[
  IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
  IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
];
const LINK_LOCAL: &[IpNet] = &[
  IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16)),
  IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10)),
];
const UNIQUE_LOCAL: &[IpNet] = &[
  IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8)),
  IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12)),
  IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16)),
  IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7)),
];

/// Prefix length of the IPv4-mapped range `::ffff:0:0/96`.
const IPV4_MAPPED_PREFIX_LEN: u8 = 96;

/// A set of networks whose members are trusted to append truthful entries to
/// forwarding headers. The default set is empty: nobody is trusted.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are treated as the IPv4
/// addresses they carry, both in entries and in [`TrustedProxies::contains`],
/// so a dual-stack listener sees the same trust decisions as an IPv4 one. An
/// IPv6 network wider than /96 (such as `::/0`) therefore does not cover IPv4
/// peers; list IPv4 networks explicitly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
  networks: Vec<IpNet>,
}

/// A trusted proxy entry that could not be understood. `index` counts from 0
/// in the list given to [`TrustedProxies::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedProxyError {
  #[error("trusted proxy entry {index} is empty; {expected}", expected = EXPECTED_FORMAT)]
  Empty { index: usize },

  #[error(
    "trusted proxy entry {index} is \"*\", but wildcards are not supported: trusting every \
peer lets any client forge its address; {expected}",
    expected = EXPECTED_FORMAT
  )]
  Wildcard { index: usize },

  #[error("trusted proxy entry {index} ({entry:?}) is not recognised; {expected}", expected = EXPECTED_FORMAT)]
  Unrecognised { index: usize, entry: String },
}

impl TrustedProxies {
  /// Parses configuration entries; surrounding whitespace is ignored and
  /// keywords are case-insensitive. Networks with host bits set
  /// (`10.1.2.3/8`) are accepted and mean the enclosing network.
  ///
  /// There is deliberately no wildcard: `"*"` is rejected, and trusting
  /// everyone requires spelling out `0.0.0.0/0` and `::/0`.
  pub fn parse(entries: &[&str]) -> Result<TrustedProxies, TrustedProxyError> {
    let mut networks = Vec::with_capacity(entries.len());
    for (index, raw_entry) in entries.iter().enumerate() {
      let entry = raw_entry.trim();
      if entry.is_empty() {
        return Err(TrustedProxyError::Empty { index });
      }
      if entry == "*" {
        return Err(TrustedProxyError::Wildcard { index });
      }
      if let Some(keyword_networks) = keyword_networks(entry) {
        networks.extend_from_slice(keyword_networks);
        continue;
      }
      let network = entry
        .parse::<IpNet>()
        .map(|network| network.trunc())
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| TrustedProxyError::Unrecognised { index, entry: entry.to_owned() })?;
      networks.push(canonical_network(network));
    }
    Ok(TrustedProxies { networks })
  }

  /// Whether `ip` belongs to a trusted network. An IPv4-mapped IPv6 address
  /// is checked as the IPv4 address it carries.
  pub fn contains(&self, ip: IpAddr) -> bool {
    let ip = canonical_ip(ip);
    self.networks.iter().any(|network| network.contains(&ip))
  }

  /// True when nobody is trusted.
  pub fn is_empty(&self) -> bool {
    self.networks.is_empty()
  }

  /// The trusted networks, in configuration order, keywords expanded.
  pub fn networks(&self) -> &[IpNet] {
    &self.networks
  }
}

fn keyword_networks(entry: &str) -> Option<&'static [IpNet]> {
  [("loopback", LOOPBACK), ("linklocal", LINK_LOCAL), ("uniquelocal", UNIQUE_LOCAL)]
    .into_iter()
    .find(|(keyword, _)| entry.eq_ignore_ascii_case(keyword))
    .map(|(_, networks)| networks)
}

/// Rewrites a network inside `::ffff:0:0/96` as the IPv4 network it maps, so
/// that it matches the canonical (IPv4) form of the addresses it contains.
fn canonical_network(network: IpNet) -> IpNet {
  let IpNet::V6(v6_network) = network else {
    return network;
  };
  let Some(ipv4_prefix_len) = v6_network.prefix_len().checked_sub(IPV4_MAPPED_PREFIX_LEN) else {
    return network;
  };
  match v6_network.network().to_ipv4_mapped() {
    Some(ipv4) => Ipv4Net::new(ipv4, ipv4_prefix_len).map_or(network, IpNet::V4),
    None => network,
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
  }

  #[test]
  fn addresses_networks_and_keywords_are_accepted() {
    let trusted =
      TrustedProxies::parse(&["127.0.0.1", " 10.0.0.0/8 ", "::1", "fd00::/8", "LoopBack"]).expect("valid entries");
    for inside in ["127.0.0.1", "10.200.3.4", "::1", "fd12::1", "127.9.9.9"] {
      assert!(trusted.contains(ip(inside)), "{inside} should be trusted");
    }
    for outside in ["11.0.0.1", "::2", "fe00::1", "192.168.1.1"] {
      assert!(!trusted.contains(ip(outside)), "{outside} should not be trusted");
    }
  }

  #[test]
  fn the_keywords_cover_the_same_ranges_as_express() {
    let trusted = TrustedProxies::parse(&["loopback", "linklocal", "uniquelocal"]).expect("keywords");
    for inside in
      ["127.0.0.1", "::1", "169.254.1.1", "fe80::1", "10.1.1.1", "172.31.255.255", "192.168.0.1", "fc00::1", "fdff::1"]
    {
      assert!(trusted.contains(ip(inside)), "{inside} should be trusted");
    }
    for outside in ["172.32.0.1", "8.8.8.8", "2001:db8::1", "fec0::1"] {
      assert!(!trusted.contains(ip(outside)), "{outside} should not be trusted");
    }
  }

  #[test]
  fn an_ipv4_mapped_peer_is_checked_as_ipv4() {
    let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).expect("valid");
    assert!(trusted.contains(ip("::ffff:10.1.2.3")));
    assert!(!trusted.contains(ip("::ffff:11.1.2.3")));
  }

  #[test]
  fn an_ipv4_mapped_entry_is_stored_as_ipv4() {
    let trusted = TrustedProxies::parse(&["::ffff:10.0.0.0/104", "::ffff:192.0.2.1"]).expect("valid");
    assert_eq!(
      trusted.networks(),
      &["10.0.0.0/8".parse::<IpNet>().expect("net"), "192.0.2.1/32".parse::<IpNet>().expect("net")]
    );
    assert!(trusted.contains(ip("10.9.9.9")));
  }

  #[test]
  fn host_bits_in_a_network_mean_the_enclosing_network() {
    let trusted = TrustedProxies::parse(&["10.1.2.3/8"]).expect("valid");
    assert!(trusted.contains(ip("10.200.0.1")));
  }

  #[test]
  fn an_empty_list_trusts_nobody() {
    let trusted = TrustedProxies::parse(&[]).expect("valid");
    assert!(trusted.is_empty());
    assert!(!trusted.contains(ip("127.0.0.1")));
    assert_eq!(trusted, TrustedProxies::default());
  }

  #[test]
  fn bad_entries_are_reported_with_their_position_and_the_expected_format() {
    assert_eq!(TrustedProxies::parse(&["::1", "  "]), Err(TrustedProxyError::Empty { index: 1 }));
    assert_eq!(TrustedProxies::parse(&["*"]), Err(TrustedProxyError::Wildcard { index: 0 }));
    for bad in
      ["10.0.0.0/33", "localhost", "10.0.0", "fe80::1%eth0", "10.0.0.0/8/8", "[::1]", "127.0.0.1:80", "0x7f.0.0.1"]
    {
      let error = TrustedProxies::parse(&["::1", bad]).expect_err(bad);
      assert_eq!(error, TrustedProxyError::Unrecognised { index: 1, entry: bad.to_owned() });
      let message = error.to_string();
      assert!(message.contains(bad), "{message}");
      assert!(message.contains("CIDR network"), "{message}");
    }
  }

  proptest! {
    #[test]
    fn an_ipv4_address_and_its_mapped_form_get_the_same_answer(
      address in any::<Ipv4Addr>(),
      network in any::<Ipv4Addr>(),
      prefix_len in 0u8..=32,
    ) {
      let entry = format!("{network}/{prefix_len}");
      let trusted = TrustedProxies::parse(&[entry.as_str()]).expect("valid network");
      prop_assert_eq!(
        trusted.contains(IpAddr::V4(address)),
        trusted.contains(IpAddr::V6(address.to_ipv6_mapped()))
      );
    }

    #[test]
    fn arbitrary_entries_never_panic(entry in "\\PC{0,40}") {
      let _ = TrustedProxies::parse(&[entry.as_str()]);
    }
  }
}
