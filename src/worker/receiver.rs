//! A worker's end of its channel: says hello, reads the records the primary
//! sends and passes their connections, in batches, to a delivery callback.
//!
//! It waits either on the JavaScript thread's own event loop (the binding
//! polls the channel through libuv and calls [`Receiver::read_available`]
//! when it is readable: no thread, no hand-over) or on a thread of its own
//! ([`Receiver::spawn_thread`], for runtimes without libuv: Bun).
//!
//! Nothing is acknowledged. A worker's departure is lossless because a record
//! goes to exactly one reader, every record this worker reads is delivered
//! (never dropped), and the worker stops reading before it closes its
//! lifeline ([`Receiver::close`]); the records it never read stay queued on its end
//! of the channel, and the primary, which made the channel and keeps a
//! reference to that end, reads them back and sends them elsewhere.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::core::wire::{self, Reply, Setup};
use crate::seqpacket;

/// At most this many connections per delivery: bounds the work one JavaScript
/// callback does, while a busy channel still costs one wake-up per batch.
pub const MAX_DELIVERY: usize = 1024;

/// A connection now owned by this worker.
#[derive(Debug)]
pub struct Delivered {
  pub fd: OwnedFd,
  /// The client a PROXY header named (`proxy-protocol` routing).
  pub client: Option<SocketAddr>,
}

#[derive(Default)]
pub struct ReceiverStats {
  pub received: AtomicU64,
  /// Connections whose descriptor never arrived (this process was out of fds).
  pub lost_descriptors: AtomicU64,
  pub invalid_records: AtomicU64,
}

/// What reading the channel found besides connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
  /// Nothing more to read now.
  Open,
  /// The primary closed the channel (this worker was replaced, or the
  /// primary is gone): nothing more will come.
  Closed,
}

pub struct Receiver {
  channel: OwnedFd,
  /// Held while this worker takes connections; closing it tells the primary
  /// to read back what this worker did not read.
  lifeline: Mutex<Option<OwnedFd>>,
  /// Set by `close`: the thread (if any) reads no further.
  closing: AtomicBool,
  stats: ReceiverStats,
}

/// Waits until `fd` is readable (or hung up): false when `timeout` passed first.
fn wait_readable(fd: BorrowedFd<'_>, timeout: PollTimeout) -> nix::Result<bool> {
  let mut poll = [PollFd::new(fd, PollFlags::POLLIN)];
  Ok(nix::poll::poll(&mut poll, timeout)? > 0)
}

/// How long a worker waits for the primary's first record: there at once
/// on a channel the primary made before forking; on a rendezvous connection,
/// as soon as the primary has checked who connected.
const SETUP_WAIT_MS: u16 = 10_000;

impl Receiver {
  /// Takes what the primary sent first on `connection` — this worker's
  /// lifeline (on its channel), or its channel and lifeline (on a rendezvous
  /// connection) — and says hello: the primary starts sending from there.
  pub fn start(connection: OwnedFd) -> io::Result<Arc<Self>> {
    if !wait_readable(connection.as_fd(), PollTimeout::from(SETUP_WAIT_MS)).unwrap_or(false) {
      return Err(io::Error::new(io::ErrorKind::TimedOut, "the primary sent nothing on this worker's channel"));
    }
    let mut buf = [0u8; wire::SETUP_LEN];
    let received = seqpacket::recv_record(connection.as_fd(), &mut buf, false)?;
    if received.len == 0 {
      return Err(io::Error::new(
        io::ErrorKind::ConnectionRefused,
        "the primary closed this worker's channel: it refused this process",
      ));
    }
    let setup = wire::decode_setup(&buf[..received.len]).map_err(io::Error::other)?;
    if received.truncated || received.fds.len() != setup.fds() {
      return Err(io::Error::other("the primary's first record came without its descriptors"));
    }
    let mut fds = received.fds.into_iter();
    let (channel, lifeline) = match (setup, fds.next(), fds.next()) {
      (Setup::Lifeline, Some(lifeline), None) => (connection, lifeline),
      (Setup::Channel, Some(channel), Some(lifeline)) => (channel, lifeline),
      _ => unreachable!("counted above"),
    };
    seqpacket::set_nonblocking(&channel, true)?;
    let hello = wire::encode_reply(Reply::Hello { pid: std::process::id() });
    seqpacket::send_record(channel.as_fd(), &hello, &[])?;
    Ok(Arc::new(Receiver {
      channel,
      lifeline: Mutex::new(Some(lifeline)),
      closing: AtomicBool::new(false),
      stats: ReceiverStats::default(),
    }))
  }

