//! The primary's counters as JavaScript sees them (`stats()`), and the
//! list of their fields (`statsFields()`) that metrics exporters and the
//! docs' test read. Both are generated from the field lists in
//! `core/stats.rs`.

use napi_derive::napi;

use crate::core::stats::{
  primary_stats_fields, slot_stats_fields, FieldDoc, FieldKind, SlotSnapshot, StatsSnapshot, ALIASES_REMOVED_IN,
  PRIMARY_FIELDS, SLOT_ALIASES, SLOT_FIELDS, SLOT_STATES,
};

/// A slot field's value as JavaScript sees it: a number, or the name of a
/// `state`.
macro_rules! js_value {
  (state, $value:expr) => {
    SLOT_STATES.get(usize::try_from($value).unwrap_or(usize::MAX)).copied().unwrap_or_default().to_owned()
  };
  ($kind:ident, $value:expr) => {
    $value as f64
  };
}

/// `SlotStatsObject`, one field at a time (a `state` is its name, typed by
/// its values; the rest are numbers), then `to_js_slot_stats`.
macro_rules! define_js_slot_stats {
  (@fields [$($done:tt)*] state $name:ident $help:tt; $($rest:tt)*) => {
    define_js_slot_stats!(@fields [$($done)* #[doc = $help] #[napi(ts_type = "'live' | 'down'")] pub $name: String,] $($rest)*);
  };
  (@fields [$($done:tt)*] $kind:ident $name:ident $help:tt was $old:ident; $($rest:tt)*) => {
    define_js_slot_stats!(@fields [$($done)*
      #[doc = $help] pub $name: f64,
      /// @deprecated The old name of a renamed field, with its value
      /// (`statsFields()` names the field in its `aliasOf`); kept for one
      /// minor version.
      pub $old: f64,
    ] $($rest)*);
  };
  (@fields [$($done:tt)*] $kind:ident $name:ident $help:tt; $($rest:tt)*) => {
    define_js_slot_stats!(@fields [$($done)* #[doc = $help] pub $name: f64,] $($rest)*);
  };
  (@fields [$($field:tt)*]) => {
    #[napi(object)]
    pub struct SlotStatsObject {
      /// The slot's index.
      pub slot: u32,
      $($field)*
    }
  };
  ($($kind:ident $name:ident $help:tt $(was $old:ident)?;)*) => {
    define_js_slot_stats!(@fields [] $($kind $name $help $(was $old)?;)*);

    fn to_js_slot_stats(slot: SlotSnapshot) -> SlotStatsObject {
      SlotStatsObject {
        slot: slot.slot,
        $($name: js_value!($kind, slot.$name),)*
        $($($old: slot.$name as f64,)?)*
      }
    }
  };
}
slot_stats_fields!(define_js_slot_stats);

macro_rules! define_js_stats {
  ($($kind:ident $name:ident $help:tt $(was $old:ident)?;)*) => {
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
  /// The same in snake_case, as Prometheus names metrics: the name the
  /// field has in Rust.
  pub snake_name: String,
  /// `'counter'` (only grows) or `'gauge'` (a level now).
  pub kind: String,
  /// What it counts, one sentence.
  pub help: String,
  /// Counted in the total `dropped`.
  pub dropped: bool,
  /// A gauge whose values have names (a slot's `state`): `stats()` shows
  /// the name at the value's index, a metric the index.
  pub values: Option<Vec<String>>,
  /// Set on a renamed field's old name, kept for one minor version: the
  /// field it names now (same value). Absent on every other field.
  pub alias_of: Option<String>,
}

/// Every field of `stats()` and of each slot (`slot`, the slot's index,
/// aside), with its kind and meaning; a renamed field's old name right
/// after the field (with `aliasOf`).
#[napi]
pub fn stats_fields() -> Vec<StatsField> {
  let field = |scope: &str, doc: &FieldDoc| StatsField {
    scope: scope.into(),
    name: camel_case(doc.name),
    snake_name: doc.name.into(),
    kind: match doc.kind {
      FieldKind::Counter => "counter".into(),
      FieldKind::Gauge => "gauge".into(),
    },
    help: doc.help.into(),
    dropped: doc.dropped,
    values: (!doc.values.is_empty()).then(|| doc.values.iter().map(|value| (*value).to_owned()).collect()),
    alias_of: None,
  };
  let with_old_names = |doc: &FieldDoc| {
    let aliases = SLOT_ALIASES.iter().filter(|alias| alias.of == doc.name).map(|alias| StatsField {
      name: camel_case(alias.name),
      snake_name: alias.name.into(),
      help: format!(
        "Deprecated, removed in {ALIASES_REMOVED_IN}: `{}` under its old name (the same value).",
        camel_case(alias.of)
      ),
      dropped: false,
      alias_of: Some(camel_case(alias.of)),
      ..field("slot", doc)
    });
    std::iter::once(field("slot", doc)).chain(aliases).collect::<Vec<_>>()
  };
  PRIMARY_FIELDS.iter().map(|doc| field("primary", doc)).chain(SLOT_FIELDS.iter().flat_map(with_old_names)).collect()
}

/// `dropped_queue_full` -> `droppedQueueFull`, as napi names object
/// properties: the one conversion between the two spellings (`statsFields()`
/// gives both).
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

  #[test]
  fn a_renamed_slot_field_keeps_its_old_name_right_after_it_with_the_same_kind() {
    let fields = stats_fields();
    let taken = fields.iter().position(|field| field.scope == "slot" && field.name == "taken").expect("taken");
    let old = &fields[taken + 1];
    assert_eq!(
      (old.name.as_str(), old.alias_of.as_deref(), old.kind.as_str()),
      ("acknowledged", Some("taken"), "counter")
    );
    assert!(old.help.starts_with("Deprecated, removed in 0.2.0"), "{}", old.help);
    assert_eq!(fields.iter().filter(|field| field.alias_of.is_some()).count(), SLOT_ALIASES.len());
  }
}
