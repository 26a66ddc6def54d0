//! Addresses and their textual forms, biased towards the ones that matter
//! (loopback, private ranges, IPv4-mapped, zero runs for `::`).

use crate::{below, one_in, pick, range, Gen};
use arbitrary::Unstructured;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub fn ipv4(u: &mut Unstructured) -> Gen<Ipv4Addr> {
  Ok(match below(u, 8)? {
    0 => *pick(
      u,
      &[
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(192, 168, 255, 255),
        Ipv4Addr::new(172, 31, 0, 1),
        Ipv4Addr::new(169, 254, 169, 254),
        Ipv4Addr::new(100, 64, 0, 1),
      ],
    )?,
    1 => Ipv4Addr::new(*pick(u, &[10, 127, 172, 192, 169])?, u.arbitrary()?, u.arbitrary()?, u.arbitrary()?),
    _ => Ipv4Addr::from(u.arbitrary::<u32>()?),
  })
}

pub fn ipv6(u: &mut Unstructured) -> Gen<Ipv6Addr> {
  Ok(match below(u, 10)? {
    0 => Ipv6Addr::from(u.arbitrary::<u128>()?),
    1 => ipv4(u)?.to_ipv6_mapped(),
    2 => ipv4(u)?.to_ipv6_compatible(),
    3 => *pick(
      u,
      &[
        Ipv6Addr::LOCALHOST,
        Ipv6Addr::UNSPECIFIED,
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        Ipv6Addr::new(0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff),
      ],
    )?,
    // Runs of zero groups, so that `::` lands in every position.
    4..=6 => {
      let mut groups = [0u16; 8];
      for group in &mut groups {
        *group = match below(u, 4)? {
          0 | 1 => 0,
          2 => 0xffff,
          _ => u.arbitrary()?,
        };
      }
      Ipv6Addr::from(groups)
    }
    _ => Ipv6Addr::from(u.arbitrary::<u128>()?),
  })
}

pub fn ip(u: &mut Unstructured) -> Gen<IpAddr> {
  Ok(if u.arbitrary()? { IpAddr::V6(ipv6(u)?) } else { IpAddr::V4(ipv4(u)?) })
}

pub fn port(u: &mut Unstructured) -> Gen<u16> {
  Ok(match below(u, 4)? {
    0 => *pick(u, &[0, 1, 80, 443, 8080, 65535])?,
    _ => u.arbitrary()?,
  })
}

pub fn socket_addr(u: &mut Unstructured, ip: IpAddr) -> Gen<SocketAddr> {
  Ok(SocketAddr::new(ip, port(u)?))
}

/// Some textual form of `address` that `Ipv6Addr::from_str` accepts:
/// canonical, fully expanded, zero-padded, upper case, `::` in any run of
/// zero groups, or with an embedded IPv4 tail.
pub fn ipv6_text(u: &mut Unstructured, address: Ipv6Addr) -> Gen<String> {
  if below(u, 3)? == 0 {
    return Ok(address.to_string());
  }
  let groups = address.segments();
  let pad = one_in(u, 3)?;
  let upper = one_in(u, 3)?;
  let ipv4_tail = one_in(u, 3)?;
  let group_count = if ipv4_tail { 6 } else { 8 };
  let format_group = |group: u16| {
    let text = if pad { format!("{group:04x}") } else { format!("{group:x}") };
    if upper {
      text.to_ascii_uppercase()
    } else {
      text
    }
  };
  let mut zero_runs = Vec::new();
  let mut run_start = None;
  for (index, is_zero) in groups[..group_count].iter().map(|&group| group == 0).chain([false]).enumerate() {
    match (is_zero, run_start) {
      (true, None) => run_start = Some(index),
      (false, Some(start)) => {
        zero_runs.push((start, index));
        run_start = None;
      }
      _ => {}
    }
  }
  // Compress part of one run of zero groups, if any.
  let compress = if !zero_runs.is_empty() && u.arbitrary()? {
    let (run_start, run_end) = *pick(u, &zero_runs)?;
    let start = range(u, run_start, run_end - 1)?;
    Some((start, range(u, start + 1, run_end)?))
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
    if !text.ends_with("::") {
      text.push(':');
    }
    text.push_str(&Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]).to_string());
  }
  Ok(text)
}

/// An IPv6 zone id such as `eth0`, `25eth0` (as it appears after `%25` in a
/// URI) or a short graphic string without `,` `;` `"` `]` or `%`.
pub fn zone(u: &mut Unstructured) -> Gen<String> {
  if u.arbitrary()? {
    return Ok((*pick(u, &["eth0", "25eth0", "lo", "1", "en0", "wlan0.1", "_x-y"])?).to_owned());
  }
  let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789._-~!$*+/:=";
  (0..range(u, 1, 8)?).map(|_| Ok(char::from(*pick(u, alphabet)?))).collect()
}
