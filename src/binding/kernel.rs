//! `ReuseportGroup`: the listening sockets of kernel-steered routing, and
//! what the primary reads of them for `stats()`; `ListeningSocketHold`: a
//! worker's side (its own reference, its relief thread, its counters).

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;
use socket2::{SockRef, Socket};

use super::error::{Result, StickyError};
use super::listen::{AddressInfo, Listen, ListenSpec};
use super::options::ListenConfig;
use super::slot_fd;
use super::stats::{to_js_stats, StatsObject};
use crate::core::relief::ReliefPolicy;
use crate::core::stats::Stats;
use crate::listener::{socket_facts, with_default_host_fallback};
use crate::reuseport;
use crate::shared_stats::{SeatTable, SharedRegion};
use crate::worker::relief::{Relief, ReliefQueue, SeatRef};

/// One listening socket per slot, in one `SO_REUSEPORT` group steered by
/// source address. The primary keeps them all open; each worker is given its
/// slot's socket, and a seat in the counters the primary shares with the
/// workers (when the region could be made: else they count nothing).
#[napi]
pub struct ReuseportGroup {
  sockets: Vec<Socket>,
  address: SocketAddr,
  /// Each socket's drop count when this primary got it: `listenDrops` counts
  /// from here.
  drops_at_start: Vec<u32>,
  counters: Option<(SharedRegion, OwnedFd)>,
  seats: SeatTable,
  /// Each slot's worker (`pid`, `state`, `respawns`), as JavaScript forks
  /// (`workerForked`, `workerExited`); the accept loop's counters stay 0.
  stats: Stats,
}

#[napi]
impl ReuseportGroup {
  /// Binds the group with `config` (from `resolveOptions`: its slots,
  /// backlog and seed), or adopts the one in `listen.adopt` (a takeover), or
  /// throws `ERR_STICKY_KERNEL_UNSUPPORTED` (the caller falls back to the
  /// accept loop) or the errno of a listen failure.
  #[napi(constructor)]
  pub fn new(listen: ListenSpec, config: &ListenConfig) -> Result<Self> {
    // Taken first, so they are closed whatever fails below.
    let adopted = listen.adopted()?;
    let Listen { host, host_is_default, ipv6_only, port, backlog, slots, seed } = listen.check(&config.listen)?;
    if let Some(fds) = adopted {
      if fds.len() != usize::from(slots) {
        return Err(StickyError::InheritedSocketCount { given: fds.len(), wanted: usize::from(slots) }.into());
      }
      let sockets = reuseport::adopt_group(fds).map_err(StickyError::from)?;
      return Ok(ReuseportGroup::of(sockets, SocketAddr::new(host, port)));
    }
    if super::injected_fault().as_deref() == Some("kernel-unsupported") {
      return Err(StickyError::KernelUnsupported { reason: "refused by fault injection".into() }.into());
    }
    // The BPF program hashes 32-bit words: fold the seed.
    let seed = (seed ^ (seed >> 32)) as u32;
    let sockets = with_default_host_fallback(host, port, host_is_default, |address| {
      reuseport::bind_group(address, backlog, slots, seed, ipv6_only)
    })
    .map_err(|error| match error.source.raw_os_error() {
      Some(libc::EADDRINUSE) | Some(libc::EACCES) | Some(libc::EADDRNOTAVAIL) => StickyError::Listen(error),
      _ => StickyError::KernelUnsupported { reason: error.to_string() },
    })?;
    Ok(ReuseportGroup::of(sockets, SocketAddr::new(host, port)))
  }

  fn of(sockets: Vec<Socket>, fallback_address: SocketAddr) -> Self {
    let bound = sockets.first().and_then(|socket| socket.local_addr().ok()).and_then(|address| address.as_socket());
    let drops_at_start = sockets.iter().map(|socket| reuseport::socket_drops(socket.as_fd()).unwrap_or(0)).collect();
    let seats = SeatTable::new(sockets.len());
    // Without the region (out of descriptors or memory) the group works the
    // same; its workers' counters stay 0.
    let counters = SharedRegion::create(seats.seats()).ok();
    let stats = Stats::new(sockets.len());
    ReuseportGroup { sockets, address: bound.unwrap_or(fallback_address), drops_at_start, counters, seats, stats }
  }

