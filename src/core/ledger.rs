//! The slot ledger: where every accepted connection is until a worker has
//! it, and what to do next. No I/O, no descriptors, no clock.
//!
//! The ledger holds the worker slots (each with its current channel and, during
//! a rolling reload, a standby channel for the new worker), the connections
//! parked while no worker is alive, the route of every connection sent and not
//! yet known to be taken, by sequence number, and the engine.io session owners.
//! It is generic over the connection payload `C` (the driver's is a
//! descriptor; the tests' an id). The driver feeds it decoded events —
//! [`accept`](Ledger::accept), [`hello`](Ledger::hello), [`sent`](Ledger::sent),
//! [`taken`](Ledger::taken), [`channel_closed`](Ledger::channel_closed),
//! [`attach`](Ledger::attach), [`close`](Ledger::close) — with the time in
//! milliseconds, and carries out the [`Action`]s it returns through
//! [`poll_action`](Ledger::poll_action).
//!
//! # Nothing lost
//!
//! Every accepted connection ends exactly once, as one of:
//! - **delivered**: a worker read its record from its channel (the kernel
//!   moved the descriptor into that worker, which serves every record it
//!   reads);
//! - **reset and counted** ([`Action::Reset`], counted in `Stats` before the
//!   action is returned), which happens only to a *new* connection, only when
//!   the descriptor budget (`max_held`) is used up, and only for a slot over
//!   its share (`max_pending_per_slot`) or the parked queue over its share
//!   (`max_parked`); a connection already held is never reset for a limit;
//! - **refused and counted** when no worker exists to serve it (workers the
//!   user forks, and none is forked: [`set_workers_exist`](Ledger::set_workers_exist)),
//!   or when the primary stops for good with it still held
//!   ([`terminate`](Ledger::terminate));
//!
//! and until then it is in exactly one place: parked (no worker alive), a
//! channel's backlog (not sent yet: the primary holds its descriptor), or a
//! channel's queue (sent and not read: the record in the kernel holds the
//! descriptor, the ledger the connection's route under the record's sequence
//! number). When a channel ends — its worker closed, failed, spoke garbage or
//! was replaced — everything it held is **re-dispatched** to each client's
//! next choice, in the order it arrived: the records still queued, which the
//! driver reads back from the worker's end of the channel (the `reclaimed` of
//! [`channel_closed`](Ledger::channel_closed)), then the backlog. A
//! re-dispatched connection is the same connection, not a new one: it still
//! ends exactly once.
//!
//! The driver and the worker keep their side of the bargain: a record goes to
//! exactly one reader (`SOCK_SEQPACKET`), and a worker serves every record it
//! reads — it stops reading before it lets the primary know it leaves (its
//! lifeline closes), and a worker being replaced serves what it reads while
//! the driver reads back the rest. So a record the driver reads back was
//! never delivered, and every record sent that it does not read back was.
//!
//! # What the ledger knows of a queue
//!
//! Nothing is acknowledged: the driver learns which records a worker has
//! *taken* (read from its channel) by peeking at the head of the worker's
//! queue ([`taken`](Ledger::taken)); the slot's `taken` counter counts them.
//! Until then a record counts as pending for its slot and as held (the
//! kernel holds its descriptor, and charges it to the primary's open-file
//! limit): the driver peeks when the count matters (the budget, draining, a
//! long queue) and on a timer, for the statistics.
//!
//! # Bursts
//!
//! A burst is absorbed, not reset: every new connection is held until its
//! worker takes it, however far behind that worker is, up to `max_held` (the
//! descriptor budget) in all. At the budget [`admission`](Ledger::admission)
//! pauses accepting while a slot over its share is within `CONGESTION_HOLD_MS`
//! of becoming so (it may catch up; new clients wait in the kernel's queue);
//! after that, a frozen worker stalls nobody else: its new clients are reset.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::core::hrw::{Rendezvous, Selection, SlotId};
use crate::core::routing::Route;
use crate::core::sessions::SessionTable;

use crate::core::stats::Stats;

/// Milliseconds from any fixed origin (the driver's clock).
pub type Millis = u64;
/// A hand-off's number on its channel: 1, 2, ...; a record of several
/// carries consecutive numbers.
pub type Seq = u64;

/// How long a slot over its share pauses accepting, once the descriptor
/// budget is used up, per episode of congestion: long enough for a busy
/// worker to catch up while new clients wait in the kernel's queue, short
/// enough that a frozen worker does not stall every other slot's clients.
pub const CONGESTION_HOLD_MS: Millis = 500;

/// One channel of one slot, unique for the life of the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
  pub slot: SlotId,
  generation: u64,
}

/// Why a channel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEnd {
  /// The worker closed it: graceful `server.close()`, or the process exited.
  WorkerClosed,
  /// A send or receive failed (ECONNRESET, EPIPE, ...).
  Failed,
  /// The worker spoke something this build does not understand.
  ProtocolError,
  /// A new worker for the same slot took over (rolling reload), or a new
  /// channel replaced one whose worker never became ready.
  Replaced,
}

/// What JavaScript hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
  SlotReady {
    slot: SlotId,
    pid: u32,
  },
  SlotClosed {
    slot: SlotId,
    end: ChannelEnd,
    requeued: usize,
  },
  /// New connections were reset because the descriptor budget was used up;
  /// at most one notice a second, with the count since the last one.
  Overloaded {
    held: usize,
    reset: u64,
  },
}

/// Why a connection was reset (already counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
  /// Its slot was over `max_pending_per_slot` with the budget used up.
  SlotOverLimit(SlotId),
  /// No worker was alive, more than `max_parked` were parked, budget used up.
  NoWorker,
  /// No worker exists to serve it (the user forks the workers and none is
  /// forked): answered `503 Service Unavailable`, as @socket.io/sticky does.
  Unavailable,
  /// The primary stopped for good (its shutdown ran out of time) while it
  /// still waited for a worker.
  Abandoned,
}

/// What the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<C> {
  /// The channel's backlog has hand-offs: send them now (`to_send`, then
  /// `sent` for each record), and when writable again if the channel fills.
  Transmit(ChannelId),
  /// The connection's record was sent: close the primary's copy (the record
  /// holds one until a worker reads it, or the driver reads it back).
  Release(C),
  /// Close the connection with a reset (RST).
  Reset(C, ResetReason),
  /// A new worker took the slot over: read back what the old worker has not
  /// read (it serves what it reads meanwhile), then report
  /// `channel_closed(channel, Replaced, reclaimed)`.
  Retire(ChannelId),
  /// The channel is finished with: close the primary's end (its worker sees
  /// end-of-file) and stop serving it.
  CloseChannel(ChannelId),
  Notify(Notice),
}

/// Whether the accept loop may take connections off the listen queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
  Open,
  /// Not now: ask again when the ledger changes, or after this long at the latest.
  Paused(Option<Millis>),
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
  /// A slot's share: pending hand-offs beyond which its new connections are
  /// paused for, then reset, once `max_held` is reached.
  pub max_pending_per_slot: usize,
  /// The parked queue's share (no worker alive), in the same sense.
  pub max_parked: usize,
  /// The descriptor budget: connections held in all.
  pub max_held: usize,
}

/// A connection the primary holds (parked, or in a channel's backlog), with
/// the route that picks its slot.
struct HeldConnection<C> {
  route: Route,
  connection: C,
}

/// A connection sent and not known to be taken: its record (in the kernel)
/// holds the descriptor; its route stays here in case it comes back.
struct InFlight {
  seq: Seq,
  route: Route,
}

struct Channel<C> {
  id: ChannelId,
  /// The worker said hello: its server listens and its receiver runs.
  ready: bool,
  pid: u32,
  next_seq: Seq,
  /// Waiting to be sent, in order.
  backlog: VecDeque<HeldConnection<C>>,
  /// Sent and not known to be taken, in sequence order.
  in_flight: VecDeque<InFlight>,
}

impl<C> Channel<C> {
  fn new(id: ChannelId) -> Self {
    Channel { id, ready: false, pid: 0, next_seq: 1, backlog: VecDeque::new(), in_flight: VecDeque::new() }
  }

  fn pending(&self) -> usize {
    self.backlog.len() + self.in_flight.len()
  }
}

