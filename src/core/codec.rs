//! The record codec under both record formats: the hand-off channel's
//! (`wire`) and the takeover's (`takeover_message`). No I/O.
//!
//! Both run over `SOCK_SEQPACKET`, where one `sendmsg` is one record, so a
//! record needs no framing, only a header that says what it is. A [`Format`]
//! is that header — an optional magic, then a version byte and a kind byte —
//! and the words its refusals use. After the header come the kind's fields:
//! little-endian integers and byte strings at fixed offsets, written in order
//! by a [`Writer`] and read by offset from [`Fields`].
//!
//! # Guarantees
//!
//! - **Decoding never panics on what a peer sent.** [`Format::kind_of`]
//!   checks a record's length before it reads the header, and a [`Fields`]
//!   exists only for a record at least as long as the [`Layout`] it was
//!   checked against, so reads inside that layout cannot fail. (A read past
//!   its own layout is a bug in the format's module, not in the peer: a
//!   `debug_assert!` catches it in the tests, which decode every kind.)
//! - **One order of refusals for every format:** shorter than the header,
//!   then the magic, then the version, then the kind, then shorter than the
//!   kind's layout. A peer of another build is told so before anything is
//!   said about the layout, which is what a new version may have changed.
//! - **What a [`Writer`] writes, [`Fields`] reads back** at the offset the
//!   writer had reached (property-tested below and in each format).

/// One family of records: the header every record of it starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
  /// What its records are called in refusals ("channel", "takeover").
  pub name: &'static str,
  /// The bytes every record starts with, so that a stranger is refused
  /// (empty: the format has none).
  pub magic: &'static [u8],
  /// The byte after the magic; a record of another version is refused.
  pub version: u8,
  /// What to do about a peer of another version, said in that refusal.
  pub advice: &'static str,
}

/// A kind's shortest record, header included, and its name in refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
  pub name: &'static str,
  pub len: usize,
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
  #[error("record of {len} bytes is too short for a {kind} record ({expected} bytes)")]
  TooShort { kind: &'static str, len: usize, expected: usize },
  #[error("not a sticky-session-rs {format} record (wrong magic)")]
  Magic { format: &'static str },
  #[error("{format} record of protocol version {found}, this build speaks {speaks}: {advice}")]
  Version { format: &'static str, found: u8, speaks: u8, advice: &'static str },
  #[error("unknown {format} record kind {kind:#04x}")]
  UnknownKind { format: &'static str, kind: u8 },
}

impl Format {
  /// Magic, version and kind.
  pub const fn header_len(&self) -> usize {
    self.magic.len() + 2
  }

  /// The layout of a kind whose shortest record is `len` bytes, header
  /// included.
  pub const fn layout(&self, name: &'static str, len: usize) -> Layout {
    assert!(len >= self.header_len(), "a layout holds at least the header");
    Layout { name, len }
  }

  /// Appends the header of a record of `kind` to `out`; the writer appends
  /// the fields after it.
  pub fn begin<'a>(&self, kind: u8, out: &'a mut Vec<u8>) -> Writer<'a> {
    let start = out.len();
    out.extend_from_slice(self.magic);
    out.extend_from_slice(&[self.version, kind]);
    Writer { out, start }
  }

  /// The kind byte of `record`, once its header is this format's.
  pub fn kind_of(&self, record: &[u8]) -> Result<u8, RecordError> {
    let header_len = self.header_len();
    if record.len() < header_len {
      return Err(RecordError::TooShort { kind: self.name, len: record.len(), expected: header_len });
    }
    let (magic, rest) = record.split_at(self.magic.len());
    if magic != self.magic {
      return Err(RecordError::Magic { format: self.name });
    }
    if rest[0] != self.version {
      return Err(RecordError::Version {
        format: self.name,
        found: rest[0],
        speaks: self.version,
        advice: self.advice,
      });
    }
    Ok(rest[1])
  }

  /// The fields of `record`, of a kind the caller read with
  /// [`kind_of`](Self::kind_of), once it is at least `layout` long.
  pub fn fields<'a>(&self, record: &'a [u8], layout: Layout) -> Result<Fields<'a>, RecordError> {
    if record.len() < layout.len {
      return Err(RecordError::TooShort { kind: layout.name, len: record.len(), expected: layout.len });
    }
    Ok(Fields { record, layout_len: layout.len })
  }

  /// The fields of `record`, once it is a record of `kind` at least
  /// `layout` long.
  pub fn expect<'a>(&self, record: &'a [u8], kind: u8, layout: Layout) -> Result<Fields<'a>, RecordError> {
    match self.kind_of(record)? {
      found if found == kind => self.fields(record, layout),
      found => Err(self.unknown_kind(found)),
    }
  }

  /// The refusal of a kind byte the format does not have (or not here).
  pub fn unknown_kind(&self, kind: u8) -> RecordError {
    RecordError::UnknownKind { format: self.name, kind }
  }
}

