//! The channel driver: owns the primary's end of every worker channel, a
//! reference to the worker's end and the worker's lifeline; carries out what the ledger decides — `sendmsg` of hand-off
//! records (then closing the primary's copies), reading back what a worker
//! that left never read, peeking what a worker has taken, `recvmsg` of
//! replies (decoded into ledger events), closing channels, resetting
//! connections — and nothing else. Every entry point ends in `carry_out_actions`, which
//! carries out the ledger's actions and wakes the accept task if it may go on.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::core::hrw::SlotId;
use crate::core::routing::Route;
use crate::core::wire::{self, Handoff, Reply, Setup};
use crate::seqpacket;

use super::connection::{self, Connection};
use super::events::{EventSink, PrimaryEvent, Problem};
use crate::core::ledger::{Action, Admission, ChannelEnd, ChannelId, Ledger, Millis, ResetReason, Seq};

/// What the primary keeps of a channel it made: its own end, a reference to
/// the worker's end (where it reads back what the worker never read, and
/// peeks what it has taken), and the read end of the worker's lifeline.
pub struct NewChannel {
  pub end: OwnedFd,
  pub worker_end: OwnedFd,
  pub lifeline: OwnedFd,
}

impl NewChannel {
  /// A channel for a worker about to be forked, and the worker's end to
  /// place in it. The worker finds its lifeline as the first record.
  pub fn for_fork() -> io::Result<(Self, OwnedFd)> {
    let (end, worker_end) = seqpacket::socketpair()?;
    let (lifeline, workers_lifeline) = seqpacket::lifeline()?;
    seqpacket::send_record(end.as_fd(), &wire::encode_setup(Setup::Lifeline), &[workers_lifeline.as_fd()])?;
    let kept = worker_end.try_clone()?;
    Ok((NewChannel { end, worker_end: kept, lifeline }, worker_end))
  }

  /// A channel for a worker that connected to the rendezvous socket: its end
  /// and its lifeline go to it over `connection`.
  pub fn for_connection(connection: BorrowedFd<'_>) -> io::Result<Self> {
    let (end, worker_end) = seqpacket::socketpair()?;
    let (lifeline, workers_lifeline) = seqpacket::lifeline()?;
    let setup = wire::encode_setup(Setup::Channel);
    seqpacket::send_record(connection, &setup, &[worker_end.as_fd(), workers_lifeline.as_fd()])?;
    Ok(NewChannel { end, worker_end, lifeline })
  }
}

/// The primary's end of one channel, shared with the task that serves it: the
/// descriptor closes (and the worker sees end-of-file) when both let go.
pub struct ChannelIo {
  pub fd: AsyncFd<OwnedFd>,
  /// Wakes the channel's task: it has hand-offs to write, or it is closed.
  pub wake: Notify,
  /// The worker's lifeline: readable (end-of-file) once the worker stopped
  /// taking connections or died. (Before the worker read it, the record
  /// queued for it keeps it open: a worker gone before its hello is noticed
  /// when its replacement takes the slot.)
  pub lifeline: AsyncFd<OwnedFd>,
}

/// The accept task waits here while the ledger says not to accept.
#[derive(Default)]
pub struct AcceptGate {
  pub notify: Notify,
  /// The accept task is waiting: whoever relieves the pressure wakes it.
  pub waiting: Cell<bool>,
}

/// Wakes the task that peeks what workers have taken, once, when records
/// start being sent (it sleeps while every record sent is known to be taken).
#[derive(Default)]
pub struct PeekSchedule {
  pub wanted: Notify,
  pub armed: Cell<bool>,
}

/// How writing a channel's backlog went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
  /// Everything queued was sent.
  Done,
  /// The channel is full: wait until it is writable (or, when the kernel
  /// refused more descriptors in flight, until the next peek).
  WouldBlock,
  /// The channel is gone.
  Gone,
}

