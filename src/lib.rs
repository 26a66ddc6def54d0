//! sticky-session-rs: sticky load balancing for Node.js cluster.
//!
//! Two layers, and imports only go down:
//!
//! - [`core`]: the pure core, no I/O (hashing, parsing, routing, sessions,
//!   the ledger and its counters, the record formats, kernel steering's BPF
//!   programs, the relief policy, systemd's variables). Tested beside the code, fuzzed in `fuzz/`.
//! - The I/O shells over it: [`seqpacket`] (records and descriptors over
//!   `SOCK_SEQPACKET` sockets: the hand-off channels, the rendezvous, the
//!   takeover),
//!   [`listener`] (binding or adopting a listening socket, for both paths),
//!   [`primary`] (the accept loop: its state, its tasks, the driver that
//!   carries out the ledger's actions), [`reuseport`] (the kernel-steered
//!   group and its BPF programs), [`shared_stats`] (the counters
//!   kernel-steered workers share with their primary), [`netstat`] (the
//!   host's listen counters, read from `/proc`), [`worker`] (the receiver, the
//!   relief thread), [`takeover`] (handing the listening sockets to a new
//!   primary), and `binding`, the `#[napi]` exports, on top.
//!
//! `node scripts/check-module-cycles.js` (run by CI) fails when a module
//! imports a module that imports it back.

// Every `unsafe` block says why it is sound (`// SAFETY:`); CI denies warnings.
#![warn(clippy::undocumented_unsafe_blocks)]
// An `unsafe fn` says what its callers must hold (`# Safety`), and its body
// still puts each unsafe operation in a block of its own with its reason.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod core;

pub mod listener;
pub mod netstat;
pub mod primary;
pub mod reuseport;
pub mod seqpacket;
pub mod shared_stats;
pub mod takeover;
pub mod worker;

mod binding;
#[cfg(test)]
mod test_support;
pub use binding::*;
