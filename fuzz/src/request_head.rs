//! `parse_request_head` (httparse behind a 16 KiB cap and a header limit),
//! with `header_values` and the forwarding-header parsers on its output.
//!
//! Invariants:
//! - a generated head (CRLF or bare LF, optional empty lines first,
//!   forwarding headers, thousands of tiny headers, padding up to the cap)
//!   followed by anything is `Complete` with `head_len` = its length and
//!   exactly the generated method, target, version and headers, when it fits
//!   in 16 KiB, has at most `max_headers` headers and a UTF-8 target;
//!   `Invalid(TooManyHeaders)` when it fits but has more headers;
//!   `Invalid` when it is longer than 16 KiB; `Invalid(Malformed(Token))`
//!   for a target that is not UTF-8; every strict prefix of a head that
//!   parses is `Incomplete`;
//! - for any bytes: `head_len` ≤ input length and ≤ 16 KiB, the head ends
//!   with LF, methods and header names are tokens, every field borrows from
//!   the head, at most `max_headers` headers, the same head without the
//!   bytes after it parses the same and one byte shorter is `Incomplete`;
//!   `TooManyHeaders` only when the head really has more header lines
//!   (counted by hand); `Incomplete` only below 16 KiB; decisions never
//!   change as bytes arrive; when the hand-written request line parser also
//!   accepts the line, both see the same target; `header_values` finds
//!   exactly the matching headers.

use crate::http::{self, GenHead};
use crate::{below, broken, cut_points, escape, is_token_byte, is_within, small_len, Bytes, Gen, NearMiss, Render};
use arbitrary::{Arbitrary, Unstructured};
use sticky_session_rs::core::parsers::forwarded::{parse_forwarded, parse_x_forwarded_for};
use sticky_session_rs::core::parsers::http_head::{
  header_values, parse_request_head, request_line_target, HeadError, RequestHead, MAX_REQUEST_HEAD_LEN,
};
use sticky_session_rs::core::parsers::Parse;

#[derive(Arbitrary, Debug)]
pub enum Input {
  Raw(MaxHeaders, Bytes),
  /// A generated head followed by any bytes.
  Generated(Generated, Bytes),
  NearMiss(MaxHeaders, NearMiss<Generated>),
}

/// The header limit passed to the parser: 0 to 254, or unlimited.
#[derive(Debug, Clone, Copy)]
pub struct MaxHeaders(pub usize);

impl<'a> Arbitrary<'a> for MaxHeaders {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    Ok(MaxHeaders(match u.arbitrary::<u8>()? {
      u8::MAX => usize::MAX,
      limit => usize::from(limit),
    }))
  }
}

pub struct Generated {
  pub head: GenHead,
  pub max_headers: usize,
}

/// The head as text: its fields, thousands of headers as byte lists, would
/// bury everything else.
impl std::fmt::Debug for Generated {
  fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    formatter
      .debug_struct("Generated")
      .field("head", &Bytes(self.head.bytes.clone()))
      .field("headers", &self.head.headers.len())
      .field("max_headers", &self.max_headers)
      .finish()
  }
}

impl<'a> Arbitrary<'a> for Generated {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let head = http::head(u)?;
    let count = head.headers.len();
    // The limit the accept loop passes, and edge values around it.
    let max_headers = match below(u, 8)? {
      0..=2 => 128,
      3 => usize::MAX,
      4 => count,
      5 => count.saturating_sub(1),
      6 => small_len(u, 40)?,
      _ => 0,
    };
    Ok(Generated { head, max_headers })
  }
}

impl Render for Generated {
  const TOKENS: &'static [&'static [u8]] = &[
    b"GET ",
    b" HTTP/1.1\r\n",
    b" HTTP/1.0\n",
    b"HTTP/2.0",
    b"\r\n",
    b"\r\n\r\n",
    b"\n\n",
    b": ",
    b"X-Forwarded-For: ",
    b"Forwarded: for=",
    b"\r\n ",
    b"\t",
    b"\x80",
    b"\xff",
  ];

  fn render(&self) -> Vec<u8> {
    self.head.bytes.clone()
  }
}

pub fn check(input: &Input) {
  match input {
    Input::Raw(MaxHeaders(max_headers), Bytes(bytes))
    | Input::NearMiss(MaxHeaders(max_headers), NearMiss(Bytes(bytes), _)) => check_any(bytes, *max_headers),
    Input::Generated(generated, Bytes(trailing)) => {
      let bytes = [&generated.head.bytes[..], trailing].concat();
      check_any(&bytes, generated.max_headers);
      check_generated(&bytes, &generated.head, generated.max_headers);
    }
  }
}

