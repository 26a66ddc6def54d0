//! Records over `SOCK_SEQPACKET` sockets: the hand-off channel (one
//! socketpair per worker slot), the rendezvous of workers the user forks, and
//! the takeover's connection.
//!
//! A thin I/O layer over `sendmsg`/`recvmsg`: one call moves one record
//! (see `crate::core::wire` and `crate::core::takeover_message`) and up to
//! [`MAX_FDS`] file descriptors. What the records mean is decided by the
//! callers.

use std::io;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{self, sendmsg, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};

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

/// Room for the most descriptors one record carries, as `recvmsg` wants it
/// (aligned for `cmsghdr`).
const CONTROL_WORDS: usize = (MAX_FDS * std::mem::size_of::<RawFd>() + 64).div_ceil(8);

/// The most descriptors one record carries (`SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// Sends one record, with `fds` attached (at most [`MAX_FDS`]), without
/// blocking and without `SIGPIPE`. `WouldBlock` means the worker's queue is
/// full: keep the record and retry when the channel is writable.
pub fn send_record(channel: BorrowedFd<'_>, record: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
  assert!(fds.len() <= MAX_FDS, "{} descriptors in one record", fds.len());
  let iov = [IoSlice::new(record)];
  let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
  let rights = [ControlMessage::ScmRights(&raw)];
  let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
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
  /// The attached descriptors, in order, already close-on-exec.
  pub fds: Vec<OwnedFd>,
  /// The record or its descriptors did not fit (`MSG_TRUNC` / `MSG_CTRUNC`):
  /// descriptors the kernel could not install (e.g. EMFILE) are gone, and
  /// the ones that were come first.
  pub truncated: bool,
}

