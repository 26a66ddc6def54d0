//! The hand-off channel: one `SOCK_SEQPACKET` socketpair per worker slot.
//!
//! A thin I/O layer over `sendmsg`/`recvmsg`: one call moves one record
//! (see `wire`) and at most one file descriptor. What the records mean is
//! decided by the callers.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{
  self, recvmsg, sendmsg, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

/// A new channel: `(primary_end, worker_end)`, both close-on-exec. The primary
/// end is non-blocking (it lives in the primary's event loop); the worker end
/// is blocking (a dedicated thread waits on it) and is made inheritable only
/// by the `dup2` that places it in the forked worker.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
  let (primary, worker) = socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, cloexec_flag())?;
  set_cloexec(&primary)?;
  set_cloexec(&worker)?;
  set_nonblocking(&primary, true)?;
  Ok((primary, worker))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn cloexec_flag() -> SockFlag {
  SockFlag::SOCK_CLOEXEC
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn cloexec_flag() -> SockFlag {
  SockFlag::empty()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn recv_flags() -> MsgFlags {
  MsgFlags::MSG_CMSG_CLOEXEC
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn recv_flags() -> MsgFlags {
  MsgFlags::empty()
}

pub fn set_cloexec(fd: impl AsFd) -> io::Result<()> {
  // FD_CLOEXEC is the only descriptor flag.
  fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
  Ok(())
}

pub fn set_nonblocking(fd: impl AsFd, nonblocking: bool) -> io::Result<()> {
  let fd = fd.as_fd();
  let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
  let wanted = if nonblocking { flags | OFlag::O_NONBLOCK } else { flags - OFlag::O_NONBLOCK };
  if wanted != flags {
    fcntl(fd, FcntlArg::F_SETFL(wanted))?;
  }
  Ok(())
}

/// True when `fd` is an `AF_UNIX` `SOCK_SEQPACKET` socket: what a worker
/// checks before trusting the fd number it was told about.
pub fn is_seqpacket_socket(fd: impl AsFd) -> bool {
  socket::getsockopt(&fd.as_fd(), socket::sockopt::SockType).is_ok_and(|kind| kind == SockType::SeqPacket)
}

/// Sends one record, with `fd` attached when given, without blocking and
/// without `SIGPIPE`. `WouldBlock` means the worker's queue is full: keep the
/// record and retry when the channel is writable.
pub fn send_record(channel: BorrowedFd<'_>, record: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
  let iov = [IoSlice::new(record)];
  let raw = fd.map(|fd| [fd.as_raw_fd()]);
  let rights = raw.as_ref().map(|raw| ControlMessage::ScmRights(raw));
  let cmsgs: &[ControlMessage<'_>] = match &rights {
    Some(rights) => std::slice::from_ref(rights),
    None => &[],
  };
  let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
  loop {
    match sendmsg::<()>(channel.as_raw_fd(), &iov, cmsgs, flags, None) {
      Ok(sent) if sent == record.len() => return Ok(()),
      Ok(sent) => {
        // SEQPACKET sends records whole or not at all; anything else is a kernel surprise.
        return Err(io::Error::other(format!("short send on the hand-off channel: {sent} of {} bytes", record.len())));
      }
      Err(nix::errno::Errno::EINTR) => continue,
      Err(errno) => return Err(errno.into()),
    }
  }
}

/// One received record.
#[derive(Debug)]
pub struct Received {
  /// Bytes of the record in the caller's buffer; 0 means the peer closed.
  pub len: usize,
  /// The attached descriptor, already close-on-exec.
  pub fd: Option<OwnedFd>,
  /// The record or its descriptor did not fit (`MSG_TRUNC` / `MSG_CTRUNC`):
  /// a descriptor the kernel could not install (e.g. EMFILE) is gone.
  pub truncated: bool,
}

/// Receives one record into `buf`. With `wait == false` an empty channel is
/// `WouldBlock`.
pub fn recv_record(channel: BorrowedFd<'_>, buf: &mut [u8], wait: bool) -> io::Result<Received> {
  let mut cmsg_space = nix::cmsg_space!([RawFd; 1]);
  let mut flags = recv_flags();
  if !wait {
    flags |= MsgFlags::MSG_DONTWAIT;
  }
  loop {
    let mut iov = [IoSliceMut::new(buf)];
    let message = match recvmsg::<()>(channel.as_raw_fd(), &mut iov, Some(&mut cmsg_space), flags) {
      Ok(message) => message,
      Err(nix::errno::Errno::EINTR) => continue,
      Err(errno) => return Err(errno.into()),
    };
    let truncated = message.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    let mut fds: Vec<OwnedFd> = Vec::new();
    // `cmsgs()` refuses a truncated control buffer (`MSG_CTRUNC`): then no
    // descriptor is taken. Ours send one descriptor a record, which fits, so
    // truncation means the kernel could not install it (this process is out
    // of descriptors, EMFILE): it is gone, and `truncated` says so. A peer
    // sending several would leak the ones that fitted; ours never does.
    if let Ok(cmsgs) = message.cmsgs() {
      for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(raw_fds) = cmsg {
          // SAFETY: the kernel just installed these descriptors in this process for us.
          fds.extend(raw_fds.into_iter().map(|raw| unsafe { OwnedFd::from_raw_fd(raw) }));
        }
      }
    }
    let len = message.bytes;
    let fd = fds.pop();
    // More than one descriptor is a protocol violation; close the extras.
    drop(fds);
    if !cfg!(any(target_os = "linux", target_os = "android")) {
      if let Some(fd) = &fd {
        set_cloexec(fd)?;
      }
    }
    return Ok(Received { len, fd, truncated });
  }
}

/// A listening `SOCK_SEQPACKET` socket at an abstract address (Linux): where
/// workers that the user forked connect to get their channel. Abstract names
/// have no file permissions, so the primary checks every peer's credentials
/// (`peer_credentials`) before it sends anything.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn listen_abstract(name: &[u8]) -> io::Result<OwnedFd> {
  let socket =
    socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)?;
  socket::bind(socket.as_raw_fd(), &socket::UnixAddr::new_abstract(name)?)?;
  socket::listen(&socket, socket::Backlog::new(64)?)?;
  Ok(socket)
}

