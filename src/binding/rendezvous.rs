//! `RendezvousSocket`: where workers the user forks (`setupMaster`) ask for
//! their channel. The name comes from what the primary and its workers both
//! know (lib/rendezvous.js: the primary's pid and the user id), so a worker
//! finds it whatever the order of `cluster.fork()` and `setupMaster`. The
//! socket belongs to JavaScript, for the life of the setup, across the
//! primaries that listen one after another; each accept loop takes its own
//! reference while it runs.

use std::os::fd::OwnedFd;

use napi_derive::napi;

use super::error::{Result, StickyError};
use crate::primary::AllowedWorkers;

#[napi]
pub struct RendezvousSocket {
  socket: Option<OwnedFd>,
  /// Pids of the cluster's workers: only these may take a channel.
  allowed: AllowedWorkers,
}

#[napi]
impl RendezvousSocket {
  /// Listens on the abstract Unix socket `name`; `EADDRINUSE` when another
  /// process holds it.
  #[napi(constructor)]
  pub fn new(name: String) -> Result<Self> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
      let socket = crate::seqpacket::listen_abstract(name.as_bytes())
        .map_err(|source| StickyError::RendezvousListen { name, source })?;
      Ok(RendezvousSocket { socket: Some(socket), allowed: AllowedWorkers::default() })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
      let _ = name;
      Err(StickyError::Unsupported.into())
    }
  }

  /// Lets the worker process `pid` (forked by the user) take a channel.
  #[napi]
  pub fn allow_worker(&self, pid: u32) {
    self.allowed.allow(pid);
  }

  /// `pid` exited.
  #[napi]
  pub fn forget_worker(&self, pid: u32) {
    self.allowed.forget(pid);
  }

  /// Stops listening; the name is free once every accept loop that took a
  /// reference has closed too.
  #[napi]
  pub fn close(&mut self) {
    self.socket = None;
  }
}

impl RendezvousSocket {
  /// An accept loop's own reference to the socket, and who may connect.
  pub(super) fn for_accept_loop(&self) -> std::result::Result<(OwnedFd, AllowedWorkers), StickyError> {
    let socket = self.socket.as_ref().ok_or(StickyError::RendezvousClosed)?;
    let reference = socket.try_clone().map_err(StickyError::DuplicateRendezvous)?;
    Ok((reference, self.allowed.clone()))
  }
}
