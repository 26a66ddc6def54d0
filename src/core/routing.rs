//! What identifies a client, decided from the peer address and the first
//! bytes of its connection. No I/O: the accept loop peeks, calls
//! [`Router::decide`], and peeks again while the answer is `Incomplete`.

use std::net::{IpAddr, SocketAddr};

use crate::core::address::ClientKey;
use crate::core::hrw::Rendezvous;
use crate::core::parsers::forwarded::{parse_forwarded, parse_x_forwarded_for, pick_client};
use crate::core::parsers::http_head::{
  find_query_param, header_values, parse_request_head, request_line_sid, request_line_target, HeadError,
  MAX_REQUEST_HEAD_LEN,
};
use crate::core::parsers::proxy_protocol::parse_proxy_header;
use crate::core::parsers::trusted::TrustedProxies;
use crate::core::parsers::Parse;

/// How a client is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingMode {
  /// The socket's peer address.
  Ip,
  /// The source address of a PROXY protocol v1/v2 header, sent by a trusted proxy.
  ProxyProtocol,
  /// A forwarding header set by a trusted proxy.
  Header(ForwardingHeader),
  /// The engine.io `sid` query parameter of the request line.
  Sid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardingHeader {
  /// `X-Forwarded-For` or any header in its format (comma-separated addresses),
  /// by lower-case name.
  AddressList(String),
  /// RFC 7239 `Forwarded` (`for=` parameters).
  Forwarded,
}

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
  /// Rendezvous hash of the client key.
  Hash(u64),
  /// An existing engine.io session.
  Session(Box<[u8]>),
  /// A request that starts no known session: the new-session balance decides.
  NewSession { handshake: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
  pub route: Route,
  /// The client as the PROXY header names it: the worker reports it as the
  /// socket's remote address.
  pub client: Option<SocketAddr>,
  /// Bytes to remove from the connection before the hand-off (the PROXY header).
  pub consume: usize,
}

/// Why a connection is closed without reaching a worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
  #[error("PROXY header from {peer}, which is not a trusted proxy")]
  UntrustedProxy { peer: IpAddr },
  #[error("invalid PROXY header: {reason}")]
  InvalidProxyHeader { reason: String },
  #[error("request from trusted proxy {peer} names no client in its forwarding header")]
  MissingHeader { peer: IpAddr },
}

pub struct Router {
  mode: RoutingMode,
  trusted: TrustedProxies,
  /// Header mode: with no usable header, route by the peer address (true) or close (false).
  ignore_missing_header: bool,
  hrw: Rendezvous,
}

impl Router {
  pub fn new(mode: RoutingMode, trusted: TrustedProxies, ignore_missing_header: bool, hrw: Rendezvous) -> Self {
    Router { mode, trusted, ignore_missing_header, hrw }
  }

  /// What identifies a client.
  pub fn mode(&self) -> &RoutingMode {
    &self.mode
  }

  /// The rendezvous hash that keys are hashed with (and slots are picked by).
  pub fn rendezvous(&self) -> Rendezvous {
    self.hrw
  }

  /// The route of a client known only by its IP address.
  pub fn route_by_ip(&self, ip: IpAddr) -> Route {
    Route::Hash(self.hrw.key_hash(ClientKey::from_ip(ip).as_bytes()))
  }

