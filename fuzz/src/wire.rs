//! `decode_handoff`, `decode_handoffs`, `decode_setup` and `decode_reply`
//! (the hand-off channel records).
//!
//! Invariants: encoding then decoding gives back the record (round trip,
//! also for a record of several handoffs); for any bytes the decoders return
//! exactly what the record layout in `wire.rs` prescribes (the refusal order
//! of `codec.rs`: the 2-byte header, then version, then kind, then the
//! kind's length; then (handoffs) the exact length, then family or session id; a record of several handoffs is whole entries, at
//! most `MAX_BATCH`, each valid); re-encoding a decoded record reproduces
//! its meaningful bytes (reserved bytes zeroed).

use crate::{addresses, below, broken, bytes, escape, one_in, pick, range, Bytes, Gen, NearMiss, Render};
use arbitrary::{Arbitrary, Unstructured};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use sticky_session_rs::core::codec::RecordError;
use sticky_session_rs::core::wire::{
  append_handoff, decode_handoff, decode_handoffs, decode_reply, decode_setup, encode_handoff, encode_reply,
  encode_setup, first_seq, Handoff, Reply, Setup, WireError, FORMAT, HANDOFF_LEN, MAX_BATCH, MAX_HANDOFF_RECORD_LEN,
  MAX_SESSION_ID_LEN, PROTOCOL_VERSION, SETUP_LEN,
};

#[derive(Arbitrary, Debug)]
pub enum Input {
  /// Any bytes, decoded as a handoff.
  Handoff(Bytes),
  /// Any bytes, decoded as a reply.
  Reply(Bytes),
  /// Any bytes, decoded as a setup record.
  Setup(Bytes),
  EncodedHandoff(EncodedHandoff),
  /// Several handoffs in one record.
  EncodedBatch(Vec<EncodedHandoff>),
  EncodedReply(EncodedReply),
  HandoffNearMiss(NearMiss<EncodedHandoff>),
  ReplyNearMiss(NearMiss<EncodedReply>),
}

/// Version and kind pairs, families, and zero.
const TOKENS: &[&[u8]] =
  &[b"\x02\x01", b"\x02\x02", b"\x02\x03", b"\x02\x10", b"\x02\x12", b"\x02\x13", b"\x04", b"\x06", b"\x00"];

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
    let reply = match below(u, 3)? {
      0 => Reply::Hello { pid: u.arbitrary()? },
      1 => Reply::SessionOpened { sid: &sid },
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
      let _ = check_handoffs(record);
    }
    Input::Reply(Bytes(record)) | Input::ReplyNearMiss(NearMiss(Bytes(record), _)) => {
      let _ = check_reply(record);
    }
    Input::Setup(Bytes(record)) => check_setup(record),
    Input::EncodedHandoff(encoded) => {
      let sent = encoded.handoff();
      let record = encoded.render();
      let got = check_handoff(&record);
      if got.as_ref() != Ok(&sent) {
        broken(&record, format!("encoded {sent:?}, decoded {got:?}"));
      }
    }
    Input::EncodedBatch(encoded) => {
      let sent: Vec<Handoff> = encoded.iter().take(MAX_BATCH).map(EncodedHandoff::handoff).collect();
      if sent.is_empty() {
        return;
      }
      let mut record = Vec::new();
      for handoff in &sent {
        append_handoff(handoff, &mut record);
      }
      let got = check_handoffs(&record);
      if got.as_ref() != Ok(&sent) {
        broken(&record, format!("encoded {} handoffs, decoded {got:?}", sent.len()));
      }
      if first_seq(&record) != Some(sent[0].seq) {
        broken(&record, "first_seq disagrees with the first entry");
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

/// Every record's header: at least 2 bytes, this version; its kind.
fn model_kind(record: &[u8]) -> Result<u8, WireError> {
  if record.len() < 2 {
    return Err(RecordError::TooShort { kind: "channel", len: record.len(), expected: 2 }.into());
  }
  if record[0] != PROTOCOL_VERSION {
    let (format, advice) = (FORMAT.name, FORMAT.advice);
    return Err(RecordError::Version { format, found: record[0], speaks: PROTOCOL_VERSION, advice }.into());
  }
  Ok(record[1])
}

fn model_length(record: &[u8], kind: &'static str, expected: usize) -> Result<(), WireError> {
  if record.len() < expected {
    return Err(RecordError::TooShort { kind, len: record.len(), expected }.into());
  }
  Ok(())
}

fn unknown_kind(kind: u8) -> WireError {
  RecordError::UnknownKind { format: "channel", kind }.into()
}

/// The decoder as the record layout prescribes it.
fn model_handoff(record: &[u8]) -> Result<Handoff, WireError> {
  match model_kind(record)? {
    1 => model_length(record, "handoff", HANDOFF_LEN)?,
    kind => return Err(unknown_kind(kind)),
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

/// A record of handoffs, as the layout prescribes: one entry is checked as
/// `decode_handoff` does; more must be whole entries, at most `MAX_BATCH`,
/// each valid.
fn model_handoffs(record: &[u8]) -> Result<Vec<Handoff>, WireError> {
  if record.len() <= HANDOFF_LEN {
    return model_handoff(record).map(|handoff| vec![handoff]);
  }
  if !record.len().is_multiple_of(HANDOFF_LEN) || record.len() > MAX_HANDOFF_RECORD_LEN {
    return Err(WireError::HandoffLength { len: record.len() });
  }
  record.chunks(HANDOFF_LEN).map(model_handoff).collect()
}

fn check_handoffs(record: &[u8]) -> Result<Vec<Handoff>, WireError> {
  let got = decode_handoffs(record);
  let expected = model_handoffs(record);
  if got != expected {
    broken(record, format!("decode_handoffs gave {got:?}, the record layout gives {expected:?}"));
  }
  got
}

/// A setup record: version, then kind 2 (lifeline) or 3 (channel), at least
/// `SETUP_LEN` bytes; re-encoding reproduces its first `SETUP_LEN` bytes
/// with the reserved ones zeroed.
fn check_setup(record: &[u8]) {
  let got = decode_setup(record);
  let expected = model_kind(record).and_then(|kind| {
    let setup = match kind {
      2 => Setup::Lifeline,
      3 => Setup::Channel,
      kind => return Err(unknown_kind(kind)),
    };
    model_length(record, "setup", SETUP_LEN).map(|()| setup)
  });
  if got != expected {
    broken(record, format!("decode_setup gave {got:?}, the record layout gives {expected:?}"));
  }
  if let Ok(setup) = got {
    let mut meaningful = record[..SETUP_LEN].to_vec();
    meaningful[2..4].fill(0);
    if encode_setup(setup)[..] != meaningful[..] {
      broken(record, format!("re-encoding {setup:?} differs"));
    }
  }
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
  match model_kind(record)? {
    0x10 => model_length(record, "hello", 8)
      .map(|()| Reply::Hello { pid: u32::from_le_bytes([record[4], record[5], record[6], record[7]]) }),
    kind @ (0x12 | 0x13) => {
      model_length(record, "session", 4)?;
      let sid = &record[4..];
      if sid.is_empty() || sid.len() > MAX_SESSION_ID_LEN {
        return Err(WireError::SessionId { len: sid.len() });
      }
      Ok(if kind == 0x12 { Reply::SessionOpened { sid } } else { Reply::SessionClosed { sid } })
    }
    kind => Err(unknown_kind(kind)),
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
