//! The one place where Rust errors become JavaScript errors.
//!
//! Every failure the binding reports is a [`StickyError`]; [`StickyError::code`]
//! gives each its stable `code`: an errno name where the operating system
//! refused (`EADDRINUSE`, as `net` reports it), else an `ERR_STICKY_*` code.
//! The message says what to pass or do instead. README's "Errors" table lists
//! every code (checked by `__test__/error-codes.spec.js`).

use std::borrow::Cow;
use std::io;

use crate::parsers::trusted::TrustedProxyError;
use crate::primary::{errno_name, AdoptError, ListenError, Problem, StartError};
use crate::reuseport::AdoptGroupError;
use crate::systemd::SystemdError;
use crate::takeover::taking::TakeError;

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
      | SlotPortsOutOfRange { .. } => "ERR_STICKY_INVALID_OPTION",
      InvalidPort { .. } => "ERR_STICKY_INVALID_PORT",
      Resolve { code, .. } => code,
      Listen(error) => errno_name(&error.source),
      InheritedSocket(_) | InheritedGroup(_) | InheritedSocketCount { .. } | NotADescriptor { .. } => {
        "ERR_STICKY_INHERITED_SOCKET"
      }
      KernelUnsupported { .. } => "ERR_STICKY_KERNEL_UNSUPPORTED",
      Start(_) | ReliefStart(_) => "ERR_STICKY_START",
      AcceptLoopStopped => "ERR_STICKY_ACCEPT_LOOP",
      InvalidSlot { .. } => "ERR_STICKY_INVALID_SLOT",
      CreateChannel { .. } | Receive(_) | ReceiveOnLoop(_) | DuplicateRendezvous(_) => "ERR_STICKY_CHANNEL",
      RendezvousListen { source, .. } => errno_name(source),
      RendezvousClosed => "ERR_STICKY_CHANNEL_STATE",
      NotAChannel { .. } | NoRendezvous(_) | ChannelRefused | ForeignRendezvous { .. } => "ERR_STICKY_NO_CHANNEL",
      NotAListeningSocket { .. } => "ERR_STICKY_NO_LISTENING_SOCKET",
      ChannelState => "ERR_STICKY_CHANNEL_STATE",
      Unsupported => "ERR_STICKY_UNSUPPORTED",
      SystemdEnv(_) => "ERR_STICKY_SYSTEMD_ENV",
      TakeoverListen { source, .. } => errno_name(source),
      DuplicateSocket(_) | TakeoverConnect { .. } | TakeoverClosed => "ERR_STICKY_TAKEOVER_FAILED",
      Take(TakeError::Foreign { .. }) => "ERR_STICKY_TAKEOVER_FOREIGN",
      Take(TakeError::Busy { .. }) => "ERR_STICKY_TAKEOVER_BUSY",
      Take(_) => "ERR_STICKY_TAKEOVER_FAILED",
      Loop(Problem::AcceptFailed { source, .. }) => errno_name(source),
      Loop(Problem::Overloaded { .. }) => "ERR_STICKY_OVERLOAD",
      Loop(Problem::InvalidRecord { .. }) => "ERR_STICKY_PROTOCOL",
      Loop(Problem::ReclaimLost { .. }) => "ERR_STICKY_RECLAIM",
      Loop(Problem::ChannelFailed { .. }) => "ERR_STICKY_CHANNEL",
      Loop(Problem::ForeignChannel { .. }) => "ERR_STICKY_FOREIGN_CHANNEL",
      Loop(Problem::Stopped(_)) => "ERR_STICKY_ACCEPT_LOOP",
      Napi(_) => "ERR_STICKY_NAPI",
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
