//! What the accept loop tells JavaScript, and the failures tests inject.

use crate::hrw::SlotId;

use super::ledger::{ChannelEnd, Notice};

/// What the loop reports to JavaScript (through the binding's callback).
#[derive(Debug, Clone)]
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
  /// A failure the user should see as an `'error'` event (`fatal`: the
  /// accept loop has stopped) or a warning (not fatal).
  Error {
    code: String,
    message: String,
    fatal: bool,
  },
  /// After `close`: the listen queue was drained and every connection
  /// accepted has been taken by a worker (or closed, and counted).
  Drained,
}

impl PrimaryEvent {
  pub fn warning(code: &str, message: String) -> Self {
    PrimaryEvent::Error { code: code.into(), message, fatal: false }
  }

  pub fn fatal(message: String) -> Self {
    PrimaryEvent::Error { code: "ERR_STICKY_ACCEPT_LOOP".into(), message, fatal: true }
  }
}

impl From<Notice> for PrimaryEvent {
  fn from(notice: Notice) -> Self {
    match notice {
      Notice::SlotReady { slot, pid } => PrimaryEvent::SlotReady { slot, pid },
      Notice::SlotClosed { slot, end, requeued } => PrimaryEvent::SlotClosed { slot, requeued, reason: reason(end) },
      Notice::Overloaded { held, reset } => PrimaryEvent::warning(
        "ERR_STICKY_OVERLOAD",
        format!(
          "reset {reset} new connection(s): {held} connections are waiting for workers that fall behind, and the \
           primary's file descriptors are running out; raise the open-file limit (ulimit -n) or add workers"
        ),
      ),
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
}