  /// Decides from the bytes peeked so far (possibly none): `Incomplete`
  /// means peek again when more arrive.
  pub fn decide(&self, peer: SocketAddr, peeked: &[u8]) -> Parse<Decision, Refusal> {
    let by_peer = || Decision { route: self.route_by_ip(peer.ip()), client: None, consume: 0 };
    match &self.mode {
      RoutingMode::Ip => Parse::Complete(by_peer()),
      RoutingMode::ProxyProtocol => {
        if !self.trusted.contains(peer.ip()) {
          return Parse::Invalid(Refusal::UntrustedProxy { peer: peer.ip() });
        }
        match parse_proxy_header(peeked) {
          Parse::Incomplete => Parse::Incomplete,
          Parse::Invalid(error) => Parse::Invalid(Refusal::InvalidProxyHeader { reason: error.to_string() }),
          Parse::Complete(header) => {
            debug_assert!(header.header_len <= peeked.len());
            // LOCAL and UNKNOWN headers (health checks) name no client: the proxy itself is the client.
            let route = match header.source {
              Some(source) => self.route_by_ip(source.ip()),
              None => self.route_by_ip(peer.ip()),
            };
            Parse::Complete(Decision { route, client: header.source, consume: header.header_len })
          }
        }
      }
      RoutingMode::Header(header) => {
        // A header from anyone but a trusted proxy is not believed, so there is nothing to read.
        if !self.trusted.contains(peer.ip()) {
          return Parse::Complete(by_peer());
        }
        // 128 header slots cover real requests cheaply; a head with more is
        // parsed again with room for as many as can fit.
        let parsed = match parse_request_head(peeked, 128) {
          Parse::Invalid(HeadError::TooManyHeaders { .. }) => parse_request_head(peeked, MAX_REQUEST_HEAD_LEN),
          parsed => parsed,
        };
        let client = match parsed {
          Parse::Incomplete if peeked.len() < MAX_REQUEST_HEAD_LEN => return Parse::Incomplete,
          Parse::Complete(head) => {
            let (values, nodes);
            match header {
              ForwardingHeader::AddressList(name) => {
                values = header_values(&head, name);
                nodes = parse_x_forwarded_for(&values);
              }
              ForwardingHeader::Forwarded => {
                values = header_values(&head, "forwarded");
                nodes = parse_forwarded(&values);
              }
            }
            if nodes.is_empty() {
              None
            } else {
              pick_client(&nodes, peer.ip(), &self.trusted)
            }
          }
          // Not HTTP, or a head too large to hold: no header to believe.
          Parse::Incomplete | Parse::Invalid(_) => None,
        };
        match client {
          Some(ip) => Parse::Complete(Decision { route: self.route_by_ip(ip), client: None, consume: 0 }),
          None if self.ignore_missing_header => Parse::Complete(by_peer()),
          None => Parse::Invalid(Refusal::MissingHeader { peer: peer.ip() }),
        }
      }
      RoutingMode::Sid => match request_line_sid(peeked) {
        Parse::Incomplete => Parse::Incomplete,
        Parse::Complete(Some(sid)) => {
          Parse::Complete(Decision { route: Route::Session(sid.into()), client: None, consume: 0 })
        }
        Parse::Complete(None) => {
          let handshake = match request_line_target(peeked) {
            Parse::Complete(target) => find_query_param(target, b"EIO").is_some(),
            _ => false,
          };
          Parse::Complete(Decision { route: Route::NewSession { handshake }, client: None, consume: 0 })
        }
        // Not an HTTP request line, or a malformed sid: a worker answers it
        // (400 from Node's parser, or engine.io's "Session ID unknown", which
        // makes a socket.io client reconnect).
        Parse::Invalid(_) => {
          Parse::Complete(Decision { route: Route::NewSession { handshake: false }, client: None, consume: 0 })
        }
      },
    }
  }

  /// Whether the mode reads bytes before routing.
  pub fn peeks(&self) -> bool {
    self.mode != RoutingMode::Ip
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::core::parsers::proxy_protocol::{encode_v1, encode_v2};

  fn router(mode: RoutingMode, ignore_missing_header: bool) -> Router {
    Router::new(mode, TrustedProxies::parse(&["loopback"]).unwrap(), ignore_missing_header, Rendezvous::default())
  }

  fn proxy() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
  }

  fn stranger() -> SocketAddr {
    "203.0.113.9:40000".parse().unwrap()
  }

  #[test]
  fn a_proxy_v2_header_from_a_trusted_proxy_routes_by_its_source_and_is_consumed_exactly() {
    let router = router(RoutingMode::ProxyProtocol, true);
    let source: SocketAddr = "198.51.100.7:5555".parse().unwrap();
    let mut bytes = encode_v2(source, "10.0.0.1:443".parse().unwrap(), &[]);
    let header_len = bytes.len();
    bytes.extend_from_slice(&[0x16, 0x03, 0x01]); // a TLS ClientHello follows
    let Parse::Complete(decision) = router.decide(proxy(), &bytes) else { panic!() };
    assert_eq!(decision.consume, header_len);
    assert_eq!(decision.client, Some(source));
    assert_eq!(decision.route, router.route_by_ip(source.ip()));
  }

  #[test]
  fn every_prefix_of_a_proxy_v1_header_waits_for_more() {
    let router = router(RoutingMode::ProxyProtocol, true);
    let bytes = encode_v1("198.51.100.7:5555".parse().unwrap(), "10.0.0.1:80".parse().unwrap());
    for end in 0..bytes.len() {
      assert_eq!(router.decide(proxy(), &bytes[..end]), Parse::Incomplete, "prefix of {end} bytes");
    }
  }

  #[test]
  fn a_proxy_header_from_an_untrusted_peer_is_refused_before_any_byte_is_read() {
    let router = router(RoutingMode::ProxyProtocol, true);
    assert_eq!(router.decide(stranger(), b""), Parse::Invalid(Refusal::UntrustedProxy { peer: stranger().ip() }));
  }

  #[test]
  fn garbage_instead_of_a_proxy_header_is_refused() {
    let router = router(RoutingMode::ProxyProtocol, true);
    assert!(matches!(
      router.decide(proxy(), b"GET / HTTP/1.1\r\n"),
      Parse::Invalid(Refusal::InvalidProxyHeader { .. })
    ));
  }

