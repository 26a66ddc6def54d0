//! `decode_handoff` and `decode_reply` (the hand-off channel records).
//!
//! Invariants: `encode_handoff`/`encode_reply` then decode gives back the
//! record (round trip); for any bytes the decoders return exactly what the
//! record layout in `wire.rs` prescribes (length checked first, then version,
//! then kind, then a handoff's exact length, then family or session id), and
//! re-encoding a decoded record reproduces its meaningful bytes (reserved
//! bytes zeroed).

use crate::gen;
use crate::mutate::{self, escape};
use crate::{Checked, Cx, Outcome, Rng, Target, Violation};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use sticky_session_rs::wire::{
  decode_handoff, decode_reply, encode_handoff, encode_reply, Handoff, Reply, WireError, HANDOFF_LEN,
  MAX_SESSION_ID_LEN, PROTOCOL_VERSION,
};

const DICTIONARY: &[&[u8]] =
  &[b"\x01\x01", b"\x01\x10", b"\x01\x11", b"\x01\x12", b"\x01\x13", b"\x04", b"\x06", b"\x00"];

/// Random bytes whose first two bytes are often a valid version and kind.
fn random_record(rng: &mut Rng, kinds: &[u8]) -> Vec<u8> {
  let len = if rng.chance(1, 32) { rng.range(0, 20_000) } else { rng.small_len(300) };
  let mut bytes = rng.bytes(len);
  if bytes.len() >= 2 && rng.chance(2, 3) {
    bytes[0] = if rng.chance(7, 8) { PROTOCOL_VERSION } else { rng.byte() };
    bytes[1] = *rng.pick(kinds);
  }
  bytes
}

// ---------------------------------------------------------------------------
// Handoff

pub struct DecodeHandoffTarget;

#[derive(Debug)]
pub struct HandoffCase {
  pub bytes: Vec<u8>,
  /// For encoded records: what was encoded.
  pub expect: Option<Handoff>,
}

fn handoff(rng: &mut Rng) -> Handoff {
  let seq = match rng.below(4) {
    0 => *rng.pick(&[0, 1, u64::MAX, u64::from(u32::MAX) + 1]),
    _ => rng.next_u64(),
  };
  let client = match rng.below(3) {
    0 => None,
    1 => {
      let ip = IpAddr::V4(gen::ipv4(rng));
      Some(gen::socket_addr(rng, ip))
    }
    _ => {
      let ip = IpAddr::V6(gen::ipv6(rng));
      Some(gen::socket_addr(rng, ip))
    }
  };
  Handoff { seq, client }
}

/// The decoder as the record layout prescribes it.
fn model_handoff(record: &[u8]) -> Result<Handoff, WireError> {
  if record.len() < HANDOFF_LEN {
    return Err(WireError::TooShort { kind: "handoff", len: record.len(), expected: HANDOFF_LEN });
  }
  if record[0] != PROTOCOL_VERSION {
    return Err(WireError::Version { found: record[0] });
  }
  if record[1] != 1 {
    return Err(WireError::UnknownKind { kind: record[1] });
  }
  if record.len() != HANDOFF_LEN {
    return Err(WireError::HandoffLength { len: record.len() });
  }
  let seq = u64::from_le_bytes(record[4..12].try_into().unwrap_or_default());
  let port = u16::from_le_bytes([record[14], record[15]]);
  let mut v6 = [0u8; 16];
  v6.copy_from_slice(&record[16..32]);
  let client = match record[12] {
    0 => None,
    4 => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(record[16], record[17], record[18], record[19])), port)),
    6 => Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(v6)), port)),
    family => return Err(WireError::Family { family }),
  };
  Ok(Handoff { seq, client })
}

impl Target for DecodeHandoffTarget {
  const NAME: &'static str = "decode_handoff";
  const FUNCTIONS: &'static str = "decode_handoff (+ encode_handoff round trips)";
  type Case = HandoffCase;

