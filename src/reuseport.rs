//! Kernel-steered routing: an `SO_REUSEPORT` group with one listening socket
//! per worker slot and a classic BPF program that picks the socket by the
//! client's source address. The primary is out of the per-connection path.
//!
//! The programs (which socket a client gets, and the filter that refuses new
//! connections at shutdown) are built in [`crate::core::steering`], pure and
//! mirrored by a reference function; this module is the socket I/O: binding
//! and adopting the group, attaching the programs, reading the queues. The
//! primary keeps every socket of the group open for the life of the group: a
//! worker that dies leaves its socket in place, so no other slot's index
//! moves (the kernel fills a gap by moving the last socket), and connections
//! for its slot wait in that socket's queue until the respawned worker,
//! handed the same socket, accepts them.

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{SockRef, Socket};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::core::steering::{refusing_program, steering_program, Instruction};
use crate::listener::{adopt_listener, bound_socket, listening_socket, AdoptError, ListenError};

/// Binds `slots` listening sockets on the same address and port (`port` 0:
/// the first picks one) in one `SO_REUSEPORT` group, in slot order, and
/// attaches the steering program. An error here other than the address's own
/// (in use, not available, not allowed) means the kernel refuses steering
/// (old kernel, seccomp): the caller falls back to the accept loop.
pub fn bind_group(
  address: SocketAddr,
  backlog: i32,
  slots: u16,
  seed: u32,
  ipv6_only: bool,
) -> Result<Vec<Socket>, ListenError> {
  // SO_REUSEPORT lets any socket of this user join a group on the port: a
  // port another process already serves (a second copy of this app, say)
  // would be shared silently instead of failing with EADDRINUSE, as it does
  // for the accept loop. A socket without SO_REUSEPORT binds first, to find
  // out; it never listens, so no client can reach it.
  if address.port() != 0 {
    drop(bound_socket(address, false, ipv6_only)?);
  }
  let mut sockets: Vec<Socket> = Vec::with_capacity(usize::from(slots));
  let mut port = address.port();
  for _ in 0..slots {
    let socket = listening_socket(SocketAddr::new(address.ip(), port), backlog, true, ipv6_only)?;
    port = socket.local_addr().ok().and_then(|bound| bound.as_socket()).map_or(port, |bound| bound.port());
    sockets.push(socket);
  }
  let first = sockets.first().ok_or_else(|| ListenError {
    address,
    syscall: "bind",
    source: io::Error::new(io::ErrorKind::InvalidInput, "a group needs at least one slot"),
  })?;
  attach_steering(first, &steering_program(u32::from(slots), seed)).map_err(|source| ListenError {
    address: SocketAddr::new(address.ip(), port),
    syscall: "setsockopt",
    source,
  })?;
  Ok(sockets)
}

/// Stops `socket` (listening) from taking new connections while it stays
/// open: from now on a client's SYN is dropped (the client sends it again a
/// second later, and is refused once the socket is closed, or served by a
/// process listening by then), while handshakes under way complete and
/// queue as usual. What a shutdown does before the last look at the queue,
/// so that no connection can arrive between that look and the close (a
/// connection queued or half-open when a listening socket closes is reset).
pub fn refuse_new_connections(socket: &Socket) -> io::Result<()> {
  let program: Vec<socket2::SockFilter> =
    refusing_program().iter().map(|op| socket2::SockFilter::new(op.code, op.jt, op.jf, op.k)).collect();
  socket.attach_filter(&program)
}

/// Attaches `program` to the `SO_REUSEPORT` group of `socket`.
fn attach_steering(socket: &Socket, program: &[Instruction]) -> io::Result<()> {
  let len = u16::try_from(program.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
  // `Instruction` has the kernel's `sock_filter` layout (checked by a test);
  // the kernel copies the program during the call, while `program` lives.
  let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut() };
  setsockopt(socket, sockopt::AttachReusePortCbpf, &fprog)?;
  Ok(())
}

