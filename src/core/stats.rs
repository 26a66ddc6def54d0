//! Counters shared between the accept loop (writer) and JavaScript (reader).
//!
//! Plain relaxed atomics: each counter is exact, a snapshot is not one instant
//! across counters, and reading never blocks the accept loop.
//!
//! Each field is defined once, with its kind and meaning, in
//! [`primary_stats_fields!`] or [`slot_stats_fields!`] (and `dropped`, their
//! sum, in [`DROPPED`]). The atomics, the snapshots, the JavaScript objects
//! (`binding/stats.rs`) and the field list that metrics exporters, the
//! portable path and the docs' test read ([`PRIMARY_FIELDS`],
//! [`SLOT_FIELDS`], [`SLOT_ALIASES`]) are all generated from those lists.
//!
//! A field renamed keeps its old name for one minor version: `was old_name`
//! after its meaning. The old name is no counter of its own: JavaScript's
//! objects carry it with the new field's value, and `statsFields()` lists it
//! (with `aliasOf`), so the metrics export it too until it goes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The primary's counters: `kind name "meaning";` (or `kind name "meaning"
/// was old_name;` for a renamed field, see the module doc), where `kind` is `counter`
/// (only grows), `drop` (a counter of connections the primary reset: summed
/// into `dropped`) or `gauge` (a level now). Calls `$apply!` with the list.
/// The `host_*` counters are the host's (`crate::netstat`), filled in when a
/// snapshot is taken, in either mode.
macro_rules! primary_stats_fields {
  ($apply:ident) => {
    $apply! {
      counter accepted "Connections accepted from the listening socket.";
      counter accept_errors "Failed accept calls (EMFILE, ENFILE, ...), each retried after a pause.";
      drop dropped_no_worker "New connections reset because no worker was alive, more than maxParked were parked and the primary's descriptor budget was used up.";
      gauge parked "Connections waiting for any worker to come up.";
      gauge reading_header "Connections whose routing key (PROXY header, request head) is being read.";
      drop dropped_header_timeout "Connections closed because their header did not arrive within headerTimeout.";
      drop dropped_invalid_header "Connections closed for an invalid PROXY header, a header over maxHeaderBytes, or a missing forwarding header with ignoreMissingHeader false.";
      drop dropped_untrusted_proxy "Connections closed in proxy-protocol routing because the peer is not in trustedProxies.";
      drop dropped_header_overflow "Connections still reading their header closed, oldest first, to make room when more than maxPendingHeaders were reading and the primary's descriptor budget was used up.";
      counter closed_before_header "Connections the client closed before sending its header (not a drop: nobody was waiting).";
      counter sessions_refused "Session reports refused because the session table was full (maxSessions).";
      counter rejected_channels "Processes refused a worker channel: not a worker of this cluster, or no free slot.";
      counter host_listen_overflows "Host-wide, every listening socket of this network namespace (not only this app's), since boot: handshakes dropped because an accept queue was full (/proc/net/netstat TcpExt ListenOverflows).";
      counter host_listen_drops "Host-wide, every listening socket of this network namespace (not only this app's), since boot: connection requests and handshakes dropped at a listening socket, overflows included (TcpExt ListenDrops).";
    }
  };
}
pub(crate) use primary_stats_fields;

