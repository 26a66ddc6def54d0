//! `pick_client` (the nginx `real_ip_recursive` policy).
//!
//! Invariants: the result is `None`, the canonical peer, or the canonical
//! form of an address in the chain; it equals a model of the documented
//! policy (an untrusted peer is the client; otherwise walk from the right,
//! the first untrusted address is the client, `unknown`/obfuscated hops
//! stop the walk with `None`, an all-trusted chain gives its leftmost entry,
//! an empty chain the peer) using a model of the trusted set; and it cannot
//! be spoofed: replacing every hop left of the chosen one changes nothing.

use crate::gen;
use crate::targets::nodes;
use crate::targets::trusted_proxies::{model_contains, model_entry, probes, valid_entry};
use crate::{Checked, Cx, Outcome, Rng, Target, Violation};
use ipnet::IpNet;
use std::net::IpAddr;
use sticky_session_rs::parsers::forwarded::{parse_x_forwarded_for, pick_client, ForwardedNode};
use sticky_session_rs::parsers::trusted::TrustedProxies;

pub struct PickClientTarget;

#[derive(Debug)]
pub struct Case {
  pub entries: Vec<String>,
  pub peer: IpAddr,
  pub nodes: Vec<ForwardedNode>,
}

fn model_networks(entries: &[String]) -> Vec<IpNet> {
  entries.iter().enumerate().flat_map(|(index, entry)| model_entry(index, entry).unwrap_or_default()).collect()
}

/// An address likely to matter: inside a trusted network, at its edge, or
/// anywhere, in IPv4 or IPv4-mapped form.
fn address(rng: &mut Rng, pool: &[IpAddr]) -> IpAddr {
  let ip = if !pool.is_empty() && rng.chance(2, 3) { *rng.pick(pool) } else { gen::ip(rng) };
  match ip {
    IpAddr::V4(v4) if rng.chance(1, 4) => IpAddr::V6(v4.to_ipv6_mapped()),
    _ => ip,
  }
}

fn random_node(rng: &mut Rng, pool: &[IpAddr]) -> ForwardedNode {
  match rng.below(20) {
    0 => ForwardedNode::Unknown,
    1 => ForwardedNode::Obfuscated,
    _ => ForwardedNode::Ip(address(rng, pool)),
  }
}

fn node_text(node: &ForwardedNode) -> Vec<u8> {
  match node {
    ForwardedNode::Ip(ip) => format!("ip {ip}").into_bytes(),
    ForwardedNode::Unknown => b"unknown".to_vec(),
    ForwardedNode::Obfuscated => b"obfuscated".to_vec(),
  }
}

impl Target for PickClientTarget {
  const NAME: &'static str = "pick_client";
  const FUNCTIONS: &'static str = "pick_client (+ TrustedProxies::contains)";
  type Case = Case;

  fn generate(rng: &mut Rng) -> Case {
    let entries: Vec<String> = (0..rng.small_len(4)).map(|_| valid_entry(rng)).collect();
    let networks = model_networks(&entries);
    let pool = probes(rng, &networks);
    let peer = address(rng, &pool);
    let nodes = if rng.chance(1, 4) {
      let (values, _) = nodes::xff_values(rng);
      let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
      parse_x_forwarded_for(&values)
    } else {
      (0..rng.small_len(8)).map(|_| random_node(rng, &pool)).collect()
    };
    Case { entries, peer, nodes }
  }

  fn parts(case: &Case) -> Vec<Vec<u8>> {
    let mut parts = vec![case.peer.to_string().into_bytes(), case.entries.join(",").into_bytes()];
    parts.extend(case.nodes.iter().map(node_text));
    parts
  }

