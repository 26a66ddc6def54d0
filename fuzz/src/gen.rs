//! Generators of addresses and their textual forms, shared by the targets.

use crate::rng::Rng;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub fn ipv4(rng: &mut Rng) -> Ipv4Addr {
  match rng.below(8) {
    0 => *rng.pick(&[
      Ipv4Addr::UNSPECIFIED,
      Ipv4Addr::BROADCAST,
      Ipv4Addr::LOCALHOST,
      Ipv4Addr::new(10, 0, 0, 1),
      Ipv4Addr::new(192, 168, 255, 255),
      Ipv4Addr::new(172, 31, 0, 1),
      Ipv4Addr::new(169, 254, 169, 254),
      Ipv4Addr::new(100, 64, 0, 1),
    ]),
    1 => Ipv4Addr::new(*rng.pick(&[10, 127, 172, 192, 169]), rng.byte(), rng.byte(), rng.byte()),
    _ => Ipv4Addr::from(rng.u32()),
  }
}

pub fn ipv6(rng: &mut Rng) -> Ipv6Addr {
  match rng.below(10) {
    0 => ipv4(rng).to_ipv6_mapped(),
    1 => ipv4(rng).to_ipv6_compatible(),
    2 => *rng.pick(&[
      Ipv6Addr::UNSPECIFIED,
      Ipv6Addr::LOCALHOST,
      Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
      Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
      Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
      Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
      Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff),
    ]),
    // Runs of zero groups, so that `::` lands in every position.
    3..=5 => {
      let mut groups = [0u16; 8];
      for group in &mut groups {
        *group = match rng.below(4) {
          0 | 1 => 0,
          2 => 0xffff,
          _ => rng.u16(),
        };
      }
      Ipv6Addr::from(groups)
    }
    _ => Ipv6Addr::from(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())),
  }
}

pub fn ip(rng: &mut Rng) -> IpAddr {
  if rng.coin() {
    IpAddr::V4(ipv4(rng))
  } else {
    IpAddr::V6(ipv6(rng))
  }
}

pub fn port(rng: &mut Rng) -> u16 {
  match rng.below(4) {
    0 => *rng.pick(&[0, 1, 80, 443, 8080, 65535]),
    _ => rng.u16(),
  }
}

pub fn socket_addr(rng: &mut Rng, ip: IpAddr) -> SocketAddr {
  SocketAddr::new(ip, port(rng))
}

/// Some textual form of `address` that `Ipv6Addr::from_str` accepts:
/// canonical, fully expanded, zero-padded, upper case, `::` in any run of
/// zero groups, or with an embedded IPv4 tail.
pub fn ipv6_text(rng: &mut Rng, address: Ipv6Addr) -> String {
  if rng.chance(1, 3) {
    return address.to_string();
  }
  let groups = address.segments();
  let pad = rng.chance(1, 3);
  let upper = rng.chance(1, 3);
  let ipv4_tail = rng.chance(1, 3);
  let group_count = if ipv4_tail { 6 } else { 8 };
  let format_group = |group: u16| {
    let text = if pad { format!("{group:04x}") } else { format!("{group:x}") };
    if upper {
      text.to_ascii_uppercase()
    } else {
      text
    }
  };
  // Pick a run of zero groups to compress, if any.
  let zero_runs: Vec<(usize, usize)> = {
    let mut runs = Vec::new();
    let mut start = None;
    let zero_flags = groups[..group_count].iter().map(|&group| group == 0).chain([false]);
    for (index, is_zero) in zero_flags.enumerate() {
      match (is_zero, start) {
        (true, None) => start = Some(index),
        (false, Some(run_start)) => {
          runs.push((run_start, index));
          start = None;
        }
        _ => {}
      }
    }
    runs
  };
  let compress = if !zero_runs.is_empty() && rng.coin() {
    let (run_start, run_end) = *rng.pick(&zero_runs);
    let start = rng.range(run_start, run_end - 1);
    let end = rng.range(start + 1, run_end);
    // With an IPv4 tail, `::` at the very end of the groups would read as
    // `1:2::1.2.3.4`, which is fine; any run is allowed.
    Some((start, end))
  } else {
    None
  };
  let join =
    |range: std::ops::Range<usize>| range.map(|index| format_group(groups[index])).collect::<Vec<_>>().join(":");
  let mut text = match compress {
    Some((start, end)) => format!("{}::{}", join(0..start), join(end..group_count)),
    None => join(0..group_count),
  };
  if ipv4_tail {
    let octets = address.octets();
    let tail = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if !text.ends_with("::") {
      text.push(':');
    }
    text.push_str(&tail.to_string());
  }
  text
}

/// An IPv6 zone id such as `eth0`, `25eth0` (as it appears after `%25` in a
/// URI) or a short random graphic string without `,` `;` `"` `]` or `%`.
pub fn zone(rng: &mut Rng) -> String {
  match rng.below(3) {
    0 => (*rng.pick(&["eth0", "25eth0", "lo", "1", "en0", "wlan0.1", "_x-y"])).to_owned(),
    _ => {
      let len = rng.range(1, 8);
      (0..len).map(|_| char::from(*rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789._-~!$*+/:="))).collect()
    }
  }
}

/// A random address inside `network`.
pub fn address_in(rng: &mut Rng, network: ipnet::IpNet) -> IpAddr {
  match network {
    ipnet::IpNet::V4(net) => {
      let host_bits = 32 - u32::from(net.prefix_len());
      let host_mask = if host_bits == 32 { u32::MAX } else { (1u32 << host_bits) - 1 };
      IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) | (rng.u32() & host_mask)))
    }
    ipnet::IpNet::V6(net) => {
      let host_bits = 128 - u32::from(net.prefix_len());
      let host_mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
      let random = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
      IpAddr::V6(Ipv6Addr::from(u128::from(net.network()) | (random & host_mask)))
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn every_ipv6_text_form_parses_back() {
    let mut rng = Rng::new(11);
    for _ in 0..100_000 {
      let address = ipv6(&mut rng);
      let text = ipv6_text(&mut rng, address);
      assert_eq!(text.parse::<Ipv6Addr>(), Ok(address), "{text}");
      assert!(text.len() <= 45, "{text}");
    }
  }
}