/// What the driver keeps of one open channel.
struct OpenChannel {
  io: Rc<ChannelIo>,
  /// The worker's end of the channel: where the driver reads back what the
  /// worker never read, and peeks what it has taken.
  worker_end: OwnedFd,
}

pub struct Driver {
  ledger: Ledger<Connection>,
  channels: HashMap<ChannelId, OpenChannel>,
  clock: Instant,
  /// The record being sent, and the one being read back.
  record: Vec<u8>,
  reclaim_buf: Vec<u8>,
  /// Connections per record, at most `wire::MAX_BATCH`.
  max_batch: usize,
  /// During an accept burst: the channels to transmit at its end, so that
  /// a burst leaves as one record per channel.
  deferred: Option<Vec<ChannelId>>,
  gate: Rc<AcceptGate>,
  peek: Rc<PeekSchedule>,
  events: Rc<EventSink>,
}

impl Driver {
  pub fn new(ledger: Ledger<Connection>, gate: Rc<AcceptGate>, peek: Rc<PeekSchedule>, events: Rc<EventSink>) -> Self {
    Driver {
      ledger,
      channels: HashMap::new(),
      clock: Instant::now(),
      record: Vec::with_capacity(wire::MAX_HANDOFF_RECORD_LEN),
      reclaim_buf: vec![0u8; wire::MAX_HANDOFF_RECORD_LEN],
      max_batch: wire::MAX_BATCH,
      deferred: None,
      gate,
      peek,
      events,
    }
  }

  pub fn now(&self) -> Millis {
    Millis::try_from(self.clock.elapsed().as_millis()).unwrap_or(Millis::MAX)
  }

  pub fn ledger(&self) -> &Ledger<Connection> {
    &self.ledger
  }

  /// Whether the accept task may take a connection now. After `close` it
  /// drains the listen queue whatever the workers' state, but still under
  /// backpressure. At the budget, the queues are peeked first: what the
  /// workers have read no longer counts.
  pub fn admission(&mut self) -> Admission {
    if self.ledger.at_budget() {
      self.update_taken();
    }
    self.admission_now()
  }

  /// `admission` as far as the ledger knows now.
  fn admission_now(&self) -> Admission {
    let now = self.now();
    match self.ledger.admission(now) {
      Admission::Open if !self.ledger.is_closed() && !self.ledger.accepting(now) => Admission::Paused(None),
      admission => admission,
    }
  }

  // ------------------------------------------------------------ events in

  /// Takes a new connection. A request naming a session the ledger does not
  /// know reads every channel's replies first: the worker reports a session
  /// before its handshake response leaves, so the report can only be
  /// waiting unread.
  pub fn accept(&mut self, route: Route, connection: Connection) {
    if let Route::Session(sid) = &route {
      if !self.ledger.knows_session(sid) {
        for channel in self.ledger.current_channels() {
          self.receive(channel);
        }
      }
    }
    if self.ledger.at_budget() {
      self.update_taken();
    }
    self.ledger.accept(self.now(), route, connection);
    self.carry_out_actions();
  }

  /// From here until `end_burst`, hand-offs wait: a burst of accepted
  /// connections leaves as one record per channel.
  pub fn begin_burst(&mut self) {
    self.deferred.get_or_insert_with(Vec::new);
  }

  pub fn end_burst(&mut self) {
    for channel in self.deferred.take().unwrap_or_default() {
      self.transmit_or_wait(channel);
    }
    self.carry_out_actions();
  }

  /// Gives `slot` a new channel.
  pub fn attach(&mut self, slot: SlotId, new: NewChannel) -> io::Result<(ChannelId, Rc<ChannelIo>)> {
    let io = Rc::new(ChannelIo {
      fd: register(new.end, Interest::READABLE | Interest::WRITABLE)?,
      wake: Notify::new(),
      lifeline: register(new.lifeline, Interest::READABLE)?,
    });
    let channel = self.ledger.attach(self.now(), slot);
    self.channels.insert(channel, OpenChannel { io: io.clone(), worker_end: new.worker_end });
    self.carry_out_actions();
    Ok((channel, io))
  }

