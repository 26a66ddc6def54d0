//! Binding the public listening socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

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
/// unspecified IPv6 host (`::`) is dual-stack so IPv4 clients connect too. When
/// the host was left at its default and IPv6 is unavailable, falls back to
/// `0.0.0.0` as Node does.
pub fn bind_listener(host: IpAddr, port: u16, backlog: i32, host_is_default: bool) -> Result<Socket, ListenError> {
  with_default_host_fallback(host, port, host_is_default, |address| bind_exact(address, backlog))
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

fn bind_exact(address: SocketAddr, backlog: i32) -> Result<Socket, ListenError> {
  let fail = |syscall: &'static str| move |source: io::Error| ListenError { address, syscall, source };
  let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP)).map_err(fail("socket"))?;
  if address.is_ipv6() && address.ip().is_unspecified() {
    socket.set_only_v6(false).map_err(fail("setsockopt"))?;
  }
  socket.set_reuse_address(true).map_err(fail("setsockopt"))?;
  socket.set_nonblocking(true).map_err(fail("fcntl"))?;
  socket.bind(&address.into()).map_err(fail("bind"))?;
  socket.listen(backlog).map_err(fail("listen"))?;
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
    let first = bind_listener(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 16, false).unwrap();
    let port = first.local_addr().unwrap().as_socket().unwrap().port();
    let error = bind_listener(IpAddr::V4(Ipv4Addr::LOCALHOST), port, 16, false).unwrap_err();
    assert_eq!(error.code(), "EADDRINUSE");
    assert_eq!(error.syscall, "bind");
    assert!(error.to_string().contains(&port.to_string()));
  }

  #[test]
  fn the_default_host_accepts_ipv4_clients() {
    let listener = bind_listener("::".parse().unwrap(), 0, 16, true).unwrap();
    let port = listener.local_addr().unwrap().as_socket().unwrap().port();
    std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("an IPv4 client connects to '::'");
  }
}
