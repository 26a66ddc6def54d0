//! The primary process: a listener, an accept loop on its own thread, and a
//! ledger that hands every connection to a worker slot.
//!
//! The primary's JavaScript never sees a connection: it only forks workers,
//! gives each one its channel (`PrimaryHandle::open_slot`) and reads `stats`.
//!
//! - [`ledger`]: where every connection is and what to do next (pure).
//! - [`driver`]: the worker channels' descriptors; carries out the ledger's actions.
//! - [`handle`]: configuration, the handle JavaScript holds, the loop's thread.
//! - [`acceptor`], [`header_reader`], [`channels`], [`rendezvous`]: the loop's tasks.
//! - [`events`], [`supervise`]: what JavaScript hears; no task dies silently.

mod acceptor;
mod channels;
mod connection;
mod driver;
mod events;
mod handle;
mod header_reader;
mod ledger;
mod listener;
mod rendezvous;
pub mod stats;
mod supervise;

pub use events::{Fault, PrimaryEvent, Problem, SLOW_CLOSE};
pub use handle::{descriptor_budget, OpenSlotError, PrimaryConfig, PrimaryHandle, StartError};
pub use header_reader::HeaderLimits;
pub use listener::{
  adopt_listener, bind_listener, bound_socket, errno_name, listening_socket, socket_facts, with_default_host_fallback,
  AdoptError, ListenError, SocketFacts,
};
pub use rendezvous::{AllowedWorkers, NO_WORKER_GRACE};
pub use stats::{SlotSnapshot, Stats, StatsSnapshot};