  #[napi]
  pub fn address(&self) -> AddressInfo {
    AddressInfo::from(self.address)
  }

  /// The listening fd of `slot`, still owned by the group: pass it to the
  /// worker's stdio at fork, do not close it.
  #[napi]
  pub fn fd(&self, slot: u32) -> Result<i32> {
    slot_fd(&self.sockets, slot)
  }

  /// The descriptor of the counters shared with the workers, for a worker's
  /// stdio at fork (still the group's: do not close it); `null` without.
  #[napi]
  pub fn stats_fd(&self) -> Option<i32> {
    self.counters.as_ref().map(|(_, fd)| fd.as_raw_fd())
  }

  /// A seat in the shared counters for a worker about to be forked into
  /// `slot`; `null` when there is none (its worker then counts nothing).
  #[napi]
  pub fn take_seat(&mut self, slot: u32) -> Option<u32> {
    self.counters.as_ref()?;
    let seat = self.seats.take(u16::try_from(slot).ok()?)?;
    u32::try_from(seat).ok()
  }

  /// The worker on `seat` has exited: what it counted stays its slot's, and
  /// the seat is free for another.
  #[napi]
  pub fn release_seat(&mut self, seat: u32) {
    let (Some((region, _)), Ok(seat)) = (self.counters.as_ref(), usize::try_from(seat)) else { return };
    let Some(last) = region.seat(seat).map(|counters| counters.totals()) else { return };
    if self.seats.release(seat, last) {
      region.reset(seat);
    }
  }

  /// Worker `pid` was forked into `slot`: the slot is live under it (the
  /// primary sees no connection, so it does not wait for the worker's
  /// hello), and after the slot's first worker it is a respawn.
  #[napi]
  pub fn worker_forked(&self, slot: u32, pid: u32) -> Result<()> {
    let slots = self.stats.slots.len();
    let stats = self.stats.slots.get(slot as usize).ok_or(StickyError::InvalidSlot { slot, slots })?;
    stats.worker_started();
    stats.set_pid(pid);
    stats.set_live(true);
    Ok(())
  }

  /// Worker `pid` of `slot` exited: the slot is down, unless another
  /// worker has been forked into it since (a reload, a quick respawn).
  #[napi]
  pub fn worker_exited(&self, slot: u32, pid: u32) {
    let Some(stats) = self.stats.slots.get(slot as usize) else { return };
    if stats.pid.load(Relaxed) == u64::from(pid) {
      stats.set_pid(0);
      stats.set_live(false);
    }
  }

  /// `stats()` of a kernel-steered primary: per slot, its worker (as
  /// JavaScript forked them), what its workers accepted and relieved (from
  /// the shared counters) and its queue and drops (from the kernel), the
  /// host's listen counters; the accept loop's counters are 0 (the primary
  /// sees no connection).
  #[napi]
  pub fn stats(&self) -> StatsObject {
    let mut snapshot = self.stats.snapshot();
    for (slot, (socket, stats)) in self.sockets.iter().zip(snapshot.slots.iter_mut()).enumerate() {
      if let Ok(queue) = reuseport::accept_queue(socket.as_fd()) {
        stats.queued = u64::from(queue.queued);
        stats.queue_limit = u64::from(queue.limit);
      }
      let drops = reuseport::socket_drops(socket.as_fd()).unwrap_or(0);
      stats.listen_drops = u64::from(drops.wrapping_sub(self.drops_at_start.get(slot).copied().unwrap_or(0)));
      if let Some((region, _)) = &self.counters {
        let read = |seat: usize| region.seat(seat).map(|counters| counters.totals()).unwrap_or_default();
        let totals = self.seats.totals(slot as u16, read);
        stats.accepted = totals.accepted;
        stats.relieved = totals.relieved;
        stats.held = totals.held();
      }
    }
    to_js_stats(snapshot)
  }

