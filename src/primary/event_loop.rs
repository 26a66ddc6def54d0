//! The accept loop: a current-thread tokio runtime on a thread of its own.
//!
//! Tasks on one thread share the dispatcher without locks (`Rc<RefCell<_>>`,
//! never borrowed across an await): one accepts, one per slot channel reads
//! acknowledgements and flushes queued hand-offs, one takes commands from
//! JavaScript. Sockets are edge-triggered (tokio), so a channel that stays
//! readable costs one wake-up, not a spin.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, Notify};

use crate::channel;
use crate::hrw::{Rendezvous, SlotId};
use crate::routing::Router;
use crate::sessions::SessionTable;

use super::dispatcher::{Admission, ChannelEnd, Connection, Dispatcher, DispatcherLimits, Notice, Progress};
use super::header_reader::{self, HeaderLimits, NoDecision, PendingSocket, WaitingSet};
use super::listener::errno_name;
use super::stats::Stats;

pub struct PrimaryConfig {
  pub slots: u16,
  pub seed: u64,
  /// What identifies a client.
  pub router: Router,
  /// Limits on reading a routing key (modes that peek).
  pub header: HeaderLimits,
  /// Engine.io session owners (`sid` routing only).
  pub sessions: Option<SessionTable>,
  /// For workers the user forks: the abstract socket name they connect to,
  /// and who may. `None` when the primary forks the workers itself.
  pub rendezvous: Option<(Vec<u8>, AllowedWorkers)>,
  /// A failure to inject, for tests of the failure paths; `None` in production.
  pub fault: Option<Fault>,
  /// Connections handed to one slot and not yet acknowledged (or not yet
  /// sent) beyond which accepting pauses while that worker catches up.
  pub max_pending_per_slot: usize,
  /// Connections held while no worker is alive beyond which accepting pauses.
  pub max_parked: usize,
  /// Connections the primary may hold (waiting for a worker or for their
  /// header) before it closes some: see [`descriptor_budget`].
  pub max_held: usize,
  /// How long to wait for every worker's first hello before accepting with
  /// the workers that are up.
  pub startup_wait: Duration,
}

/// What the loop reports to JavaScript (through the binding's callback).
#[derive(Debug, Clone)]
pub enum PrimaryEvent {
  SlotReady {
    slot: SlotId,
    pid: u32,
  },
  SlotClosed {
    slot: SlotId,
    reason: &'static str,
    requeued: usize,
  },
  /// A failure the user should see as an `'error'` event; `fatal` means the
  /// accept loop has stopped.
  Error {
    code: String,
    message: String,
    fatal: bool,
  },
  /// After `close`: the listen queue was drained and every connection
  /// accepted has been taken by a worker (or closed, and counted).
  Drained,
}

/// Failures the tests inject (`STICKY_FAULT_INJECTION`), read once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
  /// The accept task panics on its second connection.
  AcceptPanic,
}

enum Command {
  Attach { slot: SlotId, channel: OwnedFd },
  Close,
}

/// The JavaScript side's handle on a running accept loop.
pub struct PrimaryHandle {
  commands: mpsc::UnboundedSender<Command>,
  stats: Arc<Stats>,
  local_addr: SocketAddr,
  thread: Option<JoinHandle<()>>,
}

type EventSink = Box<dyn Fn(PrimaryEvent) + Send + 'static>;

impl PrimaryHandle {
  /// Starts the accept loop on `listener` (already bound and listening).
  pub fn start(config: PrimaryConfig, listener: Socket, on_event: EventSink) -> io::Result<Self> {
    let local_addr =
      listener.local_addr()?.as_socket().ok_or_else(|| io::Error::other("the listening socket has no IP address"))?;
    let stats = Arc::new(Stats::new(usize::from(config.slots)));
    let (commands, receiver) = mpsc::unbounded_channel();
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new().name("sticky-accept".into()).spawn(move || {
      let on_event = Rc::new(on_event);
      let sink = on_event.clone();
      let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        run(config, listener, receiver, thread_stats, sink)
      }));
      let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(format!("the accept loop stopped: {error}")),
        Err(panic) => Some(format!("the accept loop panicked: {}", panic_message(&panic))),
      };
      if let Some(message) = failure {
        on_event(PrimaryEvent::Error { code: "ERR_STICKY_ACCEPT_LOOP".into(), message, fatal: true });
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
  pub fn open_slot(&self, slot: SlotId) -> io::Result<OwnedFd> {
    if usize::from(slot) >= self.stats.slots.len() {
      return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("slot {slot} is out of range")));
    }
    let (primary_end, worker_end) = channel::socketpair()?;
    self
      .commands
      .send(Command::Attach { slot, channel: primary_end })
      .map_err(|_| io::Error::other("the accept loop is not running"))?;
    Ok(worker_end)
  }

  /// Stops accepting and closes the listening socket. Connections already
  /// handed to workers are unaffected.
  pub fn close(&self) {
    let _ = self.commands.send(Command::Close);
  }
}

