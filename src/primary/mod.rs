//! The primary process: a listener, an accept loop on its own thread, and a
//! ledger that hands every connection to a worker slot.
//!
//! The primary's JavaScript never sees a connection: it only forks workers,
//! gives each one its channel (`PrimaryHandle::open_slot`) and reads `stats`.
//!
//! - [`crate::core::ledger`]: where every connection is and what to do next
//!   (pure; its counters are [`crate::core::stats`]).
//! - [`driver`]: the worker channels' descriptors; carries out the ledger's actions.
//! - [`loop_state`]: what the loop's tasks share.
//! - [`acceptor`], [`header_reader`], [`channels`], [`rendezvous`]: the loop's
//!   tasks; each depends on `loop_state`, none on `handle`.
//! - [`handle`]: configuration, the handle JavaScript holds, the loop's thread
//!   (which builds the state and spawns the tasks).
//! - [`events`], [`supervise`]: what JavaScript hears; no task dies silently.
//!
//! The listening socket itself is bound or adopted by [`crate::listener`],
//! which kernel steering uses too.

mod acceptor;
mod channels;
mod connection;
mod driver;
mod events;
mod handle;
mod header_reader;
mod loop_state;
mod rendezvous;
mod supervise;

pub use events::{Fault, PrimaryEvent, Problem, SLOW_CLOSE};
pub use handle::{descriptor_budget, OpenSlotError, PrimaryConfig, PrimaryHandle, StartError};
pub use loop_state::HeaderLimits;
pub use rendezvous::{AllowedWorkers, NO_WORKER_GRACE};
