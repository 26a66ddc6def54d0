//! What the accept loop's tasks share: the driver (and through it the
//! ledger), the router, the header limits and the connections reading their
//! header, the counters, the accept gate, and what `close` asked for.
//!
//! The loop runs on one thread (a current-thread tokio runtime), so the state
//! is shared without locks: an `Rc<LoopState>` per task, `Cell`s and
//! `RefCell`s never borrowed across an await. [`handle`](super::handle)
//! builds it and spawns the tasks — [`acceptor`](super::acceptor),
//! [`header_reader`](super::header_reader), [`channels`](super::channels),
//! [`rendezvous`](super::rendezvous) — which depend on this module and on
//! nothing of `handle`'s.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::core::routing::Router;
use crate::core::stats::Stats;

use super::driver::{AcceptGate, Driver, PeekSchedule};
use super::events::{EventSink, Fault, PrimaryEvent, Problem};

/// The accept loop's state, shared by its tasks.
pub struct LoopState {
  pub driver: RefCell<Driver>,
  pub router: Router,
  pub header: HeaderLimits,
  /// Connections reading their routing key.
  pub waiting: RefCell<WaitingSet>,
  pub stats: Arc<Stats>,
  /// The descriptor budget (connections held, waiting for a worker or their header).
  pub max_held: usize,
  pub gate: Rc<AcceptGate>,
  pub peek: Rc<PeekSchedule>,
  /// After `Close`: whether the accept task empties the listen queue first.
  pub drain_queue_on_close: Cell<bool>,
  /// After `Close`: whether it refuses new connections before it does.
  pub refuse_new_on_close: Cell<bool>,
  pub fault: Option<Fault>,
  pub events: Rc<EventSink>,
}

/// How long to wait after an `accept` failed for want of resources (EMFILE,
/// ENFILE, ENOBUFS, ENOMEM): the connection stays in the kernel's queue and
/// the listener stays readable, so retrying at once would spin. Both
/// listeners of the loop (clients, and workers the user forked) use it.
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);

impl LoopState {
  /// Counts a failed `accept` and tells the user (as a warning).
  pub fn report_accept_error(&self, what: &'static str, error: &io::Error) {
    self.stats.accept_errors.fetch_add(1, Relaxed);
    let source = io::Error::from(error.kind());
    let source = error.raw_os_error().map_or(source, io::Error::from_raw_os_error);
    (self.events)(PrimaryEvent::Problem(Problem::AcceptFailed { what, source }));
  }
}

/// Limits on reading a routing key (the modes that peek: a PROXY header, a
/// request head).
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