impl Drop for PrimaryHandle {
  fn drop(&mut self) {
    let _ = self.commands.send(Command::Close);
    // The thread ends with the process; joining here could block JavaScript.
    drop(self.thread.take());
  }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
  if let Some(text) = panic.downcast_ref::<&str>() {
    (*text).to_string()
  } else if let Some(text) = panic.downcast_ref::<String>() {
    text.clone()
  } else {
    "unknown panic".into()
  }
}

struct Shared {
  dispatcher: RefCell<Dispatcher>,
  fault: Option<Fault>,
  router: Router,
  header: HeaderLimits,
  waiting: RefCell<WaitingSet>,
  stats: Arc<Stats>,
  /// One per slot: wakes that slot's channel task when it has something to
  /// write or its channel was closed or replaced.
  slot_wakeups: Vec<Notify>,
  /// Wakes the accept task when accepting may have become possible.
  gate: Notify,
  /// The accept task waits for `gate` because of backpressure: whoever
  /// relieves it (an acknowledgement, a header read to its end) wakes it.
  accept_paused: std::cell::Cell<bool>,
  /// The descriptor budget: connections held, waiting for a worker or for
  /// their header, beyond which some are reset.
  max_held: usize,
  on_event: Rc<EventSink>,
}

impl Shared {
  /// Delivers the dispatcher's notices to JavaScript and wakes the accept
  /// task when the set of live slots changed.
  fn publish(&self) {
    let notices = self.dispatcher.borrow_mut().take_notices();
    for notice in notices {
      let event = match notice {
        Notice::Wake { slot } => {
          if let Some(wakeup) = self.slot_wakeups.get(usize::from(slot)) {
            wakeup.notify_one();
          }
          continue;
        }
        Notice::SlotReady { slot, pid } => {
          self.gate.notify_one();
          PrimaryEvent::SlotReady { slot, pid }
        }
        Notice::SlotClosed { slot, end, requeued } => PrimaryEvent::SlotClosed {
          slot,
          requeued,
          reason: match end {
            ChannelEnd::WorkerClosed => "worker closed its channel",
            ChannelEnd::Failed => "channel failed",
            ChannelEnd::ProtocolError => "protocol error",
            ChannelEnd::Replaced => "replaced by a new worker",
          },
        },
        Notice::ProtocolError { slot, message } => PrimaryEvent::Error {
          code: "ERR_STICKY_PROTOCOL".into(),
          message: format!("worker in slot {slot} sent an invalid record: {message}"),
          fatal: false,
        },
        Notice::Overloaded { held, reset } => PrimaryEvent::Error {
          code: "ERR_STICKY_OVERLOAD".into(),
          message: format!(
            "reset {reset} connection(s): {held} connections are waiting for workers that fall behind, and file \
             descriptors are running out; raise the open-file limit (ulimit -n) or add workers"
          ),
          fatal: false,
        },
      };
      (self.on_event)(event);
    }
    self.wake_acceptor_if_admitted();
  }

  /// Whether the accept task may take a connection now. `draining` (after
  /// `close`) takes what is queued whatever the workers' state, but still
  /// under backpressure.
  fn admission(&self, draining: bool) -> Admission {
    let dispatcher = self.dispatcher.borrow();
    match dispatcher.admission() {
      Admission::Open if !draining && !dispatcher.accepting() => Admission::Paused(None),
      admission => admission,
    }
  }

  fn wake_acceptor_if_admitted(&self) {
    if self.accept_paused.get() {
      let draining = self.dispatcher.borrow().is_closed();
      if self.admission(draining) == Admission::Open {
        self.accept_paused.set(false);
        self.gate.notify_one();
      }
    }
  }
}

