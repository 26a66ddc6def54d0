//! Which worker gets a connection, and the bookkeeping that loses none.
//!
//! Single-threaded: owned by the accept loop's thread, borrowed by its tasks
//! between awaits. Every connection is in exactly one place until a worker
//! acknowledges it: `parked` (no worker alive), a slot's `backlog` (channel
//! full) or a slot's `unacked` (sent, the primary still holds its fd). When a
//! channel closes, everything it held goes back through `dispatch` to each
//! client's next rendezvous choice.
//!
//! A burst is absorbed, not reset. Every accepted connection is held here
//! until a worker takes it, up to `max_held` in all (sized from the process's
//! file descriptor limit), whatever the per-slot limits. The kernel's listen
//! queue is the worse place to wait: it is small (`backlog`, 511), and once
//! full the kernel drops handshakes, which ends in client timeouts and resets.
//! At `max_held` accepting pauses while the slots over their limit
//! (`max_pending_per_slot`) catch up — for at most `CONGESTION_HOLD` per
//! episode, so one frozen worker cannot stall every other slot's clients.
//! After that, a new connection for a slot still over its limit (or to be
//! parked beyond `max_parked`) is reset, counted and reported: the
//! descriptors are truly running out. A connection already held is never
//! reset for a limit, however often it is re-dispatched.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use crate::channel;
use crate::hrw::{LiveSlots, Rendezvous, SlotId};
use crate::routing::Route;
use crate::sessions::SessionTable;
use crate::wire::{self, Handoff, Reply};

use super::stats::Stats;

/// An accepted connection on its way to a worker.
pub struct Connection {
  pub fd: OwnedFd,
  pub route: Route,
  /// The client named by a PROXY header.
  pub client: Option<SocketAddr>,
}

/// Why a slot's channel closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEnd {
  /// The worker closed it: graceful `server.close()`, or the process exited.
  WorkerClosed,
  /// A send or receive failed (ECONNRESET, EPIPE, ...).
  Failed,
  /// The worker spoke something this build does not understand.
  ProtocolError,
  /// A new channel for the same slot replaced it.
  Replaced,
}

/// What the loop must tell JavaScript about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
  /// The slot's channel task has work (a queued hand-off) or must notice a
  /// closed or replaced channel.
  Wake {
    slot: SlotId,
  },
  SlotReady {
    slot: SlotId,
    pid: u32,
  },
  SlotClosed {
    slot: SlotId,
    end: ChannelEnd,
    requeued: usize,
  },
  ProtocolError {
    slot: SlotId,
    message: String,
  },
  /// New connections were reset because `max_held` connections were already
  /// held (file descriptors running out); reported at most once per second.
  Overloaded {
    held: usize,
    reset: u64,
  },
}

/// How long a slot over its pending limit pauses accepting when the
/// descriptors run out, per episode of congestion: long enough for a busy
/// worker to catch up while new clients wait in the kernel's queue, short
/// enough that a frozen worker does not stall the clients of every other slot.
pub const CONGESTION_HOLD: Duration = Duration::from_millis(500);

/// Whether the accept loop may take connections off the listen queue now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
  Open,
  /// Not now; ask again when woken, or after this long at the latest.
  Paused(Option<Duration>),
}

/// A slot's connection to its current worker.
struct SlotChannel {
  generation: u64,
  fd: OwnedFd,
  /// The worker said hello: its server is listening and its receiver runs.
  ready: bool,
  /// The worker's pid, from its hello.
  pid: u32,
  next_seq: u64,
  /// Waiting for room in the channel, in order.
  backlog: VecDeque<Connection>,
  /// Sent and not yet acknowledged, in sequence order.
  unacked: VecDeque<(u64, Connection)>,
}

impl SlotChannel {
  fn pending(&self) -> usize {
    self.backlog.len() + self.unacked.len()
  }
}

/// The outcome of reading or writing a channel, for the task that waits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
  /// The kernel has nothing more now: wait for readiness again.
  WouldBlock,
  /// Nothing left to do (nothing to write).
  Idle,
  /// The channel is gone (closed, replaced): the task should end.
  Gone,
}