struct Slot<C> {
  current: Option<Channel<C>>,
  /// A new worker's channel waiting for its hello while the current worker
  /// serves (rolling reload): it takes over only when ready.
  standby: Option<Channel<C>>,
  /// Replaced channels whose queues the driver is reading back.
  retiring: Vec<Channel<C>>,
  /// Since when the current channel's pending count has been at the slot's
  /// share, until it falls back to half of it: an episode of congestion.
  congested_since: Option<Millis>,
}

impl<C> Slot<C> {
  fn is_live(&self) -> bool {
    self.current.as_ref().is_some_and(|channel| channel.ready)
  }
}

pub struct Ledger<C> {
  hrw: Rendezvous,
  selection: Selection,
  slots: Vec<Slot<C>>,
  parked: VecDeque<HeldConnection<C>>,
  /// Engine.io sessions and their owners (`sid` routing only).
  sessions: Option<SessionTable>,
  limits: Limits,
  /// Connections parked, in a backlog or in a queue (sent and not known to
  /// be taken), also of retiring channels.
  held: usize,
  /// True once every slot has said hello once (or the start-up wait ended):
  /// before that, clients would be spread over the first workers up and then
  /// moved, breaking their sessions.
  started: bool,
  closed: bool,
  /// False while no worker process exists that could ever take a connection
  /// (workers the user forks, none forked): new connections are refused
  /// instead of waiting. Always true when the primary forks its workers.
  workers_exist: bool,
  next_generation: u64,
  /// Resets for the budget since the last `Overloaded` notice, and its time.
  unreported_resets: u64,
  last_overload_notice: Option<Millis>,
  stats: Arc<Stats>,
  actions: VecDeque<Action<C>>,
}

impl<C> Ledger<C> {
  pub fn new(
    hrw: Rendezvous,
    slot_count: u16,
    limits: Limits,
    sessions: Option<SessionTable>,
    stats: Arc<Stats>,
  ) -> Self {
    debug_assert_eq!(stats.slots.len(), usize::from(slot_count));
    Ledger {
      hrw,
      selection: Selection::build(hrw, Vec::new()),
      slots: (0..slot_count)
        .map(|_| Slot { current: None, standby: None, retiring: Vec::new(), congested_since: None })
        .collect(),
      parked: VecDeque::new(),
      sessions,
      limits,
      held: 0,
      started: false,
      closed: false,
      workers_exist: true,
      next_generation: 1,
      unreported_resets: 0,
      last_overload_notice: None,
      stats,
      actions: VecDeque::new(),
    }
  }

  // ------------------------------------------------------------ events

  /// A new channel for `slot` (a worker about to start, or one that connected).
  /// While the slot's current worker serves, it waits on standby and takes
  /// over at its hello (rolling reload: the slot is never empty); otherwise
  /// it replaces the current one at once (respawn).
  pub fn attach(&mut self, now: Millis, slot: SlotId) -> ChannelId {
    let index = usize::from(slot);
    let id = ChannelId { slot, generation: self.next_generation };
    self.next_generation += 1;
    self.stats.slots[index].worker_started();
    let channel = Channel::new(id);
    if self.slots[index].is_live() {
      if let Some(previous) = self.slots[index].standby.replace(channel) {
        // A new worker that never became ready: nothing was sent to it.
        self.end_unready(previous, ChannelEnd::Replaced, Vec::new());
      }
    } else if let Some(previous) = self.slots[index].current.replace(channel) {
      // Not live: its worker never said hello, so nothing was sent to it.
      self.retire_now(now, previous, ChannelEnd::Replaced, Vec::new());
    }
    id
  }

  /// The worker of `channel` is ready (pid `pid`).
  pub fn hello(&mut self, now: Millis, channel: ChannelId, pid: u32) {
    let index = usize::from(channel.slot);
    let slot = &mut self.slots[index];
    if slot.standby.as_ref().is_some_and(|standby| standby.id == channel) {
      let mut promoted = slot.standby.take().expect("checked above");
      promoted.ready = true;
      promoted.pid = pid;
      if let Some(old) = slot.current.replace(promoted) {
        // The old worker finishes what it read, then exits; what it had not
        // read goes to the new one once the driver has read it back.
        let old_id = old.id;
        slot.congested_since = None;
        slot.retiring.push(old);
        self.actions.push_back(Action::Retire(old_id));
      }
    } else if let Some(current) = slot.current.as_mut().filter(|current| current.id == channel && !current.ready) {
      current.ready = true;
      current.pid = pid;
    } else {
      return;
    }
    self.stats.slots[index].set_pid(pid);
    self.actions.push_back(Action::Notify(Notice::SlotReady { slot: channel.slot, pid }));
    self.rebuild_selection();
    if !self.started && self.slots.iter().all(Slot::is_live) {
      self.started = true;
    }
    self.unpark(now);
  }

  /// The worker of `channel` has read every record numbered below
  /// `next_unread` (`None`: every record sent), as a peek at the head of its
  /// queue shows: those connections are taken (delivered: the worker has them).
  pub fn taken(&mut self, channel: ChannelId, next_unread: Option<Seq>) {
    let index = usize::from(channel.slot);
    let slot = &mut self.slots[index];
    let is_current = slot.current.as_ref().is_some_and(|current| current.id == channel);
    let Some(open) = slot.current.iter_mut().chain(slot.retiring.iter_mut()).find(|open| open.id == channel) else {
      return;
    };
    let mut delivered = 0u64;
    while open.in_flight.front().is_some_and(|entry| next_unread.is_none_or(|next| entry.seq < next)) {
      open.in_flight.pop_front();
      delivered += 1;
    }
    let pending = open.pending();
    if is_current && pending <= self.limits.max_pending_per_slot / 2 {
      slot.congested_since = None;
    }
    self.held -= delivered as usize;
    self.stats.slots[index].taken.fetch_add(delivered, Relaxed);
    self.stats.slots[index].pending.fetch_sub(delivered, Relaxed);
  }

  /// The worker of `channel` opened an engine.io session.
  pub fn session_opened(&mut self, now: Millis, channel: ChannelId, sid: &[u8]) {
    if !self.is_current(channel) {
      return;
    }
    if let Some(sessions) = self.sessions.as_mut() {
      if !sessions.open(sid, channel.slot, now) {
        self.stats.sessions_refused.fetch_add(1, Relaxed);
      }
      self.stats.slots[usize::from(channel.slot)].sessions.store(sessions.sessions_of(channel.slot), Relaxed);
    }
  }

  /// The worker of `channel` closed an engine.io session.
  pub fn session_closed(&mut self, channel: ChannelId, sid: &[u8]) {
    if !self.is_current(channel) {
      return;
    }
    if let Some(sessions) = self.sessions.as_mut() {
      sessions.close(sid);
      self.stats.slots[usize::from(channel.slot)].sessions.store(sessions.sessions_of(channel.slot), Relaxed);
    }
  }

  /// A new connection. The driver reads every channel's replies first when
  /// the route names a session the ledger does not know ([`Ledger::knows_session`]).
  pub fn accept(&mut self, now: Millis, route: Route, connection: C) {
    self.held += 1;
    self.dispatch(now, HeldConnection { route, connection }, true);
  }

  /// The first `count` connections of `channel`'s backlog were sent, in one
  /// record, numbered as `to_send` said: each payload is released.
  pub fn sent(&mut self, channel: ChannelId, count: usize) {
    let current = self.slots[usize::from(channel.slot)].current.as_mut();
    let Some(open) = current.filter(|open| open.id == channel) else { return };
    for _ in 0..count {
      let Some(held) = open.backlog.pop_front() else { break };
      let seq = open.next_seq;
      open.next_seq += 1;
      open.in_flight.push_back(InFlight { seq, route: held.route });
      self.actions.push_back(Action::Release(held.connection));
    }
  }

