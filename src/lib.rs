//! sticky-session-rs: sticky load balancing for Node.js cluster.
//!
//! Pure modules (no I/O): `address`, `hrw` (rendezvous hashing, the live
//! `Selection`), `codec` (the record codec) and `wire` (the hand-off records),
//! `parsers` (PROXY v1/v2, HTTP request head, forwarding
//! headers, trusted proxies), `routing` (what identifies a client), `sessions`
//! (engine.io session owners), `primary::ledger` (where every connection is
//! until a worker has it), `relief` (when a kernel-steered worker takes its
//! queue into the process), `netstat` (the host's listen counters, parsed)
//! and `systemd` (socket activation's variables). I/O shells over them:
//! `channel` (the SEQPACKET hand-off socket), `primary` (listener, accept
//! loop, the channel driver), `reuseport` (the kernel-steered group),
//! `shared_stats` (the counters kernel-steered workers share with their
//! primary), `worker` (receiver, relief thread),
//! `takeover` (handing the listening sockets to a new primary; its record
//! format is pure). `binding` holds the `#[napi]` exports.

// Every `unsafe` block says why it is sound (`// SAFETY:`); CI denies warnings.
#![warn(clippy::undocumented_unsafe_blocks)]
// An `unsafe fn` says what its callers must hold (`# Safety`), and its body
// still puts each unsafe operation in a block of its own with its reason.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod address;
pub mod channel;
pub mod codec;
pub mod hrw;
pub mod netstat;
pub mod parsers;
pub mod primary;
pub mod relief;
pub mod reuseport;
pub mod routing;
pub mod sessions;
pub mod shared_stats;
pub mod systemd;
pub mod takeover;
pub mod wire;
pub mod worker;

mod binding;
#[cfg(test)]
mod test_support;
pub use binding::*;
