//! `ListenSpec`: where to listen, shared by the accept loop (`Balancer`) and
//! the kernel-steered group (`ReuseportGroup`), which take how from
//! `ListenConfig`.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd};

use napi_derive::napi;

use super::error::StickyError;
use super::options::ListenSettings;

/// Where to listen.
#[napi(object)]
pub struct ListenSpec {
  /// An IP literal (`lib/primary/socket-source.js` resolves host names first).
  pub address: String,
  pub port: u32,
  /// Listening sockets to use instead of binding (systemd socket activation,
  /// or a takeover): one for the accept loop, one per slot in slot order for
  /// a kernel-steered group. They become the listener's, and are closed if it
  /// cannot start.
  pub adopt: Option<Vec<i32>>,
  /// Accept IPv6 clients only on `::` (`listen({ ipv6Only: true })`):
  /// without it `::` is dual-stack, as in Node.
  pub ipv6_only: Option<bool>,
}

/// Where to listen and the options that say how, in Rust types.
pub struct Listen {
  pub host: IpAddr,
  pub host_is_default: bool,
  pub ipv6_only: bool,
  pub port: u16,
  pub backlog: i32,
  pub slots: u16,
  pub seed: u64,
}

impl ListenSpec {
  /// The spec in Rust types, with the settings `resolveOptions` made.
  pub fn check(&self, settings: &ListenSettings) -> Result<Listen, StickyError> {
    let host = self.address.parse().map_err(|_| StickyError::InvalidOption {
      name: "host",
      expected: "an IP address".into(),
      got: format!("{:?}", self.address),
    })?;
    let port = u16::try_from(self.port).map_err(|_| StickyError::InvalidPort { got: self.port.to_string() })?;
    let ListenSettings { host_is_default, backlog, slots, seed } = *settings;
    let ipv6_only = self.ipv6_only.unwrap_or(false);
    Ok(Listen { host, host_is_default, ipv6_only, port, backlog, slots, seed })
  }

  /// Takes ownership of the descriptors in `adopt`, if any.
  pub fn adopted(&self) -> Result<Option<Vec<OwnedFd>>, StickyError> {
    let Some(fds) = &self.adopt else { return Ok(None) };
    if let Some(&fd) = fds.iter().find(|&&fd| fd < 0) {
      return Err(StickyError::NotADescriptor { fd });
    }
    // SAFETY: the primary's JavaScript (`lib/primary/socket-source.js`)
    // passes descriptors it owns and never touches again: those
    // `TakeoverClient::take_sockets` released to it, or the one systemd
    // passed that it chose. Each becomes owned exactly once, here. An
    // integer from JavaScript becomes a descriptor only this way.
    Ok(Some(fds.iter().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect()))
  }
}

/// Where a socket listens, as `net.Server#address()` reports it.
#[napi(object)]
pub struct AddressInfo {
  pub address: String,
  /// `'IPv4'` or `'IPv6'`.
  pub family: String,
  pub port: u32,
}

impl From<SocketAddr> for AddressInfo {
  fn from(address: SocketAddr) -> Self {
    AddressInfo {
      address: address.ip().to_string(),
      family: family_name(address).into(),
      port: u32::from(address.port()),
    }
  }
}

/// `'IPv4'` or `'IPv6'`, as Node names address families.
pub fn family_name(address: SocketAddr) -> &'static str {
  if address.is_ipv4() {
    "IPv4"
  } else {
    "IPv6"
  }
}
