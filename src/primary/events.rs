//! What the accept loop tells JavaScript, and the failures tests inject.

use std::io;

use crate::core::hrw::SlotId;

use crate::core::ledger::{ChannelEnd, Notice};

/// What the loop reports to JavaScript (through the binding's callback).
#[derive(Debug)]
pub enum PrimaryEvent {
  SlotReady {
    slot: SlotId,
    pid: u32,
  },
  SlotClosed {
    slot: SlotId,
    reason: &'static str,
    requeued: usize,
  },
  /// A failure the user should see: as an `'error'` event when it stopped
  /// the accept loop ([`Problem::is_fatal`]), else as a warning.
  Problem(Problem),
  /// After `close`: the listen queue was drained and every connection
  /// accepted has been taken by a worker (or closed, and counted).
  Drained,
}

/// What went wrong in the accept loop. The binding gives each a stable
/// `code` (`binding/error.rs`); the message says what happens and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
  /// An `accept` failed for want of resources; the loop retries.
  #[error("{what} failed: {source}; retrying in 100 ms{hint}", hint = resource_hint(source))]
  AcceptFailed { what: &'static str, source: io::Error },
  #[error(
    "reset {reset} new connection(s): {held} connections are waiting for workers that fall behind, and the \
     primary's file descriptors are running out; raise the open-file limit (ulimit -n) or add workers"
  )]
  Overloaded { held: usize, reset: u64 },
  #[error(
    "worker in slot {slot} sent an invalid record ({why}): its channel is closed and its connections go to other \
     workers; run the same sticky-session-rs version in the primary and the workers"
  )]
  InvalidRecord { slot: SlotId, why: String },
  #[error(
    "{lost} connection(s) queued for the worker of slot {slot} were lost: the primary ran out of file descriptors \
     reading them back; raise the open-file limit (ulimit -n)"
  )]
  ReclaimLost { slot: SlotId, lost: usize },
  #[error("cannot serve the channel of worker process {pid} in slot {slot}: {source}{hint}", hint = resource_hint(source))]
  ChannelFailed { pid: u32, slot: SlotId, source: io::Error },
  #[error(
    "refused a channel to process {pid} (uid {uid}): {reason}; only workers this primary's cluster forked after \
     setupMaster() get connections (raise maxWorkers if every slot is taken)"
  )]
  ForeignChannel { pid: u32, uid: u32, reason: &'static str },
  /// A task of the loop ended or panicked: nothing is accepted any more.
  #[error("{0}; the primary accepts no more connections: restart it (and report this as a bug)")]
  Stopped(String),
}

impl Problem {
  /// True when the accept loop has stopped.
  pub fn is_fatal(&self) -> bool {
    matches!(self, Problem::Stopped(_))
  }
}

/// What to do about running out of descriptors (the usual cause of these failures).
fn resource_hint(error: &io::Error) -> &'static str {
  match error.raw_os_error() {
    Some(libc::EMFILE) | Some(libc::ENFILE) => ": raise the open-file limit (ulimit -n)",
    Some(libc::ENOBUFS) | Some(libc::ENOMEM) => ": the system is short of memory",
    _ => "",
  }
}

impl From<Notice> for PrimaryEvent {
  fn from(notice: Notice) -> Self {
    match notice {
      Notice::SlotReady { slot, pid } => PrimaryEvent::SlotReady { slot, pid },
      Notice::SlotClosed { slot, end, requeued } => PrimaryEvent::SlotClosed { slot, requeued, reason: reason(end) },
      Notice::Overloaded { held, reset } => PrimaryEvent::Problem(Problem::Overloaded { held, reset }),
    }
  }
}

fn reason(end: ChannelEnd) -> &'static str {
  match end {
    ChannelEnd::WorkerClosed => "worker closed its channel",
    ChannelEnd::Failed => "channel failed",
    ChannelEnd::ProtocolError => "protocol error",
    ChannelEnd::Replaced => "replaced by a new worker",
  }
}

/// Where the loop's events go (the binding's threadsafe function).
pub type EventSink = Box<dyn Fn(PrimaryEvent) + Send + 'static>;

/// Failures the tests inject (`STICKY_FAULT_INJECTION`), read once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
  /// The accept task panics on its second connection.
  AcceptPanic,
  /// Closing, the listening socket closes [`SLOW_CLOSE`] after the last look
  /// at its queue instead of at once: what a connection arriving in between
  /// meets is then seen every time, not by chance.
  SlowClose,
}

/// How long [`Fault::SlowClose`] keeps a listening socket open after its last look.
pub const SLOW_CLOSE: std::time::Duration = std::time::Duration::from_millis(200);
