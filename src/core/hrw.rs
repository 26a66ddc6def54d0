//! Rendezvous (highest random weight) hashing over stable slot ids. No I/O.
//!
//! Each slot scores every key; the key goes to the live slot with the highest
//! score. When a slot leaves, only its own keys move (each to its second
//! choice, spread evenly over the survivors); when it comes back it takes
//! exactly those keys back. Nobody else moves — the property `sticky-session`'s
//! `hash % workers.length` lacks.
//!
//! The seed is fixed by default so the mapping survives a restart of the
//! primary (it must NOT be a per-process random state).

/// A worker's stable position, `0..workers`. A respawned worker takes the slot
/// of the one it replaces, and with it that worker's clients.
pub type SlotId = u16;

/// The default seed (`6274051578553076311`), the one the product uses when
/// the user sets none: any fixed value works; this one is pinned by tests so
/// the mapping does not change between releases.
pub const DEFAULT_SEED: u64 = 0x5711_e8ab_5a22_8a57;

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 finaliser: a cheap bijective mix with full avalanche.
#[inline]
fn mix64(mut z: u64) -> u64 {
  z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
  z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
  z ^ (z >> 31)
}

/// Rendezvous hashing with a fixed seed.
#[derive(Clone, Copy, Debug)]
pub struct Rendezvous {
  seed: u64,
}

impl Default for Rendezvous {
  fn default() -> Self {
    Rendezvous::new(DEFAULT_SEED)
  }
}

impl Rendezvous {
  pub fn new(seed: u64) -> Self {
    Rendezvous { seed }
  }

  /// Hashes the bytes that identify a client (see `address::ClientKey`), once
  /// per connection; scoring a slot is then one mix.
  pub fn key_hash(&self, key: &[u8]) -> u64 {
    let mut hash = mix64(self.seed ^ (key.len() as u64).wrapping_mul(GOLDEN_GAMMA));
    for chunk in key.chunks(8) {
      let mut word = [0u8; 8];
      word[..chunk.len()].copy_from_slice(chunk);
      hash = mix64(hash ^ u64::from_le_bytes(word)).wrapping_add(GOLDEN_GAMMA);
    }
    mix64(hash)
  }

  /// The weight of `slot` for a key; the highest weight wins.
  #[inline]
  pub fn score(&self, key_hash: u64, slot: SlotId) -> u64 {
    let slot_salt = mix64((u64::from(slot) + 1).wrapping_mul(GOLDEN_GAMMA) ^ self.seed);
    mix64(key_hash ^ slot_salt)
  }

  /// The first choice among `candidates` (ties, which need a 64-bit collision,
  /// go to the lower slot id). `None` when there is no candidate.
  #[inline]
  pub fn pick(&self, key_hash: u64, candidates: &[SlotId]) -> Option<SlotId> {
    let mut best: Option<(u64, SlotId)> = None;
    for &slot in candidates {
      let score = self.score(key_hash, slot);
      match best {
        Some((best_score, best_slot))
          if (best_score, std::cmp::Reverse(best_slot)) >= (score, std::cmp::Reverse(slot)) => {}
        _ => best = Some((score, slot)),
      }
    }
    best.map(|(_, slot)| slot)
  }

  /// All candidates in order of preference: the first is `pick`'s answer, the
  /// second is where the key goes if the first is unavailable, and so on.
  pub fn ranked(&self, key_hash: u64, candidates: &[SlotId]) -> Vec<SlotId> {
    let mut scored: Vec<(u64, SlotId)> = candidates.iter().map(|&slot| (self.score(key_hash, slot), slot)).collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, slot)| slot).collect()
  }
}

/// The slots that accept connections now, rebuilt whole when membership
/// changes (rarely) and read on every connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveSlots {
  sorted: Vec<SlotId>,
}

impl LiveSlots {
  pub fn from_slots(mut slots: Vec<SlotId>) -> Self {
    slots.sort_unstable();
    slots.dedup();
    LiveSlots { sorted: slots }
  }

  pub fn as_slice(&self) -> &[SlotId] {
    &self.sorted
  }