  /// `channel` ended, and `reclaimed` is what the driver read back from its
  /// worker's queue (by sequence number; nothing when the worker never said
  /// hello): those and the backlog go to each client's next choice, and the
  /// rest of what was sent counts as delivered.
  pub fn channel_closed(&mut self, now: Millis, channel: ChannelId, end: ChannelEnd, reclaimed: Vec<(Seq, C)>) {
    let index = usize::from(channel.slot);
    let slot = &mut self.slots[index];
    if slot.standby.as_ref().is_some_and(|c| c.id == channel) {
      let standby = slot.standby.take().expect("checked above");
      self.end_unready(standby, end, reclaimed);
    } else if slot.current.as_ref().is_some_and(|c| c.id == channel) {
      let current = slot.current.take().expect("checked above");
      // A new worker starting for this slot becomes the current one (it is
      // live from its hello).
      slot.current = slot.standby.take();
      slot.congested_since = None;
      self.retire_now(now, current, end, reclaimed);
    } else if let Some(at) = slot.retiring.iter().position(|c| c.id == channel) {
      let retiring = slot.retiring.swap_remove(at);
      self.retire_now(now, retiring, end, reclaimed);
    } else {
      // Finished with already: whatever came back still needs a worker.
      self.redispatch(now, reclaimed.into_iter().map(|(_, connection)| (None, connection)));
    }
  }

  /// Ends the start-up wait even if some workers never said hello.
  pub fn end_startup_wait(&mut self) {
    self.started = true;
  }

  /// Stops accepting for good (the accept loop drains the listen queue).
  pub fn close(&mut self) {
    self.closed = true;
  }

  /// Whether any worker process exists that may yet take connections (the
  /// user forks the workers). While none does, what is parked and every new
  /// connection are refused (`Unavailable`, counted as no worker) instead of
  /// waiting for a worker nobody will fork.
  pub fn set_workers_exist(&mut self, now: Millis, exist: bool) {
    self.workers_exist = exist;
    if !exist {
      for held in std::mem::take(&mut self.parked) {
        self.refuse(now, held.connection, ResetReason::Unavailable);
      }
      self.stats.parked.store(0, Relaxed);
    }
  }

  /// The primary stops for good: every connection it still holds (parked, or
  /// in a backlog not sent) is refused and counted as no worker, and every
  /// channel closes. Records sent and not read die with their channel.
  pub fn terminate(&mut self, now: Millis) {
    self.closed = true;
    let mut abandoned: Vec<C> = std::mem::take(&mut self.parked).into_iter().map(|held| held.connection).collect();
    let mut channels = Vec::new();
    for slot in &mut self.slots {
      slot.congested_since = None;
      for channel in slot.current.take().into_iter().chain(slot.standby.take()).chain(slot.retiring.drain(..)) {
        let pending = channel.pending() as u64;
        let index = usize::from(channel.id.slot);
        self.stats.slots[index].pending.fetch_sub(pending, Relaxed);
        self.held -= channel.in_flight.len();
        abandoned.extend(channel.backlog.into_iter().map(|held| held.connection));
        channels.push(channel.id);
      }
    }
    self.stats.parked.store(0, Relaxed);
    for connection in abandoned {
      self.refuse(now, connection, ResetReason::Abandoned);
    }
    for id in channels {
      self.actions.push_back(Action::CloseChannel(id));
    }
    self.rebuild_selection();
  }

  /// Forgets sessions idle for longer than their TTL (`sid` routing).
  pub fn expire_sessions(&mut self, now: Millis) {
    if let Some(sessions) = self.sessions.as_mut() {
      sessions.expire(now);
      for (slot, slot_stats) in self.stats.slots.iter().enumerate() {
        slot_stats.sessions.store(sessions.sessions_of(slot as SlotId), Relaxed);
      }
    }
  }

  /// The next thing to do, oldest first.
  pub fn poll_action(&mut self) -> Option<Action<C>> {
    self.actions.pop_front()
  }

  // ------------------------------------------------------------ queries

  /// Backpressure alone (not start-up or the lack of a worker).
  pub fn admission(&self, now: Millis) -> Admission {
    if self.held < self.limits.max_held {
      return Admission::Open;
    }
    let pause_left = self
      .slots
      .iter()
      .filter_map(|slot| slot.congested_since)
      .map(|since| (since + CONGESTION_HOLD_MS).saturating_sub(now))
      .filter(|&left| left > 0)
      .max();
    match pause_left {
      Some(left) => Admission::Paused(Some(left)),
      None => Admission::Open,
    }
  }

  /// Whether the accept loop should take connections off the listen queue now.
  /// When it should not, they wait in the kernel's queue.
  pub fn accepting(&self, now: Millis) -> bool {
    // With no worker in existence, connections are taken to be refused.
    let can_serve = !self.workers_exist || (self.started && !self.selection.live().is_empty());
    !self.closed && can_serve && self.admission(now) == Admission::Open
  }

  pub fn is_closed(&self) -> bool {
    self.closed
  }

  /// Connections held: parked, in a backlog, or in a queue and not known
  /// to be read.
  pub fn held(&self) -> usize {
    self.held
  }

  /// The descriptor budget is used up: what is known of the queues matters.
  pub fn at_budget(&self) -> bool {
    self.held >= self.limits.max_held
  }

  /// Nothing waits anywhere: nothing parked, in a backlog or in a queue
  /// (as far as the last peeks show).
  pub fn is_idle(&self) -> bool {
    self.parked.is_empty()
      && self
        .slots
        .iter()
        .all(|slot| slot.current.iter().chain(slot.retiring.iter()).all(|channel| channel.pending() == 0))
  }

  /// The next record to send on `channel`: the first number, and up to
  /// `most` connections from the front of the backlog.
  pub fn to_send(&self, channel: ChannelId, most: usize) -> Option<(Seq, impl Iterator<Item = &C>)> {
    let open = self.current(channel)?;
    (!open.backlog.is_empty()).then(|| (open.next_seq, open.backlog.iter().take(most).map(|held| &held.connection)))
  }

  /// The channel is still served (current, standby or retiring).
  pub fn is_open(&self, channel: ChannelId) -> bool {
    let slot = &self.slots[usize::from(channel.slot)];
    slot.current.iter().chain(slot.standby.iter()).chain(slot.retiring.iter()).any(|c| c.id == channel)
  }

  pub fn wants_write(&self, channel: ChannelId) -> bool {
    self.current(channel).is_some_and(|open| !open.backlog.is_empty())
  }

  /// Channels with records in flight: sent, and not known to be taken
  /// (current and retiring).
  pub fn with_in_flight(&self) -> Vec<ChannelId> {
    self
      .slots
      .iter()
      .flat_map(|slot| slot.current.iter().chain(slot.retiring.iter()))
      .filter(|c| !c.in_flight.is_empty())
      .map(|c| c.id)
      .collect()
  }

  /// Every current channel (a session report may wait on any of them).
  pub fn current_channels(&self) -> Vec<ChannelId> {
    self.slots.iter().filter_map(|slot| slot.current.as_ref()).map(|c| c.id).collect()
  }

  /// The session is known to the table (a live owner or not).
  pub fn knows_session(&self, sid: &[u8]) -> bool {
    self.sessions.as_ref().is_none_or(|sessions| sessions.contains(sid))
  }

  /// The lowest slot without a channel (for workers that connect on their own).
  pub fn free_slot(&self) -> Option<SlotId> {
    self.slots.iter().position(|slot| slot.current.is_none() && slot.standby.is_none()).map(|index| index as SlotId)
  }

  // ------------------------------------------------------------ internals

  fn current(&self, channel: ChannelId) -> Option<&Channel<C>> {
    self.slots[usize::from(channel.slot)].current.as_ref().filter(|c| c.id == channel)
  }

  fn is_current(&self, channel: ChannelId) -> bool {
    self.current(channel).is_some()
  }

  /// The slot a route leads to now, among the live slots.
  fn choose(&mut self, now: Millis, route: &Route) -> Option<SlotId> {
    match route {
      Route::Hash(key_hash) => self.selection.pick(*key_hash),
      Route::Session(sid) => {
        let live = self.selection.live();
        let owner =
          self.sessions.as_mut().and_then(|sessions| sessions.lookup(sid, now)).filter(|&slot| live.contains(slot));
        // Unknown (expired, or its worker died): any worker answers "Session
        // ID unknown", and the client reconnects with a new handshake.
        owner.or_else(|| self.pick_new_session(false))
      }
      Route::NewSession { handshake } => self.pick_new_session(*handshake),
    }
  }

