//! The public listening socket: bound here, or adopted already listening
//! (from systemd socket activation, or from the primary this one takes over).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
pub struct ListenError {
  pub address: SocketAddr,
  pub syscall: &'static str,
  #[source]
  pub source: io::Error,
}

impl ListenError {
  /// The errno name Node uses for the same failure (`EADDRINUSE`, `EACCES`, ...).
  pub fn code(&self) -> &'static str {
    errno_name(&self.source)
  }
}

/// Binds and listens, the way `net.Server#listen` does: `SO_REUSEADDR`, and an
/// unspecified IPv6 host (`::`) is dual-stack so IPv4 clients connect too
/// (unless `ipv6_only`). When the host was left at its default and IPv6 is
/// unavailable, falls back to `0.0.0.0` as Node does.
pub fn bind_listener(
  host: IpAddr,
  port: u16,
  backlog: i32,
  host_is_default: bool,
  ipv6_only: bool,
) -> Result<Socket, ListenError> {
  with_default_host_fallback(host, port, host_is_default, |address| bind_exact(address, backlog, ipv6_only))
}

/// Binds with `bind` at `host`, or, when the host was left at its default
/// `::` and IPv6 is unavailable here, at `0.0.0.0` as Node does.
pub fn with_default_host_fallback<T>(
  host: IpAddr,
  port: u16,
  host_is_default: bool,
  mut bind: impl FnMut(SocketAddr) -> Result<T, ListenError>,
) -> Result<T, ListenError> {
  match bind(SocketAddr::new(host, port)) {
    Err(error)
      if host_is_default
        && host.is_ipv6()
        && matches!(error.source.raw_os_error(), Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)) =>
    {
      bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
    }
    other => other,
  }
}

fn bind_exact(address: SocketAddr, backlog: i32, ipv6_only: bool) -> Result<Socket, ListenError> {
  let socket = listening_socket(address, backlog, false, ipv6_only)?;
  socket.set_nonblocking(true).map_err(|source| ListenError { address, syscall: "fcntl", source })?;
  Ok(socket)
}

/// A TCP socket bound to `address` and listening, set up as
/// `net.Server#listen` does: `SO_REUSEADDR`, and an unspecified IPv6 address
/// (`::`) dual-stack unless `ipv6_only`. With `reuse_port`, a member of an
/// `SO_REUSEPORT` group (kernel steering binds one per slot).
pub fn listening_socket(
  address: SocketAddr,
  backlog: i32,
  reuse_port: bool,
  ipv6_only: bool,
) -> Result<Socket, ListenError> {
  let socket = bound_socket(address, reuse_port, ipv6_only)?;
  socket.listen(backlog).map_err(|source| ListenError { address, syscall: "listen", source })?;
  Ok(socket)
}

/// A TCP socket bound to `address` as [`listening_socket`] binds it, not yet
/// listening.
pub fn bound_socket(address: SocketAddr, reuse_port: bool, ipv6_only: bool) -> Result<Socket, ListenError> {
  let fail = |syscall: &'static str| move |source: io::Error| ListenError { address, syscall, source };
  let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP)).map_err(fail("socket"))?;
  // As libuv does for Node: IPV6_V6ONLY when asked (`ipv6Only`), else `::` is dual-stack.
  if address.is_ipv6() && (ipv6_only || address.ip().is_unspecified()) {
    socket.set_only_v6(ipv6_only).map_err(fail("setsockopt"))?;
  }
  socket.set_reuse_address(true).map_err(fail("setsockopt"))?;
  if reuse_port {
    socket.set_reuse_port(true).map_err(fail("setsockopt"))?;
  }
  socket.bind(&address.into()).map_err(fail("bind"))?;
  Ok(socket)
}

/// What a descriptor is, as far as listening goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFacts {
  /// Its bound address, when it is an IPv4 or IPv6 socket.
  pub local: Option<SocketAddr>,
  /// A TCP socket (`SOCK_STREAM` over IPv4 or IPv6).
  pub tcp: bool,
  /// `listen` was called on it.
  pub listening: bool,
  /// `SO_REUSEPORT` is set (a member of a kernel-steered group).
  pub reuse_port: bool,
}

