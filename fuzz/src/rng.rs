//! A small deterministic PRNG (xoshiro256**, seeded through SplitMix64), so a
//! run is reproducible from its seed on every platform and Rust version.

pub struct Rng {
  state: [u64; 4],
}

impl Rng {
  pub fn new(seed: u64) -> Rng {
    let mut mix = seed;
    let mut next = || {
      mix = mix.wrapping_add(0x9E37_79B9_7F4A_7C15);
      let mut z = mix;
      z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
      z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
      z ^ (z >> 31)
    };
    Rng { state: [next(), next(), next(), next()] }
  }

  /// A generator seeded from arbitrary bytes (FNV-1a), for turning a
  /// libFuzzer input into a structured case.
  pub fn from_bytes(data: &[u8]) -> Rng {
    let hash =
      data.iter().fold(0xCBF2_9CE4_8422_2325u64, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01B3));
    Rng::new(hash)
  }

  pub fn next_u64(&mut self) -> u64 {
    let [s0, s1, s2, s3] = &mut self.state;
    let result = s1.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
    let t = *s1 << 17;
    *s2 ^= *s0;
    *s3 ^= *s1;
    *s1 ^= *s2;
    *s0 ^= *s3;
    *s2 ^= t;
    *s3 = s3.rotate_left(45);
    result
  }

  /// Uniform in `0..n`; 0 when `n` is 0.
  pub fn below(&mut self, n: usize) -> usize {
    ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
  }

  /// Uniform in `low..=high`.
  pub fn range(&mut self, low: usize, high: usize) -> usize {
    low + self.below(high.saturating_sub(low).saturating_add(1))
  }

  /// True with probability `numerator / denominator`.
  pub fn chance(&mut self, numerator: usize, denominator: usize) -> bool {
    self.below(denominator) < numerator
  }

  pub fn coin(&mut self) -> bool {
    self.next_u64() & 1 == 1
  }

  pub fn byte(&mut self) -> u8 {
    self.next_u64() as u8
  }

  pub fn u16(&mut self) -> u16 {
    self.next_u64() as u16
  }

  pub fn u32(&mut self) -> u32 {
    self.next_u64() as u32
  }

  pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
    &items[self.below(items.len())]
  }

  pub fn bytes(&mut self, len: usize) -> Vec<u8> {
    (0..len).map(|_| self.byte()).collect()
  }

  /// A length in `0..=max` biased towards small values: a random bit width
  /// first, then a value of that width. Short inputs find most bugs, long
  /// ones still turn up.
  pub fn small_len(&mut self, max: usize) -> usize {
    let bits = self.below(usize::BITS as usize - max.leading_zeros() as usize + 1);
    let limit = if bits == 0 { 0 } else { (1usize << bits).min(max.saturating_add(1)) };
    self.below(limit.max(1)).min(max)
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn same_seed_same_stream() {
    let mut a = Rng::new(7);
    let mut b = Rng::new(7);
    for _ in 0..100 {
      assert_eq!(a.next_u64(), b.next_u64());
    }
  }

  #[test]
  fn bounded_helpers_stay_in_bounds() {
    let mut rng = Rng::new(1);
    for _ in 0..10_000 {
      assert!(rng.below(7) < 7);
      let value = rng.range(3, 9);
      assert!((3..=9).contains(&value));
      assert!(rng.small_len(300) <= 300);
      assert_eq!(rng.small_len(0), 0);
    }
  }
}
