//! Reading a routing key (PROXY header, request head) off a new connection
//! without eating the application's bytes.
//!
//! Each connection waiting for its header is a task with a deadline on the
//! accept loop's thread: a client that sends nothing costs a timer and a
//! registration, not a thread. The bytes are peeked (`MSG_PEEK`) and parsed
//! again as more arrive; readiness is edge-triggered, so a partial header
//! costs one wake-up per arrival, not a spin. Only a PROXY header is ever
//! consumed, exactly, so everything after it (even a TLS ClientHello) reaches
//! the worker untouched.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::task::AbortHandle;

use crate::parsers::Parse;
use crate::routing::{Decision, Refusal, Router};

use super::connection::{self, Connection};
use super::driver::register;
use super::handle::Shared;
use super::stats::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
  /// How long a client has to send its header.
  pub timeout: Duration,
  /// The most bytes read while looking for it.
  pub max_bytes: usize,
  /// Connections reading their header beyond which, when the primary's
  /// descriptors run out, the oldest is closed to make room (the likeliest
  /// slowloris).
  pub max_waiting: usize,
}

/// How reading a header ended when it produced no decision.
#[derive(Debug)]
pub enum NoDecision {
  Refused(Refusal),
  /// The limit of `max_bytes` was reached before the header was complete.
  TooLarge,
  /// The client closed (or reset) the connection first.
  ClosedEarly,
}

/// Decides at once when the bytes are already there (the common case: a
/// client writes right after connecting, often before it is accepted), so
/// the connection needs no task, timer or epoll registration. `None`: the
/// header is not complete yet; wait for it with [`read_decision`].
pub fn decide_now(router: &Router, socket: &Socket, peer: SocketAddr) -> Option<Result<Decision, NoDecision>> {
  const FAST_PATH_BYTES: usize = 2048;
  let decided = |parse: Parse<Decision, Refusal>| match parse {
    Parse::Complete(decision) => {
      Some(consume(socket, decision.consume).map(|()| decision).map_err(|_| NoDecision::ClosedEarly))
    }
    Parse::Invalid(refusal) => Some(Err(NoDecision::Refused(refusal))),
    Parse::Incomplete => None,
  };
  if let Some(outcome) = decided(router.decide(peer, &[])) {
    return Some(outcome);
  }
  let mut buf = [0u8; FAST_PATH_BYTES];
  match peek(socket, &mut buf) {
    Ok(0) => Some(Err(NoDecision::ClosedEarly)),
    Ok(n) => decided(router.decide(peer, &buf[..n])),
    Err(_) => None,
  }
}

/// Peeks at `socket` until `router` decides, then consumes what the decision
/// says (the PROXY header) and returns it.
pub async fn read_decision(
  router: &Router,
  socket: &AsyncFd<Socket>,
  peer: SocketAddr,
  max_bytes: usize,
) -> Result<Decision, NoDecision> {
  let mut buf = Vec::new();
  let mut capacity = max_bytes.min(1024);
  let mut peeked = 0;
  loop {
    match router.decide(peer, &buf[..peeked]) {
      Parse::Complete(decision) => {
        consume(socket.get_ref(), decision.consume).map_err(|_| NoDecision::ClosedEarly)?;
        return Ok(decision);
      }
      Parse::Invalid(refusal) => return Err(NoDecision::Refused(refusal)),
      Parse::Incomplete if peeked == capacity && capacity >= max_bytes => return Err(NoDecision::TooLarge),
      Parse::Incomplete => {}
    }
    if peeked == capacity {
      // Full buffer, still incomplete: look further without waiting.
      capacity = (capacity * 4).min(max_bytes);
    }
    buf.resize(capacity, 0);
    let mut guard = socket.readable().await.map_err(|_| NoDecision::ClosedEarly)?;
    match peek(socket.get_ref(), &mut buf) {
      Ok(0) => return Err(NoDecision::ClosedEarly),
      Ok(n) => {
        // Everything available was seen: wait for the next arrival (tokio
        // keeps the readiness if data came in meanwhile). A full buffer
        // means there may be more: look again at once, with a larger one.
        if n < capacity {
          guard.clear_ready();
        }
        peeked = n;
      }
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
      Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
      Err(_) => return Err(NoDecision::ClosedEarly),
    }
  }
}

fn peek(socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
  Ok(recv(socket.as_raw_fd(), buf, MsgFlags::MSG_PEEK)?)
}

/// Removes exactly `len` bytes, which a peek has already seen in the kernel.
fn consume(socket: &Socket, len: usize) -> io::Result<()> {
  let mut scratch = [0u8; 512];
  let mut left = len;
  while left > 0 {
    let want = left.min(scratch.len());
    match recv(socket.as_raw_fd(), &mut scratch[..want], MsgFlags::empty()) {
      Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
      Ok(n) => left -= n,
      Err(Errno::EINTR) => {}
      Err(errno) => return Err(errno.into()),
    }
  }
  Ok(())
}

/// A connection that is reset (RST, not FIN) if it is dropped before being
/// handed on: refused, timed out, or evicted.
pub struct PendingSocket {
  socket: Option<AsyncFd<Socket>>,
}

impl PendingSocket {
  pub fn new(socket: AsyncFd<Socket>) -> Self {
    PendingSocket { socket: Some(socket) }
  }

  pub fn get(&self) -> &AsyncFd<Socket> {
    self.socket.as_ref().expect("present until handed on")
  }

