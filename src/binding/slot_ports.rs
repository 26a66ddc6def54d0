//! `SlotPortGroup`: one listening socket per slot, for a proxy in front that
//! routes each request itself (`slotPorts`).
//!
//! The proxy hashes or reads each request's key and sends it down a kept-alive
//! connection to the slot's port, so per-request stickiness costs the
//! product nothing per request. The primary holds every socket for the life
//! of the group, as it holds a kernel-steered group: a worker that dies or is
//! replaced leaves its slot's socket in place, and what arrives meanwhile
//! waits in that socket's queue for the next worker of the slot, which is
//! handed the same socket (`claim_listening_fd` in the worker).

use std::net::SocketAddr;

use napi_derive::napi;
use socket2::Socket;

use super::error::{Result, StickyError};
use super::listen::AddressInfo;
use super::options::{ListenConfig, ListenSettings, SlotPortSettings};
use super::slot_fd;
use crate::core::sessions::SID_TAG_SEPARATOR;
use crate::listener::listening_socket;

/// What separates a sid from the slot a worker appends to it behind slot
/// ports (`<sid>~<slot>`): unreserved in URLs (never percent-encoded), and
/// absent from engine.io's ids.
#[napi]
pub fn sid_tag_separator() -> String {
  SID_TAG_SEPARATOR.to_string()
}

#[napi]
pub struct SlotPortGroup {
  sockets: Vec<Socket>,
}

#[napi]
impl SlotPortGroup {
  /// Binds the slot ports `config` (from `resolveOptions`) asks for: one
  /// listening socket per slot on its host, slot `n` on the first port + `n`,
  /// or on a port the system picks. A primary that offers takeover binds them
  /// with `SO_REUSEPORT`, so that the primary taking over binds the same ports
  /// while this one drains. Throws `ERR_STICKY_INVALID_OPTION` when `config`
  /// has no slot ports, and the errno of a listen failure (`EADDRINUSE`, ...).
  #[napi(constructor)]
  pub fn new(config: &ListenConfig) -> Result<Self> {
    let Some(SlotPortSettings { host, first_port, share }) = config.slot_ports else {
      return Err(
        StickyError::InvalidOption { name: "slotPorts", expected: "true or a first port".into(), got: "false".into() }
          .into(),
      );
    };
    let ListenSettings { backlog, slots, .. } = config.listen;
    let mut sockets = Vec::with_capacity(usize::from(slots));
    for slot in 0..slots {
      // `resolveOptions` checked that the last port fits.
      let port = first_port.map_or(Some(0), |first| first.checked_add(slot));
      let port = port.ok_or(StickyError::SlotPortsOutOfRange {
        first: first_port.map_or(0, u32::from),
        workers: u32::from(slots),
      })?;
      let socket = listening_socket(SocketAddr::new(host, port), backlog, share && port != 0, false)
        .map_err(StickyError::Listen)?;
      sockets.push(socket);
    }
    Ok(SlotPortGroup { sockets })
  }

  /// Where each slot listens, in slot order.
  #[napi]
  pub fn addresses(&self) -> Vec<AddressInfo> {
    self
      .sockets
      .iter()
      .filter_map(|socket| socket.local_addr().ok().and_then(|address| address.as_socket()))
      .map(AddressInfo::from)
      .collect()
  }

  /// The listening fd of `slot`, still owned by the group: pass it to the
  /// worker's stdio at fork, do not close it.
  #[napi]
  pub fn fd(&self, slot: u32) -> Result<i32> {
    slot_fd(&self.sockets, slot)
  }

  /// Closes the primary's copies; each socket closes with its worker's last
  /// copy (the worker takes what is queued first).
  #[napi]
  pub fn close(&mut self) {
    self.sockets.clear();
  }
}