/// Looks at a descriptor without changing it; an error when it is not a socket.
pub fn socket_facts(fd: BorrowedFd<'_>) -> io::Result<SocketFacts> {
  let socket = SockRef::from(&fd);
  let kind = socket.r#type()?;
  let local = socket.local_addr()?.as_socket();
  let protocol_is_tcp = socket.protocol().ok().flatten().is_none_or(|protocol| protocol == Protocol::TCP);
  Ok(SocketFacts {
    local,
    tcp: local.is_some() && kind == Type::STREAM && protocol_is_tcp,
    listening: accepts_connections(fd)?,
    reuse_port: socket.reuse_port()?,
  })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn accepts_connections(fd: BorrowedFd<'_>) -> io::Result<bool> {
  Ok(nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::AcceptConn)?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn accepts_connections(_fd: BorrowedFd<'_>) -> io::Result<bool> {
  // No SO_ACCEPTCONN to ask: the first accept() tells.
  Ok(true)
}

/// Why an inherited descriptor cannot be the public listening socket.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
  #[error("fd {fd} is not a socket ({source})")]
  NotASocket { fd: i32, source: io::Error },
  #[error("fd {fd} is not a TCP socket over IPv4 or IPv6")]
  NotTcp { fd: i32 },
  #[error("fd {fd} ({address}) is not listening")]
  NotListening { fd: i32, address: SocketAddr },
  #[error("fd {fd}: {source}")]
  Io { fd: i32, source: io::Error },
}

/// Takes an already listening TCP socket as the public listening socket, the
/// way `bind_listener` would have made it: non-blocking and close-on-exec
/// (so no child inherits it by accident). The backlog stays as its creator
/// set it. On error the descriptor is closed.
pub fn adopt_listener(owned: OwnedFd) -> Result<Socket, AdoptError> {
  let fd = owned.as_raw_fd();
  let facts = socket_facts(owned.as_fd()).map_err(|source| AdoptError::NotASocket { fd, source })?;
  let address = match facts.local {
    Some(address) if facts.tcp => address,
    _ => return Err(AdoptError::NotTcp { fd }),
  };
  if !facts.listening {
    return Err(AdoptError::NotListening { fd, address });
  }
  let socket = Socket::from(owned);
  socket.set_nonblocking(true).map_err(|source| AdoptError::Io { fd, source })?;
  socket.set_cloexec(true).map_err(|source| AdoptError::Io { fd, source })?;
  Ok(socket)
}

/// The conventional name of an errno, as Node reports it in `error.code`.
pub fn errno_name(error: &io::Error) -> &'static str {
  match error.raw_os_error() {
    Some(libc::EADDRINUSE) => "EADDRINUSE",
    Some(libc::EADDRNOTAVAIL) => "EADDRNOTAVAIL",
    Some(libc::EACCES) => "EACCES",
    Some(libc::EPERM) => "EPERM",
    Some(libc::EAFNOSUPPORT) => "EAFNOSUPPORT",
    Some(libc::EINVAL) => "EINVAL",
    Some(libc::EMFILE) => "EMFILE",
    Some(libc::ENFILE) => "ENFILE",
    Some(libc::ENOBUFS) => "ENOBUFS",
    Some(libc::ENOMEM) => "ENOMEM",
    Some(libc::EPIPE) => "EPIPE",
    Some(libc::ECONNRESET) => "ECONNRESET",
    Some(libc::ECONNABORTED) => "ECONNABORTED",
    _ => "EUNKNOWN",
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_port_in_use_is_reported_as_eaddrinuse() {
    let first = bind_listener(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 16, false, false).unwrap();
    let port = first.local_addr().unwrap().as_socket().unwrap().port();
    let error = bind_listener(IpAddr::V4(Ipv4Addr::LOCALHOST), port, 16, false, false).unwrap_err();
    assert_eq!(error.code(), "EADDRINUSE");
    assert_eq!(error.syscall, "bind");
    assert!(error.to_string().contains(&port.to_string()));
  }

  #[test]
  fn a_listening_socket_is_adopted_and_accepts_its_clients() {
    let original = bind_listener(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 16, false, false).unwrap();
    let port = original.local_addr().unwrap().as_socket().unwrap().port();
    let adopted = adopt_listener(OwnedFd::from(original.try_clone().unwrap())).unwrap();
    drop(original);
    let _client = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    adopted.set_nonblocking(false).unwrap();
    adopted.accept().expect("the adopted socket accepts");
  }

  #[test]
  fn sockets_that_cannot_listen_for_clients_are_refused_with_why() {
    let bound_only = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    bound_only.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into()).unwrap();
    assert!(matches!(adopt_listener(OwnedFd::from(bound_only)), Err(AdoptError::NotListening { .. })));
    let udp = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    udp.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into()).unwrap();
    assert!(matches!(adopt_listener(OwnedFd::from(udp)), Err(AdoptError::NotTcp { .. })));
    let (unix, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    assert!(matches!(adopt_listener(OwnedFd::from(unix)), Err(AdoptError::NotTcp { .. })));
    let file = std::fs::File::open("/dev/null").unwrap();
    assert!(matches!(adopt_listener(OwnedFd::from(file)), Err(AdoptError::NotASocket { .. })));
  }

  #[test]
  fn the_default_host_accepts_ipv4_clients() {
    let listener = bind_listener("::".parse().unwrap(), 0, 16, true, false).unwrap();
    let port = listener.local_addr().unwrap().as_socket().unwrap().port();
    std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("an IPv4 client connects to '::'");
  }

  #[test]
  fn ipv6_only_refuses_ipv4_clients_on_the_unspecified_address() {
    let Ok(listener) = bind_listener("::".parse().unwrap(), 0, 16, false, true) else { return };
    let port = listener.local_addr().unwrap().as_socket().unwrap().port();
    assert!(std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(), "IPv4 refused");
    std::net::TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port)).expect("IPv6 accepted");
  }
}
