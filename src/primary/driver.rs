//! The channel driver: owns the primary's end of every worker channel and
//! carries out what the ledger decides — `sendmsg` of hand-offs, `recvmsg` of
//! replies (decoded into ledger events), closing channels, resetting
//! connections — and nothing else. Every entry point ends in `settle`, which
//! carries out the ledger's actions and wakes the accept task if it may go on.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::channel;
use crate::hrw::SlotId;
use crate::routing::Route;
use crate::wire::{self, Handoff, Reply};

use super::connection::{self, Connection};
use super::events::{EventSink, PrimaryEvent, Problem};
use super::ledger::{Action, Admission, ChannelEnd, ChannelId, Ledger, Millis};

/// The primary's end of one channel, shared with the task that serves it: the
/// descriptor closes (and the worker sees end-of-file) when both let go.
pub struct ChannelIo {
  pub fd: AsyncFd<OwnedFd>,
  /// Wakes the channel's task: it has hand-offs to write, or it is closed.
  pub wake: Notify,
}

/// The accept task waits here while the ledger says not to accept.
#[derive(Default)]
pub struct AcceptGate {
  pub notify: Notify,
  /// The accept task is waiting: whoever relieves the pressure wakes it.
  pub waiting: Cell<bool>,
}

/// How writing a channel's backlog went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
  /// Everything queued was sent.
  Done,
  /// The channel is full: wait until it is writable.
  WouldBlock,
  /// The channel is gone.
  Gone,
}

pub struct Driver {
  ledger: Ledger<Connection>,
  channels: HashMap<ChannelId, Rc<ChannelIo>>,
  clock: Instant,
  record: Vec<u8>,
  gate: Rc<AcceptGate>,
  events: Rc<EventSink>,
}

