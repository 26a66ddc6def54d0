//! Which slot owns each engine.io session, and where new sessions go. No I/O.
//!
//! Workers report the sessions they open (and, when they can, close); the
//! primary routes every later request carrying `sid=` to the owner. Behind
//! slot ports (`with_slot_tags`) a worker appends its slot to each sid it
//! makes (`<sid>~<slot>`, for the proxy in front to route by), so a tagged
//! sid names its owner without a report. An entry
//! not seen for `ttl` is forgotten: a session upgraded to websocket needs no
//! more routing, and an abandoned one must not hold memory. Time is passed in
//! (milliseconds from any fixed origin) so this stays pure and testable.

use std::collections::HashMap;

use crate::core::hrw::SlotId;

/// How a new session (a request without `sid`) picks its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewSessionBalance {
  /// Fewest sessions, counting handshakes dispatched and not yet reported so a
  /// burst of handshakes spreads instead of piling onto one slot.
  LeastConnection,
  RoundRobin,
  Random,
}

/// Separates a sid from the slot a worker appends to it behind slot ports.
pub const SID_TAG_SEPARATOR: char = '~';

/// The slot a tagged sid (`<sid>~<slot>`) names, or `None` when it carries no tag.
pub fn slot_of_tagged_sid(sid: &[u8]) -> Option<SlotId> {
  let at = sid.iter().rposition(|&byte| byte == SID_TAG_SEPARATOR as u8)?;
  let digits = &sid[at + 1..];
  if at == 0 || digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
    return None;
  }
  std::str::from_utf8(digits).ok()?.parse::<SlotId>().ok()
}

#[derive(Debug, Clone, Copy)]
struct Entry {
  slot: SlotId,
  last_seen_ms: u64,
}

/// Handshakes in flight to one slot, in two generations so a sweep never
/// forgets one that is still in flight: `expire` ages `current` into
/// `previous` and drops the old `previous`. A handshake that never becomes a
/// session (its client gave up) stops counting after one to two sweeps.
#[derive(Debug, Clone, Copy, Default)]
struct Provisional {
  current: u64,
  previous: u64,
}

impl Provisional {
  fn count(self) -> u64 {
    self.current + self.previous
  }

  /// One in-flight handshake became a session.
  fn settle_one(&mut self) {
    if self.current > 0 {
      self.current -= 1;
    } else {
      self.previous = self.previous.saturating_sub(1);
    }
  }

  fn age(&mut self) {
    self.previous = std::mem::take(&mut self.current);
  }
}

#[derive(Debug)]
pub struct SessionTable {
  entries: HashMap<Box<[u8]>, Entry>,
  /// Sessions per slot (entries owned).
  owned: Vec<u64>,
  /// Handshakes sent to each slot whose session has not been reported yet.
  provisional: Vec<Provisional>,
  max_entries: usize,
  ttl_ms: u64,
  balance: NewSessionBalance,
  round_robin_next: usize,
  random_state: u64,
  /// Tagged sids name their slot (`with_slot_tags`).
  slot_tags: bool,
}

impl SessionTable {
  pub fn new(slots: u16, balance: NewSessionBalance, ttl_ms: u64, max_entries: usize, random_seed: u64) -> Self {
    SessionTable {
      entries: HashMap::new(),
      owned: vec![0; usize::from(slots)],
      provisional: vec![Provisional::default(); usize::from(slots)],
      max_entries,
      ttl_ms,
      balance,
      round_robin_next: 0,
      // xorshift must not start at zero.
      random_state: random_seed | 1,
      slot_tags: false,
    }
  }

  /// Slot ports: a sid tagged with a slot of this table routes to that slot,
  /// reported or not.
  pub fn with_slot_tags(mut self) -> Self {
    self.slot_tags = true;
    self
  }

  /// The slot `sid`'s tag names, when tags are on and the slot exists.
  fn tagged_slot(&self, sid: &[u8]) -> Option<SlotId> {
    if !self.slot_tags {
      return None;
    }
    slot_of_tagged_sid(sid).filter(|&slot| usize::from(slot) < self.owned.len())
  }

  pub fn len(&self) -> usize {
    self.entries.len()
  }

  pub fn is_empty(&self) -> bool {
    self.entries.is_empty()
  }

  pub fn sessions_of(&self, slot: SlotId) -> u64 {
    self.owned.get(usize::from(slot)).copied().unwrap_or(0)
  }