  /// Reads what the channel's worker sent; true once the channel is empty
  /// (or gone).
  pub fn read_replies(&mut self, channel: ChannelId) -> bool {
    let drained = self.receive(channel);
    self.carry_out_actions();
    drained
  }

  /// The worker's lifeline closed: it stopped reading (it closes or died).
  pub fn worker_left(&mut self, channel: ChannelId) {
    self.end_channel(channel, ChannelEnd::WorkerClosed);
    self.carry_out_actions();
  }

  /// Peeks every queue with records in flight, so the ledger knows what its
  /// worker has taken: before the ledger counts what is held (the budget,
  /// draining), and on a timer.
  pub fn update_taken(&mut self) {
    for channel in self.ledger.with_in_flight() {
      self.peek(channel);
    }
    self.carry_out_actions();
  }

  /// Writes the channel's backlog (it became writable).
  pub fn flush(&mut self, channel: ChannelId) -> Flush {
    let flush = self.transmit(channel);
    self.carry_out_actions();
    flush
  }

  /// The channel cannot be served any more.
  pub fn fail(&mut self, channel: ChannelId) {
    self.end_channel(channel, ChannelEnd::Failed);
    self.carry_out_actions();
  }

  pub fn end_startup_wait(&mut self) {
    self.ledger.end_startup_wait();
    self.carry_out_actions();
  }

  /// Stops accepting for good. The accept task, wherever it waits, wakes to
  /// drain the listen queue.
  pub fn close(&mut self) {
    self.ledger.close();
    self.carry_out_actions();
    self.gate.notify.notify_one();
  }

  /// Whether any worker process exists that may take connections (workers
  /// the user forks): while none does, connections are refused at once.
  pub fn set_workers_exist(&mut self, exist: bool) {
    self.ledger.set_workers_exist(self.now(), exist);
    self.carry_out_actions();
    self.gate.notify.notify_one();
  }

  /// Stops for good: what is still held is refused and counted, every
  /// channel closes.
  pub fn terminate(&mut self) {
    self.ledger.terminate(self.now());
    self.carry_out_actions();
  }

  /// A connection the ledger never held (one reading its header) was closed
  /// because the descriptor budget was used up: reported with the ledger's.
  pub fn report_budget_reset(&mut self) {
    self.ledger.note_budget_reset(self.now());
    self.carry_out_actions();
  }

  pub fn expire_sessions(&mut self) {
    self.ledger.expire_sessions(self.now());
  }

  // ------------------------------------------------------------ I/O

  /// Reads replies until the channel is empty, feeding them to the ledger;
  /// true once it is empty or gone.
  fn receive(&mut self, channel: ChannelId) -> bool {
    let Some(io) = self.channels.get(&channel).map(|open| open.io.clone()) else { return true };
    let mut buf = [0u8; wire::MAX_REPLY_LEN];
    loop {
      match seqpacket::recv_record(io.fd.get_ref().as_fd(), &mut buf, false) {
        // Never while the primary holds the worker's end; read as the worker's.
        Ok(received) if received.len == 0 => {
          self.end_channel(channel, ChannelEnd::WorkerClosed);
          return true;
        }
        Ok(received) => {
          let outcome = match wire::decode_reply(&buf[..received.len]) {
            Ok(_) if received.truncated => Err("record too long".to_string()),
            // A worker never sends descriptors (they close here).
            Ok(_) if !received.fds.is_empty() => Err("descriptors beside a reply".to_string()),
            Ok(Reply::Hello { pid }) => {
              self.ledger.hello(self.now(), channel, pid);
              Ok(())
            }
            Ok(Reply::SessionOpened { sid }) => {
              self.ledger.session_opened(self.now(), channel, sid);
              Ok(())
            }
            Ok(Reply::SessionClosed { sid }) => {
              self.ledger.session_closed(channel, sid);
              Ok(())
            }
            Err(error) => Err(error.to_string()),
          };
          if let Err(why) = outcome {
            (self.events)(PrimaryEvent::Problem(Problem::InvalidRecord { slot: channel.slot, why }));
            self.end_channel(channel, ChannelEnd::ProtocolError);
            return true;
          }
        }
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
        Err(_) => {
          self.end_channel(channel, ChannelEnd::Failed);
          return true;
        }
      }
    }
  }