pub struct Dispatcher {
  hrw: Rendezvous,
  slots: Vec<Option<SlotChannel>>,
  /// A new worker's channel waiting for its hello while the slot's current
  /// worker still serves (rolling reload): it takes over only when ready.
  standby: Vec<Option<SlotChannel>>,
  live: LiveSlots,
  parked: VecDeque<Connection>,
  max_pending_per_slot: usize,
  max_parked: usize,
  max_held: usize,
  /// Connections held anywhere here (parked, backlogs, unacknowledged).
  held: usize,
  /// Per slot: since when (ms) its pending count has been at its limit, until
  /// it falls back to half of it (an episode of congestion).
  congested_since: Vec<Option<u64>>,
  /// Resets for `max_held` not yet reported, and when the last report went out.
  overload_resets: u64,
  overload_reported_ms: Option<u64>,
  /// True once every slot has said hello once (or the start-up wait ended):
  /// before that, clients would be spread over the first workers up and then
  /// moved, breaking their sessions.
  started: bool,
  closed: bool,
  next_generation: u64,
  /// Engine.io sessions and their owners (`sid` routing only).
  sessions: Option<SessionTable>,
  clock: std::time::Instant,
  stats: Arc<Stats>,
  notices: Vec<Notice>,
  record: Vec<u8>,
}

pub struct DispatcherLimits {
  /// A slot's share: past this many pending hand-offs, its new connections
  /// are the ones paused for, then reset, when `max_held` is reached.
  pub max_pending_per_slot: usize,
  /// The parked queue's share (no worker alive), in the same sense.
  pub max_parked: usize,
  /// Connections held in all: the descriptor budget.
  pub max_held: usize,
}

impl Dispatcher {
  pub fn new(
    hrw: Rendezvous,
    slot_count: u16,
    limits: DispatcherLimits,
    sessions: Option<SessionTable>,
    stats: Arc<Stats>,
  ) -> Self {
    debug_assert_eq!(stats.slots.len(), usize::from(slot_count));
    Dispatcher {
      hrw,
      slots: (0..slot_count).map(|_| None).collect(),
      standby: (0..slot_count).map(|_| None).collect(),
      live: LiveSlots::default(),
      parked: VecDeque::new(),
      max_pending_per_slot: limits.max_pending_per_slot,
      max_parked: limits.max_parked,
      max_held: limits.max_held,
      held: 0,
      congested_since: vec![None; usize::from(slot_count)],
      overload_resets: 0,
      overload_reported_ms: None,
      started: false,
      closed: false,
      next_generation: 1,
      sessions,
      clock: std::time::Instant::now(),
      stats,
      notices: Vec::new(),
      record: Vec::with_capacity(wire::HANDOFF_HEADER_LEN),
    }
  }

  #[cfg(test)]
  pub fn hrw(&self) -> &Rendezvous {
    &self.hrw
  }

  /// Whether the accept loop should take connections off the listen queue now.
  /// When it should not, they wait in the kernel's backlog (the `backlog`
  /// option), which costs the primary nothing.
  pub fn accepting(&self) -> bool {
    !self.closed && self.started && !self.live.is_empty() && self.admission() == Admission::Open
  }

  /// Backpressure alone (not start-up or the lack of a worker): paused while
  /// the descriptor budget is used up and a slot over its limit is within
  /// its hold.
  pub fn admission(&self) -> Admission {
    if self.held < self.max_held {
      return Admission::Open;
    }
    let now = self.now_ms();
    let hold = CONGESTION_HOLD.as_millis() as u64;
    let pause_left = self
      .congested_since
      .iter()
      .flatten()
      .map(|&since| (since + hold).saturating_sub(now))
      .filter(|&left| left > 0)
      .max();
    match pause_left {
      Some(left) => Admission::Paused(Some(Duration::from_millis(left))),
      None => Admission::Open,
    }
  }

  /// Ends the start-up wait even if some workers never said hello.
  pub fn end_startup_wait(&mut self) {
    self.started = true;
  }

  pub fn close(&mut self) {
    self.closed = true;
  }

  pub fn is_closed(&self) -> bool {
    self.closed
  }

  pub fn take_notices(&mut self) -> Vec<Notice> {
    std::mem::take(&mut self.notices)
  }

  /// Installs a new channel for `slot`; returns its generation, which the
  /// channel's task uses to notice that it has been replaced. While the slot's
  /// current worker is serving, the new channel waits on standby and takes
  /// over at its hello (rolling reload: the slot is never empty); otherwise it
  /// replaces the current one at once (respawn).
  pub fn attach(&mut self, slot: SlotId, fd: OwnedFd) -> u64 {
    let index = usize::from(slot);
    let generation = self.next_generation;
    self.next_generation += 1;
    let channel = SlotChannel {
      generation,
      fd,
      ready: false,
      pid: 0,
      next_seq: 1,
      backlog: VecDeque::new(),
      unacked: VecDeque::new(),
    };
    if self.slots[index].as_ref().is_some_and(|current| current.ready) {
      if let Some(previous) = self.standby[index].replace(channel) {
        self.notices.push(Notice::SlotClosed { slot, end: ChannelEnd::Replaced, requeued: 0 });
        drop(previous);
      }
    } else {
      if self.slots[index].is_some() {
        self.close_channel(slot, ChannelEnd::Replaced);
      }
      self.slots[index] = Some(channel);
    }
    self.stats.slots[index].channels.fetch_add(1, Relaxed);
    generation
  }

