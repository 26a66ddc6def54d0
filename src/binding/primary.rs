//! `Balancer`: the primary's accept loop, as JavaScript sees it.

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;

use super::error::{Result, StickyError};
use super::listen::{AddressInfo, Listen, ListenSpec};
use super::options::ListenConfig;
use super::rendezvous::RendezvousSocket;
use super::stats::{to_js_stats, StatsObject};
use crate::core::sessions::SessionTable;
use crate::listener::{adopt_listener, bind_listener};
use crate::primary::{descriptor_budget, Fault, OpenSlotError, PrimaryConfig, PrimaryEvent, PrimaryHandle};

/// What an event of a listener is about: the one list of them, for every way
/// of listening (the accept loop here; kernel steering and the portable path
/// in JavaScript, which take it from the generated contract).
#[napi(string_enum = "kebab-case")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerEventKind {
  /// A worker is ready in `slot` (`pid`).
  SlotReady,
  /// The channel of `slot` closed (`reason`); `requeued` connections went to other slots.
  SlotClosed,
  /// After `close`: every connection accepted is with a worker (or closed, and counted).
  Drained,
  /// A failure (`code`, `message`); `fatal` when the accept loop has stopped.
  Error,
}

/// An event of a listener (lib/listeners.js), the one shape every way of
/// listening gives the primary (lib/primary/report.js relays it): the fields
/// `kind` names are set.
#[napi(object)]
pub struct ListenerEvent {
  pub kind: ListenerEventKind,
  pub slot: Option<u32>,
  pub pid: Option<u32>,
  pub requeued: Option<u32>,
  pub reason: Option<String>,
  pub code: Option<String>,
  pub message: Option<String>,
  pub fatal: Option<bool>,
}

#[napi]
pub struct Balancer {
  handle: PrimaryHandle,
  /// The listening socket's fd in this process, owned by the accept loop
  /// until `close`.
  listener_fd: RawFd,
}

#[napi]
impl Balancer {
  /// Binds the listening socket now (so listen errors are synchronous), or
  /// adopts the one in `listen.adopt`, and starts the accept loop with
  /// `config` (from `resolveOptions`). `on_event` receives `ListenerEvent`s.
  /// With `rendezvous` (the user forks the workers), workers take their
  /// channels there; the accept loop keeps its own reference to it.
  #[napi(constructor)]
  pub fn new(
    listen: ListenSpec,
    config: &ListenConfig,
    on_event: Function<'_, ListenerEvent, ()>,
    rendezvous: Option<&RendezvousSocket>,
  ) -> Result<Self> {
    // Taken first, so they are closed whatever fails below.
    let adopted = listen.adopted()?;
    let Listen { host, host_is_default, ipv6_only, port, backlog, slots, seed } = listen.check(&config.listen)?;
    let rendezvous = rendezvous.map(RendezvousSocket::for_accept_loop).transpose()?;
    let events = on_event
      .build_threadsafe_function::<ListenerEvent>()
      .callee_handled::<false>()
      .weak::<true>()
      .build_callback(|context| Ok(context.value))
      .map_err(StickyError::from)?;
    let listener = match adopted {
      Some(fds) => {
        let [fd]: [_; 1] =
          fds.try_into().map_err(|fds: Vec<_>| StickyError::InheritedSocketCount { given: fds.len(), wanted: 1 })?;
        adopt_listener(fd).map_err(StickyError::from)?
      }
      None => bind_listener(host, port, backlog, host_is_default, ipv6_only).map_err(StickyError::Listen)?,
    };
    let listener_fd = listener.as_raw_fd();
    let settings = &config.accept_loop;
    let router = settings.router(seed);
    let sessions = settings.sessions.map(|sessions| {
      let table = SessionTable::new(slots, sessions.balance, sessions.ttl_ms, sessions.max_entries, seed);
      if sessions.slot_tags {
        table.with_slot_tags()
      } else {
        table
      }
    });
    let primary = PrimaryConfig {
      slots,
      router,
      header: settings.header,
      sessions,
      rendezvous,
      fault: match super::injected_fault().as_deref() {
        Some("accept-panic") => Some(Fault::AcceptPanic),
        Some("slow-close") => Some(Fault::SlowClose),
        _ => None,
      },
      max_pending_per_slot: settings.max_pending_per_slot,
      max_parked: settings.max_parked,
      max_held: descriptor_budget(),
      startup_wait: settings.startup_wait,
    };
    let sink = Box::new(move |event: PrimaryEvent| {
      events.call(to_js_event(event), ThreadsafeFunctionCallMode::NonBlocking);
    });
    let handle = PrimaryHandle::start(primary, listener, sink).map_err(StickyError::Start)?;
    Ok(Balancer { handle, listener_fd })
  }