impl Driver {
  pub fn new(ledger: Ledger<Connection>, gate: Rc<AcceptGate>, events: Rc<EventSink>) -> Self {
    Driver {
      ledger,
      channels: HashMap::new(),
      clock: Instant::now(),
      record: Vec::with_capacity(wire::HANDOFF_LEN),
      gate,
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
  /// backpressure.
  pub fn admission(&self) -> Admission {
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
    self.ledger.accept(self.now(), route, connection);
    self.settle();
  }

  /// Gives `slot` a new channel (the primary's end, non-blocking).
  pub fn attach(&mut self, slot: SlotId, fd: OwnedFd) -> io::Result<(ChannelId, Rc<ChannelIo>)> {
    let io = Rc::new(ChannelIo { fd: register(fd, Interest::WRITABLE)?, wake: Notify::new() });
    let channel = self.ledger.attach(self.now(), slot);
    self.channels.insert(channel, io.clone());
    self.settle();
    Ok((channel, io))
  }

  /// Reads what the channel's worker sent.
  pub fn read_replies(&mut self, channel: ChannelId) {
    self.receive(channel);
    self.settle();
  }

  /// Reads the acknowledgements of the channels that owe some: one `recvmsg`
  /// per busy slot, none for idle ones (their timer notices a hello or a close).
  pub fn read_owed_acks(&mut self) {
    for channel in self.ledger.owing_acks() {
      self.receive(channel);
    }
    self.settle();
  }

  /// Writes the channel's backlog (it became writable).
  pub fn flush(&mut self, channel: ChannelId) -> Flush {
    let flush = self.transmit(channel);
    self.settle();
    flush
  }

  /// The channel cannot be served any more.
  pub fn fail(&mut self, channel: ChannelId) {
    self.end_channel(channel, ChannelEnd::Failed);
    self.settle();
  }

  pub fn end_startup_wait(&mut self) {
    self.ledger.end_startup_wait();
    self.settle();
  }

  /// Stops accepting for good. The accept task, wherever it waits, wakes to
  /// drain the listen queue.
  pub fn close(&mut self) {
    self.ledger.close();
    self.settle();
    self.gate.notify.notify_one();
  }

  /// A connection the ledger never held (one reading its header) was closed
  /// because the descriptor budget was used up: reported with the ledger's.
  pub fn report_budget_reset(&mut self) {
    self.ledger.note_budget_reset(self.now());
    self.settle();
  }

  pub fn expire_sessions(&mut self) {
    self.ledger.expire_sessions(self.now());
  }

  // ------------------------------------------------------------ I/O

  /// Reads replies until the channel is empty, feeding them to the ledger.
  fn receive(&mut self, channel: ChannelId) {
    let Some(io) = self.channels.get(&channel).cloned() else { return };
    let mut buf = [0u8; wire::MAX_REPLY_LEN];
    loop {
      match channel::recv_record(io.fd.get_ref().as_fd(), &mut buf, false) {
        Ok(received) if received.len == 0 => return self.end_channel(channel, ChannelEnd::WorkerClosed),
        // A worker never sends descriptors; one that arrives closes here.
        Ok(received) => match wire::decode_reply(&buf[..received.len]) {
          Ok(reply) if !received.truncated => self.on_reply(channel, reply),
          outcome => {
            let why = outcome.err().map_or_else(|| "record too long".to_string(), |error| error.to_string());
            (self.events)(PrimaryEvent::Problem(Problem::InvalidRecord { slot: channel.slot, why }));
            return self.end_channel(channel, ChannelEnd::ProtocolError);
          }
        },
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
        Err(_) => return self.end_channel(channel, ChannelEnd::Failed),
      }
    }
  }

  fn on_reply(&mut self, channel: ChannelId, reply: Reply<'_>) {
    let now = self.now();
    match reply {
      Reply::Hello { pid } => self.ledger.hello(now, channel, pid),
      Reply::Ack { up_to } => self.ledger.acked(channel, up_to),
      Reply::SessionOpened { sid } => self.ledger.session_opened(now, channel, sid),
      Reply::SessionClosed { sid } => self.ledger.session_closed(channel, sid),
    }
  }

  /// Sends the channel's backlog until it is empty or the channel is full.
  fn transmit(&mut self, channel: ChannelId) -> Flush {
    let Some(io) = self.channels.get(&channel).cloned() else { return Flush::Gone };
    loop {
      let Some((seq, connection)) = self.ledger.next_to_send(channel) else { return Flush::Done };
      wire::encode_handoff(&Handoff { seq, client: connection.client }, &mut self.record);
      match channel::send_record(io.fd.get_ref().as_fd(), &self.record, Some(connection.fd.as_fd())) {
        Ok(()) => self.ledger.sent(channel),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Flush::WouldBlock,
        Err(_) => {
          self.end_channel(channel, ChannelEnd::Failed);
          return Flush::Gone;
        }
      }
    }
  }

  /// Ends a channel as the ledger's guarantee needs: the worker can no
  /// longer acknowledge (its next ack fails with `EPIPE`, and it then
  /// delivers nothing more), what it did acknowledge is read, and only then
  /// does the ledger take back the rest.
  fn end_channel(&mut self, channel: ChannelId, end: ChannelEnd) {
    if let Some(io) = self.channels.get(&channel).cloned() {
      let fd = io.fd.get_ref().as_fd();
      channel::shutdown_read(fd);
      let mut buf = [0u8; wire::MAX_REPLY_LEN];
      while let Ok(received) = channel::recv_record(fd, &mut buf, false) {
        if received.len == 0 {
          break;
        }
        // Past a bad record, the acknowledgements behind it still count.
        if let (Ok(reply), false) = (wire::decode_reply(&buf[..received.len]), received.truncated) {
          self.on_reply(channel, reply);
        }
      }
    }
    self.ledger.channel_closed(self.now(), channel, end);
  }

  /// Carries out what the ledger decided, then wakes the accept task if it
  /// waits and may go on.
  fn settle(&mut self) {
    while let Some(action) = self.ledger.poll_action() {
      match action {
        Action::Transmit(channel) => {
          if self.transmit(channel) == Flush::WouldBlock {
            // The channel's task waits for room.
            if let Some(io) = self.channels.get(&channel) {
              io.wake.notify_one();
            }
          }
        }
        // The worker holds its own copy; the primary's closes here.
        Action::Release(connection) => drop(connection),
        Action::Reset(connection, _counted) => connection::reset(connection.fd),
        Action::Retire(channel) => self.end_channel(channel, ChannelEnd::Replaced),
        Action::CloseChannel(channel) => {
          // The task lets go of its reference when it wakes: the descriptor
          // closes, and the worker sees end-of-file.
          if let Some(io) = self.channels.remove(&channel) {
            io.wake.notify_one();
          }
        }
        Action::Notify(notice) => (self.events)(notice.into()),
      }
    }
    if self.gate.waiting.get() && self.admission() == Admission::Open {
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
  use crate::hrw::Rendezvous;
  use crate::primary::ledger::Limits;
  use crate::primary::stats::Stats;
  use crate::wire::{decode_handoff, encode_reply};
  use std::sync::atomic::Ordering::Relaxed;
  use std::sync::Arc;

  /// A worker's end of its channel, driven by the test.
  struct Worker {
    end: OwnedFd,
  }

  impl Worker {
    fn say(&self, reply: Reply) -> io::Result<()> {
      channel::send_record(self.end.as_fd(), &encode_reply(reply), None)
    }

    /// The sequence numbers of the hand-offs waiting for this worker.
    fn take_all(&self) -> Vec<u64> {
      let mut seqs = Vec::new();
      let mut buf = [0u8; wire::HANDOFF_LEN];
      while let Ok(received) = channel::recv_record(self.end.as_fd(), &mut buf, false) {
        if received.len == 0 {
          break;
        }
        seqs.push(decode_handoff(&buf[..received.len]).unwrap().seq);
      }
      seqs
    }
  }

  fn driver(slots: u16) -> (Driver, Arc<Stats>) {
    let stats = Arc::new(Stats::new(usize::from(slots)));
    let limits = Limits { max_pending_per_slot: 64, max_parked: 64, max_held: 1024 };
    let ledger = Ledger::new(Rendezvous::default(), slots, limits, None, stats.clone());
    let events: Rc<EventSink> = Rc::new(Box::new(|_| {}));
    (Driver::new(ledger, Rc::new(AcceptGate::default()), events), stats)
  }

  /// A channel with a ready worker. The `ChannelIo` is what the channel's
  /// task would hold: the descriptor stays open while the test keeps it.
  fn attach(driver: &mut Driver, slot: SlotId, pid: u32) -> (ChannelId, Worker, Rc<ChannelIo>) {
    let (primary_end, worker_end) = channel::socketpair().unwrap();
    let (channel, io) = driver.attach(slot, primary_end).unwrap();
    let worker = Worker { end: worker_end };
    worker.say(Reply::Hello { pid }).unwrap();
    driver.read_replies(channel);
    (channel, worker, io)
  }

  fn connection() -> Connection {
    let (fd, _client) = channel::socketpair().unwrap();
    Connection { fd, client: None }
  }

  #[tokio::test(flavor = "current_thread")]
  async fn a_replaced_worker_cannot_acknowledge_after_its_last_replies_were_read() {
    let (mut driver, stats) = driver(1);
    // The old channel's task has not woken yet: its descriptor is still open.
    let (old_channel, old, _old_task) = attach(&mut driver, 0, 1);
    for _ in 0..3 {
      driver.accept(Route::Hash(7), connection());
    }
    assert_eq!(old.take_all(), vec![1, 2, 3]);
    // The old worker took the first two and said so; the primary has not read it yet.
    old.say(Reply::Ack { up_to: 2 }).unwrap();
    let (new_channel, new) = {
      let (primary_end, worker_end) = channel::socketpair().unwrap();
      let (channel, _io) = driver.attach(0, primary_end).unwrap();
      (channel, Worker { end: worker_end })
    };
    new.say(Reply::Hello { pid: 2 }).unwrap();
    driver.read_replies(new_channel);
    assert_eq!(stats.slots[0].acknowledged.load(Relaxed), 2, "the old worker's ack was read before the take-over");
    assert_eq!(new.take_all(), vec![1], "only the connection it had not acknowledged moves");
    assert_eq!(stats.slots[0].redispatched.load(Relaxed), 1);
    let late = old.say(Reply::Ack { up_to: 3 }).unwrap_err();
    assert_eq!(late.raw_os_error(), Some(libc::EPIPE), "too late: the old worker learns it must not serve the third");
    assert!(!driver.ledger().is_open(old_channel));
  }

  #[tokio::test(flavor = "current_thread")]
  async fn a_worker_that_closed_after_acknowledging_is_not_served_twice() {
    let (mut driver, stats) = driver(1);
    let (_channel, worker, _task) = attach(&mut driver, 0, 1);
    for _ in 0..2 {
      driver.accept(Route::Hash(7), connection());
    }
    assert_eq!(worker.take_all(), vec![1, 2]);
    worker.say(Reply::Ack { up_to: 2 }).unwrap();
    drop(worker);
    // Sending the next one fails (EPIPE): the acknowledgements are read first.
    driver.accept(Route::Hash(7), connection());
    assert_eq!(stats.slots[0].acknowledged.load(Relaxed), 2);
    assert_eq!(stats.slots[0].redispatched.load(Relaxed), 1, "only the one never sent");
    assert_eq!(stats.parked.load(Relaxed), 1, "no worker left: it waits");
    assert_eq!(driver.ledger().held(), 1);
  }

  #[tokio::test(flavor = "current_thread")]
  async fn a_worker_speaking_another_protocol_is_disconnected_and_its_connections_move() {
    let (mut driver, stats) = driver(2);
    let (bad_channel, bad, _bad_task) = attach(&mut driver, 0, 1);
    let (_good_channel, good, _good_task) = attach(&mut driver, 1, 2);
    let hrw = Rendezvous::default();
    let key = (0u64..).map(|i| hrw.key_hash(&i.to_le_bytes())).find(|&h| hrw.pick(h, &[0, 1]) == Some(0)).unwrap();
    driver.accept(Route::Hash(key), connection());
    assert_eq!(bad.take_all(), vec![1]);
    channel::send_record(bad.end.as_fd(), &[9, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], None).unwrap();
    driver.read_replies(bad_channel);
    assert!(!driver.ledger().is_open(bad_channel));
    assert_eq!(good.take_all(), vec![1], "the unacknowledged connection goes to the next choice");
    assert_eq!(stats.slots[0].redispatched.load(Relaxed), 1);
  }
}