  /// The lowest slot without a channel (for workers that connect on their own).
  pub fn free_slot(&self) -> Option<SlotId> {
    (0..self.slots.len())
      .find(|&index| self.slots[index].is_none() && self.standby[index].is_none())
      .map(|i| i as SlotId)
  }

  /// Nothing waits anywhere: no parked connection, and every slot's backlog
  /// and unacknowledged hand-offs are empty.
  pub fn is_idle(&self) -> bool {
    self.parked.is_empty() && self.slots.iter().flatten().all(|channel| channel.pending() == 0)
  }

  /// Whether this generation of the slot's channel (current or standby) is still open.
  pub fn has_channel(&self, slot: SlotId, generation: u64) -> bool {
    self.current(slot, generation).is_some()
  }

  /// The worker owes acknowledgements, or its hello: read its replies soon.
  pub fn awaits_replies(&self, slot: SlotId, generation: u64) -> bool {
    self.current(slot, generation).is_some_and(|channel| !channel.ready || !channel.unacked.is_empty())
  }

  pub fn wants_write(&self, slot: SlotId, generation: u64) -> bool {
    self.current(slot, generation).is_some_and(|channel| !channel.backlog.is_empty())
  }

  /// The slot's current or standby channel of that generation.
  fn current(&self, slot: SlotId, generation: u64) -> Option<&SlotChannel> {
    let index = usize::from(slot);
    [self.slots.get(index)?, self.standby.get(index)?]
      .into_iter()
      .flatten()
      .find(|channel| channel.generation == generation)
  }

  fn is_standby(&self, slot: SlotId, generation: u64) -> bool {
    self.standby[usize::from(slot)].as_ref().is_some_and(|channel| channel.generation == generation)
  }

  /// Closes whichever channel of the slot has this generation.
  fn close_generation(&mut self, slot: SlotId, generation: u64, end: ChannelEnd) {
    if self.is_standby(slot, generation) {
      // A new worker that left before it was ready: nothing was sent to it.
      self.standby[usize::from(slot)] = None;
      self.notices.push(Notice::SlotClosed { slot, end, requeued: 0 });
      self.notices.push(Notice::Wake { slot });
    } else {
      self.close_channel(slot, end);
    }
  }

  fn now_ms(&self) -> u64 {
    u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
  }

  /// The slot a route leads to now, among the live slots.
  fn choose(&mut self, route: &Route) -> Option<SlotId> {
    match route {
      Route::Hash(key_hash) => self.hrw.pick(*key_hash, self.live.as_slice()),
      Route::Session(sid) => {
        let now = self.now_ms();
        let owner = |dispatcher: &mut Self| {
          let sessions = dispatcher.sessions.as_mut()?;
          sessions.lookup(sid, now).filter(|&slot| dispatcher.live.contains(slot))
        };
        if let Some(slot) = owner(self) {
          return Some(slot);
        }
        // The worker reports a session before its handshake response leaves,
        // so a report can only be waiting unread in a channel: read them all.
        self.read_all_replies();
        if let Some(slot) = owner(self) {
          return Some(slot);
        }
        // Unknown (expired, or its worker died): any worker answers "Session
        // ID unknown", and the client reconnects with a new handshake.
        self.pick_new_session(false)
      }
      Route::NewSession { handshake } => self.pick_new_session(*handshake),
    }
  }

  fn pick_new_session(&mut self, handshake: bool) -> Option<SlotId> {
    let live = self.live.as_slice();
    match self.sessions.as_mut() {
      Some(sessions) => sessions.pick_new(live, handshake),
      None => live.first().copied(),
    }
  }

  /// Reads what every current channel has for us now (a session report may
  /// wait on any of them).
  fn read_all_replies(&mut self) {
    self.read_replies_where(|_| true);
  }

  /// Reads the acknowledgements of the channels that owe some: one `recvmsg`
  /// per busy slot, none for idle ones (their timer notices a hello or a close).
  pub fn read_owed_acks(&mut self) {
    self.read_replies_where(|channel| !channel.unacked.is_empty());
  }

  fn read_replies_where(&mut self, wanted: impl Fn(&SlotChannel) -> bool) {
    for index in 0..self.slots.len() {
      if let Some(generation) = self.slots[index].as_ref().filter(|channel| wanted(channel)).map(|c| c.generation) {
        self.read_replies(index as SlotId, generation);
      }
    }
  }

