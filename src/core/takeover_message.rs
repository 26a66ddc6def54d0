//! The records of a socket takeover. No I/O.
//!
//! A takeover runs over one `SOCK_SEQPACKET` connection (one `sendmsg` is one
//! record, so records need no framing) between the running primary (the
//! *offering* side, which listens) and a new primary of the same app (the
//! *taking* side, which connects):
//!
//! ```text
//! taking                          offering
//!   | ---- connect --------------->  |  both check the peer's uid (SO_PEERCRED)
//!   | <--- Offer ------------------  |  what is listening: mode, sockets, workers, seed
//!   | <--- Socket{0} + fd ---------  |  one record per listening socket,
//!   | <--- Socket{n-1} + fd -------  |  in slot order (kernel mode: the whole group)
//!   |      (forks workers, waits until every one is ready; both accept meanwhile)
//!   | ---- Ready ----------------->  |  "stop accepting"
//!   | <--- Released ---------------  |  the offering side gave up its name and drains
//! ```
//!
//! A second taker while one is in progress gets `Busy`. Records are written
//! and read with [`crate::core::codec`]: every one starts with a magic, a version
//! and a kind, so a stranger on the same abstract name, or a primary from an
//! incompatible build, is refused with a reason; all integers are
//! little-endian.

use crate::core::codec::{Format, Layout, RecordError};

/// Bytes 0..4 of every record.
pub const MAGIC: [u8; 4] = *b"STKO";
pub const VERSION: u8 = 1;
/// The most listening sockets one offer may carry (kernel mode: one per
/// worker). The field is a `u16`; the options allow far fewer workers (see
/// `MAX_WORKERS` in `binding/options.rs`).
pub const MAX_SOCKETS: u16 = u16::MAX;
/// The largest record either side sends.
pub const MAX_RECORD_LEN: usize = OFFER.len;

/// Every record starts with the magic, so that a stranger on the same
/// abstract name is refused.
pub const FORMAT: Format = Format {
  name: "takeover",
  magic: &MAGIC,
  version: VERSION,
  advice: "start the new primary with the same sticky-session-rs version, or stop the old one first",
};
const HEADER_LEN: usize = FORMAT.header_len();
/// Mode (at 6), a reserved byte, sockets (`u16` at 8), workers (`u16` at
/// 10), seed (`u64` at 12), pid (`u32` at 20).
const OFFER: Layout = FORMAT.layout("offer", HEADER_LEN + 18);
/// Index (`u16` at 6).
const SOCKET: Layout = FORMAT.layout("socket", HEADER_LEN + 2);
/// Ready, released and busy: a pid (`u32` at 6).
const READY: Layout = FORMAT.layout("ready", HEADER_LEN + 4);
const RELEASED: Layout = FORMAT.layout("released", HEADER_LEN + 4);
const BUSY: Layout = FORMAT.layout("busy", HEADER_LEN + 4);

const KIND_OFFER: u8 = 1;
const KIND_SOCKET: u8 = 2;
const KIND_READY: u8 = 3;
const KIND_RELEASED: u8 = 4;
const KIND_BUSY: u8 = 5;

const MODE_ACCEPT_LOOP: u8 = 1;
const MODE_KERNEL: u8 = 2;

/// How the offering primary listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenMode {
  /// One listening socket, accepted on by the primary's accept loop.
  AcceptLoop,
  /// One `SO_REUSEPORT` socket per slot, steered by the kernel; the group's
  /// BPF program hashes `% workers` with the folded `seed`.
  Kernel,
}

/// What the offering primary is listening with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
  pub mode: ListenMode,
  /// Listening sockets that follow, one `Socket` record each.
  pub sockets: u16,
  /// The offering primary's worker slots.
  pub workers: u16,
  /// The offering primary's hash seed.
  pub seed: u64,
  /// The offering primary's pid.
  pub pid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
  Offer(Offer),
  /// Listening socket number `index` (its slot in kernel mode); the fd travels beside it.
  Socket {
    index: u16,
  },
  /// From the taking primary (`pid`): every worker is ready; stop accepting.
  Ready {
    pid: u32,
  },
  /// From the offering primary (`pid`): it gave up its name and is draining.
  Released {
    pid: u32,
  },
  /// From the offering primary: another takeover (by `pid`) is under way.
  Busy {
    pid: u32,
  },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
  #[error(transparent)]
  Record(#[from] RecordError),
  #[error("unknown listening mode {mode:#04x}")]
  Mode { mode: u8 },
}

pub fn encode(message: &Message) -> Vec<u8> {
  let mut out = Vec::with_capacity(MAX_RECORD_LEN);
  match *message {
    Message::Offer(Offer { mode, sockets, workers, seed, pid }) => {
      let mode = match mode {
        ListenMode::AcceptLoop => MODE_ACCEPT_LOOP,
        ListenMode::Kernel => MODE_KERNEL,
      };
      FORMAT.begin(KIND_OFFER, &mut out).u8(mode).zeros(1).u16(sockets).u16(workers).u64(seed).u32(pid);
    }
    Message::Socket { index } => {
      FORMAT.begin(KIND_SOCKET, &mut out).u16(index);
    }
    Message::Ready { pid } => {
      FORMAT.begin(KIND_READY, &mut out).u32(pid);
    }
    Message::Released { pid } => {
      FORMAT.begin(KIND_RELEASED, &mut out).u32(pid);
    }
    Message::Busy { pid } => {
      FORMAT.begin(KIND_BUSY, &mut out).u32(pid);
    }
  }
  debug_assert!(out.len() <= MAX_RECORD_LEN);
  out
}

