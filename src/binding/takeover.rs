//! `TakeoverOffer` (the running primary's side) and `connectTakeover` /
//! `TakeoverClient` (the new primary's side): thin adapters over `takeover`.

use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;

use super::error::{Result, StickyError};
use super::options::{ListenConfig, ListenSettings};
use crate::core::takeover_message::{ListenMode, Offer};
use crate::takeover::offering::{Offering, OfferingEvent};
use crate::takeover::taking::Taking;

/// How a primary listens: the accept loop's one socket, or a kernel-steered group.
#[napi(string_enum = "kebab-case")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeoverMode {
  AcceptLoop,
  Kernel,
}

impl From<TakeoverMode> for ListenMode {
  fn from(mode: TakeoverMode) -> Self {
    match mode {
      TakeoverMode::AcceptLoop => ListenMode::AcceptLoop,
      TakeoverMode::Kernel => ListenMode::Kernel,
    }
  }
}

impl From<ListenMode> for TakeoverMode {
  fn from(mode: ListenMode) -> Self {
    match mode {
      ListenMode::AcceptLoop => TakeoverMode::AcceptLoop,
      ListenMode::Kernel => TakeoverMode::Kernel,
    }
  }
}

/// What an event of a running offer is about (lib/takeover.js
/// `takeoverEventKinds`, from the generated contract).
#[napi(string_enum = "kebab-case")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeoverEventKind {
  /// A process of another user asked (`pid`, `uid`): refused.
  Refused,
  /// A process asked while another takeover was under way (`pid`).
  Busy,
  /// The sockets were sent to a new primary (`pid`).
  Offered,
  /// The new primary gave up (`pid`, `message`): this one goes on serving.
  Abandoned,
  /// The new primary (`pid`) took the sockets over: this one drains and exits.
  Released,
  /// The offer stopped (`message`).
  Failed,
}

/// An event of a running offer: the fields its `kind` names are set.
#[napi(object)]
pub struct TakeoverEvent {
  pub kind: TakeoverEventKind,
  pub pid: Option<u32>,
  pub uid: Option<u32>,
  pub message: Option<String>,
}

/// The running primary's offer of its listening sockets under an abstract
/// name, to the first new primary of the same user that asks.
#[napi]
pub struct TakeoverOffer {
  offering: Offering,
}

#[napi]
impl TakeoverOffer {
  /// Listens on `name` and offers duplicates of `fds` (the listening sockets
  /// of a primary listening in `mode` with `config`, borrowed: they stay the
  /// caller's). Throws `EADDRINUSE` when a process already listens on the name.
  #[napi(constructor)]
  pub fn new(
    name: String,
    mode: TakeoverMode,
    config: &ListenConfig,
    fds: Vec<i32>,
    on_event: Function<'_, TakeoverEvent, ()>,
  ) -> Result<Self> {
    let ListenSettings { slots: workers, seed, .. } = config.listen;
    let sockets = u16::try_from(fds.len())
      .map_err(|_| StickyError::InheritedSocketCount { given: fds.len(), wanted: usize::from(workers) })?;
    let copies = fds
      .iter()
      .map(|&fd| {
        if fd < 0 {
          return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        }
        // SAFETY: the caller's descriptors stay open for this call; only duplicates are kept.
        unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
      })
      .collect::<std::io::Result<Vec<OwnedFd>>>()
      .map_err(StickyError::DuplicateSocket)?;
    let events = on_event
      .build_threadsafe_function::<TakeoverEvent>()
      .callee_handled::<false>()
      .weak::<true>()
      .build_callback(|context| Ok(context.value))
      .map_err(StickyError::from)?;
    let offer = Offer { mode: mode.into(), sockets, workers, seed, pid: std::process::id() };
    let sink = Box::new(move |event: OfferingEvent| {
      events.call(to_js_event(event), ThreadsafeFunctionCallMode::NonBlocking);
    });
    let offering = Offering::start(name.as_bytes(), offer, copies, sink)
      .map_err(|source| StickyError::TakeoverListen { name: name.clone(), source })?;
    Ok(TakeoverOffer { offering })
  }

  /// Withdraws the offer and closes its copies of the sockets.
  #[napi]
  pub fn close(&mut self) {
    self.offering.close();
  }
}