  fn generate(rng: &mut Rng) -> HandoffCase {
    match rng.below(10) {
      0..=2 => HandoffCase { bytes: random_record(rng, &[1, 1, 1, 0, 2, 0x10, 0xff]), expect: None },
      3..=6 => {
        let handoff = handoff(rng);
        let mut bytes = Vec::new();
        encode_handoff(&handoff, &mut bytes);
        HandoffCase { bytes, expect: Some(handoff) }
      }
      _ => {
        let mut bytes = Vec::new();
        encode_handoff(&handoff(rng), &mut bytes);
        if rng.chance(1, 4) {
          // Trailing bytes: a record from a build that forwarded some.
          let extra = rng.small_len(200).max(1);
          bytes.extend(rng.bytes(extra));
        } else if rng.coin() {
          // Aim at the header bytes.
          let at = rng.below(HANDOFF_LEN);
          bytes[at] = if rng.coin() { rng.byte() } else { *rng.pick(&[0, 1, 4, 6, 0xff]) };
        } else {
          mutate::mutate(rng, &mut bytes, DICTIONARY, 20_000);
        }
        HandoffCase { bytes, expect: None }
      }
    }
  }

  fn parts(case: &HandoffCase) -> Vec<Vec<u8>> {
    vec![case.bytes.clone()]
  }

  fn from_parts(mut parts: Vec<Vec<u8>>) -> HandoffCase {
    HandoffCase { bytes: parts.drain(..).next().unwrap_or_default(), expect: None }
  }

  fn check(case: &HandoffCase, cx: &mut Cx) -> Checked {
    let bytes = &case.bytes[..];
    let got = cx.call(decode_handoff(bytes));
    let expected = model_handoff(bytes);
    if got != expected {
      return Err(Violation::on(bytes, format!("decode_handoff gave {got:?}, the record layout gives {expected:?}")));
    }
    if let Some(round_trip) = &case.expect {
      if got.as_ref() != Ok(round_trip) {
        return Err(Violation::on(bytes, format!("encoded {round_trip:?}, decoded {got:?}")));
      }
    }
    let Ok(handoff) = got else {
      return Ok(Outcome::Invalid);
    };
    let mut encoded = Vec::new();
    encode_handoff(&handoff, &mut encoded);
    let mut meaningful = bytes.to_vec();
    let reserved: &[std::ops::Range<usize>] = match handoff.client {
      None => &[2..4, 13..48],
      Some(SocketAddr::V4(_)) => &[2..4, 13..14, 20..48],
      Some(SocketAddr::V6(_)) => &[2..4, 13..14, 32..48],
    };
    for range in reserved {
      meaningful[range.clone()].fill(0);
    }
    if encoded != meaningful {
      return Err(Violation::on(bytes, format!("re-encoding gives {}", escape(&encoded, 200))));
    }
    Ok(Outcome::Complete)
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let bytes = parts.first().map(Vec::as_slice).unwrap_or_default();
    format!("decode_handoff({}) = {:?}", escape(bytes, 200), decode_handoff(bytes))
  }
}

// ---------------------------------------------------------------------------
// Replies

pub struct DecodeReplyTarget;

#[derive(Debug)]
pub struct ReplyCase {
  pub bytes: Vec<u8>,
  /// For encoded records: the encoded reply, as its record.
  pub expect: Option<Vec<u8>>,
}

fn reply_record(rng: &mut Rng) -> Vec<u8> {
  let sid_len = if rng.chance(1, 8) { *rng.pick(&[1, MAX_SESSION_ID_LEN]) } else { rng.range(1, 40) };
  let sid = rng.bytes(sid_len);
  let reply = match rng.below(4) {
    0 => Reply::Hello { pid: rng.u32() },
    1 => Reply::Ack { up_to: rng.next_u64() },
    2 => Reply::SessionOpened { sid: &sid },
    _ => Reply::SessionClosed { sid: &sid },
  };
  encode_reply(reply)
}