  /// Tells the ledger what the worker has taken (read from its channel): the number of the record
  /// at the head of its queue, or none.
  fn peek(&mut self, channel: ChannelId) {
    let Some(worker_end) = self.channels.get(&channel).map(|open| &open.worker_end) else { return };
    let mut head = [0u8; 12];
    match seqpacket::peek_record(worker_end.as_fd(), &mut head) {
      Ok(len) if len > 0 => {
        if let Some(seq) = wire::first_seq(&head[..len]) {
          self.ledger.taken(channel, Some(seq));
        }
      }
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.ledger.taken(channel, None),
      _ => {}
    }
    // A backlog the kernel refused (too many descriptors in flight) retries here.
    if self.ledger.wants_write(channel) {
      self.transmit_or_wait(channel);
    }
  }

  /// Sends the channel's backlog, in records of up to `max_batch`
  /// connections, until it is empty or the channel is full; the primary's
  /// copies close as each record leaves.
  fn transmit(&mut self, channel: ChannelId) -> Flush {
    let Some(io) = self.channels.get(&channel).map(|open| open.io.clone()) else { return Flush::Gone };
    loop {
      let (count, sent) = {
        let Some((first, connections)) = self.ledger.to_send(channel, self.max_batch) else { return Flush::Done };
        self.record.clear();
        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
        for (index, connection) in connections.enumerate() {
          wire::append_handoff(&Handoff { seq: first + index as Seq, client: connection.client }, &mut self.record);
          fds.push(connection.fd.as_fd());
        }
        (fds.len(), seqpacket::send_record(io.fd.get_ref().as_fd(), &self.record, &fds))
      };
      match sent {
        Ok(()) => {
          self.ledger.sent(channel, count);
          if !self.peek.armed.replace(true) {
            self.peek.wanted.notify_one();
          }
        }
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Flush::WouldBlock,
        // Descriptors in flight count against the open-file limit of this
        // user: wait for the worker to read some.
        Err(error) if error.raw_os_error() == Some(libc::ETOOMANYREFS) => return Flush::WouldBlock,
        Err(_) => {
          self.end_channel(channel, ChannelEnd::Failed);
          return Flush::Gone;
        }
      }
    }
  }

  /// Transmits, or leaves it to the channel's task when the channel is full.
  fn transmit_or_wait(&mut self, channel: ChannelId) {
    if self.transmit(channel) == Flush::WouldBlock {
      if let Some(open) = self.channels.get(&channel) {
        open.io.wake.notify_one();
      }
    }
  }

  /// Ends a channel as the ledger's guarantee needs: everything still queued
  /// on the worker's end is read back (a worker that left reads no more; one
  /// being replaced serves what it reads meanwhile, and each record goes to
  /// one reader), and the ledger re-dispatches it.
  fn end_channel(&mut self, channel: ChannelId, end: ChannelEnd) {
    let reclaimed = self.reclaim(channel);
    self.ledger.channel_closed(self.now(), channel, end, reclaimed);
  }