  /// Shutdown: every socket of the group stops taking new connections
  /// (their SYNs are dropped) while handshakes under way complete and what is
  /// queued stays for the workers (`reuseport::refuse_new_connections`).
  /// Returns false when the kernel refused the filter.
  #[napi]
  pub fn refuse_new_connections(&self) -> bool {
    self.sockets.iter().all(|socket| reuseport::refuse_new_connections(socket).is_ok())
  }

  /// Closes every socket of the group (connections still queued are reset).
  #[napi]
  pub fn close(&mut self) {
    self.sockets.clear();
  }
}

/// Claims the listening socket a kernel-mode worker inherited (fd `fd`): checks
/// that it is a listening TCP socket, and makes it close-on-exec so the
/// worker's own children never inherit it. Throws
/// `ERR_STICKY_NO_LISTENING_SOCKET` otherwise. Returns this worker's own
/// reference to the socket (a duplicate of `fd`, which the runtime's listener
/// owns), through which the worker takes what is queued when it closes,
/// relieves the queue and counts what it accepts. `statsFd` and `seat`, when
/// the primary gave them, are the shared counters and this worker's seat in
/// them; `statsFd` is closed here.
#[napi]
pub fn claim_listening_fd(fd: i32, stats_fd: Option<i32>, seat: Option<u32>) -> Result<ListeningSocketHold> {
  let seat = seat_of(stats_fd, seat);
  let not_listening = |why: String| StickyError::NotAListeningSocket { fd, why };
  if fd < 3 {
    return Err(not_listening("a standard stream".into()).into());
  }
  // SAFETY: the primary placed this descriptor in the worker (the env
  // variable naming it) and nothing else in this process uses it; it stays
  // open for this call. An integer from JavaScript becomes a descriptor only
  // this way; `socket_facts` fails on one that is not open.
  let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
  let facts = socket_facts(borrowed).map_err(|error| not_listening(error.to_string()))?;
  if !(facts.tcp && facts.listening) {
    return Err(not_listening("a socket, but not a listening TCP one".into()).into());
  }
  SockRef::from(&borrowed).set_cloexec(true).map_err(|error| not_listening(error.to_string()))?;
  // Close-on-exec too (F_DUPFD_CLOEXEC).
  let held = borrowed.try_clone_to_owned().map_err(|error| not_listening(error.to_string()))?;
  let slow_close = super::injected_fault().as_deref() == Some("slow-close");
  Ok(ListeningSocketHold { socket: Some(held), seat, relief: None, slow_close })
}

/// This worker's seat in the counters its primary shares, if it was given
/// one that maps; the region's descriptor is closed either way (the mapping
/// stays).
fn seat_of(stats_fd: Option<i32>, seat: Option<u32>) -> SeatRef {
  let Some(fd) = stats_fd.filter(|fd| *fd > 2) else { return SeatRef::none() };
  // SAFETY: the primary placed this descriptor in the worker's stdio (the
  // env variable naming it) for this call to take; nothing else uses it.
  let owned = unsafe { OwnedFd::from_raw_fd(fd) };
  match (SharedRegion::map(&owned), seat.and_then(|seat| usize::try_from(seat).ok())) {
    (Ok(region), Some(seat)) => SeatRef::new(Arc::new(region), seat),
    _ => SeatRef::none(),
  }
}

