//! The records exchanged on a slot's hand-off channel. No I/O.
//!
//! The channel is a `SOCK_SEQPACKET` socketpair: one `sendmsg` is one record,
//! so records need no framing. Primary → worker: first a `Lifeline` record
//! (the write end of a pipe whose read end the primary keeps: it reads
//! end-of-file once the worker stopped taking connections or died), then
//! handoff records of 1 to [`MAX_BATCH`] entries of [`HANDOFF_LEN`] bytes,
//! one per connection, whose fds travel beside it as `SCM_RIGHTS` in the same
//! order. (A worker the user forked gets a `Channel` record on its rendezvous
//! connection instead: its channel's end and its lifeline.) Worker → primary:
//! `Hello` once the worker's server is ready, then session reports. Nothing
//! is acknowledged: a record the worker read is its own; a record it did not
//! read is still queued on its end, where the primary, which keeps a
//! reference to that end, reads it back.
//!
//! Records are written and read with [`crate::core::codec`]: byte 0 is the
//! protocol version, so a primary and a worker from different builds refuse
//! each other clearly, byte 1 the kind; all integers are little-endian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::codec::{Format, Layout, RecordError};

pub const PROTOCOL_VERSION: u8 = 2;

/// Every handoff entry is exactly this long: version, kind, 2 reserved
/// bytes, the sequence number (`u64` at 4), the client's address family (12),
/// a reserved byte, its port (`u16` at 14) and its address (at 16: 4 or 16
/// bytes), then zeros. (A PROXY header the primary consumed is dropped, not
/// forwarded: the connection's remaining bytes stay in the kernel for the
/// worker.)
pub const HANDOFF_LEN: usize = 48;
/// The most connections one handoff record carries: the kernel's limit of
/// descriptors in one message (`SCM_MAX_FD`).
pub const MAX_BATCH: usize = 253;
/// The longest handoff record.
pub const MAX_HANDOFF_RECORD_LEN: usize = HANDOFF_LEN * MAX_BATCH;
pub const HELLO_LEN: usize = 8;
/// A setup record (`Lifeline`, `Channel`): version, kind, 2 reserved bytes.
pub const SETUP_LEN: usize = 4;
/// A session record: 4 header bytes, then the session id.
pub const SESSION_HEADER_LEN: usize = 4;
/// The longest session id a worker may report.
pub const MAX_SESSION_ID_LEN: usize = 255;
/// The largest record a worker sends.
pub const MAX_REPLY_LEN: usize = SESSION_HEADER_LEN + MAX_SESSION_ID_LEN;

const KIND_HANDOFF: u8 = 1;
const KIND_LIFELINE: u8 = 2;
const KIND_CHANNEL: u8 = 3;
const KIND_HELLO: u8 = 0x10;
const KIND_SESSION_OPENED: u8 = 0x12;
const KIND_SESSION_CLOSED: u8 = 0x13;

const FAMILY_NONE: u8 = 0;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// The format of every record on a channel: no magic (both ends are one
/// build's primary and workers, on a socketpair), byte 0 the version.
pub const FORMAT: Format = Format {
  name: "channel",
  magic: b"",
  version: PROTOCOL_VERSION,
  advice: "the primary and the workers must load the same sticky-session-rs build",
};
const HANDOFF: Layout = FORMAT.layout("handoff", HANDOFF_LEN);
/// A handoff entry up to its sequence number: all a peek needs.
const HANDOFF_HEAD: Layout = FORMAT.layout("handoff", 12);
const SETUP: Layout = FORMAT.layout("setup", SETUP_LEN);
const HELLO: Layout = FORMAT.layout("hello", HELLO_LEN);
const SESSION: Layout = FORMAT.layout("session", SESSION_HEADER_LEN);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
  #[error(transparent)]
  Record(#[from] RecordError),
  #[error("address family byte {family} is not 0, 4 or 6")]
  Family { family: u8 },
  #[error("session id of {len} bytes is empty or longer than {MAX_SESSION_ID_LEN}")]
  SessionId { len: usize },
  #[error("handoff record of {len} bytes, not 1 to {MAX_BATCH} entries of {HANDOFF_LEN}")]
  HandoffLength { len: usize },
}

