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

/// What a client is told when no worker exists to serve it.
pub const UNAVAILABLE_RESPONSE: &[u8] =
  b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

/// Answers `503 Service Unavailable` (HTTP routing modes: the request line
/// was read) and closes. What the client sent is read first: closing with
/// unread bytes would reset the connection before the client reads the
/// answer. Never waits: the answer fits in an empty send buffer, and a
/// client that sent more than fits in the receive buffer is reset.
pub fn answer_unavailable(fd: OwnedFd) {
  let socket = socket2::SockRef::from(&fd);
  let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
  while matches!(socket.recv_with_flags(&mut scratch, libc::MSG_DONTWAIT), Ok(read) if read > 0) {}
  if socket.send_with_flags(UNAVAILABLE_RESPONSE, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL).is_ok() {
    let _ = socket.shutdown(std::net::Shutdown::Write);
    drop(fd);
  } else {
    reset(fd);
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::io::{ErrorKind, Read};
  use std::net::{TcpListener, TcpStream};

  #[test]
  fn an_unavailable_answer_reaches_the_client_whole_before_the_close() {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (accepted, _) = listener.accept().unwrap();
    accepted.set_nonblocking(true).unwrap();
    // The request is waiting unread, as after a peek.
    std::thread::sleep(std::time::Duration::from_millis(20));
    answer_unavailable(OwnedFd::from(accepted));
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).expect("a clean close, not a reset");
    assert_eq!(answer, UNAVAILABLE_RESPONSE);
  }

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
