//! The running primary's side of a takeover: a thread that listens on the
//! takeover name and gives the listening sockets to the first process of the
//! same user that asks, then waits for it to say its workers are ready.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::PEER_TIMEOUT;
use crate::core::takeover_message::{self as message, Message, Offer};
use crate::seqpacket;

/// What happened, for the primary's JavaScript (logs, and the drain on `Released`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferingEvent {
  /// A process of another user asked and got nothing.
  Refused { pid: u32, uid: u32 },
  /// A process asked while another takeover was under way; it was told so.
  Busy { pid: u32 },
  /// The sockets were sent to `pid`, which now starts its workers.
  Offered { pid: u32 },
  /// `pid` went away, or misbehaved, before it was ready: this primary goes on serving.
  Abandoned { pid: u32, reason: String },
  /// `pid` is ready: this primary gave up the name and must stop accepting and drain.
  Released { pid: u32 },
  /// The offering thread stopped on an error; no takeover is possible any more.
  Failed { message: String },
}

pub type EventSink = Box<dyn Fn(OfferingEvent) + Send + 'static>;

/// A running offer. Dropping it (or `close`) withdraws the offer and closes
/// this side's copies of the sockets.
pub struct Offering {
  /// Dropping it wakes the thread, which then ends.
  stop: Option<UnixStream>,
  thread: Option<JoinHandle<()>>,
}

impl Offering {
  /// Listens on the abstract `name` (fails with `EADDRINUSE` if a process
  /// already does) and serves takeover requests on a thread of its own.
  /// `sockets` are this side's own copies (duplicates) of the listening sockets.
  pub fn start(name: &[u8], offer: Offer, sockets: Vec<OwnedFd>, on_event: EventSink) -> io::Result<Self> {
    debug_assert_eq!(usize::from(offer.sockets), sockets.len());
    let listener = seqpacket::listen_abstract(name)?;
    let (stop, stopped) = UnixStream::pair()?;
    let thread = std::thread::Builder::new().name("sticky-takeover".into()).spawn(move || {
      let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve(listener, &stopped, offer, &sockets, &on_event)
      }));
      let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some("the takeover thread panicked".to_string()),
      };
      if let Some(message) = failure {
        on_event(OfferingEvent::Failed { message });
      }
    })?;
    Ok(Offering { stop: Some(stop), thread: Some(thread) })
  }

  /// Withdraws the offer: the name is free and this side's socket copies are
  /// closed when this returns.
  pub fn close(&mut self) {
    drop(self.stop.take());
    if let Some(thread) = self.thread.take() {
      // The thread polls the stop socket; a send in progress ends within PEER_TIMEOUT.
      let _ = thread.join();
    }
  }
}

impl Drop for Offering {
  fn drop(&mut self) {
    self.close();
  }
}

/// A taker that was sent the sockets and has not said it is ready yet.
struct Taker {
  connection: OwnedFd,
  pid: u32,
}

fn serve(
  listener: OwnedFd,
  stopped: &UnixStream,
  offer: Offer,
  sockets: &[OwnedFd],
  on_event: &EventSink,
) -> io::Result<()> {
  let our_uid = nix::unistd::geteuid().as_raw();
  let mut taker: Option<Taker> = None;
  loop {
    let taker_fd = taker.as_ref().map(|t| t.connection.as_fd());
    let [listener_ready, stop_ready, taker_ready] =
      wait_readable([Some(listener.as_fd()), Some(stopped.as_fd()), taker_fd])?;
    if stop_ready {
      return Ok(());
    }
    if taker_ready {
      if let Some(current) = taker.take() {
        match read_message(current.connection.as_fd()) {
          Ok(Message::Ready { .. }) => {
            // Give up the name first, so the new primary can offer under it
            // as soon as it reads `Released`.
            drop(listener);
            let released = message::encode(&Message::Released { pid: std::process::id() });
            let _ = send(current.connection.as_fd(), &released, None);
            on_event(OfferingEvent::Released { pid: current.pid });
            return Ok(());
          }
          Ok(other) => on_event(OfferingEvent::Abandoned {
            pid: current.pid,
            reason: format!("it sent {other:?} instead of Ready"),
          }),
          Err(reason) => on_event(OfferingEvent::Abandoned { pid: current.pid, reason }),
        }
      }
    }
    if listener_ready {
      while let Some(connection) = accept(&listener)? {
        let Ok((pid, uid)) = seqpacket::peer_credentials(connection.as_fd()) else { continue };
        if uid != our_uid {
          on_event(OfferingEvent::Refused { pid, uid });
          continue;
        }
        if let Some(current) = &taker {
          let busy = message::encode(&Message::Busy { pid: current.pid });
          let _ = seqpacket::send_record(connection.as_fd(), &busy, &[]);
          on_event(OfferingEvent::Busy { pid });
          continue;
        }
        match send_offer(connection.as_fd(), offer, sockets) {
          Ok(()) => {
            on_event(OfferingEvent::Offered { pid });
            taker = Some(Taker { connection, pid });
          }
          Err(error) => {
            on_event(OfferingEvent::Abandoned { pid, reason: format!("sending the sockets failed: {error}") })
          }
        }
      }
    }
  }
}