/// Each slot's fields, as [`primary_stats_fields!`]; `state` is a gauge
/// whose values have names ([`SLOT_STATES`]). The slot's worker (`pid`,
/// `state`, `respawns`) is set by the accept loop's ledger, or in kernel
/// steering by the group as JavaScript forks (`binding/kernel.rs`). The
/// accept loop counts the next ones; kernel steering (where the primary
/// sees no connection) fills the ones that say so from the kernel and the
/// workers, and they stay 0 in the accept loop.
macro_rules! slot_stats_fields {
  ($apply:ident) => {
    $apply! {
      gauge pid "Process id of the slot's worker (0 while it has none).";
      state state "The slot's state: 1 while it has a live worker ('live' in stats()), 0 while it is down ('down').";
      counter respawns "Workers started into the slot after its first (respawns and reloads).";
      counter dispatched "Connections handed to the slot's workers.";
      counter taken "Connections the slot's workers took (read from their channel), as the primary last looked." was acknowledged;
      counter redispatched "Connections this slot's worker never took (it died or left), sent to another slot.";
      drop dropped_queue_full "New connections reset because the primary's descriptor budget was used up while this slot was over maxPendingPerSlot.";
      gauge pending "Connections waiting for the slot's channel, or handed off and not yet seen taken by its worker.";
      gauge sessions "Engine.io sessions this slot owns (sid routing).";
      counter accepted "Kernel steering: connections the slot's workers took off its socket (counted by the workers in memory shared with the primary).";
      gauge queued "Kernel steering: connections waiting in the slot's accept queue now, as the kernel reports it.";
      gauge queue_limit "Kernel steering: the most connections the slot's accept queue holds (backlog, capped by net.core.somaxconn).";
      counter listen_drops "Kernel steering: connection requests and handshakes the kernel dropped at the slot's socket, its queue being full (their clients send them again after 1 s, 3 s, 7 s).";
      counter relieved "Kernel steering: connections the slot's workers' relief threads took off its queue, the queue being over a quarter full while their JavaScript was busy.";
      gauge held "Kernel steering: connections the relief threads hold for their worker's JavaScript now.";
    }
  };
}
pub(crate) use slot_stats_fields;

/// The names of a slot's `state` in `stats()`, by its value: what a metric
/// reports is the index.
pub const SLOT_STATES: &[&str] = &["down", "live"];
const LIVE: u64 = 1;

/// What a stats field measures, for metrics exporters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
  /// Only grows (from 0 when the primary starts; the host-wide ones from
  /// boot).
  Counter,
  /// A level now.
  Gauge,
}

/// One stats field as documentation and metrics exporters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDoc {
  /// The Rust name; JavaScript sees it in camelCase.
  pub name: &'static str,
  pub kind: FieldKind,
  pub help: &'static str,
  /// Counted in the total `dropped`.
  pub dropped: bool,
  /// A gauge whose values have names: `stats()` shows the name at the
  /// value's index (empty for plain numbers).
  pub values: &'static [&'static str],
}

macro_rules! field_kind {
  (counter) => {
    FieldKind::Counter
  };
  (drop) => {
    FieldKind::Counter
  };
  (gauge) => {
    FieldKind::Gauge
  };
  (state) => {
    FieldKind::Gauge
  };
}

macro_rules! field_values {
  (state) => {
    SLOT_STATES
  };
  ($other:ident) => {
    &[]
  };
}

macro_rules! is_drop {
  (drop) => {
    true
  };
  ($other:ident) => {
    false
  };
}

macro_rules! field_docs {
  ($($kind:ident $name:ident $help:tt $(was $old:ident)?;)*) => {
    &[$(FieldDoc {
      name: stringify!($name),
      kind: field_kind!($kind),
      help: $help,
      dropped: is_drop!($kind),
      values: field_values!($kind),
    }),*]
  };
}

/// The old name of a renamed stats field, kept for one minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldAlias {
  /// The old name (Rust's; JavaScript sees it in camelCase).
  pub name: &'static str,
  /// The field it names now.
  pub of: &'static str,
}

/// The version in which the old names of [`SLOT_ALIASES`] go: the next minor.
pub const ALIASES_REMOVED_IN: &str = "0.2.0";

macro_rules! field_aliases {
  ($($kind:ident $name:ident $help:tt $(was $old:ident)?;)*) => {
    &[$($(FieldAlias { name: stringify!($old), of: stringify!($name) },)?)*]
  };
}

