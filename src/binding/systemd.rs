//! `systemdSockets`: the listening sockets systemd passed to this process.

use std::os::fd::BorrowedFd;

use napi_derive::napi;

use super::error::{Result, StickyError};
use super::listen::family_name;
use crate::core::systemd::passed_sockets;
use crate::listener::socket_facts;
use crate::seqpacket;

/// One descriptor systemd passed.
#[napi(object)]
pub struct InheritedSocket {
  pub fd: i32,
  /// Its `FileDescriptorName=`, when `LISTEN_FDNAMES` names every descriptor.
  pub name: Option<String>,
  /// A listening TCP socket (the only kind `listen` can use).
  pub listening_tcp: bool,
  pub address: Option<String>,
  pub family: Option<String>,
  pub port: Option<u32>,
}

/// The sockets passed to this process by `LISTEN_FDS` / `LISTEN_PID` /
/// `LISTEN_FDNAMES` (the values as found in the environment); `null` when
/// they are absent or meant for another process. Each passed descriptor is
/// made close-on-exec, as `sd_listen_fds` does, so no child inherits it
/// (Node already marks inherited descriptors so at start-up; this does not
/// rely on the runtime doing it).
#[napi]
pub fn systemd_sockets(
  listen_fds: Option<String>,
  listen_pid: Option<String>,
  listen_fdnames: Option<String>,
) -> Result<Option<Vec<InheritedSocket>>> {
  let passed =
    passed_sockets(listen_fds.as_deref(), listen_pid.as_deref(), listen_fdnames.as_deref(), std::process::id())
      .map_err(StickyError::from)?;
  let Some(passed) = passed else { return Ok(None) };
  Ok(Some(
    passed
      .into_iter()
      .map(|socket| {
        // SAFETY: systemd passed this process (LISTEN_PID) the descriptors
        // LISTEN_FDS counts, from 3 up; nothing here closes them. One that is
        // not open fails fcntl (EBADF) and is only reported as unusable.
        let passed = unsafe { BorrowedFd::borrow_raw(socket.fd) };
        let facts = seqpacket::set_cloexec(passed).ok().and_then(|()| socket_facts(passed).ok());
        let local = facts.and_then(|facts| facts.local);
        InheritedSocket {
          fd: socket.fd,
          name: socket.name,
          listening_tcp: facts.is_some_and(|facts| facts.tcp && facts.listening),
          address: local.map(|address| address.ip().to_string()),
          family: local.map(|address| family_name(address).into()),
          port: local.map(|address| u32::from(address.port())),
        }
      })
      .collect(),
  ))
}