/// A connection handed to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
  /// Per channel, increasing from 1: how the primary finds a connection it
  /// reads back among those it sent.
  pub seq: u64,
  /// The client a PROXY header named (`proxy-protocol` routing), which the
  /// worker reports as the socket's remote address.
  pub client: Option<SocketAddr>,
}

/// What a worker sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
  /// The worker's server listens and it reads its channel.
  Hello { pid: u32 },
  /// The worker opened an engine.io session: route its `sid` here.
  SessionOpened { sid: &'a [u8] },
  /// The worker closed an engine.io session.
  SessionClosed { sid: &'a [u8] },
}

/// How a worker gets what it needs from the primary before its hello: the
/// first record it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
  /// On a channel the primary made for a worker it forked; one fd: the
  /// worker's lifeline.
  Lifeline,
  /// On a worker's rendezvous connection; two fds: the worker's end of its
  /// channel, then its lifeline.
  Channel,
}

impl Setup {
  /// The descriptors the record carries.
  pub fn fds(self) -> usize {
    match self {
      Setup::Lifeline => 1,
      Setup::Channel => 2,
    }
  }
}

pub fn encode_setup(setup: Setup) -> [u8; SETUP_LEN] {
  let kind = match setup {
    Setup::Lifeline => KIND_LIFELINE,
    Setup::Channel => KIND_CHANNEL,
  };
  let mut out = Vec::with_capacity(SETUP_LEN);
  FORMAT.begin(kind, &mut out).zeros_to(SETUP_LEN);
  let mut record = [0u8; SETUP_LEN];
  record.copy_from_slice(&out);
  record
}

pub fn decode_setup(record: &[u8]) -> Result<Setup, WireError> {
  let setup = match FORMAT.kind_of(record)? {
    KIND_LIFELINE => Setup::Lifeline,
    KIND_CHANNEL => Setup::Channel,
    kind => return Err(FORMAT.unknown_kind(kind).into()),
  };
  FORMAT.fields(record, SETUP)?;
  Ok(setup)
}

/// Encodes a record of one entry into `out`.
pub fn encode_handoff(handoff: &Handoff, out: &mut Vec<u8>) {
  out.clear();
  append_handoff(handoff, out);
}

/// Appends one entry to a handoff record being built in `out` (cleared by the
/// caller for a new record).
pub fn append_handoff(handoff: &Handoff, out: &mut Vec<u8>) {
  let mut entry = FORMAT.begin(KIND_HANDOFF, out);
  entry.zeros(2).u64(handoff.seq);
  match handoff.client {
    None => entry.u8(FAMILY_NONE),
    Some(SocketAddr::V4(v4)) => entry.u8(FAMILY_V4).zeros(1).u16(v4.port()).bytes(&v4.ip().octets()),
    Some(SocketAddr::V6(v6)) => entry.u8(FAMILY_V6).zeros(1).u16(v6.port()).bytes(&v6.ip().octets()),
  };
  entry.zeros_to(HANDOFF_LEN);
}

/// The entries of a handoff record, in order (the record is checked whole
/// first: a bad entry refuses the record).
pub fn decode_handoffs(record: &[u8]) -> Result<Vec<Handoff>, WireError> {
  if record.len() > HANDOFF_LEN && (!record.len().is_multiple_of(HANDOFF_LEN) || record.len() > MAX_HANDOFF_RECORD_LEN)
  {
    return Err(WireError::HandoffLength { len: record.len() });
  }
  if record.len() <= HANDOFF_LEN {
    return decode_handoff(record).map(|handoff| vec![handoff]);
  }
  record.chunks_exact(HANDOFF_LEN).map(decode_handoff).collect()
}

/// The first entry's sequence number, from the head of a record (a peek):
/// `None` unless it is a handoff record of this version.
pub fn first_seq(head: &[u8]) -> Option<u64> {
  Some(FORMAT.expect(head, KIND_HANDOFF, HANDOFF_HEAD).ok()?.u64(4))
}

/// One handoff entry (a record of exactly one entry).
pub fn decode_handoff(record: &[u8]) -> Result<Handoff, WireError> {
  let fields = FORMAT.expect(record, KIND_HANDOFF, HANDOFF)?;
  if record.len() != HANDOFF_LEN {
    return Err(WireError::HandoffLength { len: record.len() });
  }
  let seq = fields.u64(4);
  let port = fields.u16(14);
  let client = match fields.u8(12) {
    FAMILY_NONE => None,
    FAMILY_V4 => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(fields.array::<4>(16))), port)),
    FAMILY_V6 => Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(fields.array::<16>(16))), port)),
    family => return Err(WireError::Family { family }),
  };
  Ok(Handoff { seq, client })
}

