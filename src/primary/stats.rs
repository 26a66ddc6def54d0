//! Counters shared between the accept loop (writer) and JavaScript (reader).
//!
//! Plain relaxed atomics: each counter is exact, a snapshot is not one instant
//! across counters, and reading never blocks the accept loop.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub struct SlotStats {
  pub pid: AtomicU32,
  pub live: AtomicBool,
  /// Channels opened for this slot: 1 for the first worker, +1 per respawn.
  pub channels: AtomicU64,
  pub dispatched: AtomicU64,
  pub acknowledged: AtomicU64,
  /// Connections this slot's worker never took, sent to another slot.
  pub redispatched: AtomicU64,
  /// New connections reset because the descriptor budget was used up while
  /// this slot was over its pending limit.
  pub dropped_queue_full: AtomicU64,
  /// Handed off and not yet acknowledged, or waiting for the channel.
  pub pending: AtomicU64,
  /// Engine.io sessions this slot owns (`sid` routing).
  pub sessions: AtomicU64,
}

#[derive(Default)]
pub struct Stats {
  pub accepted: AtomicU64,
  pub accept_errors: AtomicU64,
  /// New connections reset because no worker was alive, more than `max_parked`
  /// were parked and the descriptor budget was used up.
  pub dropped_no_worker: AtomicU64,
  /// Connections waiting for any worker to come up.
  pub parked: AtomicU64,
  /// Connections whose routing key (PROXY header, request head) is still being read.
  pub reading_header: AtomicU64,
  /// Closed: the header did not arrive within `headerTimeout`.
  pub dropped_header_timeout: AtomicU64,
  /// Closed: invalid PROXY header, a header larger than `maxHeaderBytes`, or
  /// a missing forwarding header with `ignoreMissingHeader: false`.
  pub dropped_invalid_header: AtomicU64,
  /// Closed: a connection in `proxy-protocol` mode from a peer not in `trustedProxies`.
  pub dropped_untrusted_proxy: AtomicU64,
  /// Closed: the oldest connection still reading its header, to make room
  /// when more than `maxPendingHeaders` were reading and the descriptor
  /// budget was used up.
  pub dropped_header_overflow: AtomicU64,
  /// The client closed before sending its header (not a drop: nobody was waiting).
  pub closed_before_header: AtomicU64,
  /// Session reports refused because the session table was full.
  pub sessions_refused: AtomicU64,
  /// Processes refused a channel: not a worker of this cluster, or no free slot.
  pub rejected_channels: AtomicU64,
  pub slots: Vec<SlotStats>,
}

impl Stats {
  pub fn new(slots: usize) -> Self {
    Stats { slots: (0..slots).map(|_| SlotStats::default()).collect(), ..Default::default() }
  }

  pub fn snapshot(&self) -> StatsSnapshot {
    let slots: Vec<SlotSnapshot> = self
      .slots
      .iter()
      .enumerate()
      .map(|(slot, s)| SlotSnapshot {
        slot: slot as u32,
        pid: s.pid.load(Relaxed),
        live: s.live.load(Relaxed),
        respawns: s.channels.load(Relaxed).saturating_sub(1),
        dispatched: s.dispatched.load(Relaxed),
        acknowledged: s.acknowledged.load(Relaxed),
        redispatched: s.redispatched.load(Relaxed),
        dropped_queue_full: s.dropped_queue_full.load(Relaxed),
        pending: s.pending.load(Relaxed),
        sessions: s.sessions.load(Relaxed),
      })
      .collect();
    StatsSnapshot {
      accepted: self.accepted.load(Relaxed),
      accept_errors: self.accept_errors.load(Relaxed),
      dropped_no_worker: self.dropped_no_worker.load(Relaxed),
      parked: self.parked.load(Relaxed),
      reading_header: self.reading_header.load(Relaxed),
      dropped_header_timeout: self.dropped_header_timeout.load(Relaxed),
      dropped_invalid_header: self.dropped_invalid_header.load(Relaxed),
      dropped_untrusted_proxy: self.dropped_untrusted_proxy.load(Relaxed),
      dropped_header_overflow: self.dropped_header_overflow.load(Relaxed),
      closed_before_header: self.closed_before_header.load(Relaxed),
      sessions_refused: self.sessions_refused.load(Relaxed),
      rejected_channels: self.rejected_channels.load(Relaxed),
      dropped: self.dropped_no_worker.load(Relaxed)
        + self.dropped_header_timeout.load(Relaxed)
        + self.dropped_invalid_header.load(Relaxed)
        + self.dropped_untrusted_proxy.load(Relaxed)
        + self.dropped_header_overflow.load(Relaxed)
        + slots.iter().map(|s| s.dropped_queue_full).sum::<u64>(),
      slots,
    }
  }
}

#[derive(Debug, Clone)]
pub struct SlotSnapshot {
  pub slot: u32,
  pub pid: u32,
  pub live: bool,
  pub respawns: u64,
  pub dispatched: u64,
  pub acknowledged: u64,
  pub redispatched: u64,
  pub dropped_queue_full: u64,
  pub pending: u64,
  pub sessions: u64,
}

#[derive(Debug, Clone)]
pub struct StatsSnapshot {
  pub accepted: u64,
  pub accept_errors: u64,
  pub dropped_no_worker: u64,
  pub parked: u64,
  pub reading_header: u64,
  pub dropped_header_timeout: u64,
  pub dropped_invalid_header: u64,
  pub dropped_untrusted_proxy: u64,
  pub dropped_header_overflow: u64,
  pub closed_before_header: u64,
  pub sessions_refused: u64,
  pub rejected_channels: u64,
  /// Every connection the primary reset, whatever the reason.
  pub dropped: u64,
  pub slots: Vec<SlotSnapshot>,
}

#[cfg(test)]
impl SlotStats {
  pub fn respawns_for_test(&self) -> u64 {
    self.channels.load(Relaxed).saturating_sub(1)
  }
}
