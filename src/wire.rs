//! The records exchanged on a slot's hand-off channel. No I/O.
//!
//! The channel is a `SOCK_SEQPACKET` socketpair: one `sendmsg` is one record,
//! so records need no framing. Primary → worker: a `Handoff` (the connection's
//! fd travels beside it as `SCM_RIGHTS`). Worker → primary: `Hello` once the
//! worker's server is ready, then cumulative `Ack`s ("I hold every connection
//! up to this sequence number") — the primary keeps its copy of each fd until
//! then, so a connection a dead worker never took can go to another worker.
//!
//! All integers are little-endian. Byte 0 is the protocol version, so a
//! primary and a worker from different builds refuse each other clearly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const PROTOCOL_VERSION: u8 = 1;

/// Every handoff record is exactly this long. (A PROXY header the primary
/// consumed is dropped, not forwarded: the connection's remaining bytes stay
/// in the kernel for the worker.)
pub const HANDOFF_LEN: usize = 48;
pub const HELLO_LEN: usize = 8;
pub const ACK_LEN: usize = 12;
/// A session record: 4 header bytes, then the session id.
pub const SESSION_HEADER_LEN: usize = 4;
/// The longest session id a worker may report.
pub const MAX_SESSION_ID_LEN: usize = 255;
/// The largest record a worker sends.
pub const MAX_REPLY_LEN: usize = SESSION_HEADER_LEN + MAX_SESSION_ID_LEN;

const KIND_HANDOFF: u8 = 1;
const KIND_HELLO: u8 = 0x10;
const KIND_ACK: u8 = 0x11;
const KIND_SESSION_OPENED: u8 = 0x12;
const KIND_SESSION_CLOSED: u8 = 0x13;

const FAMILY_NONE: u8 = 0;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
  #[error("record of {len} bytes is too short for a {kind} record ({expected} bytes)")]
  TooShort { kind: &'static str, len: usize, expected: usize },
  #[error("record speaks protocol version {found}, this build speaks {PROTOCOL_VERSION}: the primary and the workers must load the same sticky-session-rs build")]
  Version { found: u8 },
  #[error("unknown record kind {kind:#04x}")]
  UnknownKind { kind: u8 },
  #[error("address family byte {family} is not 0, 4 or 6")]
  Family { family: u8 },
  #[error("session id of {len} bytes is empty or longer than {MAX_SESSION_ID_LEN}")]
  SessionId { len: usize },
  #[error("handoff record of {len} bytes, not {HANDOFF_LEN}")]
  HandoffLength { len: usize },
}

/// A connection handed to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
  /// Per channel, increasing from 1; acknowledged cumulatively.
  pub seq: u64,
  /// The client a PROXY header named (`proxy-protocol` routing), which the
  /// worker reports as the socket's remote address.
  pub client: Option<SocketAddr>,
}

/// What a worker sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
  Hello {
    pid: u32,
  },
  Ack {
    up_to: u64,
  },
  /// The worker opened an engine.io session: route its `sid` here.
  SessionOpened {
    sid: &'a [u8],
  },
  /// The worker closed an engine.io session.
  SessionClosed {
    sid: &'a [u8],
  },
}

pub fn encode_handoff(handoff: &Handoff, out: &mut Vec<u8>) {
  out.clear();
  out.resize(HANDOFF_LEN, 0);
  out[0] = PROTOCOL_VERSION;
  out[1] = KIND_HANDOFF;
  out[4..12].copy_from_slice(&handoff.seq.to_le_bytes());
  match handoff.client {
    None => out[12] = FAMILY_NONE,
    Some(SocketAddr::V4(v4)) => {
      out[12] = FAMILY_V4;
      out[14..16].copy_from_slice(&v4.port().to_le_bytes());
      out[16..20].copy_from_slice(&v4.ip().octets());
    }
    Some(SocketAddr::V6(v6)) => {
      out[12] = FAMILY_V6;
      out[14..16].copy_from_slice(&v6.port().to_le_bytes());
      out[16..32].copy_from_slice(&v6.ip().octets());
    }
  }
}

pub fn decode_handoff(record: &[u8]) -> Result<Handoff, WireError> {
  check_header(record, "handoff", HANDOFF_LEN, KIND_HANDOFF)?;
  if record.len() != HANDOFF_LEN {
    return Err(WireError::HandoffLength { len: record.len() });
  }
  let seq = u64::from_le_bytes(array_at(record, 4));
  let port = u16::from_le_bytes(array_at(record, 14));
  let client = match record[12] {
    FAMILY_NONE => None,
    FAMILY_V4 => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(array_at::<4>(record, 16))), port)),
    FAMILY_V6 => Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(array_at::<16>(record, 16))), port)),
    family => return Err(WireError::Family { family }),
  };
  Ok(Handoff { seq, client })
}

pub fn encode_reply(reply: Reply<'_>) -> Vec<u8> {
  match reply {
    Reply::SessionOpened { sid } | Reply::SessionClosed { sid } => {
      debug_assert!(!sid.is_empty() && sid.len() <= MAX_SESSION_ID_LEN);
      let kind = if matches!(reply, Reply::SessionOpened { .. }) { KIND_SESSION_OPENED } else { KIND_SESSION_CLOSED };
      let mut out = vec![PROTOCOL_VERSION, kind, 0, 0];
      out.extend_from_slice(sid);
      out
    }
    Reply::Hello { pid } => {
      let mut out = vec![PROTOCOL_VERSION, KIND_HELLO, 0, 0];
      out.extend_from_slice(&pid.to_le_bytes());
      out
    }
    Reply::Ack { up_to } => {
      let mut out = vec![PROTOCOL_VERSION, KIND_ACK, 0, 0];
      out.extend_from_slice(&up_to.to_le_bytes());
      out
    }
  }
}

