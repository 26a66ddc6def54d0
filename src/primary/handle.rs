//! The accept loop as JavaScript starts and steers it: its configuration,
//! the handle, and the loop itself — a current-thread tokio runtime on a
//! thread of its own.
//!
//! Tasks on that thread share its state ([`LoopState`], without locks:
//! `Rc`, `RefCell`, never borrowed across an await): one accepts ([`acceptor`](super::acceptor)),
//! one per connection reads its routing key ([`header_reader`](super::header_reader)),
//! one per worker channel writes hand-offs and polls replies
//! ([`channels`](super::channels)), one takes channels from workers the user
//! forked ([`rendezvous`](super::rendezvous)), and the loop below takes
//! commands from JavaScript.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::Socket;
use tokio::io::Interest;
use tokio::sync::mpsc;

use crate::core::hrw::SlotId;
use crate::core::routing::Router;
use crate::core::sessions::SessionTable;

use super::acceptor::{accept_connections, report_when_drained};
use super::channels::{attach_channel, update_taken_periodically};
use super::driver::{register, AcceptGate, Driver, NewChannel, PeekSchedule};
use super::events::{EventSink, Fault, PrimaryEvent, Problem};
use super::loop_state::{HeaderLimits, LoopState, WaitingSet};
use super::rendezvous::AllowedWorkers;
use super::supervise::{panic_message, spawn_supervised};
use crate::core::ledger::{Ledger, Limits};
use crate::core::stats::Stats;

pub struct PrimaryConfig {
  pub slots: u16,
  /// What identifies a client (and the rendezvous hash that picks its slot).
  pub router: Router,
  /// Limits on reading a routing key (modes that peek).
  pub header: HeaderLimits,
  /// Engine.io session owners (`sid` routing only).
  pub sessions: Option<SessionTable>,
  /// For workers the user forks: the listening abstract socket they connect
  /// to (this loop's own reference to it), and who may. `None` when the
  /// primary forks the workers itself.
  pub rendezvous: Option<(OwnedFd, AllowedWorkers)>,
  /// A failure to inject, for tests of the failure paths; `None` in production.
  pub fault: Option<Fault>,
  /// A slot's share: hand-offs not yet taken (or not yet sent) beyond
  /// which its new connections are paused for, then reset, once `max_held`
  /// connections are held.
  pub max_pending_per_slot: usize,
  /// The parked queue's share (no worker alive), in the same sense.
  pub max_parked: usize,
  /// Connections the primary may hold (waiting for a worker or for their
  /// header) before it closes some: see [`descriptor_budget`].
  pub max_held: usize,
  /// How long to wait for every worker's first hello before accepting with
  /// the workers that are up.
  pub startup_wait: Duration,
}

/// How many connections the primary may hold (waiting for a worker or for
/// their header) before it closes some: its open-file limit (which Node
/// raises to the hard limit at start), less a quarter (at least 256) kept
/// for connections on their way through, channels and the application's own
/// files; and at most `MAX_HELD`, a bound on memory (a held connection costs
/// a few KiB, mostly in the kernel).
pub fn descriptor_budget() -> usize {
  let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    .map(|(soft, _hard)| soft)
    .unwrap_or(1024);
  budget_for_open_file_limit(usize::try_from(limit).unwrap_or(usize::MAX))
}

const MAX_HELD: usize = 65_536;

fn budget_for_open_file_limit(open_file_limit: usize) -> usize {
  let reserve = (open_file_limit / 4).max(256);
  open_file_limit.saturating_sub(reserve).clamp(64, MAX_HELD)
}

enum Command {
  Attach {
    slot: SlotId,
    channel: NewChannel,
  },
  /// Stop accepting. `drain_queue`: first take every connection already in
  /// the listen queue (they are served); false leaves them to the socket's
  /// other holder (a takeover that gave up: the old primary serves them).
  /// `refuse_new` (a shutdown: nobody else serves the socket): first stop
  /// the kernel from completing new handshakes, so that none arrives
  /// between the last look at the queue and the close.
  Close {
    drain_queue: bool,
    refuse_new: bool,
  },
  /// Stop for good (every worker has exited, or the shutdown ran out of
  /// time): what is still held is refused and counted, every channel and
  /// the listener close, and the loop's thread ends.
  Terminate,
}

/// Why the accept loop could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
  #[error("the listening socket has no IP address")]
  NotIp,
  #[error(transparent)]
  Io(#[from] io::Error),
}