pub fn encode_reply(reply: Reply<'_>) -> Vec<u8> {
  let mut out = Vec::with_capacity(MAX_REPLY_LEN);
  match reply {
    Reply::SessionOpened { sid } | Reply::SessionClosed { sid } => {
      debug_assert!(!sid.is_empty() && sid.len() <= MAX_SESSION_ID_LEN);
      let kind = if matches!(reply, Reply::SessionOpened { .. }) { KIND_SESSION_OPENED } else { KIND_SESSION_CLOSED };
      FORMAT.begin(kind, &mut out).zeros(2).bytes(sid);
    }
    Reply::Hello { pid } => {
      FORMAT.begin(KIND_HELLO, &mut out).zeros(2).u32(pid);
    }
  }
  out
}

pub fn decode_reply(record: &[u8]) -> Result<Reply<'_>, WireError> {
  match FORMAT.kind_of(record)? {
    kind @ (KIND_SESSION_OPENED | KIND_SESSION_CLOSED) => {
      let sid = FORMAT.fields(record, SESSION)?.tail(SESSION_HEADER_LEN);
      if sid.is_empty() || sid.len() > MAX_SESSION_ID_LEN {
        return Err(WireError::SessionId { len: sid.len() });
      }
      Ok(if kind == KIND_SESSION_OPENED { Reply::SessionOpened { sid } } else { Reply::SessionClosed { sid } })
    }
    KIND_HELLO => Ok(Reply::Hello { pid: FORMAT.fields(record, HELLO)?.u32(4) }),
    kind => Err(FORMAT.unknown_kind(kind).into()),
  }
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
  fn a_batch_of_handoffs_round_trips_in_order() {
    let handoffs: Vec<Handoff> = (1..=MAX_BATCH as u64)
      .map(|seq| Handoff { seq, client: (seq % 2 == 0).then(|| SocketAddr::from(([10, 0, 0, seq as u8], 80))) })
      .collect();
    let mut record = Vec::new();
    for handoff in &handoffs {
      append_handoff(handoff, &mut record);
    }
    assert_eq!(record.len(), MAX_HANDOFF_RECORD_LEN);
    assert_eq!(first_seq(&record[..16]), Some(1));
    assert_eq!(first_seq(&record[..12]), Some(1));
    assert_eq!(first_seq(&record[..11]), None);
    assert_eq!(decode_handoffs(&record), Ok(handoffs));
  }

  #[test]
  fn a_batch_with_a_partial_entry_or_too_many_is_refused() {
    let mut record = Vec::new();
    for seq in 1..=2 {
      append_handoff(&Handoff { seq, client: None }, &mut record);
    }
    record.push(0);
    assert_eq!(decode_handoffs(&record), Err(WireError::HandoffLength { len: 2 * HANDOFF_LEN + 1 }));
    let too_many = vec![0u8; MAX_HANDOFF_RECORD_LEN + HANDOFF_LEN];
    assert!(matches!(decode_handoffs(&too_many), Err(WireError::HandoffLength { .. })));
    let mut bad_second = Vec::new();
    append_handoff(&Handoff { seq: 1, client: None }, &mut bad_second);
    append_handoff(&Handoff { seq: 2, client: None }, &mut bad_second);
    bad_second[HANDOFF_LEN] = 9;
    assert!(matches!(decode_handoffs(&bad_second), Err(WireError::Record(RecordError::Version { found: 9, .. }))));
  }

  #[test]
  fn setup_records_round_trip_and_are_not_handoffs() {
    for setup in [Setup::Lifeline, Setup::Channel] {
      let record = encode_setup(setup);
      assert_eq!(decode_setup(&record), Ok(setup));
      assert!(decode_handoffs(&record).is_err());
    }
    assert_eq!(
      decode_setup(&[PROTOCOL_VERSION, KIND_HANDOFF, 0, 0]),
      Err(WireError::Record(RecordError::UnknownKind { format: "channel", kind: KIND_HANDOFF }))
    );
    assert!(matches!(
      decode_setup(&[9, KIND_LIFELINE, 0, 0]),
      Err(WireError::Record(RecordError::Version { found: 9, .. }))
    ));
  }

  #[test]
  fn replies_round_trip() {
    for reply in [
      Reply::Hello { pid: 4242 },
      Reply::SessionOpened { sid: b"Zm9vYmFy_-12" },
      Reply::SessionClosed { sid: &[b'x'; MAX_SESSION_ID_LEN] },
    ] {
      assert_eq!(decode_reply(&encode_reply(reply)), Ok(reply));
    }
  }

  #[test]
  fn a_record_from_another_version_is_refused_with_a_reason() {
    let mut record = encode_reply(Reply::Hello { pid: 1 });
    record[0] = 9;
    let error = decode_reply(&record).unwrap_err();
    assert!(matches!(error, WireError::Record(RecordError::Version { found: 9, .. })));
    assert!(error.to_string().contains("same sticky-session-rs build"));
  }

  #[test]
  fn a_short_record_of_another_version_is_refused_for_its_version() {
    // What a primary of another build would send if a new version had
    // shortened the hello: the peer hears about the version, not the length.
    let error = decode_reply(&[1, KIND_HELLO, 0, 0]).unwrap_err();
    assert!(matches!(error, WireError::Record(RecordError::Version { found: 1, speaks: PROTOCOL_VERSION, .. })));
    assert_eq!(
      decode_setup(&[]),
      Err(WireError::Record(RecordError::TooShort { kind: "channel", len: 0, expected: 2 }))
    );
  }

  #[test]
  fn truncated_records_are_refused() {
    let record = encode_reply(Reply::Hello { pid: 1 });
    assert!(matches!(decode_reply(&record[..5]), Err(WireError::Record(RecordError::TooShort { .. }))));
    assert!(matches!(
      decode_handoff(&[PROTOCOL_VERSION, KIND_HANDOFF]),
      Err(WireError::Record(RecordError::TooShort { .. }))
    ));
    assert!(decode_reply(&[]).is_err());
    assert_eq!(decode_reply(&[PROTOCOL_VERSION, KIND_SESSION_OPENED, 0, 0]), Err(WireError::SessionId { len: 0 }));
  }

  /// The bytes each record is on the wire, field by field: the codec may
  /// change, the format may not (a primary and its workers of one build
  /// agree anyway; this pins what `PROTOCOL_VERSION` 2 means).
  #[test]
  fn every_record_keeps_its_pinned_bytes() {
    let v = 2;
    assert_eq!(PROTOCOL_VERSION, v);
    assert_eq!(encode_setup(Setup::Lifeline), [v, 0x02, 0, 0]);
    assert_eq!(encode_setup(Setup::Channel), [v, 0x03, 0, 0]);
    let mut record = Vec::new();
    encode_handoff(&Handoff { seq: 0x0102_0304_0506_0708, client: None }, &mut record);
    let mut expected = vec![v, 0x01, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0];
    expected.resize(HANDOFF_LEN, 0);
    assert_eq!(record, expected);
    encode_handoff(&Handoff { seq: 2, client: Some("192.0.2.7:8080".parse().unwrap()) }, &mut record);
    let mut expected = vec![v, 0x01, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0x90, 0x1f, 192, 0, 2, 7];
    expected.resize(HANDOFF_LEN, 0);
    assert_eq!(record, expected);
    encode_handoff(&Handoff { seq: u64::MAX, client: Some("[2001:db8::1:2]:443".parse().unwrap()) }, &mut record);
    let mut expected = vec![v, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 6, 0, 0xbb, 0x01];
    expected.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    expected.resize(HANDOFF_LEN, 0);
    assert_eq!(record, expected);
    assert_eq!(encode_reply(Reply::Hello { pid: 0x0102_0304 }), [v, 0x10, 0, 0, 4, 3, 2, 1]);
    assert_eq!(encode_reply(Reply::SessionOpened { sid: b"abc" }), [v, 0x12, 0, 0, b'a', b'b', b'c']);
    assert_eq!(encode_reply(Reply::SessionClosed { sid: b"abc" }), [v, 0x13, 0, 0, b'a', b'b', b'c']);
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
      let _ = decode_handoffs(&record);
      let _ = first_seq(&record);
      let _ = decode_setup(&record);
      let _ = decode_reply(&record);
    }
  }
}