  pub fn stats(&self) -> &ReceiverStats {
    &self.stats
  }

  /// The channel's descriptor, for an event loop to poll.
  pub fn raw_fd(&self) -> RawFd {
    self.channel.as_raw_fd()
  }

  /// Reads every record queued now into `batch`, up to `most` connections
  /// (a record is never split), without waiting. `buf` holds one record.
  pub fn read_available(&self, buf: &mut [u8], batch: &mut Vec<Delivered>, most: usize) -> ChannelState {
    while batch.len() < most {
      match seqpacket::recv_record(self.channel.as_fd(), buf, false) {
        Ok(received) if received.len == 0 => return ChannelState::Closed,
        Ok(received) => self.unpack(&buf[..received.len], received.fds, batch),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return ChannelState::Open,
        Err(_) => return ChannelState::Closed,
      }
    }
    ChannelState::Open
  }

  /// One record's connections, paired with its descriptors in order.
  fn unpack(&self, record: &[u8], fds: Vec<OwnedFd>, batch: &mut Vec<Delivered>) {
    let Ok(handoffs) = wire::decode_handoffs(record) else {
      // Not a record of this build's primary: its descriptors close here.
      self.stats.invalid_records.fetch_add(1, Relaxed);
      return;
    };
    // Descriptors the kernel could not install here (EMFILE) are the last ones.
    let lost = handoffs.len().saturating_sub(fds.len());
    self.stats.lost_descriptors.fetch_add(lost as u64, Relaxed);
    self.stats.received.fetch_add((handoffs.len() - lost) as u64, Relaxed);
    batch.extend(handoffs.into_iter().zip(fds).map(|(handoff, fd)| Delivered { fd, client: handoff.client }));
  }

  /// Receives on a thread of its own until the primary closes the channel or
  /// `close`: `deliver(batch, primary_closed)` gets every connection read
  /// (also one read as `close` runs) and returns false when nobody can take
  /// connections any more; `primary_closed` is true once, last, when the
  /// primary closed the channel.
  pub fn spawn_thread<F>(self: &Arc<Self>, mut deliver: F) -> io::Result<JoinHandle<()>>
  where
    F: FnMut(Vec<Delivered>, bool) -> bool + Send + 'static,
  {
    let receiver = self.clone();
    std::thread::Builder::new().name("sticky-receiver".into()).spawn(move || {
      let mut buf = vec![0u8; wire::MAX_HANDOFF_RECORD_LEN];
      while !receiver.closing.load(Relaxed) {
        match wait_readable(receiver.channel.as_fd(), PollTimeout::NONE) {
          Err(nix::errno::Errno::EINTR) => continue,
          Err(_) => return,
          Ok(_) => {}
        }
        if receiver.closing.load(Relaxed) {
          return;
        }
        let mut batch = Vec::new();
        let state = receiver.read_available(&mut buf, &mut batch, MAX_DELIVERY);
        let closed = state == ChannelState::Closed && !receiver.closing.load(Relaxed);
        if (!batch.is_empty() || closed) && !deliver(batch, closed) {
          return;
        }
        if state == ChannelState::Closed {
          return;
        }
      }
    })
  }

  /// Sends a reply (a session report) from any thread. Returns false when the
  /// channel is closed or full (the report is lost: the primary then routes
  /// that session as unknown and its client reconnects).
  pub fn send_reply(&self, reply: Reply<'_>) -> bool {
    !self.closing.load(Relaxed) && seqpacket::send_record(self.channel.as_fd(), &wire::encode_reply(reply), &[]).is_ok()
  }