  pub fn is_empty(&self) -> bool {
    self.sorted.is_empty()
  }

  pub fn len(&self) -> usize {
    self.sorted.len()
  }

  pub fn contains(&self, slot: SlotId) -> bool {
    self.sorted.binary_search(&slot).is_ok()
  }
}

/// Where a key goes now: rendezvous over the live slots. A value, rebuilt
/// (and swapped whole) when membership changes, never per connection; which
/// slots are live is decided by whoever builds it (the ledger: a slot whose
/// worker said hello), not here.
#[derive(Clone, Debug)]
pub struct Selection {
  hrw: Rendezvous,
  live: LiveSlots,
}

impl Selection {
  pub fn build(hrw: Rendezvous, live: Vec<SlotId>) -> Self {
    Selection { hrw, live: LiveSlots::from_slots(live) }
  }

  /// The first choice for `key_hash` among the live slots.
  #[inline]
  pub fn pick(&self, key_hash: u64) -> Option<SlotId> {
    self.hrw.pick(key_hash, self.live.as_slice())
  }

  pub fn live(&self) -> &LiveSlots {
    &self.live
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  fn ipv4_key(index: u32) -> [u8; 4] {
    // Spread like real client addresses: 10.x.y.z.
    (0x0a00_0000u32 | (index & 0x00ff_ffff)).to_be_bytes()
  }

  fn all_slots(n: u16) -> Vec<SlotId> {
    (0..n).collect()
  }

  /// A bound on the count of one slot out of `keys` keys at share `p`:
  /// mean ± 6 standard deviations of the binomial distribution.
  fn binomial_bounds(keys: usize, p: f64) -> (f64, f64) {
    let mean = keys as f64 * p;
    let sd = (keys as f64 * p * (1.0 - p)).sqrt();
    (mean - 6.0 * sd, mean + 6.0 * sd)
  }

  #[test]
  fn fixed_seed_gives_a_fixed_mapping() {
    // Pinned: if this changes, every deployed client moves worker on upgrade.
    let hrw = Rendezvous::default();
    let slots = all_slots(4);
    let picks: Vec<SlotId> = [
      &[127u8, 0, 0, 1][..],
      &[10, 0, 0, 1],
      &[192, 168, 1, 20],
      &[0u8; 16],
      &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ]
    .iter()
    .map(|key| hrw.pick(hrw.key_hash(key), &slots).unwrap())
    .collect();
    assert_eq!(picks, PINNED_PICKS);
  }
  const PINNED_PICKS: [SlotId; 5] = [0, 2, 2, 2, 2];

  #[test]
  fn the_same_seed_in_another_instance_gives_the_same_mapping() {
    let a = Rendezvous::new(42);
    let b = Rendezvous::new(42);
    let c = Rendezvous::new(43);
    let slots = all_slots(8);
    let mut differs = 0;
    for i in 0..1000 {
      let key = ipv4_key(i);
      assert_eq!(a.pick(a.key_hash(&key), &slots), b.pick(b.key_hash(&key), &slots));
      if a.pick(a.key_hash(&key), &slots) != c.pick(c.key_hash(&key), &slots) {
        differs += 1;
      }
    }
    // Another seed is another mapping: about 7/8 of keys differ.
    assert!(differs > 700, "only {differs} of 1000 keys moved with another seed");
  }

  #[test]
  fn removing_a_slot_moves_only_that_slots_keys() {
    let hrw = Rendezvous::default();
    let before = all_slots(8);
    let removed: SlotId = 3;
    let after: Vec<SlotId> = before.iter().copied().filter(|&s| s != removed).collect();
    let mut moved_to = [0usize; 8];
    let mut owned_by_removed = 0;
    for i in 0..50_000 {
      let key = hrw.key_hash(&ipv4_key(i));
      let old = hrw.pick(key, &before).unwrap();
      let new = hrw.pick(key, &after).unwrap();
      if old == removed {
        owned_by_removed += 1;
        // The new owner is the old second choice.
        assert_eq!(new, hrw.ranked(key, &before)[1]);
        moved_to[usize::from(new)] += 1;
      } else {
        assert_eq!(old, new, "key {i} moved from surviving slot {old} to {new}");
      }
    }
    // The removed slot's keys spread evenly over the 7 survivors.
    let (low, high) = binomial_bounds(owned_by_removed, 1.0 / 7.0);
    for (slot, &count) in moved_to.iter().enumerate() {
      if slot as SlotId == removed {
        assert_eq!(count, 0);
      } else {
        assert!((low..=high).contains(&(count as f64)), "slot {slot} took {count}, expected {low:.0}..{high:.0}");
      }
    }
  }

  #[test]
  fn a_respawned_slot_takes_back_exactly_its_keys() {
    let hrw = Rendezvous::default();
    let full = all_slots(5);
    let without_two: Vec<SlotId> = vec![0, 1, 3, 4];
    for i in 0..20_000 {
      let key = hrw.key_hash(&ipv4_key(i));
      let original = hrw.pick(key, &full);
      let _during_outage = hrw.pick(key, &without_two);
      assert_eq!(hrw.pick(key, &full), original);
    }
  }

  #[test]
  fn keys_balance_within_binomial_bounds() {
    let hrw = Rendezvous::default();
    for workers in [2u16, 3, 8, 32] {
      let slots = all_slots(workers);
      let keys = 100_000usize;
      let mut counts = vec![0usize; usize::from(workers)];
      for i in 0..keys as u32 {
        counts[usize::from(hrw.pick(hrw.key_hash(&ipv4_key(i)), &slots).unwrap())] += 1;
      }
      let (low, high) = binomial_bounds(keys, 1.0 / f64::from(workers));
      for (slot, &count) in counts.iter().enumerate() {
        assert!(
          (low..=high).contains(&(count as f64)),
          "{workers} workers: slot {slot} has {count}, expected {low:.0}..{high:.0}"
        );
      }
    }
  }

  #[test]
  fn sequential_loopback_addresses_spread_over_workers() {
    // The tests' clients are 127.0.0.2..: adjacent addresses must not cluster.
    let hrw = Rendezvous::default();
    let slots = all_slots(2);
    let on_zero = (2u8..=250).filter(|&last| hrw.pick(hrw.key_hash(&[127, 0, 0, last]), &slots) == Some(0)).count();
    let (low, high) = binomial_bounds(249, 0.5);
    assert!((low..=high).contains(&(on_zero as f64)), "{on_zero} of 249 on slot 0");
  }

  #[test]
  fn no_candidate_means_no_pick_without_panic() {
    let hrw = Rendezvous::default();
    assert_eq!(hrw.pick(hrw.key_hash(b"x"), &[]), None);
    assert!(hrw.ranked(hrw.key_hash(b"x"), &[]).is_empty());
  }

  #[test]
  fn a_selection_picks_among_its_live_slots_only() {
    let hrw = Rendezvous::default();
    let selection = Selection::build(hrw, vec![2, 0]);
    for i in 0..200 {
      let key = hrw.key_hash(&ipv4_key(i));
      assert_eq!(selection.pick(key), hrw.pick(key, &[0, 2]));
    }
    assert_eq!(Selection::build(hrw, vec![]).pick(7), None);
  }

  #[test]
  fn live_slots_are_sorted_and_unique() {
    let live = LiveSlots::from_slots(vec![3, 1, 3, 0]);
    assert_eq!(live.as_slice(), &[0, 1, 3]);
    assert!(live.contains(3) && !live.contains(2));
    assert_eq!(live.len(), 3);
  }

  proptest! {
    #[test]
    fn pick_is_the_head_of_ranked_and_ignores_candidate_order(key in proptest::collection::vec(any::<u8>(), 0..40), mut slots in proptest::collection::vec(0u16..64, 1..16)) {
      let hrw = Rendezvous::default();
      let hash = hrw.key_hash(&key);
      let pick = hrw.pick(hash, &slots);
      prop_assert_eq!(pick, hrw.ranked(hash, &slots).first().copied());
      slots.reverse();
      prop_assert_eq!(pick, hrw.pick(hash, &slots));
    }
  }
}
