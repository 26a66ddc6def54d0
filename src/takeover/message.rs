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
//! A second taker while one is in progress gets `Busy`. Every record starts
//! with a magic and a version, so a stranger on the same abstract name, or a
//! primary from an incompatible build, is refused with a reason.

/// Bytes 0..4 of every record.
pub const MAGIC: [u8; 4] = *b"STKO";
pub const VERSION: u8 = 1;
/// The most listening sockets one offer may carry (kernel mode: one per
/// worker; `workers` is at most 1024 in `index.js`, 65535 in the binding).
pub const MAX_SOCKETS: u16 = u16::MAX;
/// The largest record either side sends.
pub const MAX_RECORD_LEN: usize = OFFER_LEN;

const HEADER_LEN: usize = 6;
const OFFER_LEN: usize = HEADER_LEN + 18;
const SOCKET_LEN: usize = HEADER_LEN + 2;
const PID_LEN: usize = HEADER_LEN + 4;

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
  #[error("record of {len} bytes is too short for a {kind} record ({expected} bytes)")]
  TooShort { kind: &'static str, len: usize, expected: usize },
  #[error("not a sticky-session-rs takeover record (wrong magic)")]
  Magic,
  #[error("takeover record of protocol version {found}, this build speaks {VERSION}: start the new primary with the same sticky-session-rs version, or stop the old one first")]
  Version { found: u8 },
  #[error("unknown takeover record kind {kind:#04x}")]
  UnknownKind { kind: u8 },
  #[error("unknown listening mode {mode:#04x}")]
  Mode { mode: u8 },
}

pub fn encode(message: &Message) -> Vec<u8> {
  let mut out = Vec::with_capacity(MAX_RECORD_LEN);
  out.extend_from_slice(&MAGIC);
  out.push(VERSION);
  match *message {
    Message::Offer(Offer { mode, sockets, workers, seed, pid }) => {
      out.push(KIND_OFFER);
      out.push(match mode {
        ListenMode::AcceptLoop => MODE_ACCEPT_LOOP,
        ListenMode::Kernel => MODE_KERNEL,
      });
      out.push(0);
      out.extend_from_slice(&sockets.to_le_bytes());
      out.extend_from_slice(&workers.to_le_bytes());
      out.extend_from_slice(&seed.to_le_bytes());
      out.extend_from_slice(&pid.to_le_bytes());
    }
    Message::Socket { index } => {
      out.push(KIND_SOCKET);
      out.extend_from_slice(&index.to_le_bytes());
    }
    Message::Ready { pid } => {
      out.push(KIND_READY);
      out.extend_from_slice(&pid.to_le_bytes());
    }
    Message::Released { pid } => {
      out.push(KIND_RELEASED);
      out.extend_from_slice(&pid.to_le_bytes());
    }
    Message::Busy { pid } => {
      out.push(KIND_BUSY);
      out.extend_from_slice(&pid.to_le_bytes());
    }
  }
  debug_assert!(out.len() <= MAX_RECORD_LEN);
  out
}

pub fn decode(record: &[u8]) -> Result<Message, MessageError> {
  if record.len() < HEADER_LEN {
    return Err(MessageError::TooShort { kind: "takeover", len: record.len(), expected: HEADER_LEN });
  }
  if record[..4] != MAGIC {
    return Err(MessageError::Magic);
  }
  if record[4] != VERSION {
    return Err(MessageError::Version { found: record[4] });
  }
  let expect = |kind: &'static str, expected: usize| {
    if record.len() < expected {
      Err(MessageError::TooShort { kind, len: record.len(), expected })
    } else {
      Ok(())
    }
  };
  let pid_at = |at: usize| u32::from_le_bytes(array_at(record, at));
  match record[5] {
    KIND_OFFER => {
      expect("offer", OFFER_LEN)?;
      let mode = match record[6] {
        MODE_ACCEPT_LOOP => ListenMode::AcceptLoop,
        MODE_KERNEL => ListenMode::Kernel,
        mode => return Err(MessageError::Mode { mode }),
      };
      Ok(Message::Offer(Offer {
        mode,
        sockets: u16::from_le_bytes(array_at(record, 8)),
        workers: u16::from_le_bytes(array_at(record, 10)),
        seed: u64::from_le_bytes(array_at(record, 12)),
        pid: pid_at(20),
      }))
    }
    KIND_SOCKET => {
      expect("socket", SOCKET_LEN)?;
      Ok(Message::Socket { index: u16::from_le_bytes(array_at(record, 6)) })
    }
    KIND_READY => expect("ready", PID_LEN).map(|()| Message::Ready { pid: pid_at(6) }),
    KIND_RELEASED => expect("released", PID_LEN).map(|()| Message::Released { pid: pid_at(6) }),
    KIND_BUSY => expect("busy", PID_LEN).map(|()| Message::Busy { pid: pid_at(6) }),
    kind => Err(MessageError::UnknownKind { kind }),
  }
}

/// `N` bytes at `at`; the caller checked the length.
fn array_at<const N: usize>(record: &[u8], at: usize) -> [u8; N] {
  let mut bytes = [0u8; N];
  bytes.copy_from_slice(&record[at..at + N]);
  bytes
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
    assert_eq!(error, MessageError::Version { found: 9 });
    assert!(error.to_string().contains("same sticky-session-rs version"));
  }

  #[test]
  fn a_stranger_speaking_on_the_name_is_refused() {
    assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(MessageError::Magic));
  }

  #[test]
  fn truncated_records_are_refused() {
    let record =
      encode(&Message::Offer(Offer { mode: ListenMode::AcceptLoop, sockets: 1, workers: 2, seed: 1, pid: 2 }));
    for len in 0..record.len() {
      assert!(matches!(decode(&record[..len]), Err(MessageError::TooShort { .. })), "length {len}");
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
