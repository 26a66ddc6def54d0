//! The relief thread of a kernel-steered worker (the I/O shell over
//! [`crate::core::relief`]): while connections arrive it looks at the worker's
//! socket's accept queue every few milliseconds, and once it is past a
//! quarter of its limit takes what is queued into the process, to wait
//! there for the worker's JavaScript instead of in a queue the kernel drops
//! from when it is full. While none arrive it sleeps in `poll`, costing
//! nothing.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use socket2::SockRef;

use crate::core::relief::{Decision, ReliefPolicy};
use crate::reuseport::accept_queue;
use crate::shared_stats::SharedRegion;

/// How often, at most, the thread looks at the queue: three quarters of a
/// 511 queue would have to arrive within this to fill it past a look (about
/// 38,000 connections a second for one worker, more than one accepts). Each
/// look is a wake-up (tens of microseconds in a virtual machine): at most
/// 100 a second, and none while no connection arrives.
pub const LOOK_EVERY_MS: u16 = 10;

/// Where a worker counts what it accepts: its seat in the region its primary
/// shares with it, if it was given one.
#[derive(Clone, Debug, Default)]
pub struct SeatRef {
  seat: Option<(Arc<SharedRegion>, usize)>,
}

impl SeatRef {
  pub fn new(region: Arc<SharedRegion>, seat: usize) -> Self {
    SeatRef { seat: region.seat(seat).is_some().then_some((region, seat)) }
  }

  /// Nowhere: counts nothing.
  pub fn none() -> Self {
    SeatRef::default()
  }

  fn with(&self, count: impl FnOnce(&crate::shared_stats::SeatCounters)) {
    if let Some(counters) = self.seat.as_ref().and_then(|(region, seat)| region.seat(*seat)) {
      count(counters);
    }
  }

  /// `n` connections taken off the socket by the JavaScript thread.
  pub fn accepted(&self, n: u64) {
    self.with(|counters| {
      counters.accepted.fetch_add(n, Relaxed);
    });
  }

  fn relieved(&self, n: u64) {
    self.with(|counters| {
      counters.accepted.fetch_add(n, Relaxed);
      counters.relieved.fetch_add(n, Relaxed);
    });
  }

  fn delivered(&self, n: u64) {
    self.with(|counters| {
      counters.delivered.fetch_add(n, Relaxed);
    });
  }
}

/// What the thread and the worker's JavaScript share: the connections taken
/// off the queue and not yet taken by JavaScript.
struct Held {
  connections: Mutex<Vec<OwnedFd>>,
  /// The JavaScript thread was told there are connections to take and has
  /// not taken them yet: do not tell it again.
  told: AtomicBool,
  seat: SeatRef,
}

/// Where the relief thread leaves what it takes, for the JavaScript thread.
#[derive(Clone)]
pub struct ReliefQueue(Arc<Held>);

impl ReliefQueue {
  /// An empty queue; what passes through it is counted on `seat`.
  pub fn new(seat: SeatRef) -> Self {
    ReliefQueue(Arc::new(Held { connections: Mutex::new(Vec::new()), told: AtomicBool::new(false), seat }))
  }

  /// The connections taken off the socket since the last call (the
  /// caller's from here on).
  pub fn take(&self) -> Vec<OwnedFd> {
    let held = &self.0;
    // First: a connection added after the take below tells again.
    held.told.store(false, SeqCst);
    let taken = std::mem::take(&mut *held.connections.lock().unwrap_or_else(PoisonError::into_inner));
    held.seat.delivered(taken.len() as u64);
    taken
  }

  fn len(&self) -> usize {
    self.0.connections.lock().unwrap_or_else(PoisonError::into_inner).len()
  }

  /// Adds what the thread took; true when the JavaScript thread must be told.
  fn add(&self, taken: Vec<OwnedFd>) -> bool {
    self.0.seat.relieved(taken.len() as u64);
    self.0.connections.lock().unwrap_or_else(PoisonError::into_inner).extend(taken);
    !self.0.told.swap(true, SeqCst)
  }
}

/// A running relief thread.
pub struct Relief {
  queue: ReliefQueue,
  stop: Option<OwnedFd>,
  thread: Option<JoinHandle<()>>,
}