  /// Whether `sid` has an entry (without refreshing it).
  pub fn contains(&self, sid: &[u8]) -> bool {
    self.entries.contains_key(sid) || self.tagged_slot(sid).is_some()
  }

  /// The slot that owns `sid`, refreshing the entry.
  pub fn lookup(&mut self, sid: &[u8], now_ms: u64) -> Option<SlotId> {
    let Some(entry) = self.entries.get_mut(sid) else { return self.tagged_slot(sid) };
    entry.last_seen_ms = now_ms;
    Some(entry.slot)
  }

  /// A worker reported a session it opened. Returns false when the table is
  /// full (the session then routes as unknown: its client reconnects).
  ///
  /// A session may be reported more than once (`setupWorker` reports it from
  /// the handshake response and again from engine.io's `connection` event):
  /// only its first report settles an in-flight handshake, so the others'
  /// provisional counts stay and least-connection keeps spreading a burst.
  pub fn open(&mut self, sid: &[u8], slot: SlotId, now_ms: u64) -> bool {
    let index = usize::from(slot);
    if index >= self.owned.len() {
      return false;
    }
    let full = self.entries.len() >= self.max_entries;
    match self.entries.get_mut(sid) {
      Some(entry) if entry.slot == slot => {
        entry.last_seen_ms = now_ms;
        return true;
      }
      Some(entry) => {
        let moved_from = std::mem::replace(&mut entry.slot, slot);
        entry.last_seen_ms = now_ms;
        self.release(moved_from);
      }
      None if full => return false,
      None => {
        self.provisional[index].settle_one();
        self.entries.insert(sid.into(), Entry { slot, last_seen_ms: now_ms });
      }
    }
    self.owned[index] += 1;
    true
  }

  pub fn close(&mut self, sid: &[u8]) {
    if let Some(entry) = self.entries.remove(sid) {
      self.release(entry.slot);
    }
  }

  fn release(&mut self, slot: SlotId) {
    if let Some(count) = self.owned.get_mut(usize::from(slot)) {
      *count = count.saturating_sub(1);
    }
  }

  /// Forgets every session of a slot whose worker is gone.
  pub fn forget_slot(&mut self, slot: SlotId) {
    self.entries.retain(|_, entry| entry.slot != slot);
    if let Some(count) = self.owned.get_mut(usize::from(slot)) {
      *count = 0;
    }
    if let Some(count) = self.provisional.get_mut(usize::from(slot)) {
      *count = Provisional::default();
    }
  }

  /// Forgets entries idle for longer than the TTL, and ages the provisional
  /// counts (a handshake still unreported after two sweeps never will be).
  pub fn expire(&mut self, now_ms: u64) {
    let ttl = self.ttl_ms;
    let mut released = Vec::new();
    self.entries.retain(|_, entry| {
      let keep = now_ms.saturating_sub(entry.last_seen_ms) <= ttl;
      if !keep {
        released.push(entry.slot);
      }
      keep
    });
    for slot in released {
      self.release(slot);
    }
    self.provisional.iter_mut().for_each(Provisional::age);
  }

  /// The slot for a new session among `live` (sorted slot ids).
  /// `is_handshake` counts it provisionally for least-connection.
  pub fn pick_new(&mut self, live: &[SlotId], is_handshake: bool) -> Option<SlotId> {
    if live.is_empty() {
      return None;
    }
    let slot = match self.balance {
      NewSessionBalance::LeastConnection => {
        let load = |slot: &SlotId| self.owned[usize::from(*slot)] + self.provisional[usize::from(*slot)].count();
        // Among the least loaded, rotate, so equal loads do not all pick the lowest id.
        let least = live.iter().map(load).min()?;
        let tied: Vec<SlotId> = live.iter().copied().filter(|slot| load(slot) == least).collect();
        let slot = tied[self.round_robin_next % tied.len()];
        self.round_robin_next = self.round_robin_next.wrapping_add(1);
        slot
      }
      NewSessionBalance::RoundRobin => {
        let slot = live[self.round_robin_next % live.len()];
        self.round_robin_next = self.round_robin_next.wrapping_add(1);
        slot
      }
      NewSessionBalance::Random => {
        // xorshift64: uniform enough to spread sessions; not for secrets.
        let mut x = self.random_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random_state = x;
        live[(x % live.len() as u64) as usize]
      }
    };
    if is_handshake {
      self.provisional[usize::from(slot)].current += 1;
    }
    Some(slot)
  }
}

