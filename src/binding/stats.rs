//! The primary's counters as JavaScript sees them (`stats()`), and the
//! list of their fields (`statsFields()`) that metrics exporters and the
//! docs' test read. Both are generated from the field lists in
//! `core/stats.rs`.

use napi_derive::napi;

use crate::core::stats::{
  primary_stats_fields, slot_stats_fields, FieldDoc, FieldKind, SlotSnapshot, StatsSnapshot, PRIMARY_FIELDS,
  SLOT_FIELDS,
};

macro_rules! define_js_slot_stats {
  ($($kind:ident $name:ident $help:tt;)*) => {
    #[napi(object)]
    pub struct SlotStatsObject {
      pub slot: u32,
      pub pid: u32,
      /// `'live'` or `'down'`.
      pub state: String,
      pub respawns: f64,
      $(#[doc = $help] pub $name: f64,)*
    }

    fn to_js_slot_stats(slot: SlotSnapshot) -> SlotStatsObject {
      SlotStatsObject {
        slot: slot.slot,
        pid: slot.pid,
        state: if slot.live { "live".into() } else { "down".into() },
        respawns: slot.respawns as f64,
        $($name: slot.$name as f64,)*
      }
    }
  };
}
slot_stats_fields!(define_js_slot_stats);

macro_rules! define_js_stats {
  ($($kind:ident $name:ident $help:tt;)*) => {
    #[napi(object)]
    pub struct StatsObject {
      /// Every connection the primary reset, whatever the reason.
      pub dropped: f64,
      $(#[doc = $help] pub $name: f64,)*
      pub slots: Vec<SlotStatsObject>,
    }

    /// The snapshot as JavaScript sees it, with the host's listen counters
    /// read now (either mode).
    pub(super) fn to_js_stats(mut snapshot: StatsSnapshot) -> StatsObject {
      if let Some(host) = crate::netstat::read() {
        snapshot.host_listen_overflows = host.overflows;
        snapshot.host_listen_drops = host.drops;
      }
      StatsObject {
        dropped: snapshot.dropped as f64,
        $($name: snapshot.$name as f64,)*
        slots: snapshot.slots.into_iter().map(to_js_slot_stats).collect(),
      }
    }
  };
}
primary_stats_fields!(define_js_stats);

/// One field of `stats()` (`scope` `'primary'`) or of each of its `slots`
/// (`scope` `'slot'`).
#[napi(object)]
pub struct StatsField {
  /// `'primary'` or `'slot'`.
  pub scope: String,
  /// The property name in `stats()` (camelCase).
  pub name: String,
  /// `'counter'` (only grows) or `'gauge'` (a level now).
  pub kind: String,
  /// What it counts, one sentence.
  pub help: String,
  /// Counted in the total `dropped`.
  pub dropped: bool,
}

/// Every numeric field of `stats()` and of each slot (`slot`, the slot's
/// index, aside), with its kind and meaning.
#[napi]
pub fn stats_fields() -> Vec<StatsField> {
  let field = |scope: &str, doc: &FieldDoc| StatsField {
    scope: scope.into(),
    name: camel_case(doc.name),
    kind: match doc.kind {
      FieldKind::Counter => "counter".into(),
      FieldKind::Gauge => "gauge".into(),
    },
    help: doc.help.into(),
    dropped: doc.dropped,
  };
  PRIMARY_FIELDS
    .iter()
    .map(|doc| field("primary", doc))
    .chain(SLOT_FIELDS.iter().map(|doc| field("slot", doc)))
    .collect()
}

/// `dropped_queue_full` -> `droppedQueueFull`, as napi names object properties.
fn camel_case(snake: &str) -> String {
  let mut parts = snake.split('_');
  let mut name = parts.next().unwrap_or_default().to_owned();
  for part in parts {
    let mut chars = part.chars();
    if let Some(first) = chars.next() {
      name.extend(first.to_uppercase());
      name.push_str(chars.as_str());
    }
  }
  name
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn camel_case_names_fields_as_javascript_sees_them() {
    assert_eq!(camel_case("accepted"), "accepted");
    assert_eq!(camel_case("dropped_queue_full"), "droppedQueueFull");
    assert_eq!(camel_case("accept_errors"), "acceptErrors");
  }
}