fn run(
  config: PrimaryConfig,
  listener: Socket,
  mut commands: mpsc::UnboundedReceiver<Command>,
  stats: Arc<Stats>,
  on_event: Rc<EventSink>,
) -> io::Result<()> {
  let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
  let local = tokio::task::LocalSet::new();
  local.block_on(&runtime, async move {
    let PrimaryConfig {
      slots,
      seed,
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
    let dispatcher = Dispatcher::new(
      Rendezvous::new(seed),
      slots,
      DispatcherLimits { max_pending_per_slot, max_parked, max_held },
      sessions,
      stats.clone(),
    );
    let slot_wakeups = (0..slots).map(|_| Notify::new()).collect();
    let shared = Rc::new(Shared {
      dispatcher: RefCell::new(dispatcher),
      fault,
      router,
      header,
      waiting: RefCell::new(WaitingSet::default()),
      stats: stats.clone(),
      slot_wakeups,
      gate: Notify::new(),
      accept_paused: std::cell::Cell::new(false),
      max_held,
      on_event,
    });

    if expires_sessions {
      let sweeper = shared.clone();
      tokio::task::spawn_local(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
          every.tick().await;
          sweeper.dispatcher.borrow_mut().expire_sessions();
        }
      });
    }

    let startup = shared.clone();
    tokio::task::spawn_local(async move {
      tokio::time::sleep(startup_wait).await;
      startup.dispatcher.borrow_mut().end_startup_wait();
      startup.gate.notify_one();
    });

    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some((name, allowed)) = rendezvous {
      let workers = register(channel::listen_abstract(&name)?, Interest::READABLE)?;
      tokio::task::spawn_local(accept_worker_channels(shared.clone(), workers, allowed));
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    if rendezvous.is_some() {
      return Err(io::Error::other("workers forked by the user need Linux (abstract sockets)"));
    }

    let listener = register(listener, Interest::READABLE)?;
    let acceptor = spawn_supervised(&shared, "the accept loop", accept_connections(shared.clone(), listener));

    while let Some(command) = commands.recv().await {
      match command {
        Command::Attach { slot, channel } => attach_channel(&shared, slot, channel)?,
        Command::Close => {
          shared.dispatcher.borrow_mut().close();
          // The accept task drains the listen queue, then closes the listener.
          shared.gate.notify_one();
          tokio::task::spawn_local(report_when_drained(shared.clone(), acceptor));
          break;
        }
      }
    }
    // Closed, or every handle is gone: serve what is in flight until the
    // process exits.
    std::future::pending::<()>().await;
    Ok(())
  })
}

/// Gives `slot` a new channel and starts serving it.
fn attach_channel(shared: &Rc<Shared>, slot: SlotId, channel: OwnedFd) -> io::Result<()> {
  let channel = register(channel, Interest::WRITABLE)?;
  let generation = shared.dispatcher.borrow_mut().attach(slot, channel.get_ref().try_clone()?);
  shared.publish();
  let served = serve_channel(shared.clone(), slot, generation, channel);
  spawn_supervised(shared, "a worker channel", async move {
    served.await;
    Ok(())
  });
  Ok(())
}

/// Takes channels from workers the user forked (the @socket.io/sticky API
/// shape). Only a process of this cluster may get one: its pid must be a
/// worker pid JavaScript registered (`PrimaryHandle::allow_worker`) and its
/// uid ours. A worker usually connects after JavaScript has seen its fork;
/// a connection that comes first is re-checked for a short while.
#[cfg(any(target_os = "linux", target_os = "android"))]
async fn accept_worker_channels(
  shared: Rc<Shared>,
  listener: AsyncFd<OwnedFd>,
  allowed: AllowedWorkers,
) -> io::Result<()> {
  use std::os::fd::AsFd;
  const RECHECKS: u32 = 100;
  // SAFETY: getuid has no preconditions and cannot fail.
  let our_uid = unsafe { libc::getuid() };
  loop {
    let mut guard = listener.readable().await?;
    let channel = match channel::accept(listener.get_ref().as_fd()) {
      Ok(channel) => channel,
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
        guard.clear_ready();
        continue;
      }
      Err(_) => continue,
    };
    drop(guard);
    let shared = shared.clone();
    let allowed = allowed.clone();
    tokio::task::spawn_local(async move {
      let Ok((pid, uid)) = channel::peer_credentials(channel.as_fd()) else { return };
      let mut checks = 0;
      while uid == our_uid && !allowed.contains(pid) && checks < RECHECKS {
        tokio::time::sleep(Duration::from_millis(20)).await;
        checks += 1;
      }
      let free_slot = shared.dispatcher.borrow().free_slot();
      match free_slot {
        Some(slot) if uid == our_uid && allowed.contains(pid) => {
          let _ = attach_channel(&shared, slot, channel);
        }
        _ => {
          shared.stats.rejected_channels.fetch_add(1, Relaxed);
          (shared.on_event)(PrimaryEvent::Error {
            code: "ERR_STICKY_FOREIGN_CHANNEL".into(),
            message: format!(
              "refused a channel to process {pid} (uid {uid}): {}",
              if free_slot.is_none() { "every worker slot is taken" } else { "not a worker of this cluster" }
            ),
            fatal: false,
          });
        }
      }
    });
  }
}

