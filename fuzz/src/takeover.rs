//! `core::takeover_message::decode` (the takeover records; `encode` too).
//!
//! Invariants: encoding then decoding gives back the message (round trip);
//! for any bytes the decoder returns exactly what the record layout in
//! `src/core/takeover_message.rs` prescribes (the refusal order of `src/core/codec.rs`: the
//! 6-byte header, then the magic `STKO`, then version 1, then the kind, then
//! the kind's length, then (offers) the mode); re-encoding a decoded record
//! reproduces its meaningful bytes (the offer's reserved byte zeroed, bytes
//! past the kind's length dropped).

use crate::{below, broken, escape, Bytes, Gen, NearMiss, Render};
use arbitrary::{Arbitrary, Unstructured};
use sticky_session_rs::core::codec::RecordError;
use sticky_session_rs::core::takeover_message::{decode, encode, ListenMode, Message, MessageError, Offer, FORMAT};

#[derive(Arbitrary, Debug)]
pub enum Input {
  /// Any bytes, decoded.
  Raw(Bytes),
  /// Any bytes after a valid header.
  AfterHeader(u8, Bytes),
  Encoded(EncodedMessage),
  NearMiss(NearMiss<EncodedMessage>),
}

/// The magic, version and kind bytes, the modes, and zero.
const TOKENS: &[&[u8]] = &[b"STKO", b"\x01\x01", b"\x01\x02", b"\x01\x03", b"\x01\x04", b"\x01\x05", b"\x02", b"\x00"];

#[derive(Debug)]
pub struct EncodedMessage(pub Message);

impl<'a> Arbitrary<'a> for EncodedMessage {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let message = match below(u, 5)? {
      0 => Message::Offer(Offer {
        mode: if u.arbitrary()? { ListenMode::AcceptLoop } else { ListenMode::Kernel },
        sockets: u.arbitrary()?,
        workers: u.arbitrary()?,
        seed: u.arbitrary()?,
        pid: u.arbitrary()?,
      }),
      1 => Message::Socket { index: u.arbitrary()? },
      2 => Message::Ready { pid: u.arbitrary()? },
      3 => Message::Released { pid: u.arbitrary()? },
      _ => Message::Busy { pid: u.arbitrary()? },
    };
    Ok(EncodedMessage(message))
  }
}

impl Render for EncodedMessage {
  const TOKENS: &'static [&'static [u8]] = TOKENS;

  fn render(&self) -> Vec<u8> {
    encode(&self.0)
  }
}

pub fn check(input: &Input) {
  match input {
    Input::Raw(Bytes(record)) | Input::NearMiss(NearMiss(Bytes(record), _)) => {
      let _ = check_decode(record);
    }
    Input::AfterHeader(kind, Bytes(tail)) => {
      let record = [&b"STKO\x01"[..], &[*kind % 8], tail].concat();
      let _ = check_decode(&record);
    }
    Input::Encoded(EncodedMessage(message)) => {
      let record = encode(message);
      match check_decode(&record) {
        Ok(decoded) if decoded == *message => {}
        got => broken(&record, format!("encoded {message:?}, decoded {got:?}")),
      }
    }
  }
}

/// The decoder as the record layout prescribes it, offsets written out.
fn model(record: &[u8]) -> Result<Message, MessageError> {
  let too_short = |kind: &'static str, expected: usize| -> MessageError {
    RecordError::TooShort { kind, len: record.len(), expected }.into()
  };
  if record.len() < 6 {
    return Err(too_short("takeover", 6));
  }
  if record[..4] != *b"STKO" {
    return Err(RecordError::Magic { format: "takeover" }.into());
  }
  if record[4] != 1 {
    return Err(RecordError::Version { format: "takeover", found: record[4], speaks: 1, advice: FORMAT.advice }.into());
  }
  let u16_at = |at: usize| u16::from_le_bytes([record[at], record[at + 1]]);
  let u32_at = |at: usize| u32::from_le_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]]);
  let pid = |kind: &'static str| if record.len() < 10 { Err(too_short(kind, 10)) } else { Ok(u32_at(6)) };
  match record[5] {
    1 => {
      if record.len() < 24 {
        return Err(too_short("offer", 24));
      }
      let mode = match record[6] {
        1 => ListenMode::AcceptLoop,
        2 => ListenMode::Kernel,
        mode => return Err(MessageError::Mode { mode }),
      };
      let mut seed = [0u8; 8];
      seed.copy_from_slice(&record[12..20]);
      let (sockets, workers, seed, pid) = (u16_at(8), u16_at(10), u64::from_le_bytes(seed), u32_at(20));
      Ok(Message::Offer(Offer { mode, sockets, workers, seed, pid }))
    }
    2 if record.len() < 8 => Err(too_short("socket", 8)),
    2 => Ok(Message::Socket { index: u16_at(6) }),
    3 => pid("ready").map(|pid| Message::Ready { pid }),
    4 => pid("released").map(|pid| Message::Released { pid }),
    5 => pid("busy").map(|pid| Message::Busy { pid }),
    kind => Err(RecordError::UnknownKind { format: "takeover", kind }.into()),
  }
}

fn check_decode(record: &[u8]) -> Result<Message, MessageError> {
  let got = decode(record);
  let expected = model(record);
  if got != expected {
    broken(record, format!("decode gave {got:?}, the record layout gives {expected:?}"));
  }
  if let Ok(message) = &got {
    let encoded = encode(message);
    let mut meaningful = record[..encoded.len().min(record.len())].to_vec();
    if let Message::Offer(_) = message {
      meaningful[7] = 0;
    }
    if encoded != meaningful {
      broken(record, format!("re-encoding {message:?} gives {}", escape(&encoded, 100)));
    }
  }
  got
}