fn to_js_event(event: OfferingEvent) -> TakeoverEvent {
  use TakeoverEventKind as Kind;
  let event_of = |kind| TakeoverEvent { kind, pid: None, uid: None, message: None };
  match event {
    OfferingEvent::Refused { pid, uid } => TakeoverEvent { pid: Some(pid), uid: Some(uid), ..event_of(Kind::Refused) },
    OfferingEvent::Busy { pid } => TakeoverEvent { pid: Some(pid), ..event_of(Kind::Busy) },
    OfferingEvent::Offered { pid } => TakeoverEvent { pid: Some(pid), ..event_of(Kind::Offered) },
    OfferingEvent::Abandoned { pid, reason } => {
      TakeoverEvent { pid: Some(pid), message: Some(reason), ..event_of(Kind::Abandoned) }
    }
    OfferingEvent::Released { pid } => TakeoverEvent { pid: Some(pid), ..event_of(Kind::Released) },
    OfferingEvent::Failed { message } => TakeoverEvent { message: Some(message), ..event_of(Kind::Failed) },
  }
}

/// What the running primary offered.
#[napi(object, object_from_js = false)]
pub struct ReceivedOffer {
  pub mode: TakeoverMode,
  pub sockets: u32,
  pub workers: u32,
  /// Compared with this primary's (`ResolvedOptions.seed`).
  pub seed: u64,
  pub pid: u32,
}

/// The new primary's connection to a running primary's offer.
#[napi]
pub struct TakeoverClient {
  /// `None` once closed.
  taking: Option<Taking>,
  peer_pid: u32,
  peer_uid: u32,
  sockets: Vec<OwnedFd>,
}

/// Connects to the offer at `name`; `null` when no process listens there.
#[napi]
pub fn connect_takeover(name: String) -> Result<Option<TakeoverClient>> {
  let taking =
    Taking::connect(name.as_bytes()).map_err(|source| StickyError::TakeoverConnect { name: name.clone(), source })?;
  Ok(taking.map(|taking| TakeoverClient {
    peer_pid: taking.peer_pid,
    peer_uid: taking.peer_uid,
    taking: Some(taking),
    sockets: Vec::new(),
  }))
}

#[napi]
impl TakeoverClient {
  /// The pid of the process holding the offer.
  #[napi(getter)]
  pub fn peer_pid(&self) -> u32 {
    self.peer_pid
  }

  /// Its uid.
  #[napi(getter)]
  pub fn peer_uid(&self) -> u32 {
    self.peer_uid
  }

  /// Receives the offer and its sockets (kept here until `takeSockets`);
  /// refuses, before reading anything, when the offering process does not run
  /// as `trustedUid`.
  #[napi]
  pub fn receive_offer(&mut self, trusted_uid: u32) -> Result<ReceivedOffer> {
    let (offer, sockets) = self.connection()?.receive_offer(trusted_uid).map_err(StickyError::from)?;
    self.sockets = sockets;
    Ok(ReceivedOffer {
      mode: offer.mode.into(),
      sockets: u32::from(offer.sockets),
      workers: u32::from(offer.workers),
      seed: offer.seed,
      pid: offer.pid,
    })
  }

  /// The received sockets, in order; from now on the caller owns them
  /// (`ListenSpec.adopt` takes them over).
  #[napi]
  pub fn take_sockets(&mut self) -> Vec<i32> {
    std::mem::take(&mut self.sockets).into_iter().map(IntoRawFd::into_raw_fd).collect()
  }

  /// Tells the running primary to stop accepting and waits for its
  /// confirmation; returns its pid.
  #[napi]
  pub fn release(&self) -> Result<u32> {
    Ok(self.connection()?.release().map_err(StickyError::from)?)
  }

  /// Ends the takeover: before `release`, the running primary goes on as if
  /// nothing happened. Sockets not taken are closed.
  #[napi]
  pub fn close(&mut self) {
    self.taking = None;
    self.sockets.clear();
  }

  fn connection(&self) -> std::result::Result<&Taking, StickyError> {
    self.taking.as_ref().ok_or(StickyError::TakeoverClosed)
  }
}
