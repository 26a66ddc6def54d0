//! `decode_handoff` and `decode_reply` (the hand-off channel records).
//!
//! Invariants: `encode_handoff`/`encode_reply` then decode gives back the
//! record (round trip); for any bytes the decoders return exactly what the
//! record layout in `wire.rs` prescribes (length checked first, then
//! version, then kind, then (handoffs) the exact length, then family or
//! session id); re-encoding a decoded record reproduces its meaningful bytes
//! (reserved bytes zeroed).

use crate::{addresses, below, broken, bytes, escape, one_in, pick, range, Bytes, Gen, NearMiss, Render};
use arbitrary::{Arbitrary, Unstructured};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use sticky_session_rs::wire::{
  decode_handoff, decode_reply, encode_handoff, encode_reply, Handoff, Reply, WireError, HANDOFF_LEN,
  MAX_SESSION_ID_LEN, PROTOCOL_VERSION,
};

#[derive(Arbitrary, Debug)]
pub enum Input {
  /// Any bytes, decoded as a handoff.
  Handoff(Bytes),
  /// Any bytes, decoded as a reply.
  Reply(Bytes),
  EncodedHandoff(EncodedHandoff),
  EncodedReply(EncodedReply),
  HandoffNearMiss(NearMiss<EncodedHandoff>),
  ReplyNearMiss(NearMiss<EncodedReply>),
}

/// Version and kind pairs, families, and zero.
const TOKENS: &[&[u8]] = &[b"\x01\x01", b"\x01\x10", b"\x01\x11", b"\x01\x12", b"\x01\x13", b"\x04", b"\x06", b"\x00"];

/// A handoff's fields.
#[derive(Debug)]
pub struct EncodedHandoff {
  pub seq: u64,
  pub client: Option<SocketAddr>,
}

impl<'a> Arbitrary<'a> for EncodedHandoff {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let seq = match below(u, 4)? {
      0 => *pick(u, &[0, 1, u64::MAX, u64::from(u32::MAX) + 1])?,
      _ => u.arbitrary()?,
    };
    let ip = match below(u, 3)? {
      0 => None,
      1 => Some(IpAddr::V4(addresses::ipv4(u)?)),
      _ => Some(IpAddr::V6(addresses::ipv6(u)?)),
    };
    let client = ip.map(|ip| addresses::socket_addr(u, ip)).transpose()?;
    Ok(EncodedHandoff { seq, client })
  }
}

/// An encoded reply of each kind, with session ids from 1 byte to the
/// limit.
#[derive(Debug)]
pub struct EncodedReply(pub Bytes);

impl<'a> Arbitrary<'a> for EncodedReply {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let sid_len = if one_in(u, 8)? { *pick(u, &[1, MAX_SESSION_ID_LEN])? } else { range(u, 1, 40)? };
    let sid = bytes(u, sid_len)?;
    let reply = match below(u, 4)? {
      0 => Reply::Hello { pid: u.arbitrary()? },
      1 => Reply::Ack { up_to: u.arbitrary()? },
      2 => Reply::SessionOpened { sid: &sid },
      _ => Reply::SessionClosed { sid: &sid },
    };
    Ok(EncodedReply(Bytes(encode_reply(reply))))
  }
}

impl EncodedHandoff {
  fn handoff(&self) -> Handoff {
    Handoff { seq: self.seq, client: self.client }
  }
}

impl Render for EncodedHandoff {
  const TOKENS: &'static [&'static [u8]] = TOKENS;

  fn render(&self) -> Vec<u8> {
    let mut record = Vec::new();
    encode_handoff(&self.handoff(), &mut record);
    record
  }
}

impl Render for EncodedReply {
  const TOKENS: &'static [&'static [u8]] = TOKENS;

  fn render(&self) -> Vec<u8> {
    self.0 .0.clone()
  }
}

pub fn check(input: &Input) {
  match input {
    // Decoding any bytes may fail; the checks say how.
    Input::Handoff(Bytes(record)) | Input::HandoffNearMiss(NearMiss(Bytes(record), _)) => {
      let _ = check_handoff(record);
    }
    Input::Reply(Bytes(record)) | Input::ReplyNearMiss(NearMiss(Bytes(record), _)) => {
      let _ = check_reply(record);
    }
    Input::EncodedHandoff(encoded) => {
      let sent = encoded.handoff();
      let record = encoded.render();
      let got = check_handoff(&record);
      if got.as_ref() != Ok(&sent) {
        broken(&record, format!("encoded {sent:?}, decoded {got:?}"));
      }
    }
    Input::EncodedReply(EncodedReply(Bytes(record))) => {
      if let Ok(reply) = check_reply(record) {
        if encode_reply(reply) != *record {
          broken(record, format!("round trip: decoded {reply:?}"));
        }
      } else {
        broken(record, "an encoded reply does not decode");
      }
    }
  }
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

fn check_handoff(record: &[u8]) -> Result<Handoff, WireError> {
  let got = decode_handoff(record);
  let expected = model_handoff(record);
  if got != expected {
    broken(record, format!("decode_handoff gave {got:?}, the record layout gives {expected:?}"));
  }
  let Ok(handoff) = &got else {
    return got;
  };
  let mut encoded = Vec::new();
  encode_handoff(handoff, &mut encoded);
  let mut meaningful = record.to_vec();
  let reserved: &[std::ops::Range<usize>] = match handoff.client {
    None => &[2..4, 13..48],
    Some(SocketAddr::V4(_)) => &[2..4, 13..14, 20..48],
    Some(SocketAddr::V6(_)) => &[2..4, 13..14, 32..48],
  };
  for range in reserved {
    meaningful[range.clone()].fill(0);
  }
  if encoded != meaningful {
    broken(record, format!("re-encoding gives {}", escape(&encoded, 200)));
  }
  got
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

fn check_reply(record: &[u8]) -> Result<Reply<'_>, WireError> {
  let got = decode_reply(record);
  let expected = model_reply(record);
  if got != expected {
    broken(record, format!("decode_reply gave {got:?}, the record layout gives {expected:?}"));
  }
  if let Ok(reply) = got {
    let encoded = encode_reply(reply);
    let mut meaningful = record[..encoded.len().min(record.len())].to_vec();
    meaningful[2..4].fill(0);
    if encoded != meaningful {
      broken(record, format!("re-encoding {reply:?} gives {}", escape(&encoded, 300)));
    }
  }
  got
}
