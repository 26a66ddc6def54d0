//! A client connection on its way to a worker, and the one way the primary
//! refuses one.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// What the primary holds of an accepted connection until a worker has it
/// (the ledger's payload; its route travels beside it).
pub struct Connection {
  pub fd: OwnedFd,
  /// The client a PROXY header named, for the worker to report as the
  /// socket's remote address.
  pub client: Option<SocketAddr>,
}

/// Makes the close that follows send a reset (`SO_LINGER` 0) instead of a
/// FIN: the client learns at once that it was refused, and no `TIME_WAIT` is
/// left in the primary.
pub fn arm_reset(socket: impl AsFd) {
  let _ = socket2::SockRef::from(&socket.as_fd()).set_linger(Some(Duration::ZERO));
}

/// Closes a connection with a reset.
pub fn reset(fd: OwnedFd) {
  arm_reset(&fd);
  drop(fd);
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::io::{ErrorKind, Read};
  use std::net::{TcpListener, TcpStream};

  #[test]
  fn a_reset_connection_is_seen_as_reset_by_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    reset(OwnedFd::from(accepted));
    let error = client.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
  }
}
