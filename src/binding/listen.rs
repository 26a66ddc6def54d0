//! `ListenSpec`: where and how to listen, shared by the accept loop
//! (`Balancer`) and the kernel-steered group (`ReuseportGroup`).

use std::net::IpAddr;

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
}