fn send_offer(connection: BorrowedFd<'_>, offer: Offer, sockets: &[OwnedFd]) -> io::Result<()> {
  send(connection, &message::encode(&Message::Offer(offer)), None)?;
  // `Offer::sockets` is a u16: there are never more sockets than indices.
  for (index, socket) in (0..=u16::MAX).zip(sockets) {
    send(connection, &message::encode(&Message::Socket { index }), Some(socket.as_fd()))?;
  }
  Ok(())
}

/// Sends one record, waiting (at most `PEER_TIMEOUT`) while the peer's queue is full.
fn send(connection: BorrowedFd<'_>, record: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
  loop {
    match seqpacket::send_record(connection, record, fd.as_slice()) {
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
        if !poll_one(connection, PollFlags::POLLOUT, PEER_TIMEOUT)? {
          return Err(io::Error::new(io::ErrorKind::TimedOut, "the new primary stopped reading"));
        }
      }
      other => return other,
    }
  }
}

/// The taker's next record; `Err` says why there is none.
fn read_message(connection: BorrowedFd<'_>) -> Result<Message, String> {
  let mut buf = [0u8; message::MAX_RECORD_LEN];
  match seqpacket::recv_record(connection, &mut buf, false) {
    Ok(received) if received.len == 0 => Err("it closed the connection before its workers were ready".into()),
    Ok(received) => message::decode(&buf[..received.len]).map_err(|error| error.to_string()),
    Err(error) => Err(format!("reading from it failed: {error}")),
  }
}

fn accept(listener: &OwnedFd) -> io::Result<Option<OwnedFd>> {
  loop {
    return match seqpacket::accept(listener.as_fd()) {
      Ok(connection) => Ok(Some(connection)),
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
      Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
      // The peer gave up before we accepted it.
      Err(error) if error.raw_os_error() == Some(libc::ECONNABORTED) => continue,
      Err(error) => Err(error),
    };
  }
}

/// Waits until one of `fds` is readable (or hung up); `None` entries are skipped.
fn wait_readable<const N: usize>(fds: [Option<BorrowedFd<'_>>; N]) -> io::Result<[bool; N]> {
  let present: Vec<usize> = (0..N).filter(|&index| fds[index].is_some()).collect();
  let mut polled: Vec<PollFd<'_>> = fds.iter().flatten().map(|&fd| PollFd::new(fd, PollFlags::POLLIN)).collect();
  loop {
    match poll(&mut polled, PollTimeout::NONE) {
      Ok(_) => {
        let mut ready = [false; N];
        for (entry, &index) in polled.iter().zip(&present) {
          ready[index] = entry.any().unwrap_or(false);
        }
        return Ok(ready);
      }
      Err(Errno::EINTR) => continue,
      Err(errno) => return Err(errno.into()),
    }
  }
}

/// Waits up to `timeout` for `events` on one fd; false on timeout.
pub(super) fn poll_one(fd: BorrowedFd<'_>, events: PollFlags, timeout: std::time::Duration) -> io::Result<bool> {
  let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
  let mut polled = [PollFd::new(fd, events)];
  loop {
    match poll(&mut polled, timeout) {
      Ok(ready) => return Ok(ready > 0),
      Err(Errno::EINTR) => continue,
      Err(errno) => return Err(errno.into()),
    }
  }
}
