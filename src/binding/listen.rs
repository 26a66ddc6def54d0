//! `ListenSpec`: where and how to listen, shared by the accept loop
//! (`Balancer`) and the kernel-steered group (`ReuseportGroup`).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd};

use napi_derive::napi;

use super::error::{js_error, ErrorCode};

/// Where and how to listen; `index.js` validates and fills defaults.
#[napi(object)]
pub struct ListenSpec {
  /// An IP literal (`index.js` resolves names first).
  pub host: String,
  /// True when the user did not choose the host: `::` may then fall back to `0.0.0.0`.
  pub host_is_default: bool,
  pub port: u32,
  pub backlog: i32,
  pub workers: u32,
  /// Decimal string of an unsigned 64-bit seed.
  pub seed: String,
  /// Listening sockets to use instead of binding (systemd socket activation,
  /// or a takeover): one for the accept loop, one per slot in slot order for
  /// a kernel-steered group. They become the listener's, and are closed if it
  /// cannot start.
  pub adopt: Option<Vec<i32>>,
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

/// A `ListenSpec` in Rust types.
pub struct Listen {
  pub host: IpAddr,
  pub host_is_default: bool,
  pub port: u16,
  pub backlog: i32,
  pub slots: u16,
  pub seed: u64,
}

impl ListenSpec {
  pub fn check(&self) -> napi::Result<Listen, ErrorCode> {
    let invalid = |message: String| js_error("ERR_STICKY_INVALID_OPTION", message);
    let host = self.host.parse().map_err(|_| invalid(format!("host {:?} is not an IP address", self.host)))?;
    let port = u16::try_from(self.port).map_err(|_| invalid(format!("port {} is out of range 0..65535", self.port)))?;
    let slots = u16::try_from(self.workers)
      .ok()
      .filter(|&n| n >= 1)
      .ok_or_else(|| invalid(format!("workers {} must be between 1 and 65535", self.workers)))?;
    let seed =
      self.seed.parse().map_err(|_| invalid(format!("seed {:?} is not an unsigned 64-bit integer", self.seed)))?;
    Ok(Listen { host, host_is_default: self.host_is_default, port, backlog: self.backlog, slots, seed })
  }

  /// Takes ownership of the descriptors in `adopt`, if any.
  pub fn adopted(&self) -> napi::Result<Option<Vec<OwnedFd>>, ErrorCode> {
    let Some(fds) = &self.adopt else { return Ok(None) };
    if let Some(bad) = fds.iter().find(|&&fd| fd < 0) {
      return Err(js_error("ERR_STICKY_INVALID_OPTION", format!("adopt: {bad} is not a file descriptor")));
    }
    // SAFETY: `index.js` passes descriptors it owns and never touches again:
    // those `TakeoverClient::take_sockets` released to it, or the one systemd
    // passed that it chose. Each becomes owned exactly once, here.
    Ok(Some(fds.iter().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect()))
  }
}

/// The error thrown when an adopted socket cannot serve.
pub fn inherited_socket_error(message: impl std::fmt::Display) -> napi::Error<ErrorCode> {
  js_error(
    "ERR_STICKY_INHERITED_SOCKET",
    format!("{message}: the socket given to this primary (systemd socket activation or a takeover) must be a listening TCP socket"),
  )
}