fn broken_with_limit(bytes: &[u8], max_headers: usize, message: impl std::fmt::Display) -> ! {
  broken(bytes, format!("{message} (max_headers {max_headers})"))
}

/// Bytes appended to an `Invalid` input, which must stay `Invalid`.
const APPENDED: &[&[u8]] = &[b"\r\n\r\n", b"\n\n", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"a: b\n\n"];

/// Invariants that hold for any input.
pub fn check_any(bytes: &[u8], max_headers: usize) {
  let result = parse_request_head(bytes, max_headers);
  let fail = |message: String| -> ! { broken_with_limit(bytes, max_headers, message) };
  match &result {
    Parse::Complete(head) => check_complete(bytes, max_headers, head),
    Parse::Incomplete => {
      if bytes.len() >= MAX_REQUEST_HEAD_LEN {
        fail(format!("Incomplete after {} bytes", bytes.len()));
      }
    }
    Parse::Invalid(error) => {
      if let HeadError::TooManyHeaders { max } = error {
        // httparse reports this only after reading max + 1 whole header
        // lines, so the head must hold that many before its blank line.
        let lines = header_lines(&bytes[..bytes.len().min(MAX_REQUEST_HEAD_LEN)]);
        if *max != max_headers || lines <= *max {
          fail(format!("TooManyHeaders {{ max: {max} }} for a head with {lines} header lines"));
        }
      }
      for appended in APPENDED {
        let longer = [bytes, appended].concat();
        let later = parse_request_head(&longer, max_headers);
        if !later.is_invalid() {
          broken_with_limit(&longer, max_headers, format!("Invalid input became {later:?} with more bytes"));
        }
      }
    }
  }
  for cut in cut_points(bytes, 64, 8, &[]) {
    match parse_request_head(&bytes[..cut], max_headers) {
      Parse::Complete(head) if !matches!(&result, Parse::Complete(full) if full.head_len == head.head_len) => {
        fail(format!("prefix of {cut} bytes is Complete (head_len {}) but the whole is {result:?}", head.head_len))
      }
      Parse::Invalid(error) if !result.is_invalid() => {
        fail(format!("prefix of {cut} bytes is Invalid({error:?}) but the whole is {result:?}"))
      }
      _ => {}
    }
  }
}

fn check_complete(bytes: &[u8], max_headers: usize, head: &RequestHead) {
  let fail = |message: String| -> ! { broken_with_limit(bytes, max_headers, message) };
  let len = head.head_len;
  if len == 0 || len > bytes.len() || len > MAX_REQUEST_HEAD_LEN {
    fail(format!("head_len {len} for {} input bytes (cap {MAX_REQUEST_HEAD_LEN})", bytes.len()));
  }
  let head_bytes = &bytes[..len];
  if head_bytes.last() != Some(&b'\n') {
    fail(format!("head of {len} bytes does not end with LF"));
  }
  if head.headers.len() > max_headers || head.version > 1 {
    fail(format!("{} headers, version {}", head.headers.len(), head.version));
  }
  let method_ok = !head.method.is_empty() && head.method.bytes().all(is_token_byte);
  let target_ok =
    !head.target.is_empty() && head.target.bytes().all(|byte| (0x21..=0x7e).contains(&byte) || byte >= 0x80);
  if !method_ok || !target_ok {
    fail(format!("method {:?} or target {:?} has bytes httparse should refuse", head.method, head.target));
  }
  let fields_borrowed = is_within(head_bytes, head.method.as_bytes())
    && is_within(head_bytes, head.target.as_bytes())
    && head.headers.iter().all(|header| {
      is_within(head_bytes, header.name.as_bytes())
        && (header.value.is_empty() || is_within(head_bytes, header.value))
        && !header.name.is_empty()
        && header.name.bytes().all(is_token_byte)
    });
  if !fields_borrowed {
    fail("a field does not borrow from the head, or a header name is not a token".into());
  }
  let exact = parse_request_head(head_bytes, max_headers);
  if exact != Parse::Complete(head.clone()) {
    broken_with_limit(head_bytes, max_headers, format!("the head alone parses as {exact:?}"));
  }
  let shorter = parse_request_head(&head_bytes[..len - 1], max_headers);
  if shorter != Parse::Incomplete {
    broken_with_limit(&head_bytes[..len - 1], max_headers, format!("head without its last byte is {shorter:?}"));
  }
  // The hand-written request line parser must agree on the target.
  if let Parse::Complete(target) = request_line_target(bytes) {
    if target != head.target.as_bytes() {
      fail(format!(
        "httparse found target {:?} but request_line_target {:?}",
        escape(head.target.as_bytes(), 80),
        escape(target, 80)
      ));
    }
  }
  // What the accept loop does next with the head.
  let forwarded_for = header_values(head, "x-forwarded-for");
  let forwarded = header_values(head, "Forwarded");
  let count = |name: &str| head.headers.iter().filter(|header| header.name.eq_ignore_ascii_case(name)).count();
  if forwarded_for.len() != count("X-Forwarded-For") || forwarded.len() != count("forwarded") {
    fail("header_values missed or invented values".into());
  }
  parse_x_forwarded_for(&forwarded_for);
  parse_forwarded(&forwarded);
}