  /// Hands the connection on: it is no longer reset on drop.
  pub fn into_fd(mut self) -> OwnedFd {
    let socket = self.socket.take().expect("present until handed on");
    OwnedFd::from(socket.into_inner())
  }

  /// Closes without a reset (the client is gone anyway).
  pub fn close_quietly(mut self) {
    drop(self.socket.take());
  }
}

impl Drop for PendingSocket {
  fn drop(&mut self) {
    if let Some(socket) = self.socket.take() {
      connection::arm_reset(socket.get_ref());
    }
  }
}

/// The connections reading their header, oldest first, so the oldest can be
/// evicted at the limit.
#[derive(Default)]
pub struct WaitingSet {
  next_id: u64,
  /// Ids in arrival order; cleaned lazily.
  order: VecDeque<u64>,
  tasks: HashMap<u64, AbortHandle>,
}

impl WaitingSet {
  pub fn len(&self) -> usize {
    self.tasks.len()
  }

  pub fn next_id(&mut self) -> u64 {
    self.next_id += 1;
    self.next_id
  }

  pub fn insert(&mut self, id: u64, task: AbortHandle) {
    self.order.push_back(id);
    self.tasks.insert(id, task);
  }

  pub fn remove(&mut self, id: u64) {
    self.tasks.remove(&id);
    // `order` is cleaned lazily; keep it from growing past twice the live set.
    if self.order.len() > 2 * self.tasks.len() + 64 {
      let tasks = &self.tasks;
      self.order.retain(|id| tasks.contains_key(id));
    }
  }

  /// Aborts the oldest waiting connection's task (its socket is reset as the
  /// task is dropped); returns false when there is none.
  pub fn evict_oldest(&mut self) -> bool {
    while let Some(id) = self.order.pop_front() {
      if let Some(task) = self.tasks.remove(&id) {
        task.abort();
        return true;
      }
    }
    false
  }
}

/// Counts how a header read ended.
pub fn count(stats: &Stats, outcome: &Result<Decision, NoDecision>) {
  match outcome {
    Ok(_) => {}
    Err(NoDecision::Refused(Refusal::UntrustedProxy { .. })) => {
      stats.dropped_untrusted_proxy.fetch_add(1, Relaxed);
    }
    Err(NoDecision::Refused(_)) | Err(NoDecision::TooLarge) => {
      stats.dropped_invalid_header.fetch_add(1, Relaxed);
    }
    Err(NoDecision::ClosedEarly) => {
      stats.closed_before_header.fetch_add(1, Relaxed);
    }
  }
}

/// Reads the connection's routing key, then hands it to the driver: at once
/// when the bytes are already there, else in a task with the header timeout.
/// When the descriptors run out and more than `max_waiting` are reading, the
/// oldest reading is closed to make room.
pub fn read_header_then_dispatch(shared: &Rc<Shared>, socket: Socket, peer: SocketAddr) {
  if socket.set_nonblocking(true).is_err() {
    return;
  }
  if let Some(outcome) = decide_now(&shared.router, &socket, peer) {
    count(&shared.stats, &outcome);
    match outcome {
      Ok(decision) => {
        let connection = Connection { fd: OwnedFd::from(socket), client: decision.client };
        shared.driver.borrow_mut().accept(decision.route, connection);
      }
      Err(NoDecision::ClosedEarly) => drop(socket),
      Err(NoDecision::Refused(_) | NoDecision::TooLarge) => connection::reset(OwnedFd::from(socket)),
    }
    return;
  }
  let Ok(socket) = register(socket, Interest::READABLE) else {
    return;
  };
  let socket = PendingSocket::new(socket);
  // A burst of clients slow to send their first bytes looks the same as a
  // slowloris: each gets its `headerTimeout`, and only running out of
  // descriptors makes room by closing the oldest.
  let held = shared.driver.borrow().ledger().held();
  let mut waiting = shared.waiting.borrow_mut();
  while waiting.len() >= shared.header.max_waiting && held + waiting.len() >= shared.max_held && waiting.evict_oldest()
  {
    shared.stats.dropped_header_overflow.fetch_add(1, Relaxed);
    shared.stats.reading_header.fetch_sub(1, Relaxed);
    shared.driver.borrow_mut().report_budget_reset();
  }
  let id = waiting.next_id();
  shared.stats.reading_header.fetch_add(1, Relaxed);
  let task_shared = shared.clone();
  let task = tokio::task::spawn_local(async move {
    let shared = task_shared;
    let limits = shared.header;
    let outcome =
      tokio::time::timeout(limits.timeout, read_decision(&shared.router, socket.get(), peer, limits.max_bytes)).await;
    shared.waiting.borrow_mut().remove(id);
    shared.stats.reading_header.fetch_sub(1, Relaxed);
    let Ok(outcome) = outcome else {
      shared.stats.dropped_header_timeout.fetch_add(1, Relaxed);
      return; // `socket` is reset as it drops
    };
    count(&shared.stats, &outcome);
    match outcome {
      Ok(decision) => {
        let connection = Connection { fd: socket.into_fd(), client: decision.client };
        shared.driver.borrow_mut().accept(decision.route, connection);
      }
      Err(NoDecision::ClosedEarly) => socket.close_quietly(),
      Err(NoDecision::Refused(_) | NoDecision::TooLarge) => drop(socket),
    }
  });
  waiting.insert(id, task.abort_handle());
}