impl Relief {
  /// Starts relieving `listener` (a duplicate is the thread's own) into
  /// `queue`: `tell()` is called, from the thread, when connections are
  /// waiting there, once until they are taken.
  pub fn start(
    listener: impl AsFd,
    policy: ReliefPolicy,
    queue: ReliefQueue,
    tell: impl Fn() + Send + 'static,
  ) -> io::Result<Relief> {
    let listener = listener.as_fd().try_clone_to_owned()?;
    // Shared with the JavaScript thread's copy, which libuv makes
    // non-blocking too: accept never waits.
    SockRef::from(&listener).set_nonblocking(true)?;
    let (stop_reader, stop_writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let shared = queue.clone();
    let thread = std::thread::Builder::new()
      .name("sticky-relief".into())
      .spawn(move || relieve(listener, stop_reader, policy, shared, tell))?;
    Ok(Relief { queue, stop: Some(stop_writer), thread: Some(thread) })
  }

  /// Stops the thread (at once: it is woken) and returns what it still held.
  pub fn stop(&mut self) -> Vec<OwnedFd> {
    drop(self.stop.take());
    if let Some(thread) = self.thread.take() {
      let _ = thread.join();
    }
    self.queue.take()
  }
}

impl Drop for Relief {
  fn drop(&mut self) {
    // Whatever it held closes with it.
    let _ = self.stop();
  }
}

fn relieve(listener: OwnedFd, stop: OwnedFd, policy: ReliefPolicy, queue: ReliefQueue, tell: impl Fn()) {
  loop {
    // Asleep until a connection is queued (or the thread is stopped).
    let mut waiting = [PollFd::new(stop.as_fd(), PollFlags::POLLIN), PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    match nix::poll::poll(&mut waiting, PollTimeout::NONE) {
      Err(nix::errno::Errno::EINTR) => continue,
      Ok(_) if waiting[0].revents().is_none_or(|events| events.is_empty()) => {}
      // The stop pipe's writer closed (or polling failed): stop.
      _ => return,
    }
    let Ok(now) = accept_queue(listener.as_fd()) else { return };
    if let Decision::Take { at_most } = policy.decide(now.queued, now.limit, queue.len()) {
      let taken = accept_up_to(&listener, at_most);
      if !taken.is_empty() && queue.add(taken) {
        tell();
      }
    }
    // Then no closer look than every LOOK_EVERY_MS (the JavaScript thread
    // usually takes what is queued meanwhile).
    let mut stopping = [PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
    match nix::poll::poll(&mut stopping, PollTimeout::from(LOOK_EVERY_MS)) {
      Ok(0) | Err(nix::errno::Errno::EINTR) => {}
      _ => return,
    }
  }
}

/// Accepts up to `at_most` queued connections, without waiting; stops at an
/// empty queue or an error (out of descriptors: the rest stay queued).
fn accept_up_to(listener: &OwnedFd, at_most: usize) -> Vec<OwnedFd> {
  let mut taken = Vec::new();
  while taken.len() < at_most {
    // SAFETY: accept4 on a listening socket open for the call; a returned
    // descriptor is new and ours.
    let fd =
      unsafe { libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
    if fd >= 0 {
      // SAFETY: just returned by accept4, owned by nobody else.
      taken.push(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) });
      continue;
    }
    match io::Error::last_os_error().raw_os_error() {
      Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
      _ => break,
    }
  }
  taken
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::listener::listening_socket;
  use std::sync::mpsc;
  use std::time::Duration;

  fn connect(address: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    (0..n).map(|_| std::net::TcpStream::connect(address).unwrap()).collect()
  }

  #[test]
  fn a_queue_past_a_quarter_of_its_limit_is_taken_into_the_process_and_counted() {
    let listener = listening_socket("127.0.0.1:0".parse().unwrap(), 16, false, false).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    let (region, _fd) = SharedRegion::create(4).unwrap();
    let region = Arc::new(region);
    let (told, wake) = mpsc::channel();
    let queue = ReliefQueue::new(SeatRef::new(region.clone(), 2));
    let mut relief = Relief::start(&listener, ReliefPolicy { budget: 100 }, queue.clone(), move || {
      let _ = told.send(());
    })
    .unwrap();
    // A quarter of 16: left in the queue.
    let _calm = connect(address, 4);
    assert!(wake.recv_timeout(Duration::from_millis(100)).is_err(), "a queue a quarter full is left alone");
    assert_eq!(accept_queue(listener.as_fd()).unwrap().queued, 4);
    let _burst = connect(address, 6);
    wake.recv_timeout(Duration::from_secs(5)).expect("told");
    let taken = queue.take();
    assert_eq!(taken.len(), 10, "everything queued");
    assert_eq!(accept_queue(listener.as_fd()).unwrap().queued, 0);
    let counted = region.seat(2).unwrap().totals();
    assert_eq!((counted.accepted, counted.relieved, counted.delivered), (10, 10, 10));
    assert!(relief.stop().is_empty());
  }

  #[test]
  fn stopping_returns_what_is_held_and_never_more_than_the_budget_is_held() {
    let listener = listening_socket("127.0.0.1:0".parse().unwrap(), 8, false, false).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    let mut relief =
      Relief::start(&listener, ReliefPolicy { budget: 3 }, ReliefQueue::new(SeatRef::none()), || {}).unwrap();
    let _clients = connect(address, 8);
    std::thread::sleep(Duration::from_millis(100));
    let held = relief.stop();
    assert_eq!(held.len(), 3, "the budget");
    assert_eq!(accept_queue(listener.as_fd()).unwrap().queued, 5, "the rest stays queued");
  }

  #[test]
  fn a_stopped_thread_lets_go_of_the_socket() {
    let listener = listening_socket("127.0.0.1:0".parse().unwrap(), 8, false, false).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    let mut relief =
      Relief::start(&listener, ReliefPolicy { budget: 3 }, ReliefQueue::new(SeatRef::none()), || {}).unwrap();
    relief.stop();
    drop(listener);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
      std::net::TcpStream::connect(address).unwrap_err().kind(),
      io::ErrorKind::ConnectionRefused,
      "closed with its last copy"
    );
  }
}
