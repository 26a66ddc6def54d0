//! `TrustedProxies::parse` and `TrustedProxies::contains`.
//!
//! Invariants: the result (and for errors the index, kind and trimmed entry)
//! equals a model built from the documentation: entries are trimmed; empty is
//! `Empty`, `*` is `Wildcard`; `loopback`, `linklocal`, `uniquelocal` in any
//! case expand to their networks; otherwise a CIDR network (host bits
//! dropped) or a single address, else `Unrecognised`. The first bad entry is
//! reported, every entry before it parses, and the bad entry fails alone too.
//! For a parsed list, `contains` agrees with the model on probes at, inside
//! and next to every network, in IPv4 and IPv4-mapped spellings
//! (IPv4-mapped addresses count as IPv4; IPv6 networks inside
//! `::ffff:0:0/96` and at least /96 long mean the IPv4 networks they map,
//! wider IPv6 networks never cover IPv4); networks are truncated and mapped
//! ones stored as IPv4; surrounding whitespace changes nothing; the list is
//! empty only without entries.

use crate::nodes::Lines;
use crate::{addresses, below, broken, pick, range, small_len, Bytes, Gen, NearMiss, Render};
use arbitrary::{Arbitrary, Unstructured};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use sticky_session_rs::core::parsers::trusted::{TrustedProxies, TrustedProxyError};

#[derive(Arbitrary, Debug)]
pub enum Input {
  /// Any bytes, one entry per `\n`.
  Raw(Lines),
  Generated(Entries),
  NearMiss(NearMiss<Entries>),
}

/// Entries, each valid, invalid, a near miss or junk, with padding; and
/// addresses to probe `contains` with besides the networks' edges.
#[derive(Debug)]
pub struct Entries {
  pub entries: Vec<String>,
  pub probes: Vec<IpAddr>,
}

impl<'a> Arbitrary<'a> for Entries {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let entries = (0..small_len(u, 5)?).map(|_| entry(u)).collect::<Gen<_>>()?;
    let probes = (0..range(u, 0, 4)?).map(|_| addresses::ip(u)).collect::<Gen<_>>()?;
    Ok(Entries { entries, probes })
  }
}

impl Render for Entries {
  const TOKENS: &'static [&'static [u8]] =
    &[b"/", b":", b".", b"::", b"%", b" ", b"ffff", b"/0", b"/32", b"/128", b"/33", b"\n", b"\xc2\xa0", b"*"];

  fn render(&self) -> Vec<u8> {
    self.entries.join("\n").into_bytes()
  }
}

pub fn check(input: &Input) {
  let lossy = |lines: &Lines| -> Vec<String> {
    lines.0.iter().map(|Bytes(line)| String::from_utf8_lossy(line).into_owned()).collect()
  };
  match input {
    Input::Raw(lines) => check_entries(&lossy(lines), &[]),
    Input::NearMiss(near_miss) => check_entries(&lossy(&Lines::from_near_miss(near_miss)), &[]),
    Input::Generated(Entries { entries, probes }) => check_entries(entries, probes),
  }
}

/// Entries that are not addresses, networks or keywords (some are close).
const INVALID_ENTRIES: &[&str] = &[
  "",
  " ",
  "*",
  " * ",
  "10.0.0.0/33",
  "::/129",
  "10.0.0.0/-1",
  "10.0.0.0/",
  "/8",
  "10.0.0.0/8/8",
  "1.2.3.4 5",
  "[::1]",
  "fe80::1%eth0",
  "localhost",
  "0x7f.0.0.1",
  "127.1",
  "1.2.3.4/ 8",
  "loopback2",
  "all",
  "::1/128%x",
  "10.0.0.0/08",
  "10.0.0.0/+8",
  "\u{661}.0.0.1",
  "\u{feff}127.0.0.1",
  "1.2.3.4,5.6.7.8",
];

const KEYWORDS: &[&str] = &["loopback", "linklocal", "uniquelocal"];