  fn pick_new_session(&mut self, handshake: bool) -> Option<SlotId> {
    let live = self.selection.live().as_slice();
    match self.sessions.as_mut() {
      Some(sessions) => sessions.pick_new(live, handshake),
      None => live.first().copied(),
    }
  }

  /// Queues `held` for its route's slot among the live ones, or parks it
  /// when none is live. A `fresh` connection (just accepted) is reset when
  /// the budget is used up and its slot (or the parked queue) is over its share.
  fn dispatch(&mut self, now: Millis, held: HeldConnection<C>, fresh: bool) {
    let Some(slot) = self.choose(now, &held.route) else {
      self.park(now, held, fresh);
      return;
    };
    let index = usize::from(slot);
    let over_budget = self.held > self.limits.max_held;
    let limit = self.limits.max_pending_per_slot;
    let entry = &mut self.slots[index];
    let Some(channel) = entry.current.as_mut().filter(|channel| channel.ready) else {
      debug_assert!(false, "live slot {slot} has no ready channel");
      self.park(now, held, fresh);
      return;
    };
    let pending = channel.pending();
    if fresh && over_budget && pending >= limit {
      self.stats.slots[index].dropped_queue_full.fetch_add(1, Relaxed);
      self.reset(now, held.connection, ResetReason::SlotOverLimit(slot));
      return;
    }
    if pending + 1 >= limit && entry.congested_since.is_none() {
      entry.congested_since = Some(now);
    }
    channel.backlog.push_back(held);
    if channel.backlog.len() == 1 {
      self.actions.push_back(Action::Transmit(channel.id));
    }
    self.stats.slots[index].dispatched.fetch_add(1, Relaxed);
    self.stats.slots[index].pending.fetch_add(1, Relaxed);
  }

  fn park(&mut self, now: Millis, held: HeldConnection<C>, fresh: bool) {
    if !self.workers_exist {
      self.refuse(now, held.connection, ResetReason::Unavailable);
      return;
    }
    if fresh && self.held > self.limits.max_held && self.parked.len() >= self.limits.max_parked {
      self.stats.dropped_no_worker.fetch_add(1, Relaxed);
      self.reset(now, held.connection, ResetReason::NoWorker);
      return;
    }
    self.parked.push_back(held);
    self.stats.parked.store(self.parked.len() as u64, Relaxed);
  }

  fn reset(&mut self, now: Millis, connection: C, reason: ResetReason) {
    self.held -= 1;
    self.actions.push_back(Action::Reset(connection, reason));
    self.note_budget_reset(now);
  }

  /// Ends a held connection that no worker will take (not a limit: no
  /// overload notice), counted as no worker.
  fn refuse(&mut self, _now: Millis, connection: C, reason: ResetReason) {
    self.held -= 1;
    self.stats.dropped_no_worker.fetch_add(1, Relaxed);
    self.actions.push_back(Action::Reset(connection, reason));
  }

  /// Counts a reset for the budget in the next `Overloaded` notice (also one
  /// the driver made of a connection the ledger never held: one evicted
  /// while reading its header), reported at most once a second.
  pub fn note_budget_reset(&mut self, now: Millis) {
    self.unreported_resets += 1;
    if self.last_overload_notice.is_none_or(|last| now.saturating_sub(last) >= 1000) {
      self.actions.push_back(Action::Notify(Notice::Overloaded { held: self.held, reset: self.unreported_resets }));
      self.unreported_resets = 0;
      self.last_overload_notice = Some(now);
    }
  }

  /// Ends a channel that was never ready: nothing was ever sent on it.
  fn end_unready(&mut self, channel: Channel<C>, end: ChannelEnd, reclaimed: Vec<(Seq, C)>) {
    debug_assert_eq!(channel.pending(), 0);
    debug_assert!(reclaimed.is_empty());
    self.actions.push_back(Action::Notify(Notice::SlotClosed { slot: channel.id.slot, end, requeued: 0 }));
    self.actions.push_back(Action::CloseChannel(channel.id));
  }

  /// Closes `channel`, no longer the slot's current one: what its worker had
  /// not read (`reclaimed`) and its backlog are re-dispatched, in the order
  /// they arrived; the rest of what was sent was delivered.
  fn retire_now(&mut self, now: Millis, channel: Channel<C>, end: ChannelEnd, reclaimed: Vec<(Seq, C)>) {
    let slot = channel.id.slot;
    let index = usize::from(slot);
    let Channel { id, in_flight, backlog, .. } = channel;
    let pending = (in_flight.len() + backlog.len()) as u64;
    // Records come back in the order they were sent, as the queue holds them.
    let mut came_back = reclaimed.into_iter().peekable();
    let mut requeue: Vec<(Option<Route>, C)> = Vec::new();
    let mut delivered = 0u64;
    for entry in in_flight {
      match came_back.next_if(|(seq, _)| *seq == entry.seq) {
        Some((_, connection)) => requeue.push((Some(entry.route), connection)),
        None => delivered += 1,
      }
    }
    // A number this channel never sent: not our worker's queue (never so in
    // practice); still a connection to serve.
    requeue.extend(came_back.map(|(_, connection)| (None, connection)));
    requeue.extend(backlog.into_iter().map(|held| (Some(held.route), held.connection)));
    let requeued = requeue.len();
    self.held -= delivered as usize;
    let slot_stats = &self.stats.slots[index];
    slot_stats.pending.fetch_sub(pending, Relaxed);
    slot_stats.taken.fetch_add(delivered, Relaxed);
    slot_stats.redispatched.fetch_add(requeued as u64, Relaxed);
    slot_stats.sessions.store(0, Relaxed);
    // A standby worker that took over keeps the slot live under its pid.
    let current = self.slots[index].current.as_ref().filter(|current| current.ready);
    slot_stats.set_pid(current.map_or(0, |current| current.pid));
    if let Some(sessions) = self.sessions.as_mut() {
      sessions.forget_slot(slot);
    }
    self.actions.push_back(Action::Notify(Notice::SlotClosed { slot, end, requeued }));
    self.actions.push_back(Action::CloseChannel(id));
    self.rebuild_selection();
    self.redispatch(now, requeue);
  }

  /// Dispatches connections that were held already (never reset for a
  /// limit). One without a route (never so in practice) goes to the
  /// new-session balance.
  fn redispatch(&mut self, now: Millis, connections: impl IntoIterator<Item = (Option<Route>, C)>) {
    for (route, connection) in connections {
      debug_assert!(route.is_some(), "a connection came back that was never sent");
      let route = route.unwrap_or(Route::NewSession { handshake: false });
      self.dispatch(now, HeldConnection { route, connection }, false);
    }
  }

  fn rebuild_selection(&mut self) {
    let live: Vec<SlotId> =
      self.slots.iter().enumerate().filter(|(_, slot)| slot.is_live()).map(|(index, _)| index as SlotId).collect();
    for (index, slot_stats) in self.stats.slots.iter().enumerate() {
      slot_stats.set_live(self.slots[index].is_live());
    }
    self.selection = Selection::build(self.hrw, live);
  }

  fn unpark(&mut self, now: Millis) {
    if self.selection.live().is_empty() {
      return;
    }
    let parked = std::mem::take(&mut self.parked);
    self.stats.parked.store(0, Relaxed);
    for held in parked {
      self.dispatch(now, held, false);
    }
  }
}