  /// The connections held here: parked, queued or unacknowledged.
  pub fn held(&self) -> usize {
    self.held
  }

  /// Takes a newly accepted connection into the ledger and dispatches it.
  pub fn accept(&mut self, connection: Connection) {
    self.held += 1;
    self.dispatch(connection, true);
  }

  /// Sends `connection` to its route's slot among the live ones, parks it
  /// when no slot is live. A `fresh` connection (just accepted) over its
  /// slot's limit is reset and counted if `max_held` connections are held.
  fn dispatch(&mut self, connection: Connection, fresh: bool) {
    let Some(slot) = self.choose(&connection.route) else {
      self.park(connection, fresh);
      return;
    };
    let index = usize::from(slot);
    let Some(pending) = self.slots[index].as_ref().map(SlotChannel::pending) else {
      debug_assert!(false, "live slot {slot} has no channel");
      self.park(connection, fresh);
      return;
    };
    if fresh && pending >= self.max_pending_per_slot && self.held > self.max_held {
      self.stats.slots[index].dropped_queue_full.fetch_add(1, Relaxed);
      self.reset_overloaded(connection);
      return;
    }
    if pending + 1 >= self.max_pending_per_slot && self.congested_since[index].is_none() {
      self.congested_since[index] = Some(self.now_ms());
    }
    let Some(channel) = self.slots[index].as_mut() else {
      self.park(connection, fresh);
      return;
    };
    self.stats.slots[index].dispatched.fetch_add(1, Relaxed);
    self.stats.slots[index].pending.fetch_add(1, Relaxed);
    channel.backlog.push_back(connection);
    if channel.backlog.len() == 1 {
      // Nothing queued before it: send now rather than wait for the task.
      let generation = channel.generation;
      self.flush(slot, generation);
    }
  }

  fn park(&mut self, connection: Connection, fresh: bool) {
    if fresh && self.parked.len() >= self.max_parked && self.held > self.max_held {
      self.stats.dropped_no_worker.fetch_add(1, Relaxed);
      self.reset_overloaded(connection);
      return;
    }
    self.parked.push_back(connection);
    self.stats.parked.store(self.parked.len() as u64, Relaxed);
  }

  /// Resets a connection for want of descriptors, and reports it (at most
  /// once per second, with the count since the last report).
  fn reset_overloaded(&mut self, connection: Connection) {
    reset(connection);
    self.held -= 1;
    self.report_overload_reset();
  }

  /// Counts a connection closed for want of descriptors (here, or one
  /// evicted while reading its header) for the next report.
  pub fn report_overload_reset(&mut self) {
    self.overload_resets += 1;
    let now = self.now_ms();
    if self.overload_reported_ms.is_none_or(|last| now.saturating_sub(last) >= 1000) {
      self.notices.push(Notice::Overloaded { held: self.held, reset: self.overload_resets });
      self.overload_resets = 0;
      self.overload_reported_ms = Some(now);
    }
  }