  #[test]
  fn a_local_proxy_header_routes_by_the_proxy_itself() {
    let router = router(RoutingMode::ProxyProtocol, true);
    let mut local = crate::core::parsers::proxy_protocol::V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    let Parse::Complete(decision) = router.decide(proxy(), &local) else { panic!() };
    assert_eq!((decision.client, decision.consume), (None, 16));
    assert_eq!(decision.route, router.route_by_ip(proxy().ip()));
  }

  #[test]
  fn x_forwarded_for_from_a_trusted_proxy_routes_by_the_rightmost_untrusted_address() {
    let router = router(RoutingMode::Header(ForwardingHeader::AddressList("x-forwarded-for".into())), false);
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.7, 127.0.0.1\r\n\r\n";
    let Parse::Complete(decision) = router.decide(proxy(), head) else { panic!() };
    assert_eq!(decision.route, router.route_by_ip("198.51.100.7".parse().unwrap()));
    assert_eq!(decision.consume, 0, "header mode never consumes");
    for end in 0..head.len() {
      assert_eq!(router.decide(proxy(), &head[..end]), Parse::Incomplete, "prefix of {end} bytes");
    }
  }

  #[test]
  fn a_forwarding_header_from_an_untrusted_peer_is_ignored() {
    let router = router(RoutingMode::Header(ForwardingHeader::AddressList("x-forwarded-for".into())), false);
    let head = b"GET / HTTP/1.1\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n";
    let Parse::Complete(decision) = router.decide(stranger(), head) else { panic!() };
    assert_eq!(decision.route, router.route_by_ip(stranger().ip()));
  }

  #[test]
  fn a_forwarding_header_after_hundreds_of_other_headers_is_still_found() {
    let router = router(RoutingMode::Header(ForwardingHeader::AddressList("x-forwarded-for".into())), false);
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..300 {
      head.extend_from_slice(format!("x-filler-{i}: 1\r\n").as_bytes());
    }
    head.extend_from_slice(b"X-Forwarded-For: 198.51.100.7\r\n\r\n");
    let Parse::Complete(decision) = router.decide(proxy(), &head) else { panic!() };
    assert_eq!(decision.route, router.route_by_ip("198.51.100.7".parse().unwrap()));
  }

  #[test]
  fn rfc_7239_forwarded_routes_by_its_for_parameter() {
    let router = router(RoutingMode::Header(ForwardingHeader::Forwarded), false);
    let head = b"GET / HTTP/1.1\r\nForwarded: for=\"[2001:db8::7]:4711\";proto=https\r\n\r\n";
    let Parse::Complete(decision) = router.decide(proxy(), head) else { panic!() };
    assert_eq!(decision.route, router.route_by_ip("2001:db8::7".parse().unwrap()));
  }

  #[test]
  fn a_missing_header_falls_back_to_the_peer_or_is_refused_as_configured() {
    let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let lenient = router(RoutingMode::Header(ForwardingHeader::AddressList("x-real-ip".into())), true);
    let Parse::Complete(decision) = lenient.decide(proxy(), head) else { panic!() };
    assert_eq!(decision.route, lenient.route_by_ip(proxy().ip()));
    let strict = router(RoutingMode::Header(ForwardingHeader::AddressList("x-real-ip".into())), false);
    assert_eq!(strict.decide(proxy(), head), Parse::Invalid(Refusal::MissingHeader { peer: proxy().ip() }));
  }

  #[test]
  fn sid_mode_reads_only_the_request_line() {
    let router = router(RoutingMode::Sid, true);
    let polling = b"GET /socket.io/?EIO=4&transport=polling&sid=Zm9v_bar-123 HTTP/1.1\r\n";
    let Parse::Complete(decision) = router.decide(stranger(), polling) else { panic!() };
    assert_eq!(decision.route, Route::Session(b"Zm9v_bar-123"[..].into()));
    let handshake = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nReferer: http://x/?sid=evil\r\n";
    let Parse::Complete(decision) = router.decide(stranger(), handshake) else { panic!() };
    assert_eq!(decision.route, Route::NewSession { handshake: true });
    let plain = b"GET /health HTTP/1.1\r\n";
    let Parse::Complete(decision) = router.decide(stranger(), plain) else { panic!() };
    assert_eq!(decision.route, Route::NewSession { handshake: false });
    assert_eq!(router.decide(stranger(), b"GET /socket.io/?sid=abc"), Parse::Incomplete);
  }

  #[test]
  fn ip_mode_decides_without_reading() {
    let router = router(RoutingMode::Ip, true);
    assert!(!router.peeks());
    assert!(matches!(router.decide(stranger(), b""), Parse::Complete(_)));
  }
}