/// Why a worker's channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenSlotError {
  #[error("slot {slot} is out of range: this primary has {slots} slots")]
  NoSuchSlot { slot: SlotId, slots: usize },
  #[error("the accept loop has stopped (its 'error' event said why)")]
  Stopped,
  #[error(transparent)]
  Socketpair(#[from] io::Error),
}

/// The JavaScript side's handle on a running accept loop.
pub struct PrimaryHandle {
  commands: mpsc::UnboundedSender<Command>,
  stats: Arc<Stats>,
  local_addr: SocketAddr,
  thread: Option<JoinHandle<()>>,
}

impl PrimaryHandle {
  /// Starts the accept loop on `listener` (already bound and listening).
  pub fn start(config: PrimaryConfig, listener: Socket, on_event: EventSink) -> Result<Self, StartError> {
    let local_addr = listener.local_addr()?.as_socket().ok_or(StartError::NotIp)?;
    let stats = Arc::new(Stats::new(usize::from(config.slots)));
    let (commands, receiver) = mpsc::unbounded_channel();
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new().name("sticky-accept".into()).spawn(move || {
      let events = Rc::new(on_event);
      let sink = events.clone();
      let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        run(config, listener, receiver, thread_stats, sink)
      }));
      let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(format!("the accept loop stopped: {error}")),
        Err(panic) => Some(format!("the accept loop panicked: {}", panic_message(&*panic))),
      };
      if let Some(message) = failure {
        events(PrimaryEvent::Problem(Problem::Stopped(message)));
      }
    })?;
    Ok(PrimaryHandle { commands, stats, local_addr, thread: Some(thread) })
  }

  pub fn local_addr(&self) -> SocketAddr {
    self.local_addr
  }

  pub fn stats(&self) -> &Stats {
    &self.stats
  }

  /// Creates the channel for a worker about to be forked into `slot` and
  /// returns the worker's end, which the caller must place in the child and
  /// then close. A previous channel of the slot is replaced.
  pub fn open_slot(&self, slot: SlotId) -> Result<OwnedFd, OpenSlotError> {
    let slots = self.stats.slots.len();
    if usize::from(slot) >= slots {
      return Err(OpenSlotError::NoSuchSlot { slot, slots });
    }
    let (channel, worker_end) = NewChannel::for_fork()?;
    self.commands.send(Command::Attach { slot, channel }).map_err(|_| OpenSlotError::Stopped)?;
    Ok(worker_end)
  }

  /// Stops accepting and closes the listening socket once the connections
  /// queued on it are taken. Connections already handed to workers are
  /// unaffected. `refuse_new` (a shutdown, where no other process serves the
  /// socket): new connection requests are dropped from now on (their
  /// clients send them again a second later, and are refused once the
  /// socket is closed), handshakes under way get
  /// [`HANDSHAKE_SETTLE`](super::acceptor::HANDSHAKE_SETTLE) to complete and
  /// are served, and only then is the queue taken for the last time and the
  /// socket closed: no connection is queued or half-open when it closes, so
  /// none is reset.
  pub fn close(&self, refuse_new: bool) {
    let _ = self.commands.send(Command::Close { drain_queue: true, refuse_new });
  }

  /// Stops accepting at once, leaving the listen queue to the other process
  /// that holds the listening socket (a takeover that gave up).
  pub fn close_leaving_queue(&self) {
    let _ = self.commands.send(Command::Close { drain_queue: false, refuse_new: false });
  }

  /// Stops for good (after `close`, once the workers are gone): the loop's
  /// thread releases everything it holds and ends.
  pub fn terminate(&self) {
    let _ = self.commands.send(Command::Terminate);
  }
}

impl Drop for PrimaryHandle {
  fn drop(&mut self) {
    let _ = self.commands.send(Command::Close { drain_queue: true, refuse_new: false });
    // The thread ends with the process; joining here could block JavaScript.
    drop(self.thread.take());
  }
}