  /// Reads back every record queued on the worker's end of `channel`.
  fn reclaim(&mut self, channel: ChannelId) -> Vec<(Seq, Connection)> {
    let mut reclaimed = Vec::new();
    let Some(worker_end) = self.channels.get(&channel).map(|open| &open.worker_end) else {
      return reclaimed;
    };
    let mut lost = 0usize;
    while let Ok(received) = seqpacket::recv_record(worker_end.as_fd(), &mut self.reclaim_buf, false) {
      if received.len == 0 {
        break;
      }
      let record = &self.reclaim_buf[..received.len];
      if wire::decode_setup(record).is_ok() {
        // The lifeline of a worker that never read it: it closes here.
        continue;
      }
      let Ok(handoffs) = wire::decode_handoffs(record) else {
        // Our own records: never so. Their descriptors close here.
        lost += received.fds.len();
        continue;
      };
      lost += handoffs.len().saturating_sub(received.fds.len());
      for (handoff, fd) in handoffs.into_iter().zip(received.fds) {
        reclaimed.push((handoff.seq, Connection { fd, client: handoff.client }));
      }
    }
    if lost > 0 {
      // Out of descriptors while reading them back (EMFILE): the kernel
      // closed them, and their clients see the connection close.
      (self.events)(PrimaryEvent::Problem(Problem::ReclaimLost { slot: channel.slot, lost }));
    }
    reclaimed
  }

  /// Carries out what the ledger decided, then wakes the accept task if it
  /// waits and may go on.
  fn carry_out_actions(&mut self) {
    while let Some(action) = self.ledger.poll_action() {
      match action {
        Action::Transmit(channel) => match self.deferred.as_mut() {
          Some(deferred) => {
            if !deferred.contains(&channel) {
              deferred.push(channel);
            }
          }
          None => self.transmit_or_wait(channel),
        },
        // The record holds its own reference; the primary's closes here.
        Action::Release(connection) => drop(connection),
        Action::Reset(connection, ResetReason::Unavailable) => connection::answer_unavailable(connection.fd),
        Action::Reset(connection, _counted) => connection::reset(connection.fd),
        Action::Retire(channel) => self.end_channel(channel, ChannelEnd::Replaced),
        Action::CloseChannel(channel) => {
          // The task lets go of its reference when it wakes: the descriptor
          // closes, and the worker sees end-of-file.
          if let Some(open) = self.channels.remove(&channel) {
            open.io.wake.notify_one();
          }
        }
        Action::Notify(notice) => (self.events)(notice.into()),
      }
    }
    if self.gate.waiting.get() && self.admission_now() == Admission::Open {
      self.gate.waiting.set(false);
      self.gate.notify.notify_one();
    }
  }
}

