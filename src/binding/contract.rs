//! The pure functions the portable path copies (lib/portable/, JavaScript
//! for platforms without this binding), exported so that its copies are
//! checked against them: `__test__/portable-contract.spec.js` runs the same
//! inputs, fixed and random, through both and demands the same answers; and
//! the accept loop's constants the portable path takes from its generated
//! contract (`scripts/generate-contract.js`). Nothing here is on a
//! connection's path.

use std::net::{IpAddr, SocketAddr};

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::error::{Result, StickyError};
use super::options::resolve_options;
use crate::core::address::{parse_ip_literal, ClientKey};
use crate::core::hrw::{Rendezvous, SlotId};
use crate::core::parsers::Parse;
use crate::core::routing::{Refusal, Route};

/// What `Router::decide` made of a connection's first bytes.
#[napi(object)]
pub struct RouteDecision {
  /// `'complete'`, `'incomplete'` (wait for more bytes) or `'invalid'` (close it).
  pub outcome: String,
  /// Complete: `'hash'`, `'session'` or `'new-session'`.
  pub route: Option<String>,
  /// `'hash'`: the key's rendezvous hash, as a decimal string.
  pub hash: Option<String>,
  /// `'session'`: the engine.io session id.
  pub sid: Option<String>,
  /// `'new-session'`: whether the request is an engine.io handshake.
  pub handshake: Option<bool>,
  /// The client a PROXY header named (address and port).
  pub client_address: Option<String>,
  pub client_port: Option<u32>,
  /// Bytes of the stream that are the PROXY header.
  pub consume: u32,
  /// Invalid: `'untrusted-proxy'`, `'invalid-proxy-header'` or `'missing-header'`.
  pub refusal: Option<String>,
}

/// How the accept loop would route a connection from `peerAddress`:`peerPort`
/// whose first bytes are `bytes`, with `options` as `listen` takes them.
#[napi(
  ts_args_type = "options: ListenOptions | undefined | null, peerAddress: string, peerPort: number, bytes: Buffer"
)]
pub fn route_decision(
  options: Option<Unknown<'_>>,
  peer_address: String,
  peer_port: u32,
  bytes: Buffer,
) -> Result<RouteDecision> {
  let config = resolve_options(options, 1)?.config;
  let router = config.accept_loop.router(config.listen.seed);
  let ip: IpAddr = peer_address.parse().map_err(|_| invalid("peerAddress", "an IP address", &peer_address))?;
  let port = u16::try_from(peer_port).map_err(|_| invalid("peerPort", "a port", &peer_port.to_string()))?;
  let mut decision = RouteDecision {
    outcome: "incomplete".into(),
    route: None,
    hash: None,
    sid: None,
    handshake: None,
    client_address: None,
    client_port: None,
    consume: 0,
    refusal: None,
  };
  match router.decide(SocketAddr::new(ip, port), &bytes) {
    Parse::Incomplete => {}
    Parse::Invalid(refusal) => {
      decision.outcome = "invalid".into();
      decision.refusal = Some(
        match refusal {
          Refusal::UntrustedProxy { .. } => "untrusted-proxy",
          Refusal::InvalidProxyHeader { .. } => "invalid-proxy-header",
          Refusal::MissingHeader { .. } => "missing-header",
        }
        .into(),
      );
    }
    Parse::Complete(complete) => {
      decision.outcome = "complete".into();
      decision.consume = u32::try_from(complete.consume).unwrap_or(u32::MAX);
      if let Some(client) = complete.client {
        decision.client_address = Some(client.ip().to_string());
        decision.client_port = Some(u32::from(client.port()));
      }
      match complete.route {
        Route::Hash(hash) => {
          decision.route = Some("hash".into());
          decision.hash = Some(hash.to_string());
        }
        Route::Session(sid) => {
          decision.route = Some("session".into());
          decision.sid = Some(String::from_utf8_lossy(&sid).into_owned());
        }
        Route::NewSession { handshake } => {
          decision.route = Some("new-session".into());
          decision.handshake = Some(handshake);
        }
      }
    }
  }
  Ok(decision)
}

/// A key's rendezvous hash and the slots in order of preference.
#[napi(object)]
pub struct RankedSlots {
  /// Decimal string of the 64-bit hash.
  pub hash: String,
  pub ranked: Vec<u32>,
}

/// Ranks `slots` for the client key `key` (its bytes) with `seed` (a decimal
/// string): the first is where the key goes, the second where it goes when
/// the first is down, and so on.
#[napi]
pub fn rendezvous_ranked(key: Buffer, slots: Vec<u32>, seed: String) -> Result<RankedSlots> {
  let seed = seed.parse::<u64>().map_err(|_| invalid("seed", "a decimal unsigned 64-bit integer", &seed))?;
  let hrw = Rendezvous::new(seed);
  let slots: Vec<SlotId> = slots.into_iter().map(|slot| SlotId::try_from(slot).unwrap_or(SlotId::MAX)).collect();
  let hash = hrw.key_hash(&key);
  Ok(RankedSlots { hash: hash.to_string(), ranked: hrw.ranked(hash, &slots).into_iter().map(u32::from).collect() })
}