/// Takes every connection queued on a worker's listening socket now, without
/// waiting: what a worker does just before it closes its copy, so that the
/// connections the kernel accepted for it are served, not reset, when the
/// socket closes with it (the primary closes its own copies first when it
/// shuts down). Stops at the first error other than `EINTR`/`ECONNABORTED`
/// (the queue is empty: `EAGAIN`; out of descriptors: the rest are reset).
pub fn drain_listener(listener: BorrowedFd<'_>) -> Vec<OwnedFd> {
  let mut taken = Vec::new();
  loop {
    // Never waits, whether the listener is blocking or not: accept only what
    // is queued now.
    let mut ready = [PollFd::new(listener, PollFlags::POLLIN)];
    match nix::poll::poll(&mut ready, PollTimeout::ZERO) {
      Ok(count) if count > 0 => {}
      Err(nix::errno::Errno::EINTR) => continue,
      _ => return taken,
    }
    match SockRef::from(&listener).accept() {
      Ok((connection, _)) => taken.push(OwnedFd::from(connection)),
      Err(error) if matches!(error.raw_os_error(), Some(libc::EINTR) | Some(libc::ECONNABORTED)) => continue,
      Err(_) => return taken,
    }
  }
}

/// A listening socket's accept queue, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptQueue {
  /// Connections whose handshake completed, waiting for `accept`.
  pub queued: u32,
  /// The most it holds: the backlog, capped by `net.core.somaxconn`.
  pub limit: u32,
}

/// The accept queue of a listening TCP socket (`TCP_INFO`: for a listener
/// the kernel reports the queue's length in `tcpi_unacked` and its limit in
/// `tcpi_sacked`). An error when `socket` is not a listening TCP socket.
pub fn accept_queue(socket: BorrowedFd<'_>) -> io::Result<AcceptQueue> {
  const TCP_LISTEN: u8 = 10;
  // SAFETY: `tcp_info` is plain integers, valid when zeroed.
  let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
  let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
  // SAFETY: a getsockopt into a buffer of `len` bytes that the kernel fills
  // at most; `socket` is open for the call.
  let status = unsafe {
    libc::getsockopt(
      socket.as_raw_fd(),
      libc::IPPROTO_TCP,
      libc::TCP_INFO,
      std::ptr::addr_of_mut!(info).cast(),
      &mut len,
    )
  };
  if status != 0 {
    return Err(io::Error::last_os_error());
  }
  if info.tcpi_state != TCP_LISTEN {
    return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a listening TCP socket"));
  }
  Ok(AcceptQueue { queued: info.tcpi_unacked, limit: info.tcpi_sacked })
}

/// Packets the kernel dropped at `socket` since it was created (`SO_MEMINFO`
/// `SK_MEMINFO_DROPS`): for a listening socket, the connection requests and
/// handshakes it dropped, its accept queue being full (each also counted in
/// the host's `ListenOverflows` and `ListenDrops`) or for want of memory.
pub fn socket_drops(socket: BorrowedFd<'_>) -> io::Result<u32> {
  // SO_MEMINFO in asm-generic/socket.h (x86-64 and AArch64, the targets).
  const SO_MEMINFO: libc::c_int = 55;
  let mut meminfo = [0u32; 16];
  let mut len = std::mem::size_of_val(&meminfo) as libc::socklen_t;
  // SAFETY: a getsockopt into a buffer of `len` bytes that the kernel fills
  // at most; `socket` is open for the call.
  let status = unsafe {
    libc::getsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, SO_MEMINFO, meminfo.as_mut_ptr().cast(), &mut len)
  };
  if status != 0 {
    return Err(io::Error::last_os_error());
  }
  let drops = libc::SK_MEMINFO_DROPS as usize;
  if (len as usize) < (drops + 1) * std::mem::size_of::<u32>() {
    return Err(io::Error::new(io::ErrorKind::Unsupported, "SO_MEMINFO without SK_MEMINFO_DROPS"));
  }
  Ok(meminfo[drops])
}