pub fn decode(record: &[u8]) -> Result<Message, MessageError> {
  let pid = |layout: Layout| FORMAT.fields(record, layout).map(|fields| fields.u32(6));
  Ok(match FORMAT.kind_of(record)? {
    KIND_OFFER => {
      let fields = FORMAT.fields(record, OFFER)?;
      let mode = match fields.u8(6) {
        MODE_ACCEPT_LOOP => ListenMode::AcceptLoop,
        MODE_KERNEL => ListenMode::Kernel,
        mode => return Err(MessageError::Mode { mode }),
      };
      Message::Offer(Offer {
        mode,
        sockets: fields.u16(8),
        workers: fields.u16(10),
        seed: fields.u64(12),
        pid: fields.u32(20),
      })
    }
    KIND_SOCKET => Message::Socket { index: FORMAT.fields(record, SOCKET)?.u16(6) },
    KIND_READY => Message::Ready { pid: pid(READY)? },
    KIND_RELEASED => Message::Released { pid: pid(RELEASED)? },
    KIND_BUSY => Message::Busy { pid: pid(BUSY)? },
    kind => return Err(FORMAT.unknown_kind(kind).into()),
  })
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  #[test]
  fn an_offer_of_a_kernel_group_round_trips() {
    let offer =
      Message::Offer(Offer { mode: ListenMode::Kernel, sockets: 3, workers: 3, seed: u64::MAX - 7, pid: 4242 });
    assert_eq!(decode(&encode(&offer)), Ok(offer));
  }

  #[test]
  fn a_record_of_another_version_is_refused_with_what_to_do() {
    let mut record = encode(&Message::Ready { pid: 1 });
    record[4] = 9;
    let error = decode(&record).unwrap_err();
    assert!(matches!(error, MessageError::Record(RecordError::Version { found: 9, .. })));
    assert!(error.to_string().contains("same sticky-session-rs version"));
  }

  #[test]
  fn a_stranger_speaking_on_the_name_is_refused() {
    assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(MessageError::Record(RecordError::Magic { format: "takeover" })));
  }

  #[test]
  fn truncated_records_are_refused() {
    let record =
      encode(&Message::Offer(Offer { mode: ListenMode::AcceptLoop, sockets: 1, workers: 2, seed: 1, pid: 2 }));
    for len in 0..record.len() {
      assert!(
        matches!(decode(&record[..len]), Err(MessageError::Record(RecordError::TooShort { .. }))),
        "length {len}"
      );
    }
  }

  #[test]
  fn an_unknown_mode_is_refused() {
    let mut record =
      encode(&Message::Offer(Offer { mode: ListenMode::Kernel, sockets: 1, workers: 1, seed: 0, pid: 1 }));
    record[6] = 7;
    assert_eq!(decode(&record), Err(MessageError::Mode { mode: 7 }));
  }

  /// The bytes each record is on the wire, field by field: a new primary
  /// takes over from one of an earlier build only while these hold.
  #[test]
  fn every_record_keeps_its_pinned_bytes() {
    let header = |kind: u8| [b'S', b'T', b'K', b'O', 1, kind];
    let offer = Offer {
      mode: ListenMode::AcceptLoop,
      sockets: 1,
      workers: 0x0102,
      seed: 0x1122_3344_5566_7788,
      pid: 0x0a0b_0c0d,
    };
    let mut expected = header(1).to_vec();
    expected
      .extend_from_slice(&[1, 0, 1, 0, 2, 1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x0d, 0x0c, 0x0b, 0x0a]);
    assert_eq!(encode(&Message::Offer(offer)), expected);
    let offer = Offer { mode: ListenMode::Kernel, sockets: 4, workers: 4, seed: 7, pid: 99 };
    let mut expected = header(1).to_vec();
    expected.extend_from_slice(&[2, 0, 4, 0, 4, 0, 7, 0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 0]);
    assert_eq!(encode(&Message::Offer(offer)), expected);
    assert_eq!(encode(&Message::Socket { index: 0x0203 }), [&header(2)[..], &[3, 2]].concat());
    assert_eq!(encode(&Message::Ready { pid: 0x0102_0304 }), [&header(3)[..], &[4, 3, 2, 1]].concat());
    assert_eq!(encode(&Message::Released { pid: 0x0102_0304 }), [&header(4)[..], &[4, 3, 2, 1]].concat());
    assert_eq!(encode(&Message::Busy { pid: 0x0102_0304 }), [&header(5)[..], &[4, 3, 2, 1]].concat());
  }

  fn any_message() -> impl Strategy<Value = Message> {
    let mode = prop_oneof![Just(ListenMode::AcceptLoop), Just(ListenMode::Kernel)];
    prop_oneof![
      (mode, any::<u16>(), any::<u16>(), any::<u64>(), any::<u32>())
        .prop_map(|(mode, sockets, workers, seed, pid)| Message::Offer(Offer { mode, sockets, workers, seed, pid })),
      any::<u16>().prop_map(|index| Message::Socket { index }),
      any::<u32>().prop_map(|pid| Message::Ready { pid }),
      any::<u32>().prop_map(|pid| Message::Released { pid }),
      any::<u32>().prop_map(|pid| Message::Busy { pid }),
    ]
  }

  proptest! {
    #[test]
    fn every_message_round_trips_within_the_record_limit(message in any_message()) {
      let record = encode(&message);
      prop_assert!(record.len() <= MAX_RECORD_LEN);
      prop_assert_eq!(decode(&record), Ok(message));
    }

    #[test]
    fn arbitrary_records_decode_or_fail_without_panic(tail in proptest::collection::vec(any::<u8>(), 0..40), magic in any::<bool>()) {
      let record = if magic { [&MAGIC[..], &[VERSION], &tail].concat() } else { tail };
      let _ = decode(&record);
    }
  }
}