/// Registers an owned descriptor with the reactor.
pub fn register<T: std::os::fd::AsRawFd>(owned: T, interest: Interest) -> io::Result<AsyncFd<T>> {
  // SAFETY: `owned` owns its descriptor (an `OwnedFd` or a `Socket`), so the
  // descriptor stays open and unchanged for as long as the `AsyncFd` lives.
  unsafe { AsyncFd::register_with_interest(owned, interest) }.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::core::hrw::Rendezvous;
  use crate::core::ledger::Limits;
  use crate::core::stats::Stats;
  use crate::core::wire::{decode_handoffs, encode_reply};
  use crate::test_support::{descriptors_referring_to, referents};
  use std::sync::atomic::Ordering::Relaxed;
  use std::sync::Arc;

  /// A worker's end of its channel, driven by the test.
  struct Worker {
    end: OwnedFd,
    lifeline: Option<OwnedFd>,
  }

  impl Worker {
    /// Reads its lifeline and says hello, as a real worker does.
    fn hello(end: OwnedFd, pid: u32) -> Self {
      let mut buf = [0u8; 16];
      let setup = seqpacket::recv_record(end.as_fd(), &mut buf, false).unwrap();
      assert_eq!(wire::decode_setup(&buf[..setup.len]), Ok(Setup::Lifeline));
      let [lifeline]: [OwnedFd; 1] = setup.fds.try_into().unwrap();
      seqpacket::send_record(end.as_fd(), &encode_reply(Reply::Hello { pid }), &[]).unwrap();
      Worker { end, lifeline: Some(lifeline) }
    }

    /// Reads up to `records` records: the sequence numbers of each.
    fn take(&self, records: usize) -> Vec<Vec<u64>> {
      let mut taken = Vec::new();
      let mut buf = vec![0u8; wire::MAX_HANDOFF_RECORD_LEN];
      while taken.len() < records {
        let Ok(received) = seqpacket::recv_record(self.end.as_fd(), &mut buf, false) else { break };
        if received.len == 0 {
          break;
        }
        let handoffs = decode_handoffs(&buf[..received.len]).unwrap();
        assert_eq!(handoffs.len(), received.fds.len());
        taken.push(handoffs.iter().map(|handoff| handoff.seq).collect());
      }
      taken
    }

    fn take_all(&self) -> Vec<u64> {
      self.take(usize::MAX).into_iter().flatten().collect()
    }
  }

  fn driver(slots: u16) -> (Driver, Arc<Stats>) {
    let stats = Arc::new(Stats::new(usize::from(slots)));
    let limits = Limits { max_pending_per_slot: 64, max_parked: 64, max_held: 1024 };
    let ledger = Ledger::new(Rendezvous::default(), slots, limits, None, stats.clone());
    let events: Rc<EventSink> = Rc::new(Box::new(|_| {}));
    (Driver::new(ledger, Rc::new(AcceptGate::default()), Rc::new(PeekSchedule::default()), events), stats)
  }

  /// A channel with a ready worker. The `ChannelIo` is what the channel's
  /// task would hold: the descriptor stays open while the test keeps it.
  fn attach(driver: &mut Driver, slot: SlotId, pid: u32) -> (ChannelId, Worker, Rc<ChannelIo>) {
    let (new, worker_end) = NewChannel::for_fork().unwrap();
    let (channel, io) = driver.attach(slot, new).unwrap();
    let worker = Worker::hello(worker_end, pid);
    driver.read_replies(channel);
    assert!(driver.ledger().is_open(channel));
    (channel, worker, io)
  }

  fn connection() -> Connection {
    let (fd, _client) = seqpacket::socketpair().unwrap();
    Connection { fd, client: None }
  }

  fn key_for(slot: SlotId, of: &[SlotId]) -> u64 {
    let hrw = Rendezvous::default();
    (0u64..).map(|i| hrw.key_hash(&i.to_le_bytes())).find(|&h| hrw.pick(h, of) == Some(slot)).unwrap()
  }

  #[tokio::test(flavor = "current_thread")]
  async fn a_burst_leaves_as_one_record_and_the_primary_keeps_no_copy() {
    let (mut driver, stats) = driver(1);
    let (_channel, worker, _task) = attach(&mut driver, 0, 1);
    let connections: Vec<Connection> = (0..5).map(|_| connection()).collect();
    let sockets = referents(&connections.iter().map(|connection| connection.fd.as_fd()).collect::<Vec<_>>());
    let still_open = || descriptors_referring_to(&sockets);
    assert_eq!(still_open(), 5);
    driver.begin_burst();
    for connection in connections {
      driver.accept(Route::Hash(7), connection);
    }
    assert!(worker.take(1).is_empty(), "nothing leaves before the burst ends");
    driver.end_burst();
    assert_eq!(worker.take(usize::MAX), vec![vec![1, 2, 3, 4, 5]]);
    // The worker's copies were read and dropped by `take`; the primary closed
    // its own right after sending.
    assert_eq!(still_open(), 0, "the primary closed its copies");
    assert_eq!(stats.slots[0].pending.load(Relaxed), 5, "not seen read yet");
  }

  #[tokio::test(flavor = "current_thread")]
  async fn a_peek_counts_what_the_worker_read() {
    let (mut driver, stats) = driver(1);
    let (_channel, worker, _task) = attach(&mut driver, 0, 1);
    for _ in 0..3 {
      driver.accept(Route::Hash(7), connection());
    }
    assert_eq!(worker.take(2), vec![vec![1], vec![2]]);
    driver.update_taken();
    assert_eq!(stats.slots[0].taken.load(Relaxed), 2);
    assert_eq!(stats.slots[0].pending.load(Relaxed), 1);
    worker.take_all();
    driver.update_taken();
    assert_eq!((stats.slots[0].taken.load(Relaxed), stats.slots[0].pending.load(Relaxed)), (3, 0));
    assert!(driver.ledger().is_idle());
  }

  #[tokio::test(flavor = "current_thread")]
  async fn what_a_worker_that_left_never_read_goes_to_the_next_choice_and_nothing_twice() {
    let (mut driver, stats) = driver(2);
    let (leaving_channel, leaving, _leaving_task) = attach(&mut driver, 0, 1);
    let (_other_channel, other, _other_task) = attach(&mut driver, 1, 2);
    let key = key_for(0, &[0, 1]);
    for _ in 0..3 {
      driver.accept(Route::Hash(key), connection());
    }
    assert_eq!(leaving.take(1), vec![vec![1]], "the worker reads the first, then stops reading");
    let mut leaving = leaving;
    leaving.lifeline = None;
    driver.worker_left(leaving_channel);
    assert_eq!(other.take_all(), vec![1, 2], "the two it never read, in order");
    assert_eq!(stats.slots[0].redispatched.load(Relaxed), 2);
    assert_eq!(stats.slots[0].taken.load(Relaxed), 1, "what it read is its own");
    assert!(!driver.ledger().is_open(leaving_channel));
    assert!(leaving.take(1).is_empty(), "nothing is left for it");
  }

  #[tokio::test(flavor = "current_thread")]
  async fn a_replaced_worker_keeps_what_it_read_and_the_new_one_gets_the_rest() {
    let (mut driver, stats) = driver(1);
    let (old_channel, old, old_task) = attach(&mut driver, 0, 1);
    for _ in 0..3 {
      driver.accept(Route::Hash(7), connection());
    }
    assert_eq!(old.take(1), vec![vec![1]]);
    let (new_channel, new, _new_task) = attach(&mut driver, 0, 2);
    assert_eq!(new.take_all(), vec![1, 2], "the old worker's unread connections, renumbered on the new channel");
    assert_eq!(stats.slots[0].redispatched.load(Relaxed), 2);
    assert!(!driver.ledger().is_open(old_channel));
    assert!(driver.ledger().is_open(new_channel));
    drop(old_task);
    assert!(old.take(1).is_empty(), "the old worker reads end-of-file: the primary closed its channel");
  }

  #[tokio::test(flavor = "current_thread")]
  async fn a_worker_speaking_another_protocol_is_disconnected_and_its_connections_move() {
    let (mut driver, stats) = driver(2);
    let (bad_channel, bad, _bad_task) = attach(&mut driver, 0, 1);
    let (_good_channel, good, _good_task) = attach(&mut driver, 1, 2);
    driver.accept(Route::Hash(key_for(0, &[0, 1])), connection());
    seqpacket::send_record(bad.end.as_fd(), &[9, 0x12, 0, 0, b's'], &[]).unwrap();
    driver.read_replies(bad_channel);
    assert!(!driver.ledger().is_open(bad_channel));
    assert_eq!(good.take_all(), vec![1], "the connection it never read goes to the next choice");
    assert_eq!(stats.slots[0].redispatched.load(Relaxed), 1);
  }

  #[tokio::test(flavor = "current_thread")]
  async fn a_worker_gone_before_reading_its_lifeline_leaves_nothing_behind() {
    let (mut driver, _stats) = driver(1);
    let (new, worker_end) = NewChannel::for_fork().unwrap();
    let (channel, _io) = driver.attach(0, new).unwrap();
    drop(worker_end);
    // Its replacement takes the slot; the unread lifeline closes without a word.
    let (replacement, _worker, _task) = attach(&mut driver, 0, 2);
    assert!(!driver.ledger().is_open(channel));
    assert!(driver.ledger().is_open(replacement));
  }
}