/// Why a set of inherited sockets cannot be a kernel-steered group.
#[derive(Debug, thiserror::Error)]
pub enum AdoptGroupError {
  #[error(transparent)]
  Socket(#[from] AdoptError),
  #[error("socket {index} of the group lacks SO_REUSEPORT: it is not a kernel-steered group")]
  NotReusePort { index: usize },
  #[error("socket {index} of the group listens on {found}, socket 0 on {first}")]
  Mixed { index: usize, first: SocketAddr, found: SocketAddr },
  #[error("no sockets")]
  Empty,
}

/// Takes over an existing group: its sockets, in slot order, already bound,
/// listening and steered (the BPF program belongs to the group, not to a
/// process, so it stays attached). Nothing is bound or attached here.
pub fn adopt_group(sockets: Vec<std::os::fd::OwnedFd>) -> Result<Vec<Socket>, AdoptGroupError> {
  let mut adopted: Vec<Socket> = Vec::with_capacity(sockets.len());
  let mut first: Option<SocketAddr> = None;
  for (index, owned) in sockets.into_iter().enumerate() {
    let socket = adopt_listener(owned)?;
    if !socket.reuse_port().unwrap_or(false) {
      return Err(AdoptGroupError::NotReusePort { index });
    }
    let address = socket.local_addr().ok().and_then(|address| address.as_socket());
    match (first, address) {
      (None, Some(address)) => first = Some(address),
      (Some(first), Some(found)) if found != first => return Err(AdoptGroupError::Mixed { index, first, found }),
      _ => {}
    }
    adopted.push(socket);
  }
  if adopted.is_empty() {
    return Err(AdoptGroupError::Empty);
  }
  Ok(adopted)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::core::steering::kernel_slot;
  use socket2::{Domain, Type};
  use std::io::{Read, Write};
  use std::net::{IpAddr, Ipv4Addr, TcpStream};

  #[test]
  fn an_adopted_group_keeps_its_order_and_its_steering() {
    let group = bind_group("127.0.0.1:0".parse().unwrap(), 64, 3, 7, false).expect("SO_REUSEPORT + cBPF available");
    let copies = group.iter().map(|socket| std::os::fd::OwnedFd::from(socket.try_clone().unwrap())).collect();
    let adopted = adopt_group(copies).unwrap();
    drop(group);
    let port = adopted[0].local_addr().unwrap().as_socket().unwrap().port();
    for socket in &adopted {
      socket.set_nonblocking(true).unwrap();
    }
    for last in [2u8, 9, 23] {
      let client = Ipv4Addr::new(127, 0, 0, last);
      let stream = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
      stream.bind(&SocketAddr::new(IpAddr::V4(client), 0).into()).unwrap();
      stream.connect(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port).into()).unwrap();
      let expected = kernel_slot(IpAddr::V4(client), 3, 7) as usize;
      let accepted = (0..100).find_map(|_| {
        let hit = adopted.iter().position(|s| s.accept().is_ok());
        if hit.is_none() {
          std::thread::sleep(std::time::Duration::from_millis(2));
        }
        hit
      });
      assert_eq!(accepted, Some(expected), "client {client}");
    }
  }

  #[test]
  fn a_lone_socket_is_not_a_group() {
    let plain = crate::listener::bind_listener(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 16, false, false).unwrap();
    let error = adopt_group(vec![std::os::fd::OwnedFd::from(plain)]).unwrap_err();
    assert!(matches!(error, AdoptGroupError::NotReusePort { index: 0 }), "{error}");
  }