/// `dropped`: every connection the primary reset, the sum of each `drop` field.
pub const DROPPED: FieldDoc = FieldDoc {
  name: "dropped",
  kind: FieldKind::Counter,
  help: "Connections the primary reset, whatever the reason (the sum of the dropped_* counters).",
  dropped: false,
  values: &[],
};

/// Every field of a [`StatsSnapshot`] but `slots`, in order.
pub const PRIMARY_FIELDS: &[FieldDoc] = {
  const LISTED: &[FieldDoc] = primary_stats_fields!(field_docs);
  const ALL: [FieldDoc; LISTED.len() + 1] = {
    let mut all = [DROPPED; LISTED.len() + 1];
    let mut i = 0;
    while i < LISTED.len() {
      all[i + 1] = LISTED[i];
      i += 1;
    }
    all
  };
  &ALL
};

/// The old names of renamed slot fields (`acknowledged`, now `taken`).
pub const SLOT_ALIASES: &[FieldAlias] = slot_stats_fields!(field_aliases);

/// Every per-slot field of a [`SlotSnapshot`] but `slot`, in order.
pub const SLOT_FIELDS: &[FieldDoc] = slot_stats_fields!(field_docs);

macro_rules! define_slot_stats {
  ($($kind:ident $name:ident $help:tt $(was $old:ident)?;)*) => {
    #[derive(Default)]
    pub struct SlotStats {
      $(#[doc = $help] pub $name: AtomicU64,)*
      /// A worker was ever started into the slot: the next one is a respawn.
      started: AtomicBool,
    }

    #[derive(Debug, Clone)]
    pub struct SlotSnapshot {
      pub slot: u32,
      $(#[doc = $help] pub $name: u64,)*
    }

    impl SlotStats {
      fn snapshot(&self, slot: u32) -> SlotSnapshot {
        SlotSnapshot { slot, $($name: self.$name.load(Relaxed),)* }
      }
    }

    impl SlotSnapshot {
      /// The sum of this slot's `drop` counters.
      fn dropped(&self) -> u64 {
        0 $(+ if is_drop!($kind) { self.$name } else { 0 })*
      }
    }
  };
}
slot_stats_fields!(define_slot_stats);

macro_rules! define_stats {
  ($($kind:ident $name:ident $help:tt $(was $old:ident)?;)*) => {
    #[derive(Default)]
    pub struct Stats {
      $(#[doc = $help] pub $name: AtomicU64,)*
      pub slots: Vec<SlotStats>,
    }

    #[derive(Debug, Clone)]
    pub struct StatsSnapshot {
      $(#[doc = $help] pub $name: u64,)*
      /// Every connection the primary reset, whatever the reason.
      pub dropped: u64,
      pub slots: Vec<SlotSnapshot>,
    }

    impl Stats {
      pub fn snapshot(&self) -> StatsSnapshot {
        let slots: Vec<SlotSnapshot> =
          self.slots.iter().enumerate().map(|(slot, stats)| stats.snapshot(slot as u32)).collect();
        let mut snapshot = StatsSnapshot { $($name: self.$name.load(Relaxed),)* dropped: 0, slots };
        snapshot.dropped = 0 $(+ if is_drop!($kind) { snapshot.$name } else { 0 })*
          + snapshot.slots.iter().map(SlotSnapshot::dropped).sum::<u64>();
        snapshot
      }
    }
  };
}
primary_stats_fields!(define_stats);

impl Stats {
  pub fn new(slots: usize) -> Self {
    Stats { slots: (0..slots).map(|_| SlotStats::default()).collect(), ..Default::default() }
  }
}

impl SlotStats {
  /// A worker is starting in the slot (its channel opened, or it was
  /// forked): after the first, a respawn.
  pub fn worker_started(&self) {
    if self.started.swap(true, Relaxed) {
      self.respawns.fetch_add(1, Relaxed);
    }
  }

  /// The slot's worker, `pid` (0 for none).
  pub fn set_pid(&self, pid: u32) {
    self.pid.store(u64::from(pid), Relaxed);
  }

  pub fn set_live(&self, live: bool) {
    self.state.store(if live { LIVE } else { 0 }, Relaxed);
  }

  pub fn is_live(&self) -> bool {
    self.state.load(Relaxed) == LIVE
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn dropped_is_the_sum_of_every_drop_counter_of_the_primary_and_its_slots() {
    let stats = Stats::new(2);
    stats.accepted.store(100, Relaxed);
    stats.dropped_no_worker.store(1, Relaxed);
    stats.dropped_header_timeout.store(2, Relaxed);
    stats.dropped_invalid_header.store(4, Relaxed);
    stats.dropped_untrusted_proxy.store(8, Relaxed);
    stats.dropped_header_overflow.store(16, Relaxed);
    stats.closed_before_header.store(1000, Relaxed);
    stats.slots[0].dropped_queue_full.store(32, Relaxed);
    stats.slots[1].dropped_queue_full.store(64, Relaxed);
    stats.slots[1].dispatched.store(1000, Relaxed);
    assert_eq!(stats.snapshot().dropped, 127);
  }

  #[test]
  fn a_slot_counts_every_worker_started_after_its_first_as_a_respawn() {
    let stats = Stats::new(1);
    assert_eq!(stats.snapshot().slots[0].respawns, 0);
    for _ in 0..3 {
      stats.slots[0].worker_started();
    }
    stats.slots[0].set_pid(42);
    stats.slots[0].set_live(true);
    let slot = &stats.snapshot().slots[0];
    assert_eq!((slot.slot, slot.pid, SLOT_STATES[slot.state as usize], slot.respawns), (0, 42, "live", 2));
  }

  #[test]
  fn field_lists_name_every_field_once_with_a_meaning() {
    for fields in [PRIMARY_FIELDS, SLOT_FIELDS] {
      let mut names: Vec<&str> = fields.iter().map(|field| field.name).collect();
      names.sort_unstable();
      names.dedup();
      assert_eq!(names.len(), fields.len());
      assert!(fields.iter().all(|field| field.help.ends_with('.') && field.help.len() > 20));
    }
    assert_eq!(PRIMARY_FIELDS[0], DROPPED);
    assert_eq!(PRIMARY_FIELDS.len(), 15);
    assert_eq!(SLOT_FIELDS.len(), 15);
    let named: Vec<&str> =
      SLOT_FIELDS.iter().filter(|field| !field.values.is_empty()).map(|field| field.name).collect();
    assert_eq!(named, ["state"]);
    assert_eq!(SLOT_STATES[LIVE as usize], "live");
    let drops =
      |fields: &[FieldDoc]| fields.iter().filter(|field| field.dropped).map(|field| field.name).collect::<Vec<_>>();
    assert_eq!(
      drops(PRIMARY_FIELDS),
      [
        "dropped_no_worker",
        "dropped_header_timeout",
        "dropped_invalid_header",
        "dropped_untrusted_proxy",
        "dropped_header_overflow"
      ]
    );
    assert_eq!(drops(SLOT_FIELDS), ["dropped_queue_full"]);
    assert_eq!(SLOT_ALIASES, [FieldAlias { name: "acknowledged", of: "taken" }]);
    for alias in SLOT_ALIASES {
      assert!(SLOT_FIELDS.iter().any(|field| field.name == alias.of), "{alias:?} names a field");
      assert!(SLOT_FIELDS.iter().all(|field| field.name != alias.name), "{alias:?} is no field of its own");
    }
    let gauges = |fields: &[FieldDoc]| {
      fields.iter().filter(|field| field.kind == FieldKind::Gauge).map(|field| field.name).collect::<Vec<_>>()
    };
    assert_eq!(gauges(PRIMARY_FIELDS), ["parked", "reading_header"]);
    assert_eq!(gauges(SLOT_FIELDS), ["pid", "state", "pending", "sessions", "queued", "queue_limit", "held"]);
  }
}