fn run(
  config: PrimaryConfig,
  listener: Socket,
  mut commands: mpsc::UnboundedReceiver<Command>,
  stats: Arc<Stats>,
  events: Rc<EventSink>,
) -> io::Result<()> {
  let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
  let local = tokio::task::LocalSet::new();
  local.block_on(&runtime, async move {
    let PrimaryConfig {
      slots,
      router,
      header,
      sessions,
      rendezvous,
      fault,
      max_pending_per_slot,
      max_parked,
      max_held,
      startup_wait,
    } = config;
    let expires_sessions = sessions.is_some();
    let limits = Limits { max_pending_per_slot, max_parked, max_held };
    let ledger = Ledger::new(router.rendezvous(), slots, limits, sessions, stats.clone());
    let gate = Rc::new(AcceptGate::default());
    let peek = Rc::new(PeekSchedule::default());
    let state = Rc::new(LoopState {
      driver: RefCell::new(Driver::new(ledger, gate.clone(), peek.clone(), events.clone())),
      router,
      header,
      waiting: RefCell::new(WaitingSet::default()),
      stats,
      max_held,
      gate,
      peek,
      drain_queue_on_close: Cell::new(true),
      refuse_new_on_close: Cell::new(false),
      fault,
      events,
    });

    if expires_sessions {
      let sweeper = state.clone();
      tokio::task::spawn_local(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
          every.tick().await;
          sweeper.driver.borrow_mut().expire_sessions();
        }
      });
    }

    tokio::task::spawn_local(update_taken_periodically(state.clone()));

    let startup = state.clone();
    tokio::task::spawn_local(async move {
      tokio::time::sleep(startup_wait).await;
      startup.driver.borrow_mut().end_startup_wait();
    });

    let mut taking_workers = None;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some((socket, allowed)) = rendezvous {
      tokio::task::spawn_local(super::rendezvous::watch_workers(state.clone(), allowed.clone()));
      let workers = register(socket, Interest::READABLE)?;
      let task = super::rendezvous::accept_worker_channels(state.clone(), workers, allowed);
      taking_workers = Some(spawn_supervised(&state.events, "the worker rendezvous", task));
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    if rendezvous.is_some() {
      return Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "workers forked by the user need Linux (abstract sockets)",
      ));
    }

    let listener = register(listener, Interest::READABLE)?;
    let mut acceptor =
      Some(spawn_supervised(&state.events, "the accept loop", accept_connections(state.clone(), listener)));

    while let Some(command) = commands.recv().await {
      match command {
        Command::Attach { slot, channel } => attach_channel(&state, slot, channel)?,
        Command::Close { drain_queue, refuse_new } => {
          let Some(acceptor) = acceptor.take() else { continue };
          // A closing primary takes no new worker.
          if let Some(taking) = taking_workers.take() {
            taking.abort();
          }
          // The accept task drains the listen queue (or not), then closes the listener.
          state.drain_queue_on_close.set(drain_queue);
          state.refuse_new_on_close.set(refuse_new);
          state.driver.borrow_mut().close();
          tokio::task::spawn_local(report_when_drained(state.clone(), acceptor.done));
        }
        Command::Terminate => {
          state.driver.borrow_mut().terminate();
          // Leaving drops every task and, with them, every descriptor.
          return Ok(());
        }
      }
    }
    // Every handle is gone without a terminate: serve what is in flight
    // until the process exits.
    std::future::pending::<()>().await;
    Ok(())
  })
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::core::hrw::Rendezvous;
  use crate::core::parsers::proxy_protocol::encode_v1;
  use crate::core::parsers::trusted::TrustedProxies;
  use crate::core::routing::RoutingMode;
  use crate::core::wire::{decode_handoff, encode_reply, Handoff, Reply};
  use crate::listener::bind_listener;
  use crate::seqpacket;
  use std::io::{Read, Write};
  use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
  use std::os::fd::AsFd;
  use std::sync::mpsc as std_mpsc;

  fn config(mode: RoutingMode) -> PrimaryConfig {
    PrimaryConfig {
      slots: 1,
      router: Router::new(mode, TrustedProxies::parse(&["loopback"]).unwrap(), true, Rendezvous::default()),
      header: HeaderLimits { timeout: Duration::from_millis(500), max_bytes: 4096, max_waiting: 3 },
      sessions: None,
      rendezvous: None,
      fault: None,
      max_pending_per_slot: 16,
      max_parked: 16,
      max_held: 3,
      startup_wait: Duration::from_secs(5),
    }
  }

  /// A worker (this test) that said hello: its end of the channel, and its
  /// lifeline (the primary takes the worker for gone once it closes).
  struct TestWorker {
    end: OwnedFd,
    _lifeline: OwnedFd,
  }

  impl TestWorker {
    fn hello(end: OwnedFd) -> Self {
      let mut buf = [0u8; 16];
      let setup = seqpacket::recv_record(end.as_fd(), &mut buf, false).unwrap();
      let [lifeline]: [OwnedFd; 1] = setup.fds.try_into().unwrap();
      seqpacket::send_record(end.as_fd(), &encode_reply(Reply::Hello { pid: 7 }), &[]).unwrap();
      TestWorker { end, _lifeline: lifeline }
    }
  }

  /// A primary with one ready worker (this test) on loopback.
  fn primary(mode: RoutingMode) -> (PrimaryHandle, TestWorker) {
    primary_with(config(mode))
  }

  fn primary_with(config: PrimaryConfig) -> (PrimaryHandle, TestWorker) {
    start_with_events(config, Box::new(|_| {}))
  }

  /// A primary whose events arrive, as their `Debug` text, on the receiver.
  fn primary_logging_events(mode: RoutingMode) -> (PrimaryHandle, TestWorker, std_mpsc::Receiver<String>) {
    let (events, event_log) = std_mpsc::channel();
    let (handle, worker) =
      start_with_events(config(mode), Box::new(move |event| drop(events.send(format!("{event:?}")))));
    (handle, worker, event_log)
  }

  fn start_with_events(config: PrimaryConfig, on_event: EventSink) -> (PrimaryHandle, TestWorker) {
    let listener = bind_listener(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 64, false, false).unwrap();
    let handle = PrimaryHandle::start(config, listener, on_event).unwrap();
    let worker = TestWorker::hello(handle.open_slot(0).unwrap());
    (handle, worker)
  }

  fn receive(worker: &TestWorker) -> (Handoff, TcpStream) {
    let mut buf = [0u8; 128];
    let received = seqpacket::recv_record(worker.end.as_fd(), &mut buf, true).unwrap();
    let handoff = decode_handoff(&buf[..received.len]).unwrap();
    let [fd]: [OwnedFd; 1] = received.fds.try_into().unwrap();
    (handoff, TcpStream::from(fd))
  }

  fn wait_for(handle: &PrimaryHandle, what: impl Fn(&crate::core::stats::StatsSnapshot) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !what(&handle.stats().snapshot()) && std::time::Instant::now() < deadline {
      std::thread::sleep(Duration::from_millis(5));
    }
  }

  #[test]
  fn the_descriptor_budget_is_three_quarters_of_the_open_file_limit_within_bounds() {
    assert_eq!(budget_for_open_file_limit(20_000), 15_000);
    assert_eq!(budget_for_open_file_limit(1024), 768);
    assert_eq!(budget_for_open_file_limit(300), 64, "a tiny limit still serves");
    assert_eq!(budget_for_open_file_limit(1 << 20), MAX_HELD);
  }

  #[test]
  fn a_proxy_header_is_consumed_exactly_and_stalled_clients_delay_nobody() {
    let (handle, worker) = primary(RoutingMode::ProxyProtocol);
    // Five clients stall half-way through their header. With at most 3
    // waiting and a descriptor budget of 3, the 4th and 5th evict the oldest
    // waiting; the timeout closes the rest.
    let stalled: Vec<TcpStream> = (0..5)
      .map(|_| {
        let mut stream = TcpStream::connect(handle.local_addr()).unwrap();
        stream.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
        stream
      })
      .collect();
    let mut client = TcpStream::connect(handle.local_addr()).unwrap();
    let source: SocketAddr = "198.51.100.7:5555".parse().unwrap();
    client.write_all(&encode_v1(source, "127.0.0.1:80".parse().unwrap())).unwrap();
    client.write_all(b"\x16\x03\x01 hello").unwrap();
    let (handoff, connection) = receive(&worker);
    assert_eq!(handoff.client, Some(source));
    let mut first = [0u8; 9];
    (&connection).read_exact(&mut first).unwrap();
    assert_eq!(&first, b"\x16\x03\x01 hello", "the application's bytes follow the header, untouched");

    std::thread::sleep(Duration::from_millis(900));
    let snapshot = handle.stats().snapshot();
    // Every stalled client is closed once, by eviction or by timeout. (The good
    // client evicts one too if it was accepted before its bytes arrived.)
    assert!(snapshot.dropped_header_overflow >= 2, "{snapshot:?}");
    assert_eq!(snapshot.dropped_header_overflow + snapshot.dropped_header_timeout, 5, "{snapshot:?}");
    assert_eq!(snapshot.reading_header, 0);
    for mut stream in stalled {
      let mut rest = Vec::new();
      assert!(stream.read_to_end(&mut rest).is_err() || rest.is_empty(), "stalled clients are closed");
    }
  }

  #[test]
  fn a_burst_of_clients_slow_to_send_their_header_is_not_evicted_while_descriptors_last() {
    let (handle, _worker) = primary_with(PrimaryConfig { max_held: 1000, ..config(RoutingMode::ProxyProtocol) });
    // Twice `max_waiting` (3) at once: none is evicted to make room; each is
    // closed once, by its timeout (500 ms).
    let stalled: Vec<TcpStream> = (0..6)
      .map(|_| {
        let mut stream = TcpStream::connect(handle.local_addr()).unwrap();
        stream.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
        stream
      })
      .collect();
    wait_for(&handle, |snapshot| snapshot.reading_header >= 6);
    let young = handle.stats().snapshot();
    assert_eq!((young.reading_header, young.dropped_header_overflow), (6, 0), "{young:?}");
    std::thread::sleep(Duration::from_millis(900));
    let snapshot = handle.stats().snapshot();
    assert_eq!(snapshot.dropped_header_overflow + snapshot.dropped_header_timeout, 6, "{snapshot:?}");
    assert_eq!(snapshot.reading_header, 0);
    drop(stalled);
  }

  #[test]
  fn garbage_from_a_trusted_proxy_is_refused_and_counted() {
    let (handle, _worker) = primary(RoutingMode::ProxyProtocol);
    let mut garbage = TcpStream::connect(handle.local_addr()).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest);
    assert!(rest.is_empty());
    wait_for(&handle, |snapshot| snapshot.dropped_invalid_header > 0);
    assert_eq!(handle.stats().snapshot().dropped_invalid_header, 1);
  }

  #[test]
  fn closing_an_idle_primary_reports_drained_without_waiting_for_a_connection() {
    let (handle, _worker, event_log) = primary_logging_events(RoutingMode::Ip);
    assert!(event_log.recv_timeout(Duration::from_secs(5)).unwrap().contains("SlotReady"));
    handle.close(false);
    assert_eq!(event_log.recv_timeout(Duration::from_secs(2)).unwrap(), "Drained");
  }

  #[test]
  fn terminating_ends_the_loop_thread_and_releases_the_listening_socket() {
    let (mut handle, worker) = primary(RoutingMode::Ip);
    let address = handle.local_addr();
    handle.close(true);
    handle.terminate();
    let thread = handle.thread.take().expect("the loop's thread");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !thread.is_finished() && std::time::Instant::now() < deadline {
      std::thread::sleep(Duration::from_millis(5));
    }
    assert!(thread.is_finished(), "the thread ended");
    thread.join().unwrap();
    assert!(TcpStream::connect(address).is_err(), "nothing listens any more");
    let mut buf = [0u8; 16];
    let ended = seqpacket::recv_record(worker.end.as_fd(), &mut buf, true).map_or(true, |received| received.len == 0);
    assert!(ended, "the worker's channel closed");
  }

  #[test]
  fn a_connection_reaches_the_worker_and_the_primary_keeps_no_copy() {
    let (handle, worker, event_log) = primary_logging_events(RoutingMode::Ip);

    let mut client = TcpStream::connect(handle.local_addr()).unwrap();
    client.write_all(b"ping").unwrap();

    let (handoff, connection) = receive(&worker);
    assert_eq!(handoff.seq, 1);

    let mut read = [0u8; 4];
    (&connection).read_exact(&mut read).unwrap();
    assert_eq!(&read, b"ping");
    (&connection).write_all(b"pong").unwrap();
    drop(connection);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"pong", "the client sees EOF once the worker closes: the primary kept no copy");
    assert!(event_log.recv_timeout(Duration::from_secs(5)).unwrap().contains("SlotReady"));
    // The primary learns that the worker read it at its next peek.
    wait_for(&handle, |snapshot| snapshot.slots[0].taken > 0);
    let snapshot = handle.stats().snapshot();
    assert_eq!(snapshot.accepted, 1);
    assert_eq!(snapshot.slots[0].taken, 1);
    assert_eq!(snapshot.slots[0].pending, 0);
  }
}
