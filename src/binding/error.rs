//! The one place where Rust errors become JavaScript errors, and where every
//! error code is written.
//!
//! Every failure the binding reports is a [`StickyError`]; [`StickyError::code`]
//! gives each its stable `code`: an errno name where the operating system
//! refused (`EADDRINUSE`, as `net` reports it), else one of [`codes`]. The
//! message says what to pass or do instead. README's "Errors" table lists
//! every code in [`codes`] (checked by `__test__/error-codes.spec.js`).

use std::borrow::Cow;
use std::io;

use napi_derive::napi;

use crate::core::parsers::trusted::TrustedProxyError;
use crate::core::systemd::SystemdError;
use crate::listener::{errno_name, AdoptError, ListenError};
use crate::primary::{Problem, StartError};
use crate::reuseport::AdoptGroupError;
use crate::takeover::taking::TakeError;

/// Writes [`codes`]: a constant per code, and the list `errorCodes()` exports.
macro_rules! error_codes {
  ($($name:ident $code:literal;)*) => {
    /// Every `ERR_STICKY_*` code, each once: those this binding gives its
    /// errors ([`StickyError::code`]) and those the JavaScript gives its own
    /// (`lib/errors.js` exports them as `codes`, keyed by the names here,
    /// from the generated `lib/portable/contract.js`).
    // The JavaScript's own codes are used here only through `ALL`.
    #[allow(dead_code)]
    pub mod codes {
      $(pub const $name: &str = $code;)*
      /// `(name, code)` for each, in the order written.
      pub const ALL: &[(&str, &str)] = &[$((stringify!($name), $code)),*];
    }
  };
}

error_codes! {
  // What the user passed.
  INVALID_OPTION "ERR_STICKY_INVALID_OPTION";
  INVALID_PORT "ERR_STICKY_INVALID_PORT";
  INVALID_SERVER "ERR_STICKY_INVALID_SERVER";
  UNSUPPORTED_LISTEN "ERR_STICKY_UNSUPPORTED_LISTEN";
  ALREADY_LISTENING "ERR_STICKY_ALREADY_LISTENING";
  NOT_PRIMARY "ERR_STICKY_NOT_PRIMARY";
  NOT_LISTENING "ERR_STICKY_NOT_LISTENING";
  PM2_CLUSTER_MODE "ERR_STICKY_PM2_CLUSTER_MODE";
  NO_BINDING "ERR_STICKY_NO_BINDING";
  NO_PROM_CLIENT "ERR_STICKY_NO_PROM_CLIENT";
  UNSUPPORTED "ERR_STICKY_UNSUPPORTED";
  // Listening.
  LISTEN "ERR_STICKY_LISTEN";
  INHERITED_SOCKET "ERR_STICKY_INHERITED_SOCKET";
  KERNEL_UNSUPPORTED "ERR_STICKY_KERNEL_UNSUPPORTED";
  SLOT_PORTS_UNSUPPORTED "ERR_STICKY_SLOT_PORTS_UNSUPPORTED";
  SYSTEMD_ENV "ERR_STICKY_SYSTEMD_ENV";
  SYSTEMD_UNSUPPORTED "ERR_STICKY_SYSTEMD_UNSUPPORTED";
  SYSTEMD_NO_SOCKET "ERR_STICKY_SYSTEMD_NO_SOCKET";
  START "ERR_STICKY_START";
  // The accept loop and the workers' channels.
  ACCEPT_LOOP "ERR_STICKY_ACCEPT_LOOP";
  INVALID_SLOT "ERR_STICKY_INVALID_SLOT";
  CHANNEL "ERR_STICKY_CHANNEL";
  CHANNEL_STATE "ERR_STICKY_CHANNEL_STATE";
  NO_CHANNEL "ERR_STICKY_NO_CHANNEL";
  FOREIGN_CHANNEL "ERR_STICKY_FOREIGN_CHANNEL";
  NO_LISTENING_SOCKET "ERR_STICKY_NO_LISTENING_SOCKET";
  OVERLOAD "ERR_STICKY_OVERLOAD";
  PROTOCOL "ERR_STICKY_PROTOCOL";
  RECLAIM "ERR_STICKY_RECLAIM";
  NAPI "ERR_STICKY_NAPI";
  // Reload.
  RELOAD_UNSUPPORTED "ERR_STICKY_RELOAD_UNSUPPORTED";
  RELOAD_TIMEOUT "ERR_STICKY_RELOAD_TIMEOUT";
  RELOAD_INTERRUPTED "ERR_STICKY_RELOAD_INTERRUPTED";
  // Takeover.
  TAKEOVER_UNSUPPORTED "ERR_STICKY_TAKEOVER_UNSUPPORTED";
  TAKEOVER_UNAVAILABLE "ERR_STICKY_TAKEOVER_UNAVAILABLE";
  TAKEOVER_MISMATCH "ERR_STICKY_TAKEOVER_MISMATCH";
  TAKEOVER_TIMEOUT "ERR_STICKY_TAKEOVER_TIMEOUT";
  TAKEOVER_BUSY "ERR_STICKY_TAKEOVER_BUSY";
  TAKEOVER_FAILED "ERR_STICKY_TAKEOVER_FAILED";
  TAKEOVER_FOREIGN "ERR_STICKY_TAKEOVER_FOREIGN";
  TAKEOVER_REFUSED "ERR_STICKY_TAKEOVER_REFUSED";
  TAKEOVER_ABANDONED "ERR_STICKY_TAKEOVER_ABANDONED";
}