/// The decoder as the record layout prescribes it.
fn model_reply(record: &[u8]) -> Result<Reply<'_>, WireError> {
  let header = |kind: &'static str, expected: usize| {
    if record.len() < expected {
      Err(WireError::TooShort { kind, len: record.len(), expected })
    } else if record[0] != PROTOCOL_VERSION {
      Err(WireError::Version { found: record[0] })
    } else {
      Ok(())
    }
  };
  match record.get(1) {
    None => Err(WireError::TooShort { kind: "reply", len: record.len(), expected: 2 }),
    Some(0x10) => header("hello", 8)
      .map(|()| Reply::Hello { pid: u32::from_le_bytes([record[4], record[5], record[6], record[7]]) }),
    Some(0x11) => {
      header("ack", 12).map(|()| Reply::Ack { up_to: u64::from_le_bytes(record[4..12].try_into().unwrap_or_default()) })
    }
    Some(&kind @ (0x12 | 0x13)) => {
      header("session", 4)?;
      let sid = &record[4..];
      if sid.is_empty() || sid.len() > MAX_SESSION_ID_LEN {
        return Err(WireError::SessionId { len: sid.len() });
      }
      Ok(if kind == 0x12 { Reply::SessionOpened { sid } } else { Reply::SessionClosed { sid } })
    }
    Some(&kind) => Err(WireError::UnknownKind { kind }),
  }
}

impl Target for DecodeReplyTarget {
  const NAME: &'static str = "decode_reply";
  const FUNCTIONS: &'static str = "decode_reply (+ encode_reply round trips)";
  type Case = ReplyCase;

  fn generate(rng: &mut Rng) -> ReplyCase {
    match rng.below(10) {
      0..=2 => {
        let mut bytes = random_record(rng, &[0x10, 0x11, 0x12, 0x13, 1, 0, 0xff]);
        if rng.coin() {
          bytes.truncate(rng.small_len(20));
        }
        ReplyCase { bytes, expect: None }
      }
      3..=6 => {
        let bytes = reply_record(rng);
        ReplyCase { bytes: bytes.clone(), expect: Some(bytes) }
      }
      _ => {
        let mut bytes = reply_record(rng);
        mutate::mutate(rng, &mut bytes, DICTIONARY, 600);
        ReplyCase { bytes, expect: None }
      }
    }
  }

  fn parts(case: &ReplyCase) -> Vec<Vec<u8>> {
    vec![case.bytes.clone()]
  }

  fn from_parts(mut parts: Vec<Vec<u8>>) -> ReplyCase {
    ReplyCase { bytes: parts.drain(..).next().unwrap_or_default(), expect: None }
  }

  fn check(case: &ReplyCase, cx: &mut Cx) -> Checked {
    let bytes = &case.bytes[..];
    let got = cx.call(decode_reply(bytes));
    let expected = model_reply(bytes);
    if got != expected {
      return Err(Violation::on(bytes, format!("decode_reply gave {got:?}, the record layout gives {expected:?}")));
    }
    let Ok(reply) = got else {
      return Ok(Outcome::Invalid);
    };
    let encoded = encode_reply(reply);
    let mut meaningful = bytes[..encoded.len().min(bytes.len())].to_vec();
    meaningful[2..4].fill(0);
    if encoded != meaningful {
      return Err(Violation::on(bytes, format!("re-encoding {reply:?} gives {}", escape(&encoded, 300))));
    }
    if let Some(record) = &case.expect {
      if encoded != *record {
        return Err(Violation::on(bytes, format!("round trip: decoded {reply:?}")));
      }
    }
    Ok(Outcome::Complete)
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let bytes = parts.first().map(Vec::as_slice).unwrap_or_default();
    format!("decode_reply({}) = {:?}", escape(bytes, 300), decode_reply(bytes))
  }
}
