//! Byte-level mutations shared by all targets: bit flips, byte changes,
//! insertions of the bytes parsers care about (CR, LF, NUL, space, `:`, `[`,
//! `]`, `%`, ...), deletions, duplications, truncations, dictionary splices,
//! numbers at the edges of their ranges, and huge repetitions.

use crate::rng::Rng;

/// Bytes that are delimiters or edge cases in at least one of the parsers.
pub const SPECIAL_BYTES: &[u8] = b"\r\n\0 :[]%,;\"=&?#./\\\t-_~+019afAFxX\x7f\x80\xc3\xff";

/// Numbers at the edges of octet, port, length and integer ranges.
pub const NUMBERS: &[&[u8]] = &[
  b"0",
  b"00",
  b"1",
  b"01",
  b"9",
  b"255",
  b"256",
  b"999",
  b"1000",
  b"4095",
  b"4096",
  b"65535",
  b"65536",
  b"99999",
  b"100000",
  b"4294967295",
  b"4294967296",
  b"18446744073709551615",
  b"18446744073709551616",
  b"-1",
  b"+1",
  b"1e3",
  b"0x10",
];

/// Applies 1 to 4 random mutations to `data`, keeping it at most `max_len`
/// bytes long. `dictionary` holds tokens of the target's syntax.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, dictionary: &[&[u8]], max_len: usize) {
  let rounds = rng.range(1, 4);
  for _ in 0..rounds {
    mutate_once(rng, data, dictionary, max_len);
  }
  data.truncate(max_len);
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, dictionary: &[&[u8]], max_len: usize) {
  let len = data.len();
  match rng.below(13) {
    // Flip one bit.
    0 if len > 0 => {
      let at = rng.below(len);
      data[at] ^= 1 << rng.below(8);
    }
    // Overwrite a byte with a random or special one.
    1 if len > 0 => {
      let at = rng.below(len);
      data[at] = if rng.coin() { rng.byte() } else { *rng.pick(SPECIAL_BYTES) };
    }
    // Insert a special byte.
    2 => {
      let at = rng.below(len + 1);
      data.insert(at, *rng.pick(SPECIAL_BYTES));
    }
    // Insert a random byte.
    3 => {
      let at = rng.below(len + 1);
      data.insert(at, rng.byte());
    }
    // Delete a short range.
    4 if len > 0 => {
      let at = rng.below(len);
      let count = rng.range(1, 8).min(len - at);
      data.drain(at..at + count);
    }
    // Duplicate a range somewhere else.
    5 if len > 0 => {
      let start = rng.below(len);
      let count = rng.range(1, 32).min(len - start);
      let copy = data[start..start + count].to_vec();
      let at = rng.below(len + 1);
      data.splice(at..at, copy);
    }
    // Truncate.
    6 if len > 0 => {
      data.truncate(rng.below(len));
    }
    // Splice in a dictionary token, inserted or overwriting.
    7 | 8 if !dictionary.is_empty() => {
      let token = *rng.pick(dictionary);
      let at = rng.below(len + 1);
      if rng.coin() {
        data.splice(at..at, token.iter().copied());
      } else {
        let end = (at + token.len()).min(len);
        data.splice(at..end, token.iter().copied());
      }
    }
    // Replace a run of digits (or insert) with an edge-case number.
    9 => {
      let number = *rng.pick(NUMBERS);
      match (0..len).filter(|&at| data[at].is_ascii_digit()).nth(rng.below(8)) {
        Some(start) => {
          let end = (start..len).find(|&at| !data[at].is_ascii_digit()).unwrap_or(len);
          data.splice(start..end, number.iter().copied());
        }
        None => {
          let at = rng.below(len + 1);
          data.splice(at..at, number.iter().copied());
        }
      }
    }
    // Swap two bytes.
    10 if len > 1 => {
      let a = rng.below(len);
      let b = rng.below(len);
      data.swap(a, b);
    }
    // Huge: repeat a range (or a special byte) until the input is long.
    11 if rng.chance(1, 8) => {
      let unit = if len > 0 && rng.coin() {
        let start = rng.below(len);
        let count = rng.range(1, 16).min(len - start);
        data[start..start + count].to_vec()
      } else {
        vec![*rng.pick(SPECIAL_BYTES)]
      };
      let target = rng.range(len, max_len);
      let at = rng.below(len + 1);
      let mut filler = Vec::with_capacity(target.saturating_sub(len));
      while len + filler.len() < target {
        filler.extend_from_slice(&unit);
      }
      data.splice(at..at, filler);
    }
    // Append random bytes.
    _ => {
      let count = rng.small_len(16);
      let extra = rng.bytes(count);
      data.extend_from_slice(&extra);
    }
  }
}

/// Lower-case hex, no separators.
pub fn to_hex(bytes: &[u8]) -> String {
  bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Parses hex written by [`to_hex`]; whitespace is ignored.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
  let digits: Vec<u8> = text.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
  if !digits.len().is_multiple_of(2) {
    return None;
  }
  digits
    .chunks(2)
    .map(|pair| std::str::from_utf8(pair).ok().and_then(|pair| u8::from_str_radix(pair, 16).ok()))
    .collect()
}

/// A printable rendering of bytes for messages: `\r`, `\n`, `\t`, `\\` and
/// `\xNN` escapes, at most `max` bytes followed by `...`.
pub fn escape(bytes: &[u8], max: usize) -> String {
  let mut out = String::new();
  for &byte in bytes.iter().take(max) {
    match byte {
      b'\r' => out.push_str("\\r"),
      b'\n' => out.push_str("\\n"),
      b'\t' => out.push_str("\\t"),
      b'\\' => out.push_str("\\\\"),
      0x20..=0x7e => out.push(char::from(byte)),
      _ => out.push_str(&format!("\\x{byte:02x}")),
    }
  }
  if bytes.len() > max {
    out.push_str(&format!("... ({} bytes)", bytes.len()));
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn hex_round_trips() {
    let bytes: Vec<u8> = (0..=255).collect();
    assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
    assert_eq!(from_hex("0"), None);
  }

  #[test]
  fn mutations_respect_the_length_cap() {
    let mut rng = Rng::new(3);
    for _ in 0..10_000 {
      let mut data = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec();
      mutate(&mut rng, &mut data, &[b"TCP6"], 200);
      assert!(data.len() <= 200);
    }
  }
}
