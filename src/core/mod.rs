//! The pure core: every decision the balancer makes, with no I/O, no
//! descriptors and no clock (time is passed in). Each module is tested beside
//! its code, the parsers and record formats also by property tests and fuzz
//! targets (`fuzz/`). The I/O modules around it (`crate::primary`,
//! `crate::worker`, `crate::reuseport`, `crate::takeover`, `crate::binding`...)
//! call into it; nothing here imports them.
//!
//! - [`hrw`]: rendezvous hashing over slot ids, and the live `Selection`.
//! - [`address`]: routing keys from client addresses.
//! - [`parsers`]: PROXY v1/v2, the HTTP request head, forwarding headers,
//!   trusted proxies.
//! - [`routing`]: what identifies a client, from its address and first bytes.
//! - [`sessions`]: which slot owns each engine.io session.
//! - [`ledger`]: where every accepted connection is until a worker has it,
//!   and what to do next; [`stats`]: the counters it keeps (and the list of
//!   stats fields everything else is generated from).
//! - [`codec`]: the record codec under both record formats: [`wire`] (the
//!   hand-off channel's records) and [`takeover_message`] (the takeover's).
//! - [`steering`]: kernel steering's BPF programs, and the slot they pick.
//! - [`relief`]: when a kernel-steered worker takes its queue into the process.
//! - [`systemd`]: which inherited descriptors socket activation meant for us.

pub mod address;
pub mod codec;
pub mod hrw;
pub mod ledger;
pub mod parsers;
pub mod relief;
pub mod routing;
pub mod sessions;
pub mod stats;
pub mod steering;
pub mod systemd;
pub mod takeover_message;
pub mod wire;