  /// Stops taking connections. The caller has stopped reading (the event
  /// loop's poll); a thread stops at its next look, and wakes for it. Then
  /// the lifeline closes: the primary reads back what this worker did not
  /// read and sends it to other workers.
  pub fn close(&self) {
    if self.closing.swap(true, Relaxed) {
      return;
    }
    // Wakes a thread waiting in poll(); the records still queued stay
    // readable for the primary.
    seqpacket::shutdown_read(self.channel.as_fd());
    drop(self.lifeline.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take());
  }
}

impl Drop for Receiver {
  fn drop(&mut self) {
    self.close();
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::core::wire::{append_handoff, decode_reply, Handoff};
  use std::sync::mpsc;
  use std::time::Duration;

  /// The primary's side of a channel: its end, a reference to the worker's
  /// end, and the worker's lifeline.
  struct Primary {
    end: OwnedFd,
    worker_end: OwnedFd,
    lifeline: OwnedFd,
  }

  impl Primary {
    fn expect_hello(&mut self) -> u32 {
      let mut buf = [0u8; 64];
      let received = seqpacket::recv_record(self.end.as_fd(), &mut buf, true).unwrap();
      let Ok(Reply::Hello { pid }) = decode_reply(&buf[..received.len]) else { panic!("not a hello") };
      assert!(received.fds.is_empty());
      pid
    }

    fn send(&self, seqs: std::ops::RangeInclusive<u64>) -> Vec<OwnedFd> {
      let mut record = Vec::new();
      let mut peers = Vec::new();
      let mut payloads = Vec::new();
      for seq in seqs {
        append_handoff(&Handoff { seq, client: Some("10.1.2.3:4567".parse().unwrap()) }, &mut record);
        let (payload, peer) = seqpacket::socketpair().unwrap();
        payloads.push(payload);
        peers.push(peer);
      }
      let fds: Vec<_> = payloads.iter().map(|fd| fd.as_fd()).collect();
      seqpacket::send_record(self.end.as_fd(), &record, &fds).unwrap();
      peers
    }

    fn lifeline_closed(&self) -> bool {
      let mut byte = [0u8; 1];
      nix::unistd::read(&self.lifeline, &mut byte) == Ok(0)
    }

    /// Reads back what the worker did not read: the sequence numbers.
    fn reclaim(&self) -> Vec<u64> {
      let mut buf = vec![0u8; wire::MAX_HANDOFF_RECORD_LEN];
      let mut seqs = Vec::new();
      while let Ok(received) = seqpacket::recv_record(self.worker_end.as_fd(), &mut buf, false) {
        if received.len == 0 {
          break;
        }
        let handoffs = wire::decode_handoffs(&buf[..received.len]).unwrap();
        assert_eq!(handoffs.len(), received.fds.len(), "each comes back with its descriptor");
        seqs.extend(handoffs.iter().map(|handoff| handoff.seq));
      }
      seqs
    }
  }

  /// A channel made as the primary makes one for a worker it forks.
  fn pair() -> (Primary, OwnedFd) {
    let (end, worker) = seqpacket::socketpair().unwrap();
    let (lifeline, workers_lifeline) = seqpacket::lifeline().unwrap();
    seqpacket::send_record(end.as_fd(), &wire::encode_setup(Setup::Lifeline), &[workers_lifeline.as_fd()]).unwrap();
    let worker_end = worker.try_clone().unwrap();
    (Primary { end, worker_end, lifeline }, worker)
  }

  #[test]
  fn a_worker_takes_its_lifeline_says_hello_and_its_lifeline_closes_with_it() {
    let (mut primary, worker) = pair();
    let receiver = Receiver::start(worker).unwrap();
    assert_eq!(primary.expect_hello(), std::process::id());
    assert!(!primary.lifeline_closed());
    receiver.close();
    assert!(primary.lifeline_closed(), "closing lets the primary know at once");
  }

  #[test]
  fn a_worker_of_the_rendezvous_takes_its_channel_from_its_connection() {
    let (connection, workers_connection) = seqpacket::socketpair().unwrap();
    let (mut primary, worker) = pair();
    // The channel's end goes to the worker over its connection, with the lifeline.
    let mut buf = [0u8; 16];
    let setup = seqpacket::recv_record(worker.as_fd(), &mut buf, false).unwrap();
    let [workers_lifeline]: [OwnedFd; 1] = setup.fds.try_into().unwrap();
    let record = wire::encode_setup(Setup::Channel);
    seqpacket::send_record(connection.as_fd(), &record, &[worker.as_fd(), workers_lifeline.as_fd()]).unwrap();
    drop((worker, workers_lifeline));
    let receiver = Receiver::start(workers_connection).unwrap();
    assert_eq!(primary.expect_hello(), std::process::id());
    receiver.close();
    assert!(primary.lifeline_closed());
  }

  #[test]
  fn a_worker_the_primary_refused_learns_it_at_start() {
    let (connection, workers_connection) = seqpacket::socketpair().unwrap();
    drop(connection);
    let error = Receiver::start(workers_connection).map(drop).unwrap_err();
    assert!(error.to_string().contains("refused"), "{error}");
  }

  #[test]
  fn read_available_delivers_every_connection_queued_with_its_client_then_would_wait() {
    let (mut primary, worker) = pair();
    let receiver = Receiver::start(worker).unwrap();
    primary.expect_hello();
    let _peers = [primary.send(1..=3), primary.send(4..=4)];
    let mut buf = vec![0u8; wire::MAX_HANDOFF_RECORD_LEN];
    let mut batch = Vec::new();
    assert_eq!(receiver.read_available(&mut buf, &mut batch, MAX_DELIVERY), ChannelState::Open);
    assert_eq!(batch.len(), 4);
    assert_eq!(batch[0].client, Some("10.1.2.3:4567".parse().unwrap()));
    assert_eq!(receiver.stats().received.load(Relaxed), 4);
    drop(primary);
    batch.clear();
    assert_eq!(receiver.read_available(&mut buf, &mut batch, MAX_DELIVERY), ChannelState::Closed);
  }

  #[test]
  fn what_a_closed_worker_did_not_read_is_read_back_by_the_primary_and_nothing_twice() {
    let (mut primary, worker) = pair();
    let receiver = Receiver::start(worker).unwrap();
    primary.expect_hello();
    let _peers = [primary.send(1..=2), primary.send(3..=5)];
    let mut buf = vec![0u8; wire::MAX_HANDOFF_RECORD_LEN];
    let mut batch = Vec::new();
    // Reads at most one connection: one record (two connections) comes through.
    receiver.read_available(&mut buf, &mut batch, 1);
    assert_eq!(batch.len(), 2, "a record is never split");
    receiver.close();
    assert!(primary.lifeline_closed());
    assert_eq!(primary.reclaim(), vec![3, 4, 5]);
  }

  #[test]
  fn a_thread_delivers_batches_and_is_told_when_the_primary_closes_the_channel() {
    let (mut primary, worker) = pair();
    let receiver = Receiver::start(worker).unwrap();
    primary.expect_hello();
    let (told, telling) = mpsc::channel();
    receiver.spawn_thread(move |batch, closed| told.send((batch.len(), closed)).is_ok()).unwrap();
    let _peers = primary.send(1..=3);
    assert_eq!(telling.recv_timeout(Duration::from_secs(5)).unwrap(), (3, false));
    drop(primary);
    assert_eq!(telling.recv_timeout(Duration::from_secs(5)).unwrap(), (0, true));
  }

  #[test]
  fn after_close_a_thread_stops_and_the_primary_can_send_nothing_more() {
    let (mut primary, worker) = pair();
    let receiver = Receiver::start(worker).unwrap();
    primary.expect_hello();
    let (delivered, deliveries) = mpsc::channel::<usize>();
    let thread = receiver.spawn_thread(move |batch, _| delivered.send(batch.len()).is_ok()).unwrap();
    receiver.close();
    thread.join().unwrap();
    let refused = seqpacket::send_record(primary.end.as_fd(), b"late", &[]).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EPIPE), "the primary learns at once");
    assert!(primary.lifeline_closed());
    assert!(deliveries.recv_timeout(Duration::from_millis(100)).is_err());
  }
}