/// Connects to a primary's abstract rendezvous socket (blocking end).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn connect_abstract(name: &[u8]) -> io::Result<OwnedFd> {
  let socket = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
  socket::connect(socket.as_raw_fd(), &socket::UnixAddr::new_abstract(name)?)?;
  Ok(socket)
}

/// Accepts one connection on a rendezvous socket (non-blocking, close-on-exec).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
  // Close-on-exec from the start (accept4).
  let (connection, _) = socket2::SockRef::from(&listener).accept()?;
  connection.set_nonblocking(true)?;
  Ok(connection.into())
}

/// The pid and uid of the process at the other end of a Unix socket, as the
/// kernel recorded them when it connected.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn peer_credentials(channel: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
  let credentials = socket::getsockopt(&channel, socket::sockopt::PeerCredentials)?;
  Ok((credentials.pid() as u32, credentials.uid()))
}

/// Stops both directions, waking a thread blocked in `recv_record` on the
/// other side of this process's end.
pub fn shutdown(channel: BorrowedFd<'_>) {
  let _ = socket::shutdown(channel.as_raw_fd(), socket::Shutdown::Both);
}

/// Stops this end from receiving: the peer's next send fails with `EPIPE`,
/// while the records it already sent can still be read here. What the
/// primary does before it takes back a live worker's connections, so that
/// the worker cannot acknowledge one after the primary's last look.
pub fn shutdown_read(channel: BorrowedFd<'_>) {
  let _ = socket::shutdown(channel.as_raw_fd(), socket::Shutdown::Read);
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::os::fd::AsFd;

  #[test]
  fn a_record_and_its_descriptor_cross_the_channel() {
    let (primary, worker) = socketpair().unwrap();
    let (payload_a, payload_b) = socketpair().unwrap();
    send_record(primary.as_fd(), b"hello", Some(payload_a.as_fd())).unwrap();
    let mut buf = [0u8; 64];
    let got = recv_record(worker.as_fd(), &mut buf, true).unwrap();
    assert_eq!(&buf[..got.len], b"hello");
    assert!(!got.truncated);
    let received = got.fd.expect("a descriptor");
    // The received descriptor is the same socket: a record sent on it arrives at payload_b.
    send_record(received.as_fd(), b"through", None).unwrap();
    let got = recv_record(payload_b.as_fd(), &mut buf, true).unwrap();
    assert_eq!(&buf[..got.len], b"through");
    assert!(is_seqpacket_socket(&worker));
  }

  #[test]
  fn an_empty_channel_would_block_and_a_closed_one_reads_zero() {
    let (primary, worker) = socketpair().unwrap();
    let mut buf = [0u8; 8];
    let error = recv_record(primary.as_fd(), &mut buf, false).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    drop(worker);
    assert_eq!(recv_record(primary.as_fd(), &mut buf, false).unwrap().len, 0);
  }

  #[test]
  fn a_full_channel_reports_would_block_instead_of_waiting() {
    let (primary, _worker) = socketpair().unwrap();
    let record = [0u8; 1024];
    let mut sent = 0;
    let error = loop {
      match send_record(primary.as_fd(), &record, None) {
        Ok(()) => sent += 1,
        Err(error) => break error,
      }
      assert!(sent < 1_000_000, "the channel never filled");
    };
    assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
  }

  #[test]
  fn after_shutdown_read_the_peer_cannot_send_and_what_it_sent_is_still_read() {
    let (primary, worker) = socketpair().unwrap();
    send_record(worker.as_fd(), b"before", None).unwrap();
    shutdown_read(primary.as_fd());
    let error = send_record(worker.as_fd(), b"after", None).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EPIPE), "{error}");
    let mut buf = [0u8; 16];
    let got = recv_record(primary.as_fd(), &mut buf, false).unwrap();
    assert_eq!(&buf[..got.len], b"before");
    assert_eq!(recv_record(primary.as_fd(), &mut buf, false).unwrap().len, 0, "then end-of-file");
  }

  #[test]
  fn sending_to_a_closed_worker_fails_without_sigpipe() {
    let (primary, worker) = socketpair().unwrap();
    drop(worker);
    let error = send_record(primary.as_fd(), b"x", None).unwrap_err();
    assert!(matches!(error.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)), "{error}");
  }
}