  #[test]
  fn the_kernel_steers_each_client_to_the_slot_the_reference_function_names() {
    let sockets = bind_group("127.0.0.1:0".parse().unwrap(), 64, 3, 7, false).expect("SO_REUSEPORT + cBPF available");
    let port = sockets[0].local_addr().unwrap().as_socket().unwrap().port();
    for socket in &sockets {
      socket.set_nonblocking(true).unwrap();
    }
    for last in 2u8..=40 {
      let client = Ipv4Addr::new(127, 0, 0, last);
      let stream = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
      stream.bind(&SocketAddr::new(IpAddr::V4(client), 0).into()).unwrap();
      stream.connect(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port).into()).unwrap();
      let mut stream = TcpStream::from(stream);
      stream.write_all(b"x").unwrap();
      let expected = kernel_slot(IpAddr::V4(client), 3, 7) as usize;
      let accepted: Vec<usize> = (0..50)
        .find_map(|_| {
          let hits: Vec<usize> = sockets.iter().enumerate().filter_map(|(i, s)| s.accept().ok().map(|_| i)).collect();
          if hits.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(2));
            None
          } else {
            Some(hits)
          }
        })
        .unwrap_or_default();
      assert_eq!(accepted, vec![expected], "client {client}");
      let _ = stream.read(&mut [0u8; 1]);
    }
  }

  #[test]
  fn a_group_on_a_port_another_socket_listens_on_fails_with_eaddrinuse_instead_of_joining_it() {
    let first = bind_group("127.0.0.1:0".parse().unwrap(), 16, 2, 7, false).unwrap();
    let taken = first[0].local_addr().unwrap().as_socket().unwrap();
    let error = bind_group(taken, 16, 2, 7, false).unwrap_err();
    assert_eq!(error.source.raw_os_error(), Some(libc::EADDRINUSE), "{error}");
    assert_eq!(error.syscall, "bind");
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = bind_group(plain.local_addr().unwrap(), 16, 2, 7, false).unwrap_err();
    assert_eq!(error.source.raw_os_error(), Some(libc::EADDRINUSE), "{error}");
  }

  #[test]
  fn a_listener_refusing_new_connections_keeps_the_queued_ones_and_never_completes_a_new_handshake() {
    use std::os::fd::AsFd;
    let listener = listening_socket("127.0.0.1:0".parse().unwrap(), 16, false, false).unwrap();
    let address = listener.local_addr().unwrap();
    let queued = std::net::TcpStream::connect(address.as_socket().unwrap()).unwrap();
    refuse_new_connections(&listener).unwrap();
    // A new client: its SYN is dropped, so its connect does not complete.
    let late = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    late.set_nonblocking(true).unwrap();
    let _ = late.connect(&address);
    let mut writable = [PollFd::new(late.as_fd(), PollFlags::POLLOUT)];
    assert_eq!(nix::poll::poll(&mut writable, PollTimeout::from(300u16)).unwrap(), 0, "the new handshake completed");
    let taken = drain_listener(listener.as_fd());
    assert_eq!(taken.len(), 1, "the connection queued before stays, and no other arrives");
    drop(queued);
  }

  #[test]
  fn the_kernel_reports_a_listeners_queue_and_what_it_dropped_when_full() {
    use std::os::fd::AsFd;
    let listener = listening_socket("127.0.0.1:0".parse().unwrap(), 2, false, false).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    assert_eq!(accept_queue(listener.as_fd()).unwrap(), AcceptQueue { queued: 0, limit: 2 });
    assert_eq!(socket_drops(listener.as_fd()).unwrap(), 0);
    // The queue holds limit + 1; the next handshakes are dropped (the
    // clients' connects still succeed: they retry, or believe they are connected).
    let clients: Vec<Socket> = (0..6)
      .map(|_| {
        let client = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        client.set_nonblocking(true).unwrap();
        let _ = client.connect(&address.into());
        client
      })
      .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(accept_queue(listener.as_fd()).unwrap(), AcceptQueue { queued: 3, limit: 2 });
    assert!(socket_drops(listener.as_fd()).unwrap() > 0);
    assert!(accept_queue(clients[0].as_fd()).is_err(), "a client socket is not a listener");
  }

  #[test]
  fn draining_a_listener_takes_every_queued_connection_and_never_waits() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(false).unwrap();
    let clients: Vec<std::net::TcpStream> =
      (0..3).map(|_| std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap()).collect();
    let taken = drain_listener(std::os::fd::AsFd::as_fd(&listener));
    assert_eq!(taken.len(), clients.len());
    assert!(
      drain_listener(std::os::fd::AsFd::as_fd(&listener)).is_empty(),
      "an empty queue returns at once, even on a blocking socket"
    );
  }
}
