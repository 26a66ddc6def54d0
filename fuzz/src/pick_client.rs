//! `pick_client` (the nginx `real_ip_recursive` policy).
//!
//! Invariants: the result is `None`, the canonical peer, or the canonical
//! form of an address in the chain; it equals a model of the documented
//! policy (an untrusted peer is the client; otherwise walk from the right,
//! the first untrusted address is the client, `unknown`/obfuscated hops
//! stop the walk with `None`, an all-trusted chain gives its leftmost entry,
//! an empty chain the peer) run on the model of the trusted set, and
//! `contains` agrees with that model on the peer and every hop; and it
//! cannot be spoofed: replacing every hop left of the chosen one changes
//! nothing.

use crate::trusted_proxies::{model_contains, model_networks, probes, valid_entry};
use crate::{addresses, below, broken, nodes, one_in, pick, small_len, Bytes, Gen};
use arbitrary::{Arbitrary, Unstructured};
use std::net::IpAddr;
use sticky_session_rs::core::parsers::forwarded::{parse_x_forwarded_for, pick_client, ForwardedNode};
use sticky_session_rs::core::parsers::trusted::TrustedProxies;

#[derive(Arbitrary, Debug)]
pub enum Input {
  /// An `X-Forwarded-For` value from a peer in a fixed trusted set.
  Raw(Bytes),
  Generated(Case),
}

#[derive(Debug)]
pub struct Case {
  pub entries: Vec<String>,
  pub peer: IpAddr,
  pub nodes: Vec<ForwardedNode>,
  /// What a client could write instead of the hops left of the chosen one.
  pub spoofed: Vec<ForwardedNode>,
}

impl<'a> Arbitrary<'a> for Case {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let entries: Vec<String> = (0..small_len(u, 4)?).map(|_| valid_entry(u)).collect::<Gen<_>>()?;
    let pool = probes(&model_networks(&entries), &[]);
    let peer = address(u, &pool)?;
    let nodes = if one_in(u, 4)? {
      let (values, _) = nodes::xff_values(u)?;
      parse_x_forwarded_for(&values.iter().map(Vec::as_slice).collect::<Vec<_>>())
    } else {
      (0..small_len(u, 8)?).map(|_| random_node(u, &pool)).collect::<Gen<_>>()?
    };
    let spoofed = (0..nodes.len()).map(|_| random_node(u, &pool)).collect::<Gen<_>>()?;
    Ok(Case { entries, peer, nodes, spoofed })
  }
}

/// An address likely to matter: inside a trusted network, at its edge, or
/// anywhere, in IPv4 or IPv4-mapped form.
fn address(u: &mut Unstructured, pool: &[IpAddr]) -> Gen<IpAddr> {
  let ip = if below(u, 3)? < 2 { *pick(u, pool)? } else { addresses::ip(u)? };
  Ok(match ip {
    IpAddr::V4(v4) if one_in(u, 4)? => IpAddr::V6(v4.to_ipv6_mapped()),
    _ => ip,
  })
}

fn random_node(u: &mut Unstructured, pool: &[IpAddr]) -> Gen<ForwardedNode> {
  Ok(match below(u, 20)? {
    18 => ForwardedNode::Unknown,
    19 => ForwardedNode::Obfuscated,
    _ => ForwardedNode::Ip(address(u, pool)?),
  })
}

pub fn check(input: &Input) {
  match input {
    Input::Raw(Bytes(value)) => {
      let case = Case {
        entries: vec!["loopback".into(), "10.0.0.0/31".into(), "fd00::/8".into()],
        peer: IpAddr::from([10, 0, 0, (value.len() % 3) as u8]),
        nodes: parse_x_forwarded_for(&[value]),
        spoofed: Vec::new(),
      };
      check_case(&case);
    }
    Input::Generated(case) => check_case(case),
  }
}

fn check_case(case: &Case) {
  let entries: Vec<&str> = case.entries.iter().map(String::as_str).collect();
  let description = format!("{case:?}");
  let fail = |message: String| -> ! { broken(description.as_bytes(), message) };
  let Ok(trusted) = TrustedProxies::parse(&entries) else {
    fail("the trusted entries of a pick_client case must parse".into());
  };
  let networks = model_networks(&case.entries);
  let trusts = |ip: IpAddr| model_contains(&networks, ip);
  let hops = case.nodes.iter().filter_map(|node| match node {
    ForwardedNode::Ip(ip) => Some(*ip),
    _ => None,
  });
  for ip in std::iter::once(case.peer).chain(hops) {
    if trusted.contains(ip) != trusts(ip) {
      fail(format!("contains({ip}) is {}, the model says {}", trusted.contains(ip), trusts(ip)));
    }
  }
  let got = pick_client(&case.nodes, case.peer, &trusted);
  let (expected, chosen_index) = model_pick(&case.nodes, case.peer, trusts);
  if got != expected {
    fail(format!("pick_client gave {got:?}, the documented policy gives {expected:?}"));
  }
  if let Some(ip) = got {
    let from_chain = case.nodes.iter().any(|node| matches!(node, ForwardedNode::Ip(hop) if hop.to_canonical() == ip));
    if ip.to_canonical() != ip || (ip != case.peer.to_canonical() && !from_chain) {
      fail(format!("{ip} is neither the canonical peer nor an address of the chain"));
    }
  }
  if let Some(index) = chosen_index {
    // Spoofing: whatever the client wrote left of the chosen hop is ignored.
    let mut spoofed = case.nodes.clone();
    for (at, node) in spoofed[..index].iter_mut().enumerate() {
      *node = case.spoofed.get(at).copied().unwrap_or(ForwardedNode::Unknown);
    }
    let again = pick_client(&spoofed, case.peer, &trusted);
    if again != got {
      fail(format!("rewriting the hops left of index {index} to {spoofed:?} changed the client to {again:?}"));
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
