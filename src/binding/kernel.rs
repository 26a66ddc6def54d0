//! `ReuseportGroup`: the listening sockets of kernel-steered routing.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use napi_derive::napi;
use socket2::Socket;

use super::error::{js_error, ErrorCode};
use super::listen::{inherited_socket_error, AddressInfo, Listen, ListenSpec};
use crate::channel;
use crate::primary::with_default_host_fallback;
use crate::reuseport;

/// One listening socket per slot, in one `SO_REUSEPORT` group steered by
/// source address. The primary keeps them all open; each worker is given its
/// slot's socket.
#[napi]
pub struct ReuseportGroup {
  sockets: Vec<Socket>,
  address: SocketAddr,
}

#[napi]
impl ReuseportGroup {
  /// Binds the group, or adopts the one in `listen.adopt` (a takeover), or
  /// throws `ERR_STICKY_KERNEL_UNSUPPORTED` (the caller falls back to the
  /// accept loop) or the errno of a listen failure.
  #[napi(constructor)]
  pub fn new(listen: ListenSpec) -> napi::Result<Self, ErrorCode> {
    // Taken first, so they are closed whatever fails below.
    let adopted = listen.adopted()?;
    let Listen { host, host_is_default, port, backlog, slots, seed } = listen.check()?;
    if let Some(fds) = adopted {
      if fds.len() != usize::from(slots) {
        return Err(inherited_socket_error(format!(
          "a kernel-steered group of {} sockets for {slots} workers",
          fds.len()
        )));
      }
      let sockets = reuseport::adopt_group(fds).map_err(inherited_socket_error)?;
      let address = sockets[0].local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(SocketAddr::new(host, port));
      return Ok(ReuseportGroup { sockets, address });
    }
    if super::injected_fault().as_deref() == Some("kernel-unsupported") {
      return Err(js_error("ERR_STICKY_KERNEL_UNSUPPORTED", "kernel steering refused (fault injection)"));
    }
    // The BPF program hashes 32-bit words: fold the seed.
    let seed = (seed ^ (seed >> 32)) as u32;
    let sockets = with_default_host_fallback(host, port, host_is_default, |address| {
      reuseport::bind_group(address, backlog, slots, seed)
    })
    .map_err(|error| match error.source.raw_os_error() {
      Some(libc::EADDRINUSE) | Some(libc::EACCES) | Some(libc::EADDRNOTAVAIL) => {
        js_error(error.code(), error.to_string())
      }
      _ => js_error(
        "ERR_STICKY_KERNEL_UNSUPPORTED",
        format!("kernel steering (SO_REUSEPORT with a classic BPF program) is not available here: {}", error.source),
      ),
    })?;
    let fallback_address = SocketAddr::new(host, port);
    let bound = sockets[0].local_addr().ok().and_then(|a| a.as_socket()).unwrap_or(fallback_address);
    Ok(ReuseportGroup { sockets, address: bound })
  }

  #[napi]
  pub fn address(&self) -> AddressInfo {
    AddressInfo::from(self.address)
  }

  /// The listening fd of `slot`, still owned by the group: pass it to the
  /// worker's stdio at fork, do not close it.
  #[napi]
  pub fn fd(&self, slot: u32) -> napi::Result<i32, ErrorCode> {
    self
      .sockets
      .get(slot as usize)
      .map(|socket| socket.as_raw_fd())
      .ok_or_else(|| js_error("ERR_STICKY_INVALID_SLOT", format!("slot {slot} is out of range")))
  }

  /// Closes every socket of the group (connections still queued are reset).
  #[napi]
  pub fn close(&mut self) {
    self.sockets.clear();
  }
}

/// Makes an inherited fd close-on-exec (a worker's listening socket, so the
/// worker's own children never inherit it).
#[napi]
pub fn claim_listening_fd(fd: i32) -> napi::Result<(), ErrorCode> {
  channel::set_cloexec(fd).map_err(|error| js_error("ERR_STICKY_NO_CHANNEL", format!("fd {fd}: {error}")))
}