  /// Sends what the slot's backlog holds until the channel is full.
  pub fn flush(&mut self, slot: SlotId, generation: u64) -> Progress {
    let index = usize::from(slot);
    loop {
      let Some(channel) = self.slots[index].as_mut().filter(|channel| channel.generation == generation) else {
        return Progress::Gone;
      };
      let Some(connection) = channel.backlog.front() else {
        return Progress::Idle;
      };
      let seq = channel.next_seq;
      wire::encode_handoff(&Handoff { seq, client: connection.client, prefix: &[] }, &mut self.record);
      match channel::send_record(channel.fd.as_fd(), &self.record, Some(connection.fd.as_fd())) {
        Ok(()) => {
          channel.next_seq += 1;
          if let Some(connection) = channel.backlog.pop_front() {
            channel.unacked.push_back((seq, connection));
          }
        }
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
          self.notices.push(Notice::Wake { slot });
          return Progress::WouldBlock;
        }
        Err(_) => {
          self.close_channel(slot, ChannelEnd::Failed);
          return Progress::Gone;
        }
      }
    }
  }

  /// Reads the worker's replies until the channel is empty.
  pub fn read_replies(&mut self, slot: SlotId, generation: u64) -> Progress {
    let mut buf = [0u8; wire::MAX_REPLY_LEN];
    loop {
      let Some(channel) = self.current(slot, generation) else {
        return Progress::Gone;
      };
      match channel::recv_record(channel.fd.as_fd(), &mut buf, false) {
        Ok(received) if received.len == 0 => {
          self.close_generation(slot, generation, ChannelEnd::WorkerClosed);
          return Progress::Gone;
        }
        // A worker never sends descriptors; one that arrives is closed here.
        Ok(received) => match wire::decode_reply(&buf[..received.len]) {
          Ok(reply) => self.on_reply(slot, generation, reply),
          Err(error) => {
            self.notices.push(Notice::ProtocolError { slot, message: error.to_string() });
            self.close_generation(slot, generation, ChannelEnd::ProtocolError);
            return Progress::Gone;
          }
        },
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Progress::WouldBlock,
        Err(_) => {
          self.close_generation(slot, generation, ChannelEnd::Failed);
          return Progress::Gone;
        }
      }
    }
  }

  fn on_reply(&mut self, slot: SlotId, generation: u64, reply: Reply<'_>) {
    let index = usize::from(slot);
    if let (Reply::Hello { pid }, true) = (reply, self.is_standby(slot, generation)) {
      // The new worker is ready: it takes the slot, and the old worker's
      // channel closes (it finishes what it took, then exits); what the old
      // worker had not taken goes to the new one.
      let Some(mut promoted) = self.standby[index].take() else { return };
      promoted.ready = true;
      promoted.pid = pid;
      self.notices.push(Notice::SlotReady { slot, pid });
      match self.slots[index].replace(promoted) {
        Some(old) => self.retire(slot, old, ChannelEnd::Replaced),
        None => {
          self.stats.slots[index].pid.store(pid, Relaxed);
          self.rebuild_live();
        }
      }
      return;
    }
    let Some(channel) = self.slots[index].as_mut().filter(|channel| channel.generation == generation) else {
      return;
    };
    match reply {
      Reply::Hello { pid } => {
        if channel.ready {
          return;
        }
        channel.ready = true;
        channel.pid = pid;
        self.stats.slots[index].pid.store(pid, Relaxed);
        self.notices.push(Notice::SlotReady { slot, pid });
        self.rebuild_live();
        if !self.started && self.slots.iter().all(|s| s.as_ref().is_some_and(|c| c.ready)) {
          self.started = true;
        }
        self.unpark();
      }
      Reply::Ack { up_to } => {
        let mut acknowledged = 0u64;
        while channel.unacked.front().is_some_and(|(seq, _)| *seq <= up_to) {
          // Dropping the connection closes the primary's copy of the fd; the
          // worker holds its own.
          channel.unacked.pop_front();
          acknowledged += 1;
        }
        self.stats.slots[index].acknowledged.fetch_add(acknowledged, Relaxed);
        self.stats.slots[index].pending.fetch_sub(acknowledged, Relaxed);
        self.held -= acknowledged as usize;
        if channel.pending() <= self.max_pending_per_slot / 2 {
          self.congested_since[index] = None;
        }
      }
      Reply::SessionOpened { sid } => {
        let now = self.now_ms();
        if let Some(sessions) = self.sessions.as_mut() {
          if !sessions.open(sid, slot, now) {
            self.stats.sessions_refused.fetch_add(1, Relaxed);
          }
          self.stats.slots[index].sessions.store(sessions.sessions_of(slot), Relaxed);
        }
      }
      Reply::SessionClosed { sid } => {
        if let Some(sessions) = self.sessions.as_mut() {
          sessions.close(sid);
          self.stats.slots[index].sessions.store(sessions.sessions_of(slot), Relaxed);
        }
      }
    }
  }

  /// Forgets sessions idle for longer than their TTL (`sid` routing).
  pub fn expire_sessions(&mut self) {
    let now = self.now_ms();
    if let Some(sessions) = self.sessions.as_mut() {
      sessions.expire(now);
      for (slot, slot_stats) in self.stats.slots.iter().enumerate() {
        slot_stats.sessions.store(sessions.sessions_of(slot as SlotId), Relaxed);
      }
    }
  }

  /// Closes a slot's channel and sends every connection its worker had not
  /// taken to each client's next choice. A standby channel (a worker starting
  /// for this slot) becomes the current one.
  pub fn close_channel(&mut self, slot: SlotId, end: ChannelEnd) {
    let index = usize::from(slot);
    let Some(channel) = self.slots[index].take() else {
      return;
    };
    self.slots[index] = self.standby[index].take();
    self.retire(slot, channel, end);
  }

  /// Closes `channel`, no longer the slot's current one, and re-dispatches
  /// everything its worker had not taken.
  fn retire(&mut self, slot: SlotId, channel: SlotChannel, end: ChannelEnd) {
    let index = usize::from(slot);
    let requeued: Vec<Connection> =
      channel.backlog.into_iter().chain(channel.unacked.into_iter().map(|(_, connection)| connection)).collect();
    self.congested_since[index] = None;
    let slot_stats = &self.stats.slots[index];
    slot_stats.pending.store(0, Relaxed);
    slot_stats.redispatched.fetch_add(requeued.len() as u64, Relaxed);
    slot_stats.pid.store(0, Relaxed);
    slot_stats.sessions.store(0, Relaxed);
    if let Some(sessions) = self.sessions.as_mut() {
      sessions.forget_slot(slot);
    }
    self.notices.push(Notice::SlotClosed { slot, end, requeued: requeued.len() });
    self.notices.push(Notice::Wake { slot });
    // `channel.fd` closes here: a worker still holding the other end sees EOF.
    drop(channel.fd);
    if let Some(current) = self.slots[index].as_ref().filter(|current| current.ready) {
      // A standby worker took over: the slot stays live under its pid.
      slot_stats.pid.store(current.pid, Relaxed);
    }
    self.rebuild_live();
    for connection in requeued {
      self.dispatch(connection, false);
    }
  }

  fn rebuild_live(&mut self) {
    let live: Vec<SlotId> = self
      .slots
      .iter()
      .enumerate()
      .filter(|(_, channel)| channel.as_ref().is_some_and(|c| c.ready))
      .map(|(slot, _)| slot as SlotId)
      .collect();
    for (slot, slot_stats) in self.stats.slots.iter().enumerate() {
      slot_stats.live.store(live.contains(&(slot as SlotId)), Relaxed);
    }
    self.live = LiveSlots::from_slots(live);
  }

  fn unpark(&mut self) {
    if self.live.is_empty() {
      return;
    }
    let parked = std::mem::take(&mut self.parked);
    self.stats.parked.store(0, Relaxed);
    for connection in parked {
      self.dispatch(connection, false);
    }
  }
}