#[cfg(test)]
impl<C> Ledger<C> {
  /// Every connection whose payload the ledger holds: parked or in a
  /// backlog (tests' view of "exactly one place").
  fn held_connections(&self) -> Vec<&C> {
    let mut all: Vec<&C> = self.parked.iter().map(|held| &held.connection).collect();
    for slot in &self.slots {
      for channel in slot.current.iter().chain(slot.standby.iter()).chain(slot.retiring.iter()) {
        all.extend(channel.backlog.iter().map(|held| &held.connection));
      }
    }
    all
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::core::sessions::NewSessionBalance;
  use proptest::prelude::*;
  use std::collections::{BTreeMap, BTreeSet, HashMap};

  const SLOTS: u16 = 3;

  /// One record in a channel's queue, as the kernel holds it: (seq, id) of
  /// each connection.
  type Record = Vec<(Seq, u32)>;

  /// Carries out the ledger's actions the way the driver does, minus the I/O,
  /// models each channel's queue as the kernel keeps it (records a worker
  /// reads, or the driver reads back), and keeps a log of what happened to
  /// every connection.
  struct Harness {
    ledger: Ledger<u32>,
    stats: Arc<Stats>,
    now: Millis,
    next_id: u32,
    accepted: BTreeSet<u32>,
    /// Read by a worker from its channel (and by which channel).
    delivered: BTreeMap<u32, ChannelId>,
    reset: BTreeMap<u32, ResetReason>,
    notices: Vec<Notice>,
    closed: BTreeSet<ChannelId>,
    retiring: Vec<ChannelId>,
    /// What each channel's queue holds: sent and not read.
    queues: HashMap<ChannelId, VecDeque<Record>>,
    /// Payloads released since the last send: the driver closes them once
    /// their record is sent, so they must be exactly that record's.
    released: Vec<u32>,
  }

  impl Harness {
    fn new(slots: u16, limits: Limits, sessions: bool) -> Self {
      let stats = Arc::new(Stats::new(usize::from(slots)));
      let table = sessions.then(|| SessionTable::new(slots, NewSessionBalance::LeastConnection, 60_000, 100, 1));
      Harness {
        ledger: Ledger::new(Rendezvous::default(), slots, limits, table, stats.clone()),
        stats,
        now: 0,
        next_id: 1,
        accepted: BTreeSet::new(),
        delivered: BTreeMap::new(),
        reset: BTreeMap::new(),
        notices: Vec::new(),
        closed: BTreeSet::new(),
        retiring: Vec::new(),
        queues: HashMap::new(),
        released: Vec::new(),
      }
    }

    /// `slots` slots, each with a ready worker.
    fn ready(slots: u16, limits: Limits) -> (Self, Vec<ChannelId>) {
      let mut harness = Harness::new(slots, limits, true);
      let channels: Vec<ChannelId> = (0..slots).map(|slot| harness.attach(slot)).collect();
      for (pid, &channel) in channels.iter().enumerate() {
        harness.hello(channel, 100 + pid as u32);
      }
      (harness, channels)
    }

    fn carry_out_actions(&mut self) {
      while let Some(action) = self.ledger.poll_action() {
        match action {
          // Sending is explicit in these tests (`send`), as the channel's
          // writability would make it in the driver.
          Action::Transmit(_) => {}
          Action::Release(id) => self.released.push(id),
          Action::Reset(id, reason) => assert!(self.reset.insert(id, reason).is_none(), "{id} reset twice"),
          Action::Retire(channel) => self.retiring.push(channel),
          Action::CloseChannel(channel) => assert!(self.closed.insert(channel), "{channel:?} closed twice"),
          Action::Notify(notice) => self.notices.push(notice),
        }
      }
      assert!(self.released.is_empty(), "released outside a send: {:?}", self.released);
    }

    fn attach(&mut self, slot: SlotId) -> ChannelId {
      let channel = self.ledger.attach(self.now, slot);
      self.carry_out_actions();
      channel
    }

    fn hello(&mut self, channel: ChannelId, pid: u32) {
      self.ledger.hello(self.now, channel, pid);
      self.carry_out_actions();
    }

    fn accept(&mut self, route: Route) -> u32 {
      let id = self.next_id;
      self.next_id += 1;
      self.accepted.insert(id);
      self.ledger.accept(self.now, route, id);
      self.carry_out_actions();
      id
    }

    /// A connection whose key goes first to `slot` among all slots.
    fn accept_for(&mut self, slot: SlotId) -> u32 {
      let all: Vec<SlotId> = (0..self.ledger.slots.len() as SlotId).collect();
      let hrw = Rendezvous::default();
      let key = (0u64..).map(|i| hrw.key_hash(&i.to_le_bytes())).find(|&h| hrw.pick(h, &all) == Some(slot)).unwrap();
      self.accept(Route::Hash(key))
    }

    /// Sends one record of up to `most` connections from the channel's
    /// backlog; returns them.
    fn send(&mut self, channel: ChannelId, most: usize) -> Vec<u32> {
      let Some((first, ids)) = self.ledger.to_send(channel, most) else { return Vec::new() };
      let ids: Vec<u32> = ids.copied().collect();
      let record: Record = ids.iter().enumerate().map(|(index, &id)| (first + index as Seq, id)).collect();
      self.ledger.sent(channel, ids.len());
      while let Some(action) = self.ledger.poll_action() {
        match action {
          Action::Release(id) => self.released.push(id),
          other => panic!("sending asked for {other:?}"),
        }
      }
      assert_eq!(std::mem::take(&mut self.released), ids, "the payloads released are the record's");
      self.queues.entry(channel).or_default().push_back(record);
      ids
    }

    /// Sends the whole backlog, records of at most 2.
    fn send_all(&mut self, channel: ChannelId) -> Vec<u32> {
      let mut sent = Vec::new();
      loop {
        let record = self.send(channel, 2);
        if record.is_empty() {
          return sent;
        }
        sent.extend(record);
      }
    }

    /// The worker reads up to `records` records from its queue: those
    /// connections are delivered to it.
    fn take(&mut self, channel: ChannelId, records: usize) -> Vec<u32> {
      let queue = self.queues.entry(channel).or_default();
      let mut taken = Vec::new();
      for _ in 0..records {
        let Some(record) = queue.pop_front() else { break };
        taken.extend(record.into_iter().map(|(_, id)| id));
      }
      for &id in &taken {
        assert!(self.delivered.insert(id, channel).is_none(), "{id} delivered twice");
      }
      taken
    }

    /// The driver peeks at the head of the channel's queue.
    fn peek(&mut self, channel: ChannelId) {
      let next_unread = self.queues.get(&channel).and_then(|queue| queue.front()).map(|record| record[0].0);
      self.ledger.taken(channel, next_unread);
      self.carry_out_actions();
    }

    /// The worker stops reading (it closed, died or was replaced); the driver
    /// reads back its queue and reports the end.
    fn close_channel(&mut self, channel: ChannelId, end: ChannelEnd) {
      let reclaimed: Vec<(Seq, u32)> = self.queues.remove(&channel).into_iter().flatten().flatten().collect();
      self.ledger.channel_closed(self.now, channel, end, reclaimed);
      self.carry_out_actions();
    }

    /// Ends the retirements the ledger asked for, as the driver does.
    fn finish_retiring(&mut self) {
      for channel in std::mem::take(&mut self.retiring) {
        self.close_channel(channel, ChannelEnd::Replaced);
      }
    }

    /// The nothing-lost invariant: every accepted connection is delivered,
    /// reset, held by the ledger or queued in a channel, exactly one of them.
    fn check_nothing_lost(&self) {
      let held: Vec<u32> = self.ledger.held_connections().into_iter().copied().collect();
      let queued: Vec<u32> = self.queues.values().flatten().flatten().map(|&(_, id)| id).collect();
      let mut everywhere: Vec<u32> =
        held.iter().chain(&queued).chain(self.delivered.keys()).chain(self.reset.keys()).copied().collect();
      everywhere.sort_unstable();
      let unique: BTreeSet<u32> = everywhere.iter().copied().collect();
      assert_eq!(everywhere.len(), unique.len(), "a connection is in two places: {everywhere:?}");
      assert_eq!(unique, self.accepted, "a connection is missing or came from nowhere");
      // The ledger keeps the route of everything queued, under its number,
      // on the channel it was sent on; and counts it held until it knows.
      let mut in_flight = 0;
      for slot in &self.ledger.slots {
        for channel in slot.current.iter().chain(slot.retiring.iter()) {
          let seqs: BTreeSet<Seq> = channel.in_flight.iter().map(|entry| entry.seq).collect();
          for record in self.queues.get(&channel.id).into_iter().flatten() {
            assert!(record.iter().all(|(seq, _)| seqs.contains(seq)), "{:?} queued without a route", channel.id);
          }
          in_flight += channel.in_flight.len();
        }
        assert!(
          slot.standby.as_ref().is_none_or(|standby| standby.pending() == 0),
          "sent to a worker before its hello"
        );
      }
      for (channel, queue) in &self.queues {
        assert!(queue.is_empty() || self.ledger.is_open(*channel), "{channel:?} closed with records queued");
      }
      assert_eq!(self.ledger.held(), held.len() + in_flight, "held count drifted");
      assert_eq!(self.ledger.is_idle(), held.is_empty() && in_flight == 0);
      // The counters JavaScript reads agree with the ledger.
      for (index, slot) in self.ledger.slots.iter().enumerate() {
        let pending: usize = slot.current.iter().chain(slot.retiring.iter()).map(Channel::pending).sum();
        assert_eq!(self.stats.slots[index].pending.load(Relaxed), pending as u64, "slot {index}'s pending count");
        assert_eq!(self.stats.slots[index].is_live(), slot.is_live());
      }
      assert_eq!(self.stats.parked.load(Relaxed), self.ledger.parked.len() as u64);
    }
  }

  fn limits(max_pending_per_slot: usize, max_parked: usize, max_held: usize) -> Limits {
    Limits { max_pending_per_slot, max_parked, max_held }
  }

  fn roomy() -> Limits {
    limits(1024, 4096, 100_000)
  }

  #[test]
  fn accepting_waits_until_every_worker_said_hello() {
    let mut harness = Harness::new(2, roomy(), false);
    let first = harness.attach(0);
    let _second = harness.attach(1);
    harness.hello(first, 1);
    assert!(!harness.ledger.accepting(0), "one of two workers is up: wait");
    harness.ledger.end_startup_wait();
    assert!(harness.ledger.accepting(0));
    harness.ledger.close();
    assert!(!harness.ledger.accepting(0));
  }

  #[test]
  fn a_sent_connection_is_released_at_once_and_counted_delivered_when_a_peek_shows_it_read() {
    let (mut harness, channels) = Harness::ready(2, roomy());
    let id = harness.accept_for(1);
    assert_eq!(harness.send_all(channels[1]), vec![id], "released as it was sent");
    assert_eq!(harness.stats.slots[1].pending.load(Relaxed), 1);
    assert_eq!(harness.ledger.held(), 1, "the record holds it: still counted");
    harness.peek(channels[1]);
    assert_eq!(harness.stats.slots[1].pending.load(Relaxed), 1, "not read yet");
    assert_eq!(harness.take(channels[1], 1), vec![id]);
    harness.peek(channels[1]);
    assert_eq!(harness.stats.slots[1].taken.load(Relaxed), 1);
    assert_eq!(harness.stats.slots[1].pending.load(Relaxed), 0);
    assert!(harness.ledger.is_idle());
    harness.check_nothing_lost();
  }

  #[test]
  fn a_new_backlog_asks_for_a_transmit_once_and_sends_it_as_one_record() {
    let (mut harness, channels) = Harness::ready(1, roomy());
    for id in 1..=3 {
      harness.ledger.accept(0, Route::Hash(1), id);
    }
    let actions: Vec<Action<u32>> = std::iter::from_fn(|| harness.ledger.poll_action()).collect();
    assert_eq!(actions, vec![Action::Transmit(channels[0])]);
    let (first, ids) = harness.ledger.to_send(channels[0], 2).unwrap();
    assert_eq!((first, ids.copied().collect::<Vec<_>>()), (1, vec![1, 2]));
    harness.ledger.sent(channels[0], 2);
    let (first, ids) = harness.ledger.to_send(channels[0], 253).unwrap();
    assert_eq!((first, ids.copied().collect::<Vec<_>>()), (3, vec![3]), "numbered on");
  }

  #[test]
  fn a_closed_worker_s_unread_connections_go_to_the_next_choice_in_order() {
    let (mut harness, channels) = Harness::ready(3, roomy());
    let ids: Vec<u32> = (0..4).map(|_| harness.accept_for(2)).collect();
    assert_eq!(harness.send(channels[2], 1), ids[..1]);
    assert_eq!(harness.send(channels[2], 2), ids[1..3]);
    assert_eq!(harness.take(channels[2], 1), ids[..1], "the worker read the first record");
    harness.close_channel(channels[2], ChannelEnd::WorkerClosed);
    let survivors: Vec<u32> = [channels[0], channels[1]].iter().flat_map(|&c| harness.send_all(c)).collect();
    assert_eq!(survivors.iter().copied().collect::<BTreeSet<_>>(), ids[1..].iter().copied().collect());
    assert_eq!(harness.stats.slots[2].redispatched.load(Relaxed), 3);
    assert_eq!(harness.stats.slots[2].taken.load(Relaxed), 1, "what it read is its own");
    assert!(harness.notices.contains(&Notice::SlotClosed { slot: 2, end: ChannelEnd::WorkerClosed, requeued: 3 }));
    assert!(harness.closed.contains(&channels[2]));
    assert!(!harness.stats.slots[2].is_live());
    harness.check_nothing_lost();
  }

  #[test]
  fn a_slot_over_its_limit_keeps_taking_connections_until_the_budget_is_used_up() {
    let (mut harness, _channels) = Harness::ready(2, limits(4, 2, 6));
    for _ in 0..6 {
      harness.accept_for(0);
      assert!(harness.ledger.accepting(0) || harness.ledger.held() == 6, "no pause before the budget is used up");
    }
    assert_eq!(harness.stats.slots[0].dispatched.load(Relaxed), 6, "held beyond the slot's limit");
    assert!(matches!(harness.ledger.admission(0), Admission::Paused(Some(_))), "budget used up: wait for the slot");
    assert!(harness.reset.is_empty());
    harness.check_nothing_lost();
  }

  #[test]
  fn past_the_budget_a_new_connection_for_a_slot_over_its_limit_is_reset_counted_and_reported() {
    let (mut harness, channels) = Harness::ready(2, limits(4, 2, 6));
    for _ in 0..7 {
      harness.accept_for(0);
    }
    assert_eq!(harness.stats.slots[0].dispatched.load(Relaxed), 6);
    assert_eq!(harness.stats.slots[0].dropped_queue_full.load(Relaxed), 1);
    assert_eq!(harness.reset.values().collect::<Vec<_>>(), vec![&ResetReason::SlotOverLimit(0)]);
    assert!(harness.notices.contains(&Notice::Overloaded { held: 6, reset: 1 }), "{:?}", harness.notices);
    // A slot under its limit still gets its clients (the budget keeps a reserve).
    let id = harness.accept_for(1);
    assert_eq!(harness.send_all(channels[1]), vec![id]);
    harness.check_nothing_lost();
  }

  #[test]
  fn sent_connections_count_against_the_budget_until_a_peek_shows_them_read() {
    let (mut harness, channels) = Harness::ready(2, limits(4, 2, 6));
    for _ in 0..6 {
      harness.accept_for(0);
    }
    harness.send_all(channels[0]);
    assert_eq!(harness.ledger.held(), 6, "in the queue: still the primary's to account for");
    harness.take(channels[0], 3);
    harness.peek(channels[0]);
    assert_eq!(harness.ledger.held(), 0);
    assert_eq!(harness.ledger.admission(0), Admission::Open);
    harness.check_nothing_lost();
  }

  #[test]
  fn overload_is_reported_at_most_once_a_second_with_the_count() {
    let (mut harness, _channels) = Harness::ready(1, limits(1, 1, 1));
    harness.accept_for(0);
    for _ in 0..3 {
      harness.accept_for(0);
    }
    harness.now = 1000;
    harness.accept_for(0);
    let overloads: Vec<&Notice> = harness.notices.iter().filter(|n| matches!(n, Notice::Overloaded { .. })).collect();
    assert_eq!(overloads, vec![&Notice::Overloaded { held: 1, reset: 1 }, &Notice::Overloaded { held: 1, reset: 3 }]);
  }

  #[test]
  fn a_congested_slot_pauses_accepting_for_at_most_its_hold() {
    let (mut harness, _channels) = Harness::ready(2, limits(4, 2, 6));
    for _ in 0..6 {
      harness.accept_for(0);
    }
    assert_eq!(harness.ledger.admission(100), Admission::Paused(Some(CONGESTION_HOLD_MS - 100)));
    assert_eq!(harness.ledger.admission(CONGESTION_HOLD_MS), Admission::Open, "a frozen worker stalls nobody longer");
  }

  #[test]
  fn reading_down_to_half_the_limit_ends_the_congestion() {
    let (mut harness, channels) = Harness::ready(2, limits(4, 2, 6));
    for _ in 0..6 {
      harness.accept_for(0);
    }
    for _ in 0..6 {
      harness.send(channels[0], 1);
    }
    harness.take(channels[0], 3);
    harness.peek(channels[0]);
    assert_eq!(harness.ledger.admission(0), Admission::Open, "3 of 6 held: under the budget");
    harness.take(channels[0], 1);
    harness.peek(channels[0]);
    // The budget is used up again, with no slot congested: nobody to wait for.
    for slot in [1, 1, 1, 0] {
      harness.accept_for(slot);
    }
    assert_eq!(harness.ledger.held(), 6);
    assert_eq!(harness.ledger.admission(0), Admission::Open);
  }

  #[test]
  fn with_no_worker_alive_connections_park_then_flow_to_the_next_worker() {
    let (mut harness, channels) = Harness::ready(1, limits(4, 2, 6));
    harness.close_channel(channels[0], ChannelEnd::Failed);
    assert!(!harness.ledger.accepting(0));
    let ids: Vec<u32> = (0..7).map(|_| harness.accept(Route::Hash(7))).collect();
    assert_eq!(harness.stats.parked.load(Relaxed), 6, "held beyond max_parked, up to max_held");
    assert_eq!(harness.stats.dropped_no_worker.load(Relaxed), 1, "reset past max_held");
    assert_eq!(harness.reset.get(&ids[6]), Some(&ResetReason::NoWorker));
    let respawned = harness.attach(0);
    harness.hello(respawned, 2);
    assert_eq!(harness.send_all(respawned), ids[..6]);
    assert_eq!(harness.stats.slots[0].respawns.load(Relaxed), 1);
    harness.check_nothing_lost();
  }

  #[test]
  fn with_no_worker_in_existence_connections_are_refused_at_once_and_counted() {
    let (mut harness, channels) = Harness::ready(1, limits(4, 4, 100));
    harness.close_channel(channels[0], ChannelEnd::WorkerClosed);
    // A worker exists (it is starting, or its respawn is): wait for it.
    let parked = harness.accept(Route::NewSession { handshake: true });
    assert!(!harness.ledger.accepting(0), "new clients wait in the kernel's queue");
    assert_eq!(harness.stats.parked.load(Relaxed), 1);
    // The last worker process exited and nobody forks another: refuse.
    harness.ledger.set_workers_exist(0, false);
    harness.carry_out_actions();
    assert_eq!(harness.reset.get(&parked), Some(&ResetReason::Unavailable));
    assert!(harness.ledger.accepting(0), "taken, to be answered at once");
    let refused = harness.accept(Route::NewSession { handshake: true });
    assert_eq!(harness.reset.get(&refused), Some(&ResetReason::Unavailable));
    assert_eq!(harness.stats.dropped_no_worker.load(Relaxed), 2);
    assert_eq!(harness.stats.parked.load(Relaxed), 0);
    assert_eq!(harness.ledger.held(), 0);
    // A worker is forked again: connections wait for it and reach it.
    harness.ledger.set_workers_exist(0, true);
    let waiting = harness.accept(Route::NewSession { handshake: true });
    let respawned = harness.attach(0);
    harness.hello(respawned, 7);
    assert_eq!(harness.send_all(respawned), vec![waiting]);
    harness.check_nothing_lost();
  }

  #[test]
  fn terminating_refuses_and_counts_what_is_still_held_and_closes_every_channel() {
    let (mut harness, channels) = Harness::ready(2, limits(8, 8, 100));
    let for_zero = harness.accept_for(0);
    harness.send_all(channels[0]);
    let backlog = harness.accept_for(1);
    harness.close_channel(channels[0], ChannelEnd::WorkerClosed);
    harness.close_channel(channels[1], ChannelEnd::WorkerClosed);
    // The first came back from the departed worker and is parked with the second.
    assert_eq!(harness.stats.parked.load(Relaxed), 2);
    let fresh = harness.attach(0);
    harness.ledger.terminate(0);
    harness.carry_out_actions();
    for id in [for_zero, backlog] {
      assert_eq!(harness.reset.get(&id), Some(&ResetReason::Abandoned));
    }
    assert!(harness.closed.contains(&fresh), "the channel of a worker still starting closes too");
    assert_eq!(harness.stats.dropped_no_worker.load(Relaxed), 2);
    assert_eq!((harness.ledger.held(), harness.stats.parked.load(Relaxed)), (0, 0));
    assert!(!harness.ledger.accepting(0));
    harness.check_nothing_lost();
  }

  #[test]
  fn a_connection_already_held_is_never_reset_for_a_limit() {
    let (mut harness, channels) = Harness::ready(2, limits(1, 1, 2));
    let ids = [harness.accept_for(0), harness.accept_for(0)];
    harness.send(channels[0], 1);
    assert!(harness.reset.is_empty());
    // Slot 0's worker dies: both go to slot 1, over its limit and the budget.
    harness.close_channel(channels[0], ChannelEnd::Failed);
    assert!(harness.reset.is_empty());
    assert_eq!(harness.send_all(channels[1]), ids);
    harness.check_nothing_lost();
  }

  #[test]
  fn a_session_reported_by_a_worker_routes_its_next_requests_there() {
    let (mut harness, channels) = Harness::ready(3, roomy());
    assert!(!harness.ledger.knows_session(b"s1"), "the driver reads replies first");
    harness.ledger.session_opened(0, channels[2], b"s1");
    assert!(harness.ledger.knows_session(b"s1"));
    let ids: Vec<u32> = (0..3).map(|_| harness.accept(Route::Session(b"s1"[..].into()))).collect();
    assert_eq!(harness.send_all(channels[2]), ids);
    assert_eq!(harness.stats.slots[2].sessions.load(Relaxed), 1);
    harness.ledger.session_closed(channels[2], b"s1");
    assert_eq!(harness.stats.slots[2].sessions.load(Relaxed), 0);
  }

  #[test]
  fn a_burst_of_handshakes_spreads_over_the_workers() {
    let (mut harness, channels) = Harness::ready(3, roomy());
    for _ in 0..3 {
      harness.accept(Route::NewSession { handshake: true });
    }
    let per_worker: Vec<usize> = channels.iter().map(|&channel| harness.send_all(channel).len()).collect();
    assert_eq!(per_worker, vec![1, 1, 1]);
  }

  #[test]
  fn a_new_worker_for_a_live_slot_waits_on_standby_then_takes_over_with_what_the_old_one_had_not_read() {
    let (mut harness, channels) = Harness::ready(2, roomy());
    let old = channels[1];
    let ids: Vec<u32> = (0..2).map(|_| harness.accept_for(1)).collect();
    assert_eq!(harness.send(old, 1), ids[..1]);
    assert_eq!(harness.send(old, 1), ids[1..]);
    let new = harness.attach(1);
    let third = harness.accept_for(1);
    assert!(harness.ledger.to_send(new, 1).is_none(), "nothing goes to a worker before its hello");
    harness.hello(new, 77);
    assert_eq!(harness.retiring, vec![old], "the old channel is retired once its queue is read back");
    // The old worker reads the first record while the driver reads back the rest.
    assert_eq!(harness.take(old, 1), ids[..1]);
    harness.finish_retiring();
    assert_eq!(harness.send_all(new), vec![ids[1], third], "what the old worker had not read moves to the new one");
    assert_eq!(harness.delivered.get(&ids[0]), Some(&old), "read: served by the old worker, and only there");
    assert!(harness.closed.contains(&old));
    assert!(harness.notices.contains(&Notice::SlotReady { slot: 1, pid: 77 }));
    assert!(harness.notices.contains(&Notice::SlotClosed { slot: 1, end: ChannelEnd::Replaced, requeued: 2 }));
    assert_eq!(harness.stats.slots[1].pid.load(Relaxed), 77);
    assert!(harness.stats.slots[1].is_live());
    harness.check_nothing_lost();
  }

  #[test]
  fn a_second_new_worker_replaces_the_first_one_on_standby() {
    let (mut harness, _channels) = Harness::ready(1, roomy());
    let first = harness.attach(0);
    let second = harness.attach(0);
    assert!(harness.closed.contains(&first));
    assert!(harness.notices.contains(&Notice::SlotClosed { slot: 0, end: ChannelEnd::Replaced, requeued: 0 }));
    assert!(harness.ledger.is_open(second));
    assert_eq!(harness.ledger.free_slot(), None);
  }

  #[test]
  fn events_for_a_finished_channel_change_nothing_and_what_comes_back_late_is_served() {
    let (mut harness, channels) = Harness::ready(1, roomy());
    let id = harness.accept_for(0);
    harness.send_all(channels[0]);
    harness.close_channel(channels[0], ChannelEnd::Failed);
    harness.ledger.taken(channels[0], None);
    harness.ledger.hello(0, channels[0], 5);
    harness.ledger.session_opened(0, channels[0], b"x");
    harness.ledger.sent(channels[0], 1);
    harness.close_channel(channels[0], ChannelEnd::Failed);
    harness.carry_out_actions();
    assert!(!harness.delivered.contains_key(&id));
    assert_eq!(harness.ledger.held(), 1, "parked, waiting for a worker");
    harness.check_nothing_lost();
  }

  #[test]
  fn the_lowest_slot_without_a_channel_is_free() {
    let mut harness = Harness::new(3, roomy(), false);
    assert_eq!(harness.ledger.free_slot(), Some(0));
    harness.attach(0);
    assert_eq!(harness.ledger.free_slot(), Some(1));
  }

  // ------------------------------------------------------------ property

  /// One step of an arbitrary history. `pick` chooses among the channels the
  /// operation applies to (modulo their count).
  #[derive(Debug, Clone)]
  enum Op {
    Accept {
      key: u64,
      kind: u8,
      sid: u8,
    },
    Attach {
      slot: u16,
    },
    Hello {
      pick: usize,
    },
    /// The driver sends one record of up to `most` connections.
    Send {
      pick: usize,
      most: usize,
    },
    /// The worker reads up to `records` records (a retiring worker too: it
    /// races the driver reading them back).
    Take {
      pick: usize,
      records: usize,
    },
    /// The driver peeks at the head of the worker's queue.
    Peek {
      pick: usize,
    },
    /// The worker stops reading (closes, dies), or the channel fails; the
    /// driver reads back its queue.
    End {
      pick: usize,
      end: u8,
    },
    FinishRetiring,
    SessionOpened {
      pick: usize,
      sid: u8,
    },
    Tick {
      ms: u16,
    },
    EndStartupWait,
    Close,
  }

  fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
      6 => (any::<u64>(), 0u8..3, 0u8..4).prop_map(|(key, kind, sid)| Op::Accept { key, kind, sid }),
      1 => (0..SLOTS).prop_map(|slot| Op::Attach { slot }),
      2 => any::<usize>().prop_map(|pick| Op::Hello { pick }),
      4 => (any::<usize>(), 1usize..4).prop_map(|(pick, most)| Op::Send { pick, most }),
      3 => (any::<usize>(), 1usize..3).prop_map(|(pick, records)| Op::Take { pick, records }),
      2 => any::<usize>().prop_map(|pick| Op::Peek { pick }),
      1 => (any::<usize>(), 0u8..4).prop_map(|(pick, end)| Op::End { pick, end }),
      1 => Just(Op::FinishRetiring),
      1 => (any::<usize>(), 0u8..4).prop_map(|(pick, sid)| Op::SessionOpened { pick, sid }),
      1 => (0u16..800).prop_map(|ms| Op::Tick { ms }),
      1 => Just(Op::EndStartupWait),
      1 => Just(Op::Close),
    ]
  }

  fn pick_from(channels: &[ChannelId], pick: usize) -> Option<ChannelId> {
    (!channels.is_empty()).then(|| channels[pick % channels.len()])
  }

  impl Harness {
    /// Channels not finished with, in a stable order.
    fn open_channels(&self) -> Vec<ChannelId> {
      let mut open: Vec<ChannelId> = self
        .ledger
        .slots
        .iter()
        .flat_map(|slot| slot.current.iter().chain(slot.standby.iter()).chain(slot.retiring.iter()).map(|c| c.id))
        .collect();
      open.sort();
      open
    }

    fn apply(&mut self, op: &Op) {
      let open = self.open_channels();
      let before_resets = self.reset.len();
      let mut fresh = None;
      match *op {
        Op::Accept { key, kind, sid } => {
          let route = match kind {
            0 => Route::Hash(key),
            1 => Route::Session(vec![b's', sid].into()),
            _ => Route::NewSession { handshake: key % 2 == 0 },
          };
          fresh = Some(self.accept(route));
        }
        Op::Attach { slot } => {
          self.attach(slot);
        }
        Op::Hello { pick } => {
          if let Some(channel) = pick_from(&open, pick) {
            self.hello(channel, 1000 + channel.generation as u32);
          }
        }
        Op::Send { pick, most } => {
          if let Some(channel) = pick_from(&open, pick) {
            self.send(channel, most);
          }
        }
        Op::Take { pick, records } => {
          if let Some(channel) = pick_from(&open, pick) {
            self.take(channel, records);
          }
        }
        Op::Peek { pick } => {
          if let Some(channel) = pick_from(&open, pick) {
            self.peek(channel);
          }
        }
        Op::End { pick, end } => {
          if let Some(channel) = pick_from(&open, pick) {
            let end = [ChannelEnd::WorkerClosed, ChannelEnd::Failed, ChannelEnd::ProtocolError, ChannelEnd::Replaced]
              [usize::from(end)];
            self.retiring.retain(|&retiring| retiring != channel);
            self.close_channel(channel, end);
          }
        }
        Op::FinishRetiring => self.finish_retiring(),
        Op::SessionOpened { pick, sid } => {
          if let Some(channel) = pick_from(&open, pick) {
            self.ledger.session_opened(self.now, channel, &[b's', sid]);
            self.carry_out_actions();
          }
        }
        Op::Tick { ms } => self.now += Millis::from(ms),
        Op::EndStartupWait => self.ledger.end_startup_wait(),
        Op::Close => self.ledger.close(),
      }
      // Only a connection being accepted may be reset.
      if self.reset.len() > before_resets {
        assert_eq!(self.reset.len(), before_resets + 1, "{op:?} reset more than the new connection");
        assert!(fresh.is_some_and(|id| self.reset.contains_key(&id)), "{op:?} reset a connection already held");
      }
    }

    /// Brings every slot a fresh ready worker, retires the old ones and lets
    /// the workers read everything: afterwards nothing may be held.
    fn drain_everything(&mut self) {
      for slot in 0..SLOTS {
        let channel = self.attach(slot);
        self.hello(channel, 9000 + u32::from(slot));
      }
      self.finish_retiring();
      for _ in 0..4 {
        for channel in self.open_channels() {
          self.send_all(channel);
          self.take(channel, usize::MAX);
          self.peek(channel);
        }
      }
    }
  }

  proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Under any interleaving of acceptance, sending, reading (also by a
    /// worker being replaced, racing the driver's read-back), peeking, worker
    /// start and death, reload, close and limits, every accepted connection
    /// ends exactly once: delivered to the one worker that read it, or reset
    /// (new connections only) and counted; until then it is held by the
    /// ledger or queued in exactly one channel, whose route the ledger keeps.
    #[test]
    fn every_accepted_connection_ends_exactly_once(ops in proptest::collection::vec(op(), 1..120)) {
      let mut harness = Harness::new(SLOTS, limits(2, 2, 5), true);
      for op in &ops {
        harness.apply(op);
        harness.check_nothing_lost();
      }
      harness.drain_everything();
      harness.check_nothing_lost();
      prop_assert_eq!(harness.ledger.held(), 0, "still held after every worker read everything");
      let ended: BTreeSet<u32> = harness.delivered.keys().chain(harness.reset.keys()).copied().collect();
      prop_assert_eq!(&ended, &harness.accepted);
      let counted = harness.stats.dropped_no_worker.load(Relaxed)
        + harness.stats.slots.iter().map(|slot| slot.dropped_queue_full.load(Relaxed)).sum::<u64>();
      prop_assert_eq!(counted, harness.reset.len() as u64, "every reset is counted");
      let delivered = harness.stats.slots.iter().map(|slot| slot.taken.load(Relaxed)).sum::<u64>();
      prop_assert_eq!(delivered, harness.delivered.len() as u64, "every delivery is counted once");
    }
  }
}