/// Header lines in `window`, counted by hand: after any empty lines and the
/// request line, the LF-terminated lines up to the first empty one.
fn header_lines(window: &[u8]) -> usize {
  let mut lines = window.split_inclusive(|&byte| byte == b'\n').filter(|line| line.ends_with(b"\n"));
  let is_empty = |line: &[u8]| line == b"\n" || line == b"\r\n";
  let mut request_line = lines.next();
  while request_line.is_some_and(is_empty) {
    request_line = lines.next();
  }
  lines.take_while(|line| !is_empty(line)).count()
}

fn check_generated(bytes: &[u8], head: &GenHead, max_headers: usize) {
  let head_len = head.bytes.len();
  let got = parse_request_head(bytes, max_headers);
  let fail = |message: String| -> ! { broken_with_limit(bytes, max_headers, message) };
  if std::str::from_utf8(&head.target.bytes).is_err() {
    // httparse hands out the target as `&str` and refuses one that is not
    // UTF-8 (obs-text is otherwise allowed), before it looks at headers.
    if got != Parse::Invalid(HeadError::Malformed { source: httparse::Error::Token }) {
      fail(format!("head with a non-UTF-8 target gave {got:?}"));
    }
    return;
  }
  if head_len > MAX_REQUEST_HEAD_LEN {
    if !got.is_invalid() {
      fail(format!("head of {head_len} bytes, over the cap, gave {got:?}"));
    }
    return;
  }
  if head.headers.len() > max_headers {
    if got != Parse::Invalid(HeadError::TooManyHeaders { max: max_headers }) {
      fail(format!("head with {} headers gave {got:?}", head.headers.len()));
    }
    return;
  }
  let Parse::Complete(parsed) = &got else {
    fail(format!("generated head ({head_len} bytes, {} headers) gave {got:?}", head.headers.len()));
  };
  let first_difference = parsed
    .headers
    .iter()
    .zip(&head.headers)
    .find(|(got, (name, value))| got.name.as_bytes() != name || got.value != value)
    .map(|(got, (name, value))| {
      format!("{:?}: {:?} vs {:?}: {:?}", got.name, escape(got.value, 60), escape(name, 60), escape(value, 60))
    });
  if parsed.head_len != head_len
    || parsed.method.as_bytes() != head.method
    || parsed.target.as_bytes() != head.target.bytes
    || parsed.version != head.version
    || parsed.headers.len() != head.headers.len()
    || first_difference.is_some()
  {
    fail(format!(
      "generated head parsed differently: head_len {} vs {head_len}, {} vs {} headers, first difference {first_difference:?}",
      parsed.head_len,
      parsed.headers.len(),
      head.headers.len()
    ));
  }
  // Line ends are where decisions could change: probe around up to 16 of
  // them, spread over the head, and the last few bytes.
  let newlines: Vec<usize> =
    head.bytes.iter().enumerate().filter(|(_, &byte)| byte == b'\n').map(|(at, _)| at).collect();
  let mut boundaries: Vec<usize> =
    newlines.iter().step_by(newlines.len() / 16 + 1).flat_map(|&at| [at, at + 1]).collect();
  boundaries.extend(head_len.saturating_sub(4)..head_len);
  for cut in cut_points(&bytes[..head_len], 96, 16, &boundaries) {
    if cut == head_len {
      continue;
    }
    let got = parse_request_head(&bytes[..cut], max_headers);
    if got != Parse::Incomplete {
      broken_with_limit(
        &bytes[..cut],
        max_headers,
        format!("strict prefix ({cut} of {head_len} bytes) of a valid head gave {got:?}"),
      );
    }
  }
}