/// An entry the documentation says is valid.
pub fn valid_entry(u: &mut Unstructured) -> Gen<String> {
  Ok(match below(u, 9)? {
    0 => addresses::ipv4(u)?.to_string(),
    1 => {
      let ip = addresses::ipv6(u)?;
      addresses::ipv6_text(u, ip)?
    }
    2..=3 => format!("{}/{}", addresses::ipv4(u)?, range(u, 0, 32)?),
    4..=5 => {
      let ip = addresses::ipv6(u)?;
      format!("{}/{}", addresses::ipv6_text(u, ip)?, range(u, 0, 128)?)
    }
    6 => format!("::ffff:{}/{}", addresses::ipv4(u)?, range(u, 80, 128)?),
    7 => format!("::ffff:{}", addresses::ipv4(u)?),
    _ => pick(u, KEYWORDS)?
      .bytes()
      .map(|byte| Ok(char::from(if u.arbitrary()? { byte.to_ascii_uppercase() } else { byte })))
      .collect::<Gen<_>>()?,
  })
}

fn entry(u: &mut Unstructured) -> Gen<String> {
  const PADDING: &[&str] = &["", "", "", " ", "\t", "\n", "\r\n", " \u{a0}", "\u{3000}", "\u{2003}"];
  let core = match below(u, 10)? {
    0..=5 => valid_entry(u)?,
    6..=8 => (*pick(u, INVALID_ENTRIES)?).to_owned(),
    _ => (0..small_len(u, 20)?)
      .map(|_| pick(u, &['1', '0', '.', ':', '/', 'f', ' ', '%', 'é', '\u{a0}', '١', '１']).copied())
      .collect::<Gen<_>>()?,
  };
  Ok(format!("{}{core}{}", pick(u, PADDING)?, pick(u, PADDING)?))
}

/// The networks an entry stands for, per the documentation.
pub fn model_entry(index: usize, raw: &str) -> Result<Vec<IpNet>, TrustedProxyError> {
  let entry = raw.trim();
  if entry.is_empty() {
    return Err(TrustedProxyError::Empty { index });
  }
  if entry == "*" {
    return Err(TrustedProxyError::Wildcard { index });
  }
  let v4 = |a, b, c, d, len| IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len));
  let v6 = |first, len| IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::new(first, 0, 0, 0, 0, 0, 0, 0), len));
  match entry.to_ascii_lowercase().as_str() {
    "loopback" => return Ok(vec![v4(127, 0, 0, 0, 8), IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128))]),
    "linklocal" => return Ok(vec![v4(169, 254, 0, 0, 16), v6(0xfe80, 10)]),
    "uniquelocal" => return Ok(vec![v4(10, 0, 0, 0, 8), v4(172, 16, 0, 0, 12), v4(192, 168, 0, 0, 16), v6(0xfc00, 7)]),
    _ => {}
  }
  if let Ok(network) = entry.parse::<IpNet>() {
    return Ok(vec![network.trunc()]);
  }
  match entry.parse::<IpAddr>() {
    Ok(ip) => Ok(vec![IpNet::from(ip)]),
    Err(_) => Err(TrustedProxyError::Unrecognised { index, entry: entry.to_owned() }),
  }
}

/// The networks of the entries that parse.
pub fn model_networks(entries: &[String]) -> Vec<IpNet> {
  entries.iter().enumerate().flat_map(|(index, entry)| model_entry(index, entry).unwrap_or_default()).collect()
}

/// Membership as documented: the address is taken in canonical form
/// (IPv4-mapped IPv6 is IPv4); an IPv6 network inside `::ffff:0:0/96` that is
/// at least /96 long means the IPv4 network it maps; other IPv6 networks only
/// hold IPv6 addresses.
pub fn model_contains(networks: &[IpNet], ip: IpAddr) -> bool {
  networks.iter().any(|network| match (network, ip.to_canonical()) {
    (IpNet::V4(net), IpAddr::V4(v4)) => net.contains(&v4),
    (IpNet::V6(net), IpAddr::V4(v4)) => {
      net.prefix_len() >= 96 && net.network().to_ipv4_mapped().is_some() && net.contains(&v4.to_ipv6_mapped())
    }
    (IpNet::V6(net), IpAddr::V6(v6)) => {
      !(net.prefix_len() >= 96 && net.network().to_ipv4_mapped().is_some()) && net.contains(&v6)
    }
    (IpNet::V4(_), IpAddr::V6(_)) => false,
  })
}