  #[napi]
  pub fn address(&self) -> AddressInfo {
    AddressInfo::from(self.handle.local_addr())
  }

  /// Creates the channel of a worker about to be forked into `slot`; returns
  /// the worker's end as a raw fd, which the caller places in the child's
  /// stdio and must then close (`fs.closeSync`).
  #[napi]
  pub fn open_slot(&self, slot: u32) -> Result<i32> {
    let slots = self.handle.stats().slots.len();
    let slot = u16::try_from(slot).map_err(|_| StickyError::InvalidSlot { slot, slots })?;
    let worker_end = self.handle.open_slot(slot).map_err(|error| match error {
      OpenSlotError::NoSuchSlot { slot, slots } => StickyError::InvalidSlot { slot: u32::from(slot), slots },
      OpenSlotError::Stopped => StickyError::AcceptLoopStopped,
      OpenSlotError::Socketpair(source) => StickyError::CreateChannel { slot, source },
    })?;
    Ok(worker_end.into_raw_fd())
  }

  #[napi]
  pub fn stats(&self) -> StatsObject {
    to_js_stats(self.handle.stats().snapshot())
  }

  /// The listening socket's fd, for a takeover offer to duplicate. Valid
  /// until `close`; do not close it.
  #[napi]
  pub fn listening_fd(&self) -> i32 {
    self.listener_fd
  }

  /// Stops accepting and closes the listening socket. `drainQueue` (default
  /// true): first take the connections already in the listen queue; false
  /// leaves them to the other process holding the socket (a takeover that
  /// gave up). `refuseNew` (default false; a shutdown, where no other
  /// process serves the socket): new connection requests are dropped first
  /// and handshakes under way complete, so that no connection is queued
  /// when the socket closes.
  #[napi]
  pub fn close(&self, drain_queue: Option<bool>, refuse_new: Option<bool>) {
    if drain_queue.unwrap_or(true) {
      self.handle.close(refuse_new.unwrap_or(false));
    } else {
      self.handle.close_leaving_queue();
    }
  }

  /// After `close`, once every worker has exited (or the shutdown ran out
  /// of time): the accept loop refuses and counts what it still holds
  /// (`droppedNoWorker`), closes every channel, and its thread ends.
  #[napi]
  pub fn terminate(&self) {
    self.handle.terminate();
  }
}

fn to_js_event(event: PrimaryEvent) -> ListenerEvent {
  let empty = |kind| ListenerEvent {
    kind,
    slot: None,
    pid: None,
    requeued: None,
    reason: None,
    code: None,
    message: None,
    fatal: None,
  };
  match event {
    PrimaryEvent::SlotReady { slot, pid } => {
      ListenerEvent { slot: Some(u32::from(slot)), pid: Some(pid), ..empty(ListenerEventKind::SlotReady) }
    }
    PrimaryEvent::SlotClosed { slot, reason, requeued } => ListenerEvent {
      slot: Some(u32::from(slot)),
      requeued: Some(u32::try_from(requeued).unwrap_or(u32::MAX)),
      reason: Some(reason.into()),
      ..empty(ListenerEventKind::SlotClosed)
    },
    PrimaryEvent::Drained => empty(ListenerEventKind::Drained),
    PrimaryEvent::Problem(problem) => {
      let fatal = problem.is_fatal();
      let error = StickyError::from(problem);
      ListenerEvent {
        code: Some(error.code().into()),
        message: Some(error.to_string()),
        fatal: Some(fatal),
        ..empty(ListenerEventKind::Error)
      }
    }
  }
}