/// Pids of the cluster's workers, kept by JavaScript, read by the accept loop.
#[derive(Clone, Default)]
pub struct AllowedWorkers(Arc<std::sync::Mutex<std::collections::HashSet<u32>>>);

impl AllowedWorkers {
  pub fn allow(&self, pid: u32) {
    self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(pid);
  }

  pub fn forget(&self, pid: u32) {
    self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&pid);
  }

  pub fn contains(&self, pid: u32) -> bool {
    self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&pid)
  }
}

/// Runs `task` on the loop and reports its failure, an error or a panic, as a
/// fatal `'error'` event: a task of the accept loop never dies silently (tokio
/// would otherwise swallow a panicking task).
fn spawn_supervised<F>(shared: &Rc<Shared>, what: &'static str, task: F) -> tokio::task::JoinHandle<()>
where
  F: std::future::Future<Output = io::Result<()>> + 'static,
{
  let inner = tokio::task::spawn_local(task);
  let shared = shared.clone();
  tokio::task::spawn_local(async move {
    let failure = match inner.await {
      Ok(Ok(())) => None,
      Ok(Err(error)) => Some(format!("{what} stopped: {error}")),
      Err(join) if join.is_panic() => Some(format!("{what} panicked: {}", panic_message(&*join.into_panic()))),
      Err(_) => None,
    };
    if let Some(message) = failure {
      (shared.on_event)(PrimaryEvent::Error { code: "ERR_STICKY_ACCEPT_LOOP".into(), message, fatal: true });
    }
  })
}

/// Registers an owned descriptor with the reactor.
fn register<T: AsRawFd>(owned: T, interest: Interest) -> io::Result<AsyncFd<T>> {
  // SAFETY: `owned` owns its descriptor (an `OwnedFd` or a `Socket`), so the
  // descriptor stays open and unchanged for as long as the `AsyncFd` lives.
  unsafe { AsyncFd::register_with_interest(owned, interest) }.map_err(io::Error::from)
}

/// Accepts connections while the dispatcher wants them, and routes each.
/// After `close`, takes every connection still in the listen queue (the kernel
/// accepted them: they are served, not reset), then closes the listener.
/// Under backpressure it waits, and the connections wait in the listen queue.
async fn accept_connections(shared: Rc<Shared>, listener: AsyncFd<Socket>) -> io::Result<()> {
  const ACCEPTS_PER_WAKEUP: usize = 64;
  loop {
    let draining = shared.dispatcher.borrow().is_closed();
    if let Admission::Paused(wait) = shared.admission(draining) {
      wait_for_gate(&shared, wait).await;
      continue;
    }
    if draining {
      match accept_one(&shared, &listener) {
        Some(Ok(())) => continue,
        Some(Err(error)) => {
          back_off_after_accept_error(&shared, &error).await;
          continue;
        }
        None => return Ok(()),
      }
    }
    tokio::select! {
      ready = listener.readable() => {
        let mut guard = ready?;
        let mut accepted_any = false;
        for _ in 0..ACCEPTS_PER_WAKEUP {
          match accept_one(&shared, &listener) {
            Some(Ok(())) => {
              accepted_any = true;
              if shared.admission(false) != Admission::Open {
                break;
              }
            }
            Some(Err(error)) => {
              drop(guard);
              back_off_after_accept_error(&shared, &error).await;
              break;
            }
            None => {
              guard.clear_ready();
              break;
            }
          }
        }
        if accepted_any {
          // Acknowledgements of earlier hand-offs, read while awake anyway.
          shared.dispatcher.borrow_mut().read_owed_acks();
          shared.publish();
        }
      }
      _ = shared.gate.notified() => {}
    }
    tokio::task::yield_now().await;
  }
}

/// Waits until backpressure may have eased: woken by whoever eases it, or
/// after `wait` (a congested slot's hold, the oldest header read's grace).
async fn wait_for_gate(shared: &Rc<Shared>, wait: Option<Duration>) {
  shared.accept_paused.set(true);
  match wait {
    Some(wait) => {
      tokio::select! {
        _ = shared.gate.notified() => {}
        _ = tokio::time::sleep(wait) => {}
      }
    }
    None => shared.gate.notified().await,
  }
  shared.accept_paused.set(false);
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays in the kernel's
/// queue. Back off instead of spinning on a listener that stays readable,
/// and tell the user.
async fn back_off_after_accept_error(shared: &Rc<Shared>, error: &io::Error) {
  shared.stats.accept_errors.fetch_add(1, Relaxed);
  (shared.on_event)(PrimaryEvent::Error {
    code: errno_name(error).into(),
    message: format!("accept failed: {error}; retrying in 100 ms"),
    fatal: false,
  });
  tokio::time::sleep(Duration::from_millis(100)).await;
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

/// Accepts and routes one connection: `None` when the queue is empty,
/// `Some(Err)` when accepting failed for want of resources.
fn accept_one(shared: &Rc<Shared>, listener: &AsyncFd<Socket>) -> Option<io::Result<()>> {
  loop {
    return match listener.get_ref().accept() {
      Ok((socket, peer)) => {
        let accepted = shared.stats.accepted.fetch_add(1, Relaxed) + 1;
        if shared.fault == Some(Fault::AcceptPanic) && accepted > 1 {
          panic!("fault injection (STICKY_FAULT_INJECTION=accept-panic) at connection {accepted}");
        }
        let Some(peer) = peer.as_socket() else { return Some(Ok(())) };
        if shared.router.peeks() {
          read_header_then_dispatch(shared, socket, peer);
        } else {
          let route = shared.router.route_by_ip(peer.ip());
          shared.dispatcher.borrow_mut().accept(Connection { fd: OwnedFd::from(socket), route, client: None });
          shared.publish();
        }
        Some(Ok(()))
      }
      Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
      Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
      Err(error) if error.raw_os_error() == Some(libc::ECONNABORTED) => continue,
      Err(error) => Some(Err(error)),
    };
  }
}

/// After `close`: reports `Drained` once the accept task has emptied the
/// listen queue and no connection waits for a header or a worker.
async fn report_when_drained(shared: Rc<Shared>, acceptor: tokio::task::JoinHandle<()>) {
  let _ = acceptor.await;
  loop {
    let idle = shared.waiting.borrow().len() == 0 && shared.dispatcher.borrow().is_idle();
    if idle {
      (shared.on_event)(PrimaryEvent::Drained);
      return;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
}

/// Starts a task that reads the connection's routing key within the header
/// timeout, then dispatches it; at the limit of waiting connections, the
/// oldest is closed first.
fn read_header_then_dispatch(shared: &Rc<Shared>, socket: Socket, peer: SocketAddr) {
  if socket.set_nonblocking(true).is_err() {
    return;
  }
  if let Some(outcome) = header_reader::decide_now(&shared.router, &socket, peer) {
    header_reader::count(&shared.stats, &outcome);
    match outcome {
      Ok(decision) => {
        let connection = Connection { fd: OwnedFd::from(socket), route: decision.route, client: decision.client };
        shared.dispatcher.borrow_mut().accept(connection);
        shared.publish();
      }
      Err(NoDecision::ClosedEarly) => drop(socket),
      Err(NoDecision::Refused(_) | NoDecision::TooLarge) => {
        let _ = socket.set_linger(Some(Duration::ZERO));
        drop(socket);
      }
    }
    return;
  }
  let Ok(socket) = register(socket, Interest::READABLE) else {
    return;
  };
  let socket = PendingSocket::new(socket);
  let mut waiting = shared.waiting.borrow_mut();
  // Room is made by closing the oldest connection still reading its header
  // (the likeliest slowloris) only when the descriptors run out and more
  // than `max_waiting` are reading: a burst of clients slow to send their
  // first bytes looks the same, and each gets its `headerTimeout`.
  let held = shared.dispatcher.borrow().held();
  while waiting.len() >= shared.header.max_waiting && held + waiting.len() >= shared.max_held && waiting.evict_oldest()
  {
    shared.stats.dropped_header_overflow.fetch_add(1, Relaxed);
    shared.stats.reading_header.fetch_sub(1, Relaxed);
  }
  let id = waiting.next_id();
  shared.stats.reading_header.fetch_add(1, Relaxed);
  let task_shared = shared.clone();
  let task = tokio::task::spawn_local(async move {
    let shared = task_shared;
    let limits = shared.header;
    let outcome = tokio::time::timeout(
      limits.timeout,
      header_reader::read_decision(&shared.router, socket.get(), peer, limits.max_bytes),
    )
    .await;
    shared.waiting.borrow_mut().remove(id);
    shared.stats.reading_header.fetch_sub(1, Relaxed);
    let outcome = match outcome {
      Ok(outcome) => outcome,
      Err(_elapsed) => {
        shared.stats.dropped_header_timeout.fetch_add(1, Relaxed);
        shared.wake_acceptor_if_admitted();
        return; // `socket` is reset as it drops
      }
    };
    header_reader::count(&shared.stats, &outcome);
    match outcome {
      Ok(decision) => {
        let connection = Connection { fd: socket.into_fd(), route: decision.route, client: decision.client };
        shared.dispatcher.borrow_mut().accept(connection);
      }
      Err(NoDecision::ClosedEarly) => socket.close_quietly(),
      Err(NoDecision::Refused(_) | NoDecision::TooLarge) => drop(socket),
    }
    // Publishes, and wakes the accept task if it waited for room among the
    // connections reading their header.
    shared.publish();
  });
  waiting.insert(id, task.abort_handle());
}

/// Serves one channel of one slot until it closes or is replaced.
async fn serve_channel(shared: Rc<Shared>, slot: SlotId, generation: u64, channel: AsyncFd<OwnedFd>) {
  let mut read_at = tokio::time::Instant::now() + REPLY_POLL_BUSY;
  loop {
    let (wants_write, busy) = {
      let dispatcher = shared.dispatcher.borrow();
      if !dispatcher.has_channel(slot, generation) {
        return;
      }
      (dispatcher.wants_write(slot, generation), dispatcher.awaits_replies(slot, generation))
    };
    // Replies are read without a wake-up of their own: after every accept
    // batch (see `accept_connections`), and at this deadline — soon while the
    // worker owes acknowledgements or its hello, rarely when idle (to notice
    // a worker that closed). The deadline survives the loop's other wake-ups
    // (writability, queued hand-offs): in a burst they come more often than
    // it, and the worker, unheard, would fill its side of the channel.
    if busy {
      read_at = read_at.min(tokio::time::Instant::now() + REPLY_POLL_BUSY);
    }
    tokio::select! {
      ready = channel.writable(), if wants_write => {
        let Ok(mut guard) = ready else { break };
        let progress = shared.dispatcher.borrow_mut().flush(slot, generation);
        shared.publish();
        match progress {
          Progress::WouldBlock => guard.clear_ready(),
          Progress::Gone => return,
          Progress::Idle => {}
        }
      }
      _ = tokio::time::sleep_until(read_at) => {
        let progress = shared.dispatcher.borrow_mut().read_replies(slot, generation);
        shared.publish();
        if progress == Progress::Gone {
          return;
        }
        let busy = shared.dispatcher.borrow().awaits_replies(slot, generation);
        read_at = tokio::time::Instant::now() + if busy { REPLY_POLL_BUSY } else { REPLY_POLL_IDLE };
      }
      // A dispatch queued behind a full channel, or the channel was closed or replaced.
      _ = shared.slot_wakeups[usize::from(slot)].notified() => {}
    }
  }
  shared.dispatcher.borrow_mut().close_channel(slot, ChannelEnd::Failed);
  shared.publish();
}

/// How soon replies are read while a worker owes acknowledgements or its hello.
const REPLY_POLL_BUSY: Duration = Duration::from_millis(2);
/// How soon an idle channel is checked (a closed worker is noticed this late
/// at worst; sending to it notices at once).
const REPLY_POLL_IDLE: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
  use super::*;
  use crate::parsers::proxy_protocol::encode_v1;
  use crate::parsers::trusted::TrustedProxies;
  use crate::primary::listener::bind_listener;
  use crate::routing::RoutingMode;
  use crate::wire::{decode_handoff, encode_reply, Reply};
  use std::io::{Read, Write};
  use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
  use std::os::fd::AsFd;
  use std::sync::mpsc as std_mpsc;

  fn config(mode: RoutingMode) -> PrimaryConfig {
    PrimaryConfig {
      slots: 1,
      seed: crate::hrw::DEFAULT_SEED,
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

  /// A primary with one ready worker (this test) on loopback.
  fn primary(mode: RoutingMode) -> (PrimaryHandle, OwnedFd) {
    primary_with(config(mode))
  }

  fn primary_with(config: PrimaryConfig) -> (PrimaryHandle, OwnedFd) {
    let listener = bind_listener(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 64, false).unwrap();
    let handle = PrimaryHandle::start(config, listener, Box::new(|_| {})).unwrap();
    let worker = handle.open_slot(0).unwrap();
    channel::send_record(worker.as_fd(), &encode_reply(Reply::Hello { pid: 7 }), None).unwrap();
    (handle, worker)
  }

  fn receive(worker: &OwnedFd) -> (crate::wire::Handoff<'static>, TcpStream) {
    let mut buf = [0u8; 128];
    let received = channel::recv_record(worker.as_fd(), &mut buf, true).unwrap();
    let handoff = decode_handoff(&buf[..received.len]).unwrap();
    let handoff = crate::wire::Handoff { seq: handoff.seq, client: handoff.client, prefix: &[] };
    channel::send_record(worker.as_fd(), &encode_reply(Reply::Ack { up_to: handoff.seq }), None).unwrap();
    (handoff, TcpStream::from(received.fd.unwrap()))
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
  fn the_descriptor_budget_is_three_quarters_of_the_open_file_limit_within_bounds() {
    assert_eq!(budget_for_open_file_limit(20_000), 15_000);
    assert_eq!(budget_for_open_file_limit(1024), 768);
    assert_eq!(budget_for_open_file_limit(300), 64, "a tiny limit still serves");
    assert_eq!(budget_for_open_file_limit(1 << 20), MAX_HELD);
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
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while handle.stats().snapshot().reading_header < 6 && std::time::Instant::now() < deadline {
      std::thread::sleep(Duration::from_millis(5));
    }
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
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while handle.stats().snapshot().dropped_invalid_header == 0 && std::time::Instant::now() < deadline {
      std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(handle.stats().snapshot().dropped_invalid_header, 1);
  }

  #[test]
  fn a_connection_reaches_the_worker_and_the_primary_releases_it_on_ack() {
    let listener = bind_listener(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 64, false).unwrap();
    let (events, event_log) = std_mpsc::channel();
    let handle = PrimaryHandle::start(
      config(RoutingMode::Ip),
      listener,
      Box::new(move |event| drop(events.send(format!("{event:?}")))),
    )
    .unwrap();
    let worker = handle.open_slot(0).unwrap();
    channel::send_record(worker.as_fd(), &encode_reply(Reply::Hello { pid: 7 }), None).unwrap();

    let mut client = TcpStream::connect(handle.local_addr()).unwrap();
    client.write_all(b"ping").unwrap();

    let mut buf = [0u8; 128];
    let received = channel::recv_record(worker.as_fd(), &mut buf, true).unwrap();
    let handoff = decode_handoff(&buf[..received.len]).unwrap();
    assert_eq!(handoff.seq, 1);
    let connection = std::net::TcpStream::from(received.fd.expect("the client's fd"));
    channel::send_record(worker.as_fd(), &encode_reply(Reply::Ack { up_to: 1 }), None).unwrap();

    let mut read = [0u8; 4];
    (&connection).read_exact(&mut read).unwrap();
    assert_eq!(&read, b"ping");
    (&connection).write_all(b"pong").unwrap();
    drop(connection);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"pong", "the client sees EOF once the worker closes: the primary let go of the fd");
    assert!(event_log.recv_timeout(Duration::from_secs(5)).unwrap().contains("SlotReady"));
    // The primary closes its copy just before it counts the ack: allow for that instant.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while handle.stats().snapshot().slots[0].acknowledged == 0 && std::time::Instant::now() < deadline {
      std::thread::sleep(Duration::from_millis(5));
    }
    let snapshot = handle.stats().snapshot();
    assert_eq!(snapshot.accepted, 1);
    assert_eq!(snapshot.slots[0].acknowledged, 1);
    assert_eq!(snapshot.slots[0].pending, 0);
  }
}