#[cfg(test)]
mod tests {
  use proptest::prelude::*;

  use super::*;

  fn table(balance: NewSessionBalance) -> SessionTable {
    SessionTable::new(3, balance, 1_000, 100, 7)
  }

  #[test]
  fn a_reported_session_routes_to_its_slot_until_it_expires() {
    let mut sessions = table(NewSessionBalance::LeastConnection);
    assert!(sessions.open(b"abc", 2, 0));
    assert_eq!(sessions.lookup(b"abc", 900), Some(2));
    sessions.expire(1_800);
    assert_eq!(sessions.lookup(b"abc", 1_800), Some(2), "seen at 900, so alive at 1800");
    sessions.expire(2_901);
    assert_eq!(sessions.lookup(b"abc", 2_901), None);
    assert_eq!(sessions.sessions_of(2), 0);
  }

  #[test]
  fn a_burst_of_handshakes_spreads_over_slots_with_least_connection() {
    let mut sessions = table(NewSessionBalance::LeastConnection);
    let picks: Vec<SlotId> = (0..6).map(|_| sessions.pick_new(&[0, 1, 2], true).unwrap()).collect();
    let mut counts = [0; 3];
    picks.iter().for_each(|&slot| counts[usize::from(slot)] += 1);
    assert_eq!(counts, [2, 2, 2], "{picks:?}");
  }

  #[test]
  fn least_connection_prefers_the_slot_with_fewest_sessions() {
    let mut sessions = table(NewSessionBalance::LeastConnection);
    for sid in [&b"a"[..], b"b", b"c"] {
      sessions.open(sid, 0, 0);
    }
    sessions.open(b"d", 1, 0);
    assert_eq!(sessions.pick_new(&[0, 1, 2], true), Some(2));
    sessions.close(b"d");
    assert_eq!(sessions.sessions_of(1), 0);
    assert_eq!(sessions.pick_new(&[0, 1], true), Some(1));
  }

  #[test]
  fn round_robin_and_random_use_only_live_slots() {
    let mut rr = table(NewSessionBalance::RoundRobin);
    let picks: Vec<SlotId> = (0..4).map(|_| rr.pick_new(&[0, 2], false).unwrap()).collect();
    assert_eq!(picks, vec![0, 2, 0, 2]);
    let mut random = table(NewSessionBalance::Random);
    let mut seen = [false; 3];
    for _ in 0..100 {
      seen[usize::from(random.pick_new(&[1, 2], false).unwrap())] = true;
    }
    assert_eq!(seen, [false, true, true]);
    assert_eq!(random.pick_new(&[], false), None);
  }

  #[test]
  fn a_dead_slot_s_sessions_are_forgotten() {
    let mut sessions = table(NewSessionBalance::LeastConnection);
    sessions.open(b"x", 1, 0);
    sessions.open(b"y", 2, 0);
    sessions.forget_slot(1);
    assert_eq!(sessions.lookup(b"x", 0), None);
    assert_eq!(sessions.lookup(b"y", 0), Some(2));
    assert_eq!(sessions.len(), 1);
  }

  #[test]
  fn a_full_table_refuses_new_sessions_without_growing() {
    let mut sessions = SessionTable::new(1, NewSessionBalance::RoundRobin, 1_000, 2, 1);
    assert!(sessions.open(b"1", 0, 0));
    assert!(sessions.open(b"2", 0, 0));
    assert!(!sessions.open(b"3", 0, 0));
    assert!(sessions.open(b"2", 0, 5), "re-reporting a known session is not growth");
    assert_eq!(sessions.len(), 2);
    assert!(!sessions.open(b"x", 9, 0), "an out-of-range slot is refused");
  }

  #[test]
  fn a_tagged_sid_names_its_slot_only_when_tags_are_on_and_the_slot_exists() {
    assert_eq!(slot_of_tagged_sid(b"abc~2"), Some(2));
    assert_eq!(slot_of_tagged_sid(b"a~b~12"), Some(12));
    for untagged in [&b"abc"[..], b"abc~", b"~2", b"abc~x2", b"abc~123456", b"abc~99999"] {
      assert_eq!(slot_of_tagged_sid(untagged), None, "{:?}", String::from_utf8_lossy(untagged));
    }
    let mut plain = SessionTable::new(3, NewSessionBalance::RoundRobin, 1_000, 10, 1);
    assert_eq!(plain.lookup(b"abc~1", 0), None);
    assert!(!plain.contains(b"abc~1"));
    let mut tagged = SessionTable::new(3, NewSessionBalance::RoundRobin, 1_000, 10, 1).with_slot_tags();
    assert_eq!(tagged.lookup(b"abc~1", 0), Some(1));
    assert!(tagged.contains(b"abc~2"));
    assert_eq!(tagged.lookup(b"abc~3", 0), None);
    assert_eq!(tagged.lookup(b"abc", 0), None);
    // A reported session is its report's, tag or not.
    assert!(tagged.open(b"def~0", 2, 0));
    assert_eq!(tagged.lookup(b"def~0", 0), Some(2));
  }