/// A kernel-mode worker's own reference to its slot's listening socket.
///
/// When the worker closes, the runtime's listener closes its descriptor; if
/// the primary has closed its copies (shutdown), the socket would close with
/// it, and the kernel would reset every connection still queued on it. This
/// reference keeps the socket open past that: `drain_and_close` then takes
/// what is queued and closes the socket in one step, with no JavaScript in
/// between, so that hardly any connection can arrive between the last look
/// at the queue and the close.
///
/// It also runs the worker's relief thread (`crate::core::relief`), and counts
/// what the worker accepts in its seat of the counters the primary reads.
#[napi]
pub struct ListeningSocketHold {
  socket: Option<OwnedFd>,
  seat: SeatRef,
  relief: Option<Relief>,
  /// Fault injection (`slow-close`): `drain_and_close` lets go of the socket
  /// a while after its last look at the queue.
  slow_close: bool,
}

#[napi]
impl ListeningSocketHold {
  /// The socket's accept-queue limit (its backlog as the primary set it,
  /// capped by `net.core.somaxconn`): what the runtime's listener must keep
  /// when it calls `listen` again. `null` when the kernel does not say.
  #[napi]
  pub fn queue_limit(&self) -> Option<u32> {
    let socket = self.socket.as_ref()?;
    reuseport::accept_queue(socket.as_fd()).ok().map(|queue| queue.limit)
  }

  /// One connection accepted by the runtime's listener: counted in the
  /// shared counters (no message to the primary).
  #[napi]
  pub fn count_accepted(&self) {
    self.seat.accepted(1);
  }

  /// Starts the relief thread: when the socket's queue is over a quarter
  /// full (the JavaScript thread has not accepted for a while), it takes
  /// what is queued into the process, within a quarter of the open-file
  /// limit, and calls `onConnections(fds)` on the event loop with them (the
  /// caller's from then on). Does not keep the event loop alive.
  #[napi(ts_args_type = "onConnections: (fds: Array<number>) => void")]
  pub fn start_relief(&mut self, on_connections: Function<'_, Vec<i32>, ()>) -> Result<()> {
    let Some(socket) = self.socket.as_ref() else { return Ok(()) };
    if self.relief.is_some() {
      return Ok(());
    }
    let queue = ReliefQueue::new(self.seat.clone());
    let taker = queue.clone();
    let deliver = on_connections
      .build_threadsafe_function::<()>()
      .callee_handled::<false>()
      .weak::<true>()
      .build_callback(move |_| Ok(into_raw(taker.take())))
      .map_err(StickyError::from)?;
    let policy = ReliefPolicy::for_open_file_limit(open_file_limit());
    let relief = Relief::start(socket, policy, queue, move || {
      deliver.call((), ThreadsafeFunctionCallMode::NonBlocking);
    })
    .map_err(StickyError::ReliefStart)?;
    self.relief = Some(relief);
    Ok(())
  }

  /// Stops the relief thread and takes what it held and every connection
  /// queued now, without waiting (in that order: the held ones are older);
  /// the socket stays open. Returns their descriptors (JavaScript's from
  /// here on).
  #[napi]
  pub fn drain(&mut self) -> Vec<i32> {
    let mut taken = self.relief.take().map(|mut relief| relief.stop()).unwrap_or_default();
    if let Some(socket) = self.socket.as_ref() {
      let queued = reuseport::drain_listener(socket.as_fd());
      self.seat.accepted(queued.len() as u64);
      taken.extend(queued);
    }
    into_raw(taken)
  }

  /// As `drain`, then lets go of this reference (the socket closes unless
  /// the primary still holds it).
  #[napi]
  pub fn drain_and_close(&mut self) -> Vec<i32> {
    let taken = self.drain();
    if self.slow_close {
      std::thread::sleep(crate::primary::SLOW_CLOSE);
    }
    self.socket = None;
    taken
  }
}

fn open_file_limit() -> usize {
  nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    .map(|(soft, _hard)| usize::try_from(soft).unwrap_or(usize::MAX))
    .unwrap_or(1024)
}

fn into_raw(connections: Vec<OwnedFd>) -> Vec<i32> {
  connections.into_iter().map(IntoRawFd::into_raw_fd).collect()
}
