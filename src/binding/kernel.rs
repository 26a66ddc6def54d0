//! `ReuseportGroup`: the listening sockets of kernel-steered routing.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};

use napi_derive::napi;
use socket2::{SockRef, Socket};

use super::error::{Result, StickyError};
use super::listen::{AddressInfo, Listen, ListenSpec};
use super::options::ResolvedOptions;
use crate::primary::{socket_facts, with_default_host_fallback};
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
  /// Binds the group with `options` (from `resolveOptions`: `workers`,
  /// `backlog`, `seed`), or adopts the one in `listen.adopt` (a takeover), or
  /// throws `ERR_STICKY_KERNEL_UNSUPPORTED` (the caller falls back to the
  /// accept loop) or the errno of a listen failure.
  #[napi(constructor)]
  pub fn new(listen: ListenSpec, options: ResolvedOptions) -> Result<Self> {
    // Taken first, so they are closed whatever fails below.
    let adopted = listen.adopted()?;
    let Listen { host, host_is_default, ipv6_only, port, backlog, slots, seed } = listen.check(&options)?;
    if let Some(fds) = adopted {
      if fds.len() != usize::from(slots) {
        return Err(StickyError::InheritedSocketCount { given: fds.len(), wanted: usize::from(slots) }.into());
      }
      let sockets = reuseport::adopt_group(fds).map_err(StickyError::from)?;
      return Ok(ReuseportGroup::of(sockets, SocketAddr::new(host, port)));
    }
    if super::injected_fault().as_deref() == Some("kernel-unsupported") {
      return Err(StickyError::KernelUnsupported { reason: "refused by fault injection".into() }.into());
    }
    // The BPF program hashes 32-bit words: fold the seed.
    let seed = (seed ^ (seed >> 32)) as u32;
    let sockets = with_default_host_fallback(host, port, host_is_default, |address| {
      reuseport::bind_group(address, backlog, slots, seed, ipv6_only)
    })
    .map_err(|error| match error.source.raw_os_error() {
      Some(libc::EADDRINUSE) | Some(libc::EACCES) | Some(libc::EADDRNOTAVAIL) => StickyError::Listen(error),
      _ => StickyError::KernelUnsupported { reason: error.to_string() },
    })?;
    Ok(ReuseportGroup::of(sockets, SocketAddr::new(host, port)))
  }

  fn of(sockets: Vec<Socket>, fallback_address: SocketAddr) -> Self {
    let bound = sockets.first().and_then(|socket| socket.local_addr().ok()).and_then(|address| address.as_socket());
    ReuseportGroup { sockets, address: bound.unwrap_or(fallback_address) }
  }

  #[napi]
  pub fn address(&self) -> AddressInfo {
    AddressInfo::from(self.address)
  }

  /// The listening fd of `slot`, still owned by the group: pass it to the
  /// worker's stdio at fork, do not close it.
  #[napi]
  pub fn fd(&self, slot: u32) -> Result<i32> {
    let slots = self.sockets.len();
    Ok(
      self
        .sockets
        .get(slot as usize)
        .map(|socket| socket.as_raw_fd())
        .ok_or(StickyError::InvalidSlot { slot, slots })?,
    )
  }

  /// Shutdown: every socket of the group stops taking new connections
  /// (their SYNs are dropped) while handshakes under way complete and what is
  /// queued stays for the workers (`reuseport::refuse_new_connections`).
  /// Returns false when the kernel refused the filter.
  #[napi]
  pub fn refuse_new_connections(&self) -> bool {
    self.sockets.iter().all(|socket| reuseport::refuse_new_connections(socket).is_ok())
  }

  /// Closes every socket of the group (connections still queued are reset).
  #[napi]
  pub fn close(&mut self) {
    self.sockets.clear();
  }
}

/// Claims the listening socket a kernel-mode worker inherited (fd `fd`): checks
/// that it is a listening TCP socket, and makes it close-on-exec so the
/// worker's own children never inherit it. Throws
/// `ERR_STICKY_NO_LISTENING_SOCKET` otherwise. Returns this worker's own
/// reference to the socket (a duplicate of `fd`, which the runtime's listener
/// owns), through which the worker takes what is queued when it closes.
#[napi]
pub fn claim_listening_fd(fd: i32) -> Result<ListeningSocketHold> {
  let not_listening = |why: String| StickyError::NotAListeningSocket { fd, why };
  if fd < 3 {
    return Err(not_listening("a standard stream".into()).into());
  }
  // SAFETY: the primary placed this descriptor in the worker (the env
  // variable naming it) and nothing else in this process uses it; it stays
  // open for this call. An integer from JavaScript becomes a descriptor only
  // this way; `socket_facts` fails on one that is not open.
  let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
  let facts = socket_facts(borrowed).map_err(|error| not_listening(error.to_string()))?;
  if !(facts.tcp && facts.listening) {
    return Err(not_listening("a socket, but not a listening TCP one".into()).into());
  }
  SockRef::from(&borrowed).set_cloexec(true).map_err(|error| not_listening(error.to_string()))?;
  // Close-on-exec too (F_DUPFD_CLOEXEC).
  let held = borrowed.try_clone_to_owned().map_err(|error| not_listening(error.to_string()))?;
  Ok(ListeningSocketHold { socket: Some(held) })
}

/// A kernel-mode worker's own reference to its slot's listening socket.
///
/// When the worker closes, the runtime's listener closes its descriptor; if
/// the primary has closed its copies (shutdown), the socket would close with
/// it, and the kernel would reset every connection still queued on it. This
/// reference keeps the socket open past that: `drain_and_close` then takes
/// what is queued and closes the socket in one step, with no JavaScript in
/// between, so that hardly any connection can arrive between the last look
/// at the queue and the close.
#[napi]
pub struct ListeningSocketHold {
  socket: Option<OwnedFd>,
}

#[napi]
impl ListeningSocketHold {
  /// Takes every connection queued now, without waiting; the socket stays
  /// open. Returns their descriptors (JavaScript's from here on).
  #[napi]
  pub fn drain(&self) -> Vec<i32> {
    self.socket.as_ref().map_or_else(Vec::new, |socket| into_raw(reuseport::drain_listener(socket.as_fd())))
  }

  /// Takes every connection queued now, then lets go of this reference (the
  /// socket closes unless the primary still holds it).
  #[napi]
  pub fn drain_and_close(&mut self) -> Vec<i32> {
    let taken = self.drain();
    self.socket = None;
    taken
  }
}

fn into_raw(connections: Vec<OwnedFd>) -> Vec<i32> {
  connections.into_iter().map(IntoRawFd::into_raw_fd).collect()
}