/// The bytes that identify the client at `address` as configuration and
/// forwarding headers write it (`::ffff:1.2.3.4`, `[fe80::1%eth0]`), or null
/// when it is no IP address.
#[napi]
pub fn client_key(address: String) -> Option<Buffer> {
  parse_ip_literal(&address).map(|ip| Buffer::from(ClientKey::from_ip(ip).as_bytes().to_vec()))
}

/// With workers the user forks, how long (ms) none must exist before
/// connections are refused (`NO_WORKER_GRACE`): the portable path waits as long.
#[napi]
pub fn no_worker_grace_ms() -> u32 {
  u32::try_from(crate::primary::NO_WORKER_GRACE.as_millis()).unwrap_or(u32::MAX)
}

fn invalid(name: &'static str, expected: &'static str, got: &str) -> StickyError {
  StickyError::InvalidOption { name, expected: expected.into(), got: format!("{got:?}") }
}

#[cfg(test)]
mod tests {
  //! The vectors in `contract_vectors.tsv` are shared: this test pins the
  //! Rust to them, `__test__/portable-contract.spec.js` the JavaScript copies
  //! (and the binding). One per line, tab-separated:
  //! `rank <seed> <key hex> <slots> <hash> <ranked>` and
  //! `route <options> <peer> <bytes> <outcome>`, bytes written as printable
  //! ASCII with `%hh` for the rest.

  use super::*;
  use crate::binding::options::{ListenOptions, Routing};
  use crate::core::routing::Router;

  const VECTORS: &str = include_str!("contract_vectors.tsv");

  fn unescape(text: &str) -> Vec<u8> {
    if text == "-" {
      return Vec::new();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
      if bytes[i] == b'%' {
        out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
        i += 3;
      } else {
        out.push(bytes[i]);
        i += 1;
      }
    }
    out
  }

  /// `routing=header;trustedProxies=a|b;...` as the router `resolveOptions` and `Balancer` build.
  fn router(options: &str) -> Router {
    let mut listen = ListenOptions::default();
    for pair in options.split(';').filter(|pair| *pair != "-") {
      let (name, value) = pair.split_once('=').unwrap();
      match name {
        "routing" => {
          listen.routing = Some(match value {
            "ip" => Routing::Ip,
            "header" => Routing::Header,
            "proxy-protocol" => Routing::ProxyProtocol,
            "sid" => Routing::Sid,
            other => panic!("unknown routing {other} in a vector"),
          });
          listen.kernel = Some(false);
        }
        "header" => listen.header = Some(value.into()),
        "trustedProxies" => listen.trusted_proxies = Some(value.split('|').map(String::from).collect()),
        "ignoreMissingHeader" => listen.ignore_missing_header = Some(value == "true"),
        "seed" => listen.seed = Some(value.parse().unwrap()),
        other => panic!("unknown option {other} in a vector"),
      }
    }
    let config = listen.resolve(1).unwrap().config;
    config.accept_loop.router(config.listen.seed)
  }

  fn outcome(parse: Parse<crate::core::routing::Decision, Refusal>) -> String {
    match parse {
      Parse::Incomplete => "incomplete".into(),
      Parse::Invalid(Refusal::UntrustedProxy { .. }) => "invalid untrusted-proxy".into(),
      Parse::Invalid(Refusal::InvalidProxyHeader { .. }) => "invalid invalid-proxy-header".into(),
      Parse::Invalid(Refusal::MissingHeader { .. }) => "invalid missing-header".into(),
      Parse::Complete(decision) => {
        let route = match decision.route {
          Route::Hash(hash) => format!("hash={hash}"),
          Route::Session(sid) => format!("sid={}", String::from_utf8_lossy(&sid)),
          Route::NewSession { handshake } => format!("new-session handshake={handshake}"),
        };
        let client =
          decision.client.map(|client| format!(" client={}:{}", client.ip(), client.port())).unwrap_or_default();
        format!("complete {route} consume={}{client}", decision.consume)
      }
    }
  }

  #[test]
  fn the_shared_vectors_hold_for_the_rust_router_and_hash() {
    let mut checked = 0;
    for line in VECTORS.lines().filter(|line| !line.is_empty()) {
      let fields: Vec<&str> = line.split('\t').collect();
      match fields[0] {
        "rank" => {
          let hrw = Rendezvous::new(fields[1].parse().unwrap());
          let key = if fields[2] == "-" {
            Vec::new()
          } else {
            (0..fields[2].len()).step_by(2).map(|i| u8::from_str_radix(&fields[2][i..i + 2], 16).unwrap()).collect()
          };
          let slots: Vec<SlotId> = fields[3].split(',').map(|slot| slot.parse().unwrap()).collect();
          let hash = hrw.key_hash(&key);
          let ranked: Vec<String> = hrw.ranked(hash, &slots).iter().map(SlotId::to_string).collect();
          assert_eq!((hash.to_string(), ranked.join(",")), (fields[4].to_owned(), fields[5].to_owned()), "{line}");
        }
        "route" => {
          let peer = SocketAddr::new(fields[2].parse().unwrap(), 40000);
          let got = outcome(router(fields[1]).decide(peer, &unescape(fields[3])));
          assert_eq!(got, fields[4], "{line}");
        }
        other => panic!("unknown vector kind {other}"),
      }
      checked += 1;
    }
    assert!(checked > 30, "only {checked} vectors");
  }
}