pub fn decode_reply(record: &[u8]) -> Result<Reply<'_>, WireError> {
  match record.get(1) {
    Some(&kind @ (KIND_SESSION_OPENED | KIND_SESSION_CLOSED)) => {
      check_header(record, "session", SESSION_HEADER_LEN, kind)?;
      let sid = &record[SESSION_HEADER_LEN..];
      if sid.is_empty() || sid.len() > MAX_SESSION_ID_LEN {
        return Err(WireError::SessionId { len: sid.len() });
      }
      Ok(if kind == KIND_SESSION_OPENED { Reply::SessionOpened { sid } } else { Reply::SessionClosed { sid } })
    }
    Some(&KIND_HELLO) => {
      check_header(record, "hello", HELLO_LEN, KIND_HELLO)?;
      Ok(Reply::Hello { pid: u32::from_le_bytes(array_at(record, 4)) })
    }
    Some(&KIND_ACK) => {
      check_header(record, "ack", ACK_LEN, KIND_ACK)?;
      Ok(Reply::Ack { up_to: u64::from_le_bytes(array_at(record, 4)) })
    }
    Some(&kind) => Err(WireError::UnknownKind { kind }),
    None => Err(WireError::TooShort { kind: "reply", len: record.len(), expected: 2 }),
  }
}

fn check_header(record: &[u8], kind: &'static str, expected: usize, kind_byte: u8) -> Result<(), WireError> {
  if record.len() < expected {
    return Err(WireError::TooShort { kind, len: record.len(), expected });
  }
  if record[0] != PROTOCOL_VERSION {
    return Err(WireError::Version { found: record[0] });
  }
  if record[1] != kind_byte {
    return Err(WireError::UnknownKind { kind: record[1] });
  }
  Ok(())
}

/// `N` bytes at `at`; callers have checked the length.
fn array_at<const N: usize>(record: &[u8], at: usize) -> [u8; N] {
  let mut out = [0u8; N];
  out.copy_from_slice(&record[at..at + N]);
  out
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  #[test]
  fn a_handoff_without_client_round_trips() {
    let mut buf = Vec::new();
    let handoff = Handoff { seq: 7, client: None };
    encode_handoff(&handoff, &mut buf);
    assert_eq!(buf.len(), HANDOFF_LEN);
    assert_eq!(decode_handoff(&buf), Ok(handoff));
  }

  #[test]
  fn a_handoff_with_trailing_bytes_is_refused() {
    let mut buf = Vec::new();
    encode_handoff(&Handoff { seq: 7, client: None }, &mut buf);
    buf.push(0);
    assert_eq!(decode_handoff(&buf), Err(WireError::HandoffLength { len: HANDOFF_LEN + 1 }));
  }

  #[test]
  fn replies_round_trip() {
    for reply in [
      Reply::Hello { pid: 4242 },
      Reply::Ack { up_to: u64::MAX },
      Reply::SessionOpened { sid: b"Zm9vYmFy_-12" },
      Reply::SessionClosed { sid: &[b'x'; MAX_SESSION_ID_LEN] },
    ] {
      assert_eq!(decode_reply(&encode_reply(reply)), Ok(reply));
    }
  }

  #[test]
  fn a_record_from_another_version_is_refused_with_a_reason() {
    let mut record = encode_reply(Reply::Ack { up_to: 1 });
    record[0] = 9;
    let error = decode_reply(&record).unwrap_err();
    assert_eq!(error, WireError::Version { found: 9 });
    assert!(error.to_string().contains("same sticky-session-rs build"));
  }

  #[test]
  fn truncated_records_are_refused() {
    let record = encode_reply(Reply::Ack { up_to: 1 });
    assert!(matches!(decode_reply(&record[..5]), Err(WireError::TooShort { .. })));
    assert!(matches!(decode_handoff(&[PROTOCOL_VERSION, KIND_HANDOFF]), Err(WireError::TooShort { .. })));
    assert!(decode_reply(&[]).is_err());
    assert_eq!(decode_reply(&[PROTOCOL_VERSION, KIND_SESSION_OPENED, 0, 0]), Err(WireError::SessionId { len: 0 }));
  }

  fn any_socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
      (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
      (any::<u128>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
  }

  proptest! {
    #[test]
    fn every_handoff_round_trips(seq in any::<u64>(), client in proptest::option::of(any_socket_addr())) {
      let mut buf = Vec::new();
      let handoff = Handoff { seq, client };
      encode_handoff(&handoff, &mut buf);
      prop_assert_eq!(decode_handoff(&buf), Ok(handoff));
    }

    #[test]
    fn arbitrary_records_decode_or_fail_without_panic(record in proptest::collection::vec(any::<u8>(), 0..80)) {
      let _ = decode_handoff(&record);
      let _ = decode_reply(&record);
    }
  }
}
