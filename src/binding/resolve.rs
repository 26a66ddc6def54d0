//! `resolveHost`: a listen host name to the address `net.Server#listen`
//! would bind, before `listen()` returns, so the primary can bind and fork
//! its workers (kernel steering hands each its socket at fork) while the
//! caller is still in `listen()`.
//!
//! Node resolves a listen host with `dns.lookup`: `getaddrinfo` on a thread,
//! any family, the first answer. This is the same call on the calling
//! thread. A listen host is one of the machine's own names (`localhost`, its
//! host name), which `/etc/hosts` or the local resolver answers at once; a
//! name that needs a remote server holds the caller as long as the system
//! resolver takes (its timeout), once.

use std::net::SocketAddr;

use napi_derive::napi;

use super::error::{Result, StickyError};
use super::listen::family_name;

/// The first address of a host, as `dns.lookup(host)` gives it.
#[napi(object)]
#[derive(Debug)]
pub struct ResolvedHost {
  pub address: String,
  /// `'IPv4'` or `'IPv6'`.
  pub family: String,
}

/// Resolves `host` with the system resolver (`getaddrinfo`), as
/// `dns.lookup(host)` does, and throws as it reports failures: `code`
/// `ENOTFOUND` for a name that does not exist, `EAI_AGAIN` for a temporary
/// failure, ...
#[napi]
pub fn resolve_host(host: String) -> Result<ResolvedHost> {
  let hints = dns_lookup::AddrInfoHints { socktype: libc::SOCK_STREAM, ..dns_lookup::AddrInfoHints::default() };
  let first: Option<SocketAddr> = dns_lookup::getaddrinfo(Some(&host), None, Some(hints))
    .map_err(|error| StickyError::Resolve { code: lookup_error_code(&error), host: host.clone() })?
    .filter_map(|entry| entry.ok())
    .map(|entry| entry.sockaddr)
    .next();
  let address = first.ok_or(StickyError::Resolve { code: "ENOTFOUND", host })?;
  Ok(ResolvedHost { address: address.ip().to_string(), family: family_name(address).into() })
}

/// The `code` Node's `dns.lookup` gives the same failure (it maps both "no
/// such name" and "no data" to `ENOTFOUND`).
fn lookup_error_code(error: &dns_lookup::LookupError) -> &'static str {
  use dns_lookup::LookupErrorKind::*;
  match error.kind() {
    NoName | NoData => "ENOTFOUND",
    Again => "EAI_AGAIN",
    Fail => "EAI_FAIL",
    Family => "EAI_FAMILY",
    Memory => "EAI_MEMORY",
    Service => "EAI_SERVICE",
    Socktype => "EAI_SOCKTYPE",
    Badflags => "EAI_BADFLAGS",
    _ => "EAI_SYSTEM",
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn localhost_resolves_to_a_loopback_address() {
    let resolved = resolve_host("localhost".into()).unwrap();
    let address: std::net::IpAddr = resolved.address.parse().unwrap();
    assert!(address.is_loopback(), "{}", resolved.address);
  }

  #[test]
  fn a_name_that_does_not_exist_is_enotfound_as_node_says() {
    let error = resolve_host("no-such-host.invalid".into()).unwrap_err();
    assert!(matches!(error.status.as_ref(), "ENOTFOUND" | "EAI_AGAIN"), "{}", error.status.as_ref());
    assert_eq!(error.reason, "getaddrinfo ENOTFOUND no-such-host.invalid".replace("ENOTFOUND", error.status.as_ref()));
  }
}