/// Receives one record into `buf`, with up to [`MAX_FDS`] descriptors. With
/// `wait == false` an empty channel is `WouldBlock`.
pub fn recv_record(channel: BorrowedFd<'_>, buf: &mut [u8], wait: bool) -> io::Result<Received> {
  let mut control = [0u64; CONTROL_WORDS];
  let mut flags = recv_flags().bits();
  if !wait {
    flags |= libc::MSG_DONTWAIT;
  }
  loop {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: as in `send_record`.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `message` points at live buffers for the duration of the call.
    let received = unsafe { libc::recvmsg(channel.as_raw_fd(), &mut message, flags) };
    if received < 0 {
      let error = io::Error::last_os_error();
      if error.kind() == io::ErrorKind::Interrupted {
        continue;
      }
      return Err(error);
    }
    let truncated = message.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` up to `msg_controllen`; the CMSG
    // macros walk only within it. Every descriptor in an SCM_RIGHTS header
    // was just installed in this process for us, so we own it.
    unsafe {
      let mut header = libc::CMSG_FIRSTHDR(&message);
      while !header.is_null() {
        if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
          let data_len = (*header).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
          let data = libc::CMSG_DATA(header).cast::<RawFd>();
          let count = data_len / std::mem::size_of::<RawFd>();
          fds.reserve(count);
          for index in 0..count {
            fds.push(OwnedFd::from_raw_fd(data.add(index).read_unaligned()));
          }
        }
        header = libc::CMSG_NXTHDR(&message, header);
      }
    }
    if !cfg!(any(target_os = "linux", target_os = "android")) {
      for fd in &fds {
        set_cloexec(fd)?;
      }
    }
    return Ok(Received { len: received as usize, fds, truncated });
  }
}

/// The head of the next record queued on `end`, left in place: its length
/// (0: the peer closed), or `WouldBlock` when none is queued. Descriptors
/// are not taken (no control buffer: the kernel drops its copies).
pub fn peek_record(end: BorrowedFd<'_>, head: &mut [u8]) -> io::Result<usize> {
  loop {
    match socket::recv(end.as_raw_fd(), head, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
      Ok(received) => return Ok(received),
      Err(nix::errno::Errno::EINTR) => continue,
      Err(errno) => return Err(errno.into()),
    }
  }
}

/// A worker's lifeline: `(primary_end, worker_end)` of a pipe, both
/// close-on-exec. The worker keeps its end and never writes; the primary's
/// end reads end-of-file (becomes readable) once no process holds the
/// worker's end: the worker closed it (it stopped taking connections) or died.
pub fn lifeline() -> io::Result<(OwnedFd, OwnedFd)> {
  let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
  Ok((read, write))
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

/// Stops this end from receiving: a thread waiting on it wakes, the peer's
/// next send fails with `EPIPE`, and the records already queued can still be
/// read (by the primary, which holds a reference to a worker's end).
pub fn shutdown_read(channel: BorrowedFd<'_>) {
  let _ = socket::shutdown(channel.as_raw_fd(), socket::Shutdown::Read);
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::test_support::{descriptors_referring_to, referents};
  use std::os::fd::AsFd;

  #[test]
  fn a_record_and_its_descriptor_cross_the_channel() {
    let (primary, worker) = socketpair().unwrap();
    let (payload_a, payload_b) = socketpair().unwrap();
    send_record(primary.as_fd(), b"hello", &[payload_a.as_fd()]).unwrap();
    let mut buf = [0u8; 64];
    let got = recv_record(worker.as_fd(), &mut buf, true).unwrap();
    assert_eq!(&buf[..got.len], b"hello");
    assert!(!got.truncated);
    let [received]: [OwnedFd; 1] = got.fds.try_into().expect("one descriptor");
    // The received descriptor is the same socket: a record sent on it arrives at payload_b.
    send_record(received.as_fd(), b"through", &[]).unwrap();
    let got = recv_record(payload_b.as_fd(), &mut buf, true).unwrap();
    assert_eq!(&buf[..got.len], b"through");
    assert!(got.fds.is_empty());
    assert!(is_seqpacket_socket(&worker));
  }

  #[test]
  fn the_most_descriptors_a_record_carries_arrive_in_order() {
    let (primary, worker) = socketpair().unwrap();
    let pairs: Vec<(OwnedFd, OwnedFd)> = (0..MAX_FDS).map(|_| socketpair().unwrap()).collect();
    let sent: Vec<BorrowedFd<'_>> = pairs.iter().map(|(ours, _)| ours.as_fd()).collect();
    send_record(primary.as_fd(), b"batch", &sent).unwrap();
    let mut buf = [0u8; 16];
    let got = recv_record(worker.as_fd(), &mut buf, false).unwrap();
    assert!(!got.truncated);
    assert_eq!(got.fds.len(), MAX_FDS);
    for (index, (fd, (_, theirs))) in got.fds.iter().zip(&pairs).enumerate() {
      send_record(fd.as_fd(), &(index as u32).to_le_bytes(), &[]).unwrap();
      let echoed = recv_record(theirs.as_fd(), &mut buf, false).unwrap();
      assert_eq!(&buf[..echoed.len], &(index as u32).to_le_bytes(), "descriptor {index} out of order");
    }
  }

  #[test]
  fn a_record_queued_on_the_worker_s_end_goes_to_exactly_one_reader() {
    let (primary, worker) = socketpair().unwrap();
    // The primary's reference to the worker's end: the same socket.
    let reclaim = worker.try_clone().unwrap();
    let (payload, _peer) = socketpair().unwrap();
    for record in [b"one", b"two"] {
      send_record(primary.as_fd(), record, &[payload.as_fd()]).unwrap();
    }
    let mut buf = [0u8; 8];
    let by_worker = recv_record(worker.as_fd(), &mut buf, false).unwrap();
    assert_eq!(&buf[..by_worker.len], b"one");
    let by_primary = recv_record(reclaim.as_fd(), &mut buf, false).unwrap();
    assert_eq!(&buf[..by_primary.len], b"two");
    assert_eq!(by_primary.fds.len(), 1, "the descriptor comes back with its record");
    for end in [&worker, &reclaim] {
      let error = recv_record(end.as_fd(), &mut buf, false).unwrap_err();
      assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "nothing is read twice");
    }
  }

  #[test]
  fn a_peek_leaves_the_record_and_takes_no_descriptor() {
    let (primary, worker) = socketpair().unwrap();
    let (payload, _peer) = socketpair().unwrap();
    let mut head = [0u8; 4];
    assert_eq!(peek_record(worker.as_fd(), &mut head).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    send_record(primary.as_fd(), b"record", &[payload.as_fd()]).unwrap();
    let sent = referents(&[payload.as_fd()]);
    assert_eq!(descriptors_referring_to(&sent), 1);
    assert_eq!(peek_record(worker.as_fd(), &mut head).unwrap(), 4);
    assert_eq!(&head, b"reco");
    assert_eq!(descriptors_referring_to(&sent), 1, "no descriptor installed by the peek");
    let mut buf = [0u8; 8];
    let got = recv_record(worker.as_fd(), &mut buf, false).unwrap();
    assert_eq!((&buf[..got.len], got.fds.len()), (&b"record"[..], 1));
  }

  #[test]
  fn a_lifeline_reads_end_of_file_once_the_worker_s_end_is_gone() {
    let (primary_end, worker_end) = lifeline().unwrap();
    let mut byte = [0u8; 1];
    let alive = nix::unistd::read(&primary_end, &mut byte).unwrap_err();
    assert_eq!(alive, nix::errno::Errno::EAGAIN);
    drop(worker_end);
    assert_eq!(nix::unistd::read(&primary_end, &mut byte).unwrap(), 0);
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
      match send_record(primary.as_fd(), &record, &[]) {
        Ok(()) => sent += 1,
        Err(error) => break error,
      }
      assert!(sent < 1_000_000, "the channel never filled");
    };
    assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
  }

  #[test]
  fn sending_to_a_closed_worker_fails_without_sigpipe() {
    let (primary, worker) = socketpair().unwrap();
    drop(worker);
    let error = send_record(primary.as_fd(), b"x", &[]).unwrap_err();
    assert!(matches!(error.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)), "{error}");
  }
}