  #[test]
  fn a_session_reported_twice_settles_one_handshake_only() {
    let mut sessions = SessionTable::new(2, NewSessionBalance::LeastConnection, 1_000, 100, 1);
    // Four handshakes in flight, two per slot; slot 0's first one reports its
    // session twice (response, then engine.io's `connection` event).
    let picks: Vec<SlotId> = (0..4).map(|_| sessions.pick_new(&[0, 1], true).unwrap()).collect();
    assert_eq!(picks, vec![0, 1, 0, 1]);
    assert!(sessions.open(b"s0", 0, 0));
    assert!(sessions.open(b"s0", 0, 1));
    assert_eq!(sessions.sessions_of(0), 1);
    // Slot 0 still has one handshake in flight, as slot 1 has two: a tie, not slot 0.
    let next: Vec<SlotId> = (0..2).map(|_| sessions.pick_new(&[0, 1], true).unwrap()).collect();
    assert!(next.contains(&0) && next.contains(&1), "{next:?}");
  }

  #[test]
  fn a_handshake_in_flight_at_a_sweep_still_counts_and_is_forgotten_after_the_next() {
    let mut sessions = SessionTable::new(2, NewSessionBalance::LeastConnection, 1_000, 100, 1);
    assert_eq!(sessions.pick_new(&[0, 1], true), Some(0));
    sessions.expire(10);
    assert_eq!(sessions.pick_new(&[0, 1], true), Some(1), "slot 0's handshake still counts");
    assert!(sessions.open(b"a", 0, 20));
    sessions.expire(30);
    sessions.expire(40);
    // Slot 0 owns a session; slot 1's handshake never reported and is forgotten.
    assert_eq!(sessions.pick_new(&[0, 1], true), Some(1));
  }

  #[test]
  fn a_session_reported_by_another_slot_moves_there() {
    let mut sessions = table(NewSessionBalance::LeastConnection);
    assert!(sessions.open(b"m", 0, 0));
    assert!(sessions.open(b"m", 2, 0));
    assert_eq!((sessions.sessions_of(0), sessions.sessions_of(2)), (0, 1));
    assert_eq!(sessions.lookup(b"m", 0), Some(2));
  }

  /// One step of a burst: a new handshake, or a (re-)report of one picked earlier.
  #[derive(Debug, Clone)]
  enum Step {
    Handshake,
    Report(usize),
  }

  proptest! {
    /// However handshakes and their reports interleave, and however often each
    /// session is reported, a burst of handshakes lands evenly: every pick
    /// goes to a slot with the least handshakes so far.
    #[test]
    fn a_burst_spreads_evenly_whatever_the_report_order(
      slots in 1u16..5,
      steps in proptest::collection::vec(prop_oneof![Just(Step::Handshake), (0usize..64).prop_map(Step::Report)], 1..120),
    ) {
      let live: Vec<SlotId> = (0..slots).collect();
      let mut sessions = SessionTable::new(slots, NewSessionBalance::LeastConnection, 60_000, 1_000, 1);
      let mut picked: Vec<SlotId> = Vec::new();
      let mut handshakes = vec![0u64; usize::from(slots)];
      for step in steps {
        match step {
          Step::Handshake => {
            let slot = sessions.pick_new(&live, true).unwrap();
            let fewest = *handshakes.iter().min().unwrap();
            prop_assert_eq!(handshakes[usize::from(slot)], fewest, "picked {} with {:?}", slot, handshakes);
            handshakes[usize::from(slot)] += 1;
            picked.push(slot);
          }
          Step::Report(index) if !picked.is_empty() => {
            let index = index % picked.len();
            let sid = format!("sid{index}");
            prop_assert!(sessions.open(sid.as_bytes(), picked[index], 0));
          }
          Step::Report(_) => {}
        }
      }
    }
  }
}
