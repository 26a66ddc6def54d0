//! `TrustedProxies::parse` and `TrustedProxies::contains`.
//!
//! Invariants: the result (and for errors the index, kind and trimmed entry)
//! equals a model built from the documentation: entries are trimmed; empty is
//! `Empty`, `*` is `Wildcard`; `loopback`, `linklocal`, `uniquelocal` in any
//! case expand to their networks; otherwise a CIDR network (host bits
//! dropped) or a single address, else `Unrecognised`. The first bad entry is
//! reported, every entry before it parses, and the bad entry fails alone too.
//! For a parsed list, `contains` agrees with the model on probes in and
//! around every network (IPv4-mapped addresses count as IPv4; IPv6 networks
//! inside `::ffff:0:0/96` and at least /96 long mean the IPv4 networks they
//! map, wider IPv6 networks never cover IPv4), does not depend on how an
//! address is written (mapped or not), networks are truncated, surrounding
//! whitespace changes nothing, and the list is empty only without entries.

use crate::gen;
use crate::mutate;
use crate::{Checked, Cx, Outcome, Rng, Target, Violation};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use sticky_session_rs::parsers::trusted::{TrustedProxies, TrustedProxyError};

pub struct TrustedProxiesTarget;

#[derive(Debug)]
pub struct Case {
  pub entries: Vec<String>,
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
pub fn valid_entry(rng: &mut Rng) -> String {
  match rng.below(9) {
    0 => gen::ipv4(rng).to_string(),
    1 => {
      let ip = gen::ipv6(rng);
      gen::ipv6_text(rng, ip)
    }
    2..=3 => format!("{}/{}", gen::ipv4(rng), rng.range(0, 32)),
    4..=5 => {
      let ip = gen::ipv6(rng);
      format!("{}/{}", gen::ipv6_text(rng, ip), rng.range(0, 128))
    }
    6 => format!("::ffff:{}/{}", gen::ipv4(rng), rng.range(80, 128)),
    7 => format!("::ffff:{}", gen::ipv4(rng)),
    _ => rng
      .pick(KEYWORDS)
      .bytes()
      .map(|byte| char::from(if rng.coin() { byte.to_ascii_uppercase() } else { byte }))
      .collect(),
  }
}

fn padding(rng: &mut Rng) -> &'static str {
  rng.pick::<&str>(&["", "", "", " ", "\t", "\n", "\r\n", " \u{a0}", "\u{3000}", "\u{2003}"])
}

fn entry(rng: &mut Rng) -> String {
  let core = match rng.below(10) {
    0..=5 => valid_entry(rng),
    6..=7 => (*rng.pick(INVALID_ENTRIES)).to_owned(),
    8 => {
      let mut bytes = valid_entry(rng).into_bytes();
      mutate::mutate(rng, &mut bytes, &[b"/", b":", b".", b"::", b"%", b" ", b"ffff"], 200);
      String::from_utf8_lossy(&bytes).into_owned()
    }
    _ => {
      let len = rng.small_len(20);
      (0..len).map(|_| *rng.pick(&['1', '0', '.', ':', '/', 'f', ' ', '%', 'é', '\u{a0}', '١', '１'])).collect()
    }
  };
  format!("{}{core}{}", padding(rng), padding(rng))
}

impl Target for TrustedProxiesTarget {
  const NAME: &'static str = "trusted_proxies";
  const FUNCTIONS: &'static str = "TrustedProxies::parse, TrustedProxies::contains";
  type Case = Case;

  fn generate(rng: &mut Rng) -> Case {
    let count = rng.small_len(5);
    Case { entries: (0..count).map(|_| entry(rng)).collect() }
  }

  fn parts(case: &Case) -> Vec<Vec<u8>> {
    case.entries.iter().map(|entry| entry.clone().into_bytes()).collect()
  }

  fn from_parts(parts: Vec<Vec<u8>>) -> Case {
    Case { entries: parts.into_iter().map(|part| String::from_utf8_lossy(&part).into_owned()).collect() }
  }

  fn from_fuzz_input(data: &[u8]) -> Case {
    Case { entries: String::from_utf8_lossy(data).split('\n').map(str::to_owned).collect() }
  }