/// `extra` and loopback, then addresses at, inside and just outside each
/// network (first, second, middle, last but one, last, the sibling
/// network), each also in its other spelling (IPv4 ↔ IPv4-mapped).
pub fn probes(networks: &[IpNet], extra: &[IpAddr]) -> Vec<IpAddr> {
  let mut probes: Vec<IpAddr> = extra.to_vec();
  probes.extend([IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]);
  for network in networks.iter().take(16) {
    let (first, last) = match network {
      IpNet::V4(net) => (u128::from(u32::from(net.network())), u128::from(u32::from(net.broadcast()))),
      IpNet::V6(net) => (u128::from(net.network()), u128::from(net.broadcast())),
    };
    for offset in [first, first.saturating_add(1), first / 2 + last / 2, last.saturating_sub(1), last] {
      let offset = offset.clamp(first, last);
      probes.push(match network {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(offset as u32)),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(offset)),
      });
    }
    if let Some(outside) = network.supernet().and_then(|supernet| supernet.subnets(network.prefix_len()).ok()) {
      if let Some(sibling) = outside.into_iter().find(|sibling| sibling != network) {
        probes.push(sibling.network());
      }
    }
  }
  let other_spellings: Vec<IpAddr> = probes
    .iter()
    .filter_map(|ip| match ip {
      IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
      IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
    })
    .collect();
  probes.extend(other_spellings);
  probes
}

fn check_entries(entries: &[String], extra_probes: &[IpAddr]) {
  let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
  let all_entries = entries.join("\n");
  let fail = |message: String| -> ! { broken(all_entries.as_bytes(), message) };
  let result = TrustedProxies::parse(&entries);
  let model: Vec<Result<Vec<IpNet>, TrustedProxyError>> =
    entries.iter().enumerate().map(|(index, entry)| model_entry(index, entry)).collect();
  let first_error = model.iter().find_map(|entry| entry.as_ref().err());
  let trusted = match (&result, first_error) {
    (Err(error), Some(expected)) if error == expected => {
      let index = match error {
        TrustedProxyError::Empty { index }
        | TrustedProxyError::Wildcard { index }
        | TrustedProxyError::Unrecognised { index, .. } => *index,
      };
      if TrustedProxies::parse(&entries[..index]).is_err() {
        fail(format!("entries before the reported index {index} do not parse"));
      }
      if TrustedProxies::parse(&entries[index..=index]).is_ok() {
        fail(format!("entry {index} parses on its own"));
      }
      return;
    }
    (Ok(trusted), None) => trusted,
    (result, expected) => fail(format!("parse gave {result:?}, the model expects the first error {expected:?}")),
  };
  let networks: Vec<IpNet> = model.into_iter().flat_map(Result::unwrap_or_default).collect();
  if trusted.is_empty() != entries.is_empty() || trusted.networks().len() != networks.len() {
    fail(format!(
      "{} networks for {} entries, the model has {}",
      trusted.networks().len(),
      entries.len(),
      networks.len()
    ));
  }
  for network in trusted.networks() {
    if network.trunc() != *network {
      fail(format!("network {network} keeps host bits"));
    }
    if let IpNet::V6(net) = network {
      if net.prefix_len() >= 96 && net.network().to_ipv4_mapped().is_some() {
        fail(format!("network {network} should have been stored as IPv4"));
      }
    }
  }
  for probe in probes(&networks, extra_probes) {
    let contains = trusted.contains(probe);
    if contains != model_contains(&networks, probe) {
      fail(format!("contains({probe}) is {contains}, the model says {}; networks {:?}", !contains, trusted.networks()));
    }
    if contains != trusted.contains(probe.to_canonical()) {
      fail(format!("contains({probe}) differs from contains({})", probe.to_canonical()));
    }
  }
  let padded: Vec<String> = entries.iter().map(|entry| format!(" \t{entry}\u{a0}\n")).collect();
  let padded: Vec<&str> = padded.iter().map(String::as_str).collect();
  match TrustedProxies::parse(&padded) {
    Ok(again) if again == *trusted => {}
    other => fail(format!("surrounding whitespace changed the result to {other:?}")),
  }
}
