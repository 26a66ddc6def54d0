//! The primary process: a listener, an accept loop on its own thread, and a
//! dispatcher that hands every connection to a worker slot.
//!
//! The primary's JavaScript never sees a connection: it only forks workers,
//! gives each one its channel (`PrimaryHandle::open_slot`) and reads `stats`.

mod dispatcher;
mod event_loop;
mod header_reader;
mod listener;
mod stats;

pub use event_loop::{descriptor_budget, AllowedWorkers, Fault, PrimaryConfig, PrimaryEvent, PrimaryHandle};
pub use header_reader::HeaderLimits;
pub use listener::{bind_listener, with_default_host_fallback, ListenError};
pub use stats::{SlotSnapshot, Stats, StatsSnapshot};