/// Closes a connection with RST (`SO_LINGER` 0): the client learns at once
/// that it was refused, and no `TIME_WAIT` is left in the primary.
pub fn reset(connection: Connection) {
  let socket = socket2::SockRef::from(&connection.fd);
  let _ = socket.set_linger(Some(Duration::ZERO));
  drop(connection);
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::channel::{recv_record, send_record};
  use crate::sessions::NewSessionBalance;
  use crate::wire::{decode_handoff, encode_reply};

  struct Worker {
    end: OwnedFd,
  }

  impl Worker {
    fn say(&self, reply: Reply) {
      send_record(self.end.as_fd(), &encode_reply(reply), None).unwrap();
    }

    /// Receives every handoff waiting, returning their sequence numbers.
    fn take_all(&self) -> Vec<u64> {
      let mut seqs = Vec::new();
      let mut buf = [0u8; 256];
      while let Ok(received) = recv_record(self.end.as_fd(), &mut buf, false) {
        if received.len == 0 {
          break;
        }
        seqs.push(decode_handoff(&buf[..received.len]).unwrap().seq);
      }
      seqs
    }
  }

  fn dispatcher(slots: u16) -> (Dispatcher, Vec<(Worker, u64)>) {
    let stats = Arc::new(Stats::new(usize::from(slots)));
    let mut dispatcher = Dispatcher::new(
      Rendezvous::default(),
      slots,
      DispatcherLimits { max_pending_per_slot: 4, max_parked: 2, max_held: 6 },
      Some(SessionTable::new(slots, NewSessionBalance::LeastConnection, 60_000, 100, 1)),
      stats,
    );
    let mut workers = Vec::new();
    for slot in 0..slots {
      let (primary_end, worker_end) = channel::socketpair().unwrap();
      let generation = dispatcher.attach(slot, primary_end);
      let worker = Worker { end: worker_end };
      worker.say(Reply::Hello { pid: 1000 + u32::from(slot) });
      assert_eq!(dispatcher.read_replies(slot, generation), Progress::WouldBlock);
      workers.push((worker, generation));
    }
    (dispatcher, workers)
  }

  /// A connection whose key goes first to `slot` among `all` slots.
  fn connection_for(dispatcher: &Dispatcher, slot: SlotId, all: &[SlotId]) -> Connection {
    let key_hash = (0u64..)
      .map(|i| dispatcher.hrw().key_hash(&i.to_le_bytes()))
      .find(|&h| dispatcher.hrw().pick(h, all) == Some(slot))
      .unwrap();
    let (fd, _) = channel::socketpair().unwrap();
    Connection { fd, route: Route::Hash(key_hash), client: None }
  }

  #[test]
  fn accepting_waits_until_every_worker_said_hello() {
    let stats = Arc::new(Stats::new(2));
    let mut dispatcher = Dispatcher::new(
      Rendezvous::default(),
      2,
      DispatcherLimits { max_pending_per_slot: 4, max_parked: 2, max_held: 6 },
      None,
      stats,
    );
    let (first, first_worker) = channel::socketpair().unwrap();
    let generation = dispatcher.attach(0, first);
    let first_worker = Worker { end: first_worker };
    first_worker.say(Reply::Hello { pid: 1 });
    dispatcher.read_replies(0, generation);
    assert!(!dispatcher.accepting(), "one of two workers is up: wait");
    dispatcher.end_startup_wait();
    assert!(dispatcher.accepting());
  }

  #[test]
  fn acknowledged_connections_are_released_and_counted() {
    let (mut dispatcher, workers) = dispatcher(2);
    assert!(dispatcher.accepting());
    let connection = connection_for(&dispatcher, 1, &[0, 1]);
    dispatcher.accept(connection);
    let (worker, generation) = &workers[1];
    assert_eq!(worker.take_all(), vec![1]);
    assert_eq!(dispatcher.stats.slots[1].pending.load(Relaxed), 1);
    worker.say(Reply::Ack { up_to: 1 });
    dispatcher.read_replies(1, *generation);
    assert_eq!(dispatcher.stats.slots[1].acknowledged.load(Relaxed), 1);
    assert_eq!(dispatcher.stats.slots[1].pending.load(Relaxed), 0);
  }

  #[test]
  fn a_closed_worker_s_unacknowledged_connections_go_to_the_next_choice() {
    let (mut dispatcher, mut workers) = dispatcher(3);
    for _ in 0..3 {
      let connection = connection_for(&dispatcher, 2, &[0, 1, 2]);
      dispatcher.accept(connection);
    }
    let (dead, generation) = workers.remove(2);
    assert_eq!(dead.take_all().len(), 3);
    drop(dead);
    assert_eq!(dispatcher.read_replies(2, generation), Progress::Gone);
    let taken: usize = workers.iter().map(|(worker, _)| worker.take_all().len()).sum();
    assert_eq!(taken, 3, "every unacknowledged connection reaches a survivor");
    assert_eq!(dispatcher.stats.slots[2].redispatched.load(Relaxed), 3);
    let notices = dispatcher.take_notices();
    assert!(
      notices.contains(&Notice::SlotClosed { slot: 2, end: ChannelEnd::WorkerClosed, requeued: 3 }),
      "{notices:?}"
    );
  }

  #[test]
  fn a_slot_over_its_limit_keeps_taking_connections_until_the_descriptor_budget_is_used_up() {
    // max_pending_per_slot 4, max_held 6.
    let (mut dispatcher, _workers) = dispatcher(2);
    for _ in 0..6 {
      let connection = connection_for(&dispatcher, 0, &[0, 1]);
      dispatcher.accept(connection);
      assert!(dispatcher.accepting() || dispatcher.held() == 6, "no pause before the budget is used up");
    }
    assert_eq!(dispatcher.stats.slots[0].dispatched.load(Relaxed), 6, "held beyond the slot's limit");
    assert!(matches!(dispatcher.admission(), Admission::Paused(Some(_))), "budget used up: wait for the slot");
    assert_eq!(dispatcher.stats.snapshot().dropped, 0);
  }

  #[test]
  fn past_the_budget_a_new_connection_for_a_slot_over_its_limit_is_reset_counted_and_reported() {
    let (mut dispatcher, workers) = dispatcher(2);
    for _ in 0..7 {
      let connection = connection_for(&dispatcher, 0, &[0, 1]);
      dispatcher.accept(connection);
    }
    assert_eq!(dispatcher.stats.slots[0].dispatched.load(Relaxed), 6);
    assert_eq!(dispatcher.stats.slots[0].dropped_queue_full.load(Relaxed), 1);
    assert_eq!(dispatcher.stats.snapshot().dropped, 1);
    let notices = dispatcher.take_notices();
    assert!(notices.contains(&Notice::Overloaded { held: 6, reset: 1 }), "{notices:?}");
    // A slot under its limit still gets its clients (the budget keeps a reserve).
    let connection = connection_for(&dispatcher, 1, &[0, 1]);
    dispatcher.accept(connection);
    assert_eq!(workers[1].0.take_all(), vec![1]);
  }

  #[test]
  fn a_congested_slot_pauses_accepting_for_at_most_its_hold() {
    let (mut dispatcher, _workers) = dispatcher(2);
    for _ in 0..6 {
      let connection = connection_for(&dispatcher, 0, &[0, 1]);
      dispatcher.accept(connection);
    }
    assert!(!dispatcher.accepting());
    std::thread::sleep(CONGESTION_HOLD + Duration::from_millis(20));
    assert_eq!(dispatcher.admission(), Admission::Open, "a slot that does not catch up stalls nobody else for longer");
  }

  #[test]
  fn an_acknowledgement_down_to_half_the_limit_ends_the_congestion() {
    let (mut dispatcher, workers) = dispatcher(2);
    for _ in 0..6 {
      let connection = connection_for(&dispatcher, 0, &[0, 1]);
      dispatcher.accept(connection);
    }
    let (worker, generation) = &workers[0];
    assert_eq!(worker.take_all(), vec![1, 2, 3, 4, 5, 6]);
    worker.say(Reply::Ack { up_to: 4 });
    dispatcher.read_replies(0, *generation);
    // The budget is used up again, with no slot congested: nobody to wait for.
    for slot in [1, 1, 1, 0] {
      let connection = connection_for(&dispatcher, slot, &[0, 1]);
      dispatcher.accept(connection);
    }
    assert_eq!(dispatcher.held(), 6);
    assert_eq!(dispatcher.admission(), Admission::Open);
  }

  #[test]
  fn a_session_reported_by_a_worker_routes_its_next_requests_there_even_before_the_report_is_read() {
    let (mut dispatcher, workers) = dispatcher(3);
    let (owner, _) = &workers[2];
    // The report sits unread in the channel when the next request arrives.
    owner.say(Reply::SessionOpened { sid: b"s1" });
    for _ in 0..3 {
      let (fd, _) = channel::socketpair().unwrap();
      dispatcher.accept(Connection { fd, route: Route::Session(b"s1"[..].into()), client: None });
    }
    assert_eq!(owner.take_all().len(), 3);
    assert_eq!(dispatcher.stats.slots[2].sessions.load(Relaxed), 1);
  }

  #[test]
  fn a_burst_of_handshakes_spreads_over_the_workers() {
    let (mut dispatcher, workers) = dispatcher(3);
    for _ in 0..3 {
      let (fd, _) = channel::socketpair().unwrap();
      dispatcher.accept(Connection { fd, route: Route::NewSession { handshake: true }, client: None });
    }
    let per_worker: Vec<usize> = workers.iter().map(|(worker, _)| worker.take_all().len()).collect();
    assert_eq!(per_worker, vec![1, 1, 1]);
  }

  #[test]
  fn a_new_worker_for_a_live_slot_waits_on_standby_then_takes_over_with_what_the_old_one_had_not_taken() {
    let (mut dispatcher, workers) = dispatcher(2);
    let (old, _) = &workers[1];
    for _ in 0..2 {
      let connection = connection_for(&dispatcher, 1, &[0, 1]);
      dispatcher.accept(connection);
    }
    // The old worker is busy (has not read its queue) when its replacement starts.
    let (primary_end, worker_end) = channel::socketpair().unwrap();
    let generation = dispatcher.attach(1, primary_end);
    let new = Worker { end: worker_end };
    let connection = connection_for(&dispatcher, 1, &[0, 1]);
    dispatcher.accept(connection);
    assert!(new.take_all().is_empty(), "nothing goes to a worker before its hello");
    new.say(Reply::Hello { pid: 77 });
    dispatcher.read_replies(1, generation);
    assert_eq!(new.take_all().len(), 3, "the old worker's untaken connections move to the new one");
    assert_eq!(dispatcher.stats.slots[1].pid.load(Relaxed), 77);
    assert!(dispatcher.stats.slots[1].live.load(Relaxed));
    assert_eq!(old.take_all().len(), 3, "the old channel still held its records when it was closed...");
    let mut buf = [0u8; 8];
    assert_eq!(recv_record(old.end.as_fd(), &mut buf, false).unwrap().len, 0, "...and is closed now");
    assert!(dispatcher.is_idle() || dispatcher.stats.slots[1].pending.load(Relaxed) == 3);
  }

  #[test]
  fn a_worker_speaking_another_protocol_is_disconnected_with_a_notice() {
    let (mut dispatcher, workers) = dispatcher(1);
    let (worker, generation) = &workers[0];
    send_record(worker.end.as_fd(), &[9, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], None).unwrap();
    assert_eq!(dispatcher.read_replies(0, *generation), Progress::Gone);
    let notices = dispatcher.take_notices();
    assert!(notices.iter().any(|n| matches!(n, Notice::ProtocolError { slot: 0, .. })), "{notices:?}");
    assert!(
      notices.iter().any(|n| matches!(n, Notice::SlotClosed { slot: 0, end: ChannelEnd::ProtocolError, .. })),
      "{notices:?}"
    );
  }
}
