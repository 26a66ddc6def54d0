//! The `#[napi]` surface: thin adapters from JavaScript values to the
//! primary and worker modules. The hand-written `index.js` is the public API;
//! this is what it calls.

mod contract;
mod error;
mod kernel;
mod listen;
mod loop_poll;
mod options;
mod primary;
mod received;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod rendezvous;
mod resolve;
mod slot_ports;
mod stats;
mod systemd;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod takeover;
mod worker;

pub use contract::{client_key, no_worker_grace_ms, rendezvous_ranked, route_decision, RankedSlots, RouteDecision};
pub use error::{error_codes, ErrorCode, NamedErrorCode, StickyError};
pub use kernel::{claim_listening_fd, ListeningSocketHold, ReuseportGroup};
pub use listen::{AddressInfo, ListenSpec};
pub use options::{
  option_rules, resolve_options, setup_master_defaults, ListenConfig, ListenOptions, LoadBalancingMethod, OptionRule,
  ResolvedOptions, Routing, SetupMasterDefaults,
};
pub use primary::{Balancer, ListenerEvent, ListenerEventKind};
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use rendezvous::RendezvousSocket;
pub use resolve::{resolve_host, ResolvedHost};
pub use slot_ports::{sid_tag_separator, SlotPortGroup};
pub use stats::{stats_fields, StatsField};
pub use systemd::{systemd_sockets, InheritedSocket};
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use takeover::{connect_takeover, TakeoverClient, TakeoverEvent, TakeoverEventKind, TakeoverOffer};
pub use worker::{claim_channel, close_descriptor, connect_channel, WorkerChannel};

/// The failure a test asked to inject (`STICKY_FAULT_INJECTION`), read when a
/// balancer starts (or a kernel-mode worker claims its socket), never on a
/// connection's path: `accept-panic`, `kernel-unsupported`, `slow-close`.
fn injected_fault() -> Option<String> {
  std::env::var("STICKY_FAULT_INJECTION").ok()
}

/// The listening fd of `slot` among a group's `sockets` (one per slot: kernel
/// steering's group, or the slot ports), still owned by the group: for the
/// worker's stdio at fork. An `ERR_STICKY_INVALID_SLOT` past the last slot.
fn slot_fd(sockets: &[socket2::Socket], slot: u32) -> error::Result<i32> {
  use std::os::fd::AsRawFd;
  let slots = sockets.len();
  let socket = usize::try_from(slot).ok().and_then(|index| sockets.get(index));
  Ok(socket.ok_or(error::StickyError::InvalidSlot { slot, slots })?.as_raw_fd())
}