/// Appends one record's fields, in order, after its header.
pub struct Writer<'a> {
  out: &'a mut Vec<u8>,
  /// Where the record starts in `out` (several may share it: a batch).
  start: usize,
}

impl Writer<'_> {
  pub fn u8(&mut self, value: u8) -> &mut Self {
    self.bytes(&[value])
  }

  pub fn u16(&mut self, value: u16) -> &mut Self {
    self.bytes(&value.to_le_bytes())
  }

  pub fn u32(&mut self, value: u32) -> &mut Self {
    self.bytes(&value.to_le_bytes())
  }

  pub fn u64(&mut self, value: u64) -> &mut Self {
    self.bytes(&value.to_le_bytes())
  }

  pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
    self.out.extend_from_slice(bytes);
    self
  }

  /// `count` zero bytes: reserved.
  pub fn zeros(&mut self, count: usize) -> &mut Self {
    self.out.resize(self.out.len() + count, 0);
    self
  }

  /// Zero bytes until the record is `len` long: the rest of a fixed-size
  /// record.
  pub fn zeros_to(&mut self, len: usize) -> &mut Self {
    let written = self.out.len() - self.start;
    debug_assert!(written <= len, "{written} bytes written into a record of {len}");
    self.zeros(len.saturating_sub(written))
  }
}

/// A record checked to be at least as long as its kind's layout; offsets
/// count from the record's first byte (the header's included).
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
  record: &'a [u8],
  /// What was checked: a read past it is the format module's bug, caught
  /// in its tests even where the record happens to be longer.
  layout_len: usize,
}

impl<'a> Fields<'a> {
  pub fn u8(&self, at: usize) -> u8 {
    debug_assert!(at < self.layout_len, "byte {at} is past the layout's {} bytes", self.layout_len);
    self.record[at]
  }

  pub fn u16(&self, at: usize) -> u16 {
    u16::from_le_bytes(self.array(at))
  }

  pub fn u32(&self, at: usize) -> u32 {
    u32::from_le_bytes(self.array(at))
  }

  pub fn u64(&self, at: usize) -> u64 {
    u64::from_le_bytes(self.array(at))
  }

  /// The `N` bytes at `at`.
  pub fn array<const N: usize>(&self, at: usize) -> [u8; N] {
    debug_assert!(at + N <= self.layout_len, "bytes {at}..{} are past the layout's {} bytes", at + N, self.layout_len);
    let mut bytes = [0u8; N];
    bytes.copy_from_slice(&self.record[at..at + N]);
    bytes
  }

  /// The bytes from `at` to the end of the record: a variable-length field.
  pub fn tail(&self, at: usize) -> &'a [u8] {
    debug_assert!(at <= self.layout_len, "a tail from {at} starts past the layout's {} bytes", self.layout_len);
    &self.record[at..]
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  const PLAIN: Format = Format { name: "plain", magic: b"", version: 3, advice: "use one build" };
  const MAGIC: Format = Format { name: "magic", magic: b"MGC", version: 1, advice: "upgrade both" };
  const PAIR: Layout = MAGIC.layout("pair", 5 + 4 + 8);

  #[test]
  fn a_header_is_the_magic_then_the_version_then_the_kind() {
    let mut out = Vec::new();
    PLAIN.begin(7, &mut out);
    assert_eq!(out, [3, 7]);
    out.clear();
    MAGIC.begin(9, &mut out).u16(0x0102);
    assert_eq!(out, [b'M', b'G', b'C', 1, 9, 2, 1]);
    assert_eq!(MAGIC.kind_of(&out), Ok(9));
    assert_eq!(PAIR.len, 3 + 2 + 12);
  }