  /// Parts: the peer, the trusted entries joined by `,`, then one node per
  /// part (`ip ADDRESS`, `unknown` or `obfuscated`).
  fn from_parts(parts: Vec<Vec<u8>>) -> Case {
    let text = |part: &Vec<u8>| String::from_utf8_lossy(part).trim().to_owned();
    let peer = parts.first().and_then(|part| text(part).parse().ok()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let entries = parts.get(1).map(|part| text(part).split(',').map(str::to_owned).collect()).unwrap_or_default();
    let nodes = parts
      .iter()
      .skip(2)
      .map(|part| match text(part).strip_prefix("ip ").and_then(|ip| ip.parse().ok()) {
        Some(ip) => ForwardedNode::Ip(ip),
        None if text(part) == "obfuscated" => ForwardedNode::Obfuscated,
        None => ForwardedNode::Unknown,
      })
      .collect();
    Case { entries, peer, nodes }
  }

  fn from_fuzz_input(data: &[u8]) -> Case {
    // An X-Forwarded-For value from a trusted loopback/private peer.
    let nodes = parse_x_forwarded_for(&[data]);
    let peer = IpAddr::from([10, 0, 0, (data.len() % 3) as u8]);
    Case { entries: vec!["loopback".into(), "10.0.0.0/31".into(), "fd00::/8".into()], peer, nodes }
  }

  fn check(case: &Case, cx: &mut Cx) -> Checked {
    let entries: Vec<&str> = case.entries.iter().map(String::as_str).collect();
    let fail = |message: String| Err(Violation::on_parts(Self::parts(case), message));
    let Ok(trusted) = TrustedProxies::parse(&entries) else {
      return fail("the trusted entries of a pick_client case must parse".into());
    };
    let networks = model_networks(&case.entries);
    let trusts = |ip: IpAddr| model_contains(&networks, ip);
    for ip in std::iter::once(case.peer).chain(case.nodes.iter().filter_map(|node| match node {
      ForwardedNode::Ip(ip) => Some(*ip),
      _ => None,
    })) {
      if trusted.contains(ip) != trusts(ip) {
        return fail(format!("contains({ip}) is {}, the model says {}", trusted.contains(ip), trusts(ip)));
      }
    }
    let got = cx.call(pick_client(&case.nodes, case.peer, &trusted));
    let (expected, chosen_index) = model_pick(&case.nodes, case.peer, trusts);
    if got != expected {
      return fail(format!("pick_client gave {got:?}, the documented policy gives {expected:?}"));
    }
    if let Some(ip) = got {
      let from_chain = case.nodes.iter().any(|node| matches!(node, ForwardedNode::Ip(hop) if hop.to_canonical() == ip));
      if ip.to_canonical() != ip || (ip != case.peer.to_canonical() && !from_chain) {
        return fail(format!("{ip} is neither the canonical peer nor an address of the chain"));
      }
    }
    if let Some(index) = chosen_index {
      // Spoofing: whatever the client wrote left of the chosen hop is ignored.
      let mut spoofed = case.nodes.clone();
      for node in &mut spoofed[..index] {
        *node = random_node(&mut cx.rng, &[]);
      }
      let again = cx.call(pick_client(&spoofed, case.peer, &trusted));
      if again != got {
        return Err(Violation::on_parts(
          Self::parts(&Case { entries: case.entries.clone(), peer: case.peer, nodes: spoofed.clone() }),
          format!("rewriting the hops left of index {index} changed the client from {got:?} to {again:?}"),
        ));
      }
    }
    Ok(if got.is_some() { Outcome::Complete } else { Outcome::Invalid })
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let case = Self::from_parts(parts.to_vec());
    let entries: Vec<&str> = case.entries.iter().map(String::as_str).collect();
    match TrustedProxies::parse(&entries) {
      Ok(trusted) => format!(
        "pick_client({:?}, {}, {:?}) = {:?}",
        case.nodes,
        case.peer,
        entries,
        pick_client(&case.nodes, case.peer, &trusted)
      ),
      Err(error) => format!("trusted entries {entries:?} do not parse: {error}"),
    }
  }
}

/// The documented policy; also returns the index of the chain entry chosen
/// by the right-to-left walk, if any.
fn model_pick(
  nodes: &[ForwardedNode],
  peer: IpAddr,
  trusts: impl Fn(IpAddr) -> bool,
) -> (Option<IpAddr>, Option<usize>) {
  if !trusts(peer) {
    return (Some(peer.to_canonical()), None);
  }
  for (index, node) in nodes.iter().enumerate().rev() {
    match node {
      ForwardedNode::Ip(ip) if trusts(*ip) => {}
      ForwardedNode::Ip(ip) => return (Some(ip.to_canonical()), Some(index)),
      ForwardedNode::Unknown | ForwardedNode::Obfuscated => return (None, None),
    }
  }
  match nodes.first() {
    None => (Some(peer.to_canonical()), None),
    Some(ForwardedNode::Ip(ip)) => (Some(ip.to_canonical()), None),
    Some(_) => (None, None),
  }
}
