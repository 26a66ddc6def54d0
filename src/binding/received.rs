//! `Connection`: a connection this worker received, as JavaScript gets it.
//! Both ways of receiving (`worker`'s thread, `loop_poll`'s poll handle on
//! the event loop) hand JavaScript this, so it sits below both.

use std::os::fd::IntoRawFd;

use napi_derive::napi;

use crate::worker::Delivered;

/// One connection for `lib/worker.js` to wrap in a `net.Socket`.
#[napi(object)]
pub struct Connection {
  pub fd: i32,
  pub remote_address: Option<String>,
  pub remote_port: Option<u32>,
  pub remote_family: Option<String>,
}

impl From<Delivered> for Connection {
  fn from(delivered: Delivered) -> Self {
    let (remote_address, remote_port, remote_family) = match delivered.client {
      Some(client) => (
        Some(client.ip().to_string()),
        Some(u32::from(client.port())),
        Some(if client.is_ipv4() { "IPv4".to_string() } else { "IPv6".to_string() }),
      ),
      None => (None, None, None),
    };
    Connection {
      // From here on the fd belongs to JavaScript (`net.Socket` closes it).
      fd: delivered.fd.into_raw_fd(),
      remote_address,
      remote_port,
      remote_family,
    }
  }
}
