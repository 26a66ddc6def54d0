//! Socket takeover: a new primary of the same app receives the running
//! primary's listening socket(s) over a private Unix socket, so the app can be
//! replaced whole without a refused connection (as HAProxy's `-x`, Envoy's hot
//! restart, or Pingora's graceful upgrade do).
//!
//! The record format is pure (`crate::core::takeover_message`); `offering`
//! is the running primary's side (a thread that listens on an abstract
//! name), `taking` the new primary's side. The name is chosen in JavaScript
//! (`takeoverName` in `lib/takeover.js`: per user, host and port); abstract
//! names have no file permissions, so both sides check the peer's
//! uid (`SO_PEERCRED`) before they send or trust anything.

#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod offering;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod taking;

/// How long one side waits for the other's next record, or for its socket
/// buffer to drain: the other side answers from a thread of its own at once,
/// so this only bounds a peer that hangs.
pub const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