  fn check(case: &Case, cx: &mut Cx) -> Checked {
    let entries: Vec<&str> = case.entries.iter().map(String::as_str).collect();
    let fail = |message: String| Err(Violation::on_parts(Self::parts(case), message));
    let result = cx.call(TrustedProxies::parse(&entries));
    let model: Vec<Result<Vec<IpNet>, TrustedProxyError>> =
      entries.iter().enumerate().map(|(index, entry)| model_entry(index, entry)).collect();
    let first_error = model.iter().find_map(|entry| entry.as_ref().err());
    match (&result, first_error) {
      (Err(error), Some(expected)) if error == expected => {
        let index = match error {
          TrustedProxyError::Empty { index }
          | TrustedProxyError::Wildcard { index }
          | TrustedProxyError::Unrecognised { index, .. } => *index,
        };
        if cx.call(TrustedProxies::parse(&entries[..index])).is_err() {
          return fail(format!("entries before the reported index {index} do not parse"));
        }
        if cx.call(TrustedProxies::parse(&entries[index..=index])).is_ok() {
          return fail(format!("entry {index} parses on its own"));
        }
        Ok(Outcome::Invalid)
      }
      (Ok(trusted), None) => {
        let networks: Vec<IpNet> = model.into_iter().flat_map(Result::unwrap_or_default).collect();
        check_parsed(case, trusted, &networks, cx)?;
        Ok(Outcome::Complete)
      }
      (result, expected) => fail(format!("parse gave {result:?}, the model expects the first error {expected:?}")),
    }
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let case = Self::from_parts(parts.to_vec());
    let entries: Vec<&str> = case.entries.iter().map(String::as_str).collect();
    format!("TrustedProxies::parse({entries:?}) = {:?}", TrustedProxies::parse(&entries))
  }
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

/// Membership as documented: the address is taken in canonical form
/// (IPv4-mapped IPv6 is IPv4); an IPv6 network inside `::ffff:0:0/96` that is
/// at least /96 long means the IPv4 network it maps; other IPv6 networks only
/// hold IPv6 addresses.
pub fn model_contains(networks: &[IpNet], ip: IpAddr) -> bool {
  let canonical = ip.to_canonical();
  networks.iter().any(|network| match (network, canonical) {
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

/// Addresses at and around the edges of each network, in both spellings.
pub fn probes(rng: &mut Rng, networks: &[IpNet]) -> Vec<IpAddr> {
  let mut probes = vec![gen::ip(rng), gen::ip(rng), IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)];
  for network in networks.iter().take(16) {
    probes.push(network.network());
    probes.push(network.broadcast());
    probes.push(gen::address_in(rng, *network));
    if let Some(outside) = network.supernet().and_then(|supernet| supernet.subnets(network.prefix_len()).ok()) {
      if let Some(sibling) = outside.into_iter().find(|sibling| sibling != network) {
        probes.push(sibling.network());
      }
    }
  }
  let mapped: Vec<IpAddr> = probes
    .iter()
    .filter_map(|ip| match ip {
      IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
      IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
    })
    .collect();
  probes.extend(mapped);
  probes
}

fn check_parsed(case: &Case, trusted: &TrustedProxies, model: &[IpNet], cx: &mut Cx) -> Result<(), Violation> {
  let fail = |message: String| Err(Violation::on_parts(TrustedProxiesTarget::parts(case), message));
  if trusted.is_empty() != case.entries.is_empty() || trusted.networks().len() != model.len() {
    return fail(format!(
      "{} networks for {} entries, the model has {}",
      trusted.networks().len(),
      case.entries.len(),
      model.len()
    ));
  }
  for network in trusted.networks() {
    if network.trunc() != *network {
      return fail(format!("network {network} keeps host bits"));
    }
    if let IpNet::V6(net) = network {
      if net.prefix_len() >= 96 && net.network().to_ipv4_mapped().is_some() {
        return fail(format!("network {network} should have been stored as IPv4"));
      }
    }
  }
  for probe in probes(&mut cx.rng, model) {
    let contains = trusted.contains(probe);
    if contains != model_contains(model, probe) {
      return fail(format!(
        "contains({probe}) is {contains}, the model says {}; networks {:?}",
        !contains,
        trusted.networks()
      ));
    }
    if contains != trusted.contains(probe.to_canonical()) {
      return fail(format!("contains({probe}) differs from contains({})", probe.to_canonical()));
    }
  }
  let padded: Vec<String> = case.entries.iter().map(|entry| format!(" \t{entry}\u{a0}\n")).collect();
  let padded: Vec<&str> = padded.iter().map(String::as_str).collect();
  match cx.call(TrustedProxies::parse(&padded)) {
    Ok(again) if again == *trusted => Ok(()),
    other => fail(format!("surrounding whitespace changed the result to {other:?}")),
  }
}