#[derive(Debug, thiserror::Error)]
pub enum StickyError {
  // ---- what the user passed ------------------------------------------------
  #[error("options must be an object, got {got}")]
  OptionsNotAnObject { got: String },
  #[error("options.{name} must be {expected}, got {got}")]
  InvalidOption { name: &'static str, expected: Cow<'static, str>, got: String },
  #[error("options.trustedProxies: {0}")]
  InvalidTrustedProxy(#[from] TrustedProxyError),
  #[error("options.kernel steers by source address: it works with routing 'ip' only, not '{routing}'")]
  KernelNeedsIpRouting { routing: &'static str },
  #[error(
    "options.slotPorts are for a proxy that routes each request itself: they work with routing 'header' or 'sid', \
     not '{routing}'"
  )]
  SlotPortsNeedProxyRouting { routing: &'static str },
  #[error("options.slotPorts: {workers} slots from port {first} go past 65535: choose a lower first port")]
  SlotPortsOutOfRange { first: u32, workers: u32 },
  #[error("port must be an integer from 0 to 65535 (0 picks a free port), got {got}")]
  InvalidPort { got: String },
  /// As Node's `dns.lookup` reports it (`code` is its errno-like name).
  #[error("getaddrinfo {code} {host}")]
  Resolve { host: String, code: &'static str },

  // ---- listening -----------------------------------------------------------
  #[error("{0} (syscall {syscall})", syscall = .0.syscall)]
  Listen(ListenError),
  #[error(
    "{0}: the socket given to this primary (systemd socket activation or a takeover) must be a listening TCP socket"
  )]
  InheritedSocket(#[from] AdoptError),
  #[error(
    "{0}: the sockets given to this primary by a takeover must be the old primary's kernel-steered group, in slot order"
  )]
  InheritedGroup(#[from] AdoptGroupError),
  #[error(
    "{given} listening sockets were given to this primary where it takes {wanted}: a takeover must come from a \
     primary with the same workers and kernel options"
  )]
  InheritedSocketCount { given: usize, wanted: usize },
  #[error("adopt: {fd} is not a file descriptor (takeover and systemd pass the descriptors they received)")]
  NotADescriptor { fd: i32 },
  /// `lib/primary/listener-choice.js` falls back to the accept loop, with a warning that says so.
  #[error("kernel steering (SO_REUSEPORT with a classic BPF program) is not available here: {reason}")]
  KernelUnsupported { reason: String },
  #[error("cannot start the accept loop: {0}; the process is out of threads, descriptors or memory")]
  Start(#[source] StartError),
  #[error("the accept loop has stopped (its 'error' event said why): restart the primary")]
  AcceptLoopStopped,
  #[error(
    "slot {slot} is out of range: this primary has {slots} slots (a bug in sticky-session-rs: please report it)"
  )]
  InvalidSlot { slot: u32, slots: usize },
  #[error("cannot create the channel for slot {slot}: {source}; raise the open-file limit (ulimit -n)")]
  CreateChannel { slot: u16, source: io::Error },
  #[error(
    "cannot listen on the workers' rendezvous socket {name:?}: {source}; another process holds this primary's name \
     (see which with `ss -xlp | grep {name}`)"
  )]
  RendezvousListen { name: String, source: io::Error },
  #[error("the workers' rendezvous socket was closed: call setupMaster(httpServer) again")]
  RendezvousClosed,
  #[error("cannot take a reference to the workers' rendezvous socket: {0}; raise the open-file limit (ulimit -n)")]
  DuplicateRendezvous(#[source] io::Error),

  // ---- in a worker ---------------------------------------------------------
  #[error(
    "fd {fd} is not a sticky-session-rs channel: start workers through sticky.listen() in the primary, not with \
     cluster.fork() or node directly"
  )]
  NotAChannel { fd: i32 },
  #[error(
    "cannot reach the primary's sticky-session-rs socket: {0}; call setupMaster() in the primary before cluster.fork()"
  )]
  NoRendezvous(#[source] io::Error),
  #[error(
    "fd {fd} is not a listening TCP socket ({why}): kernel-mode workers are forked by sticky.listen(server, port, \
     {{ kernel: true }}) in the primary, which passes each its slot's socket"
  )]
  NotAListeningSocket { fd: i32, why: String },
  #[error(
    "the primary refused this process a channel: only workers forked by cluster.fork() in the primary that called \
     setupMaster() get one"
  )]
  ChannelRefused,
  #[error(
    "the rendezvous socket {name:?} is held by process {pid} of uid {uid}, not by this worker's primary (process \
     {primary}): refusing to take connections from it"
  )]
  ForeignRendezvous { name: String, pid: u32, uid: u32, primary: u32 },
  #[error("the channel was already started or closed: start() it once")]
  ChannelState,
  #[error("cannot start receiving connections: {0}; the process is out of threads or memory")]
  Receive(#[source] io::Error),
  #[error("cannot receive connections on the event loop: {0}; the runtime's libuv is not usable from the addon")]
  ReceiveOnLoop(String),
  #[error(
    "cannot start this worker's relief thread: {0}; it accepts without it, and when it falls behind the kernel drops \
     handshakes (the process is out of threads, descriptors or memory)"
  )]
  ReliefStart(#[source] io::Error),
  #[error("setupMaster() and setupWorker() need Linux (abstract Unix sockets): use sticky.listen() elsewhere")]
  Unsupported,

  // ---- systemd and takeover ------------------------------------------------
  #[error("{0}: systemd socket activation sets these; unset them to bind normally")]
  SystemdEnv(#[from] SystemdError),
  #[error("cannot offer the listening sockets: duplicating them failed ({0}); raise the open-file limit (ulimit -n)")]
  DuplicateSocket(#[source] io::Error),
  #[error("cannot listen on the takeover socket {name:?}: {source}")]
  TakeoverListen { name: String, source: io::Error },
  #[error("cannot connect to the takeover socket {name:?}: {source}")]
  TakeoverConnect { name: String, source: io::Error },
  #[error("the takeover connection was closed: request the sockets again")]
  TakeoverClosed,
  #[error(transparent)]
  Take(#[from] TakeError),

  // ---- the accept loop's own reports (events, not thrown) --------------------
  #[error(transparent)]
  Loop(#[from] Problem),

  // ---- Node-API ----------------------------------------------------------------
  #[error("a Node-API call failed ({status}: {reason}): a bug in sticky-session-rs or the runtime, please report it", status = .0.status, reason = .0.reason)]
  Napi(napi::Error),
}

impl StickyError {
  /// The stable `code` of each error: the one mapping from Rust errors to
  /// JavaScript codes.
  pub fn code(&self) -> &'static str {
    use StickyError::*;
    match self {
      OptionsNotAnObject { .. }
      | InvalidOption { .. }
      | InvalidTrustedProxy(_)
      | KernelNeedsIpRouting { .. }
      | SlotPortsNeedProxyRouting { .. }
      | SlotPortsOutOfRange { .. } => codes::INVALID_OPTION,
      InvalidPort { .. } => codes::INVALID_PORT,
      Resolve { code, .. } => code,
      Listen(error) => errno_name(&error.source),
      InheritedSocket(_) | InheritedGroup(_) | InheritedSocketCount { .. } | NotADescriptor { .. } => {
        codes::INHERITED_SOCKET
      }
      KernelUnsupported { .. } => codes::KERNEL_UNSUPPORTED,
      Start(_) | ReliefStart(_) => codes::START,
      AcceptLoopStopped => codes::ACCEPT_LOOP,
      InvalidSlot { .. } => codes::INVALID_SLOT,
      CreateChannel { .. } | Receive(_) | ReceiveOnLoop(_) | DuplicateRendezvous(_) => codes::CHANNEL,
      RendezvousListen { source, .. } => errno_name(source),
      RendezvousClosed => codes::CHANNEL_STATE,
      NotAChannel { .. } | NoRendezvous(_) | ChannelRefused | ForeignRendezvous { .. } => codes::NO_CHANNEL,
      NotAListeningSocket { .. } => codes::NO_LISTENING_SOCKET,
      ChannelState => codes::CHANNEL_STATE,
      Unsupported => codes::UNSUPPORTED,
      SystemdEnv(_) => codes::SYSTEMD_ENV,
      TakeoverListen { source, .. } => errno_name(source),
      DuplicateSocket(_) | TakeoverConnect { .. } | TakeoverClosed => codes::TAKEOVER_FAILED,
      Take(TakeError::Foreign { .. }) => codes::TAKEOVER_FOREIGN,
      Take(TakeError::Busy { .. }) => codes::TAKEOVER_BUSY,
      Take(_) => codes::TAKEOVER_FAILED,
      Loop(Problem::AcceptFailed { source, .. }) => errno_name(source),
      Loop(Problem::Overloaded { .. }) => codes::OVERLOAD,
      Loop(Problem::InvalidRecord { .. }) => codes::PROTOCOL,
      Loop(Problem::ReclaimLost { .. }) => codes::RECLAIM,
      Loop(Problem::ChannelFailed { .. }) => codes::CHANNEL,
      Loop(Problem::ForeignChannel { .. }) => codes::FOREIGN_CHANNEL,
      Loop(Problem::Stopped(_)) => codes::ACCEPT_LOOP,
      Napi(_) => codes::NAPI,
    }
  }
}

impl From<napi::Error> for StickyError {
  fn from(error: napi::Error) -> Self {
    StickyError::Napi(error)
  }
}

/// The `code` property of a thrown error.
pub struct ErrorCode(&'static str);

impl AsRef<str> for ErrorCode {
  fn as_ref(&self) -> &str {
    self.0
  }
}

impl From<StickyError> for napi::Error<ErrorCode> {
  fn from(error: StickyError) -> Self {
    napi::Error::new(ErrorCode(error.code()), error.to_string())
  }
}

/// What `#[napi]` functions return: a value, or a [`StickyError`] thrown with its code.
pub type Result<T> = std::result::Result<T, napi::Error<ErrorCode>>;

/// One error code, and its name in `codes` (`lib/errors.js`).
#[napi(object)]
pub struct NamedErrorCode {
  pub name: String,
  pub code: String,
}

/// Every `ERR_STICKY_*` code, with the name JavaScript writes it by
/// (`codes.INVALID_OPTION`); what each means is README's "Errors" table.
#[napi]
pub fn error_codes() -> Vec<NamedErrorCode> {
  codes::ALL.iter().map(|&(name, code)| NamedErrorCode { name: name.into(), code: code.into() }).collect()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn each_code_is_written_once_and_named_after_itself() {
    let mut seen: Vec<&str> = codes::ALL.iter().map(|(_, code)| *code).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), codes::ALL.len());
    for (name, code) in codes::ALL {
      assert_eq!(code.strip_prefix("ERR_STICKY_"), Some(*name));
    }
  }
}