  #[test]
  fn refusals_come_in_one_order_header_magic_version_kind_layout() {
    // Too short for the header, and wrong in every other way too.
    assert_eq!(MAGIC.kind_of(b"XX"), Err(RecordError::TooShort { kind: "magic", len: 2, expected: 5 }));
    // Wrong magic, and another version.
    assert_eq!(MAGIC.kind_of(b"XGC\x02\x09"), Err(RecordError::Magic { format: "magic" }));
    // Another version, and far too short for the layout of its kind.
    let other = [b'M', b'G', b'C', 2, 9];
    assert!(matches!(MAGIC.expect(&other, 9, PAIR), Err(RecordError::Version { found: 2, speaks: 1, .. })));
    // Another kind, and too short.
    let kind = [b'M', b'G', b'C', 1, 8];
    assert_eq!(MAGIC.expect(&kind, 9, PAIR).unwrap_err(), RecordError::UnknownKind { format: "magic", kind: 8 });
    // The right kind, too short for its layout.
    let short = [b'M', b'G', b'C', 1, 9, 0];
    assert_eq!(
      MAGIC.expect(&short, 9, PAIR).unwrap_err(),
      RecordError::TooShort { kind: "pair", len: 6, expected: 17 }
    );
  }

  #[test]
  fn a_refusal_says_what_to_do() {
    let error = PLAIN.kind_of(&[4, 1]).unwrap_err();
    assert_eq!(error.to_string(), "plain record of protocol version 4, this build speaks 3: use one build");
    assert_eq!(MAGIC.kind_of(b"GET /").unwrap_err().to_string(), "not a sticky-session-rs magic record (wrong magic)");
    assert_eq!(PLAIN.unknown_kind(0x12).to_string(), "unknown plain record kind 0x12");
  }

  #[test]
  fn zeros_to_pads_the_record_not_the_buffer() {
    let mut out = Vec::new();
    PLAIN.begin(1, &mut out).u8(5).zeros_to(6);
    PLAIN.begin(1, &mut out).u32(u32::MAX).zeros_to(6);
    assert_eq!(out, [3, 1, 5, 0, 0, 0, 3, 1, 0xff, 0xff, 0xff, 0xff]);
  }

  #[test]
  #[cfg(debug_assertions)]
  #[should_panic(expected = "past the layout")]
  fn a_read_past_the_layout_is_caught_even_in_a_longer_record() {
    let record = [b'M', b'G', b'C', 1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let fields = MAGIC.expect(&record, 9, PAIR).unwrap();
    fields.u32(PAIR.len - 2);
  }

  fn any_format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(PLAIN), Just(MAGIC)]
  }

  proptest! {
    #[test]
    fn what_a_writer_writes_fields_read_back(
      format in any_format(), kind in any::<u8>(), a in any::<u8>(), b in any::<u16>(),
      c in any::<u32>(), d in any::<u64>(), e in any::<[u8; 5]>(), tail in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
      let mut out = Vec::new();
      format.begin(kind, &mut out).u8(a).zeros(1).u16(b).u32(c).u64(d).bytes(&e).bytes(&tail);
      let at = format.header_len();
      let fields = format.expect(&out, kind, format.layout("all", format.header_len() + 1 + 1 + 2 + 4 + 8 + 5)).unwrap();
      prop_assert_eq!(fields.u8(at), a);
      prop_assert_eq!(fields.u8(at + 1), 0);
      prop_assert_eq!(fields.u16(at + 2), b);
      prop_assert_eq!(fields.u32(at + 4), c);
      prop_assert_eq!(fields.u64(at + 8), d);
      prop_assert_eq!(fields.array::<5>(at + 16), e);
      prop_assert_eq!(fields.tail(at + 21), &tail[..]);
    }

    #[test]
    fn a_header_is_accepted_exactly_when_it_is_this_formats(format in any_format(), record in proptest::collection::vec(any::<u8>(), 0..12)) {
      let ours = record.len() >= format.header_len()
        && record.starts_with(format.magic)
        && record[format.magic.len()] == format.version;
      match format.kind_of(&record) {
        Ok(kind) => {
          prop_assert!(ours);
          prop_assert_eq!(kind, record[format.magic.len() + 1]);
        }
        Err(_) => prop_assert!(!ours),
      }
    }

    #[test]
    fn fields_exist_only_for_records_as_long_as_their_layout(format in any_format(), body in 0usize..16, record in proptest::collection::vec(any::<u8>(), 0..24)) {
      let layout = format.layout("any", format.header_len() + body);
      let fields = format.fields(&record, layout);
      prop_assert_eq!(fields.is_ok(), record.len() >= layout.len);
      if let Ok(fields) = fields {
        // Every byte of the layout reads.
        for (at, &byte) in record.iter().enumerate().take(layout.len) {
          prop_assert_eq!(fields.u8(at), byte);
        }
      }
    }
  }
}
