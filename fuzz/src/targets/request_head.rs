//! `parse_request_head` (httparse behind a 16 KiB cap and a header limit),
//! with `header_values` and the forwarding-header parsers on its output.
//!
//! Invariants:
//! - a generated head (CRLF or bare LF, optional empty lines first, forwarding
//!   headers, thousands of tiny headers, padding up to the cap) followed by
//!   anything is `Complete` with `head_len` = its length and exactly the
//!   generated method, target, version and headers, when it fits in 16 KiB
//!   and has at most `max_headers` headers; `Invalid(TooManyHeaders)` when it
//!   fits but has more; `Invalid` when it is longer than 16 KiB; every strict
//!   prefix of a head that parses is `Incomplete`;
//! - for any bytes: `head_len` ≤ input length and ≤ 16 KiB, the head ends
//!   with LF, every field borrows from the head, at most `max_headers`
//!   headers, the same head without the bytes after it parses the same and
//!   one byte shorter is `Incomplete`; `Incomplete` only below 16 KiB;
//!   decisions never change as bytes arrive; when the hand-written request
//!   line parser also accepts the line, both see the same target.

use crate::mutate::{self, escape};
use crate::targets::http_gen::{self, GenHead};
use crate::{cut_points, is_within, Checked, Cx, Outcome, Rng, Target, Violation};
use sticky_session_rs::parsers::forwarded::{parse_forwarded, parse_x_forwarded_for};
use sticky_session_rs::parsers::http_head::{
  header_values, parse_request_head, request_line_target, HeadError, RequestHead, MAX_REQUEST_HEAD_LEN,
};
use sticky_session_rs::parsers::Parse;

pub struct RequestHeadTarget;

#[derive(Debug)]
pub struct Case {
  pub bytes: Vec<u8>,
  pub max_headers: usize,
  /// A generated head at the start of `bytes`.
  pub expect: Option<GenHead>,
}

const DICTIONARY: &[&[u8]] = &[
  b"GET ",
  b" HTTP/1.1\r\n",
  b" HTTP/1.0\n",
  b"\r\n",
  b"\r\n\r\n",
  b"\n\n",
  b": ",
  b"X-Forwarded-For: ",
  b"Forwarded: for=",
  b"\r\n ",
  b"\t",
  b"HTTP/2.0",
];

/// The limit the accept loop passes, and edge values around it.
fn max_headers(rng: &mut Rng, header_count: usize) -> usize {
  match rng.below(8) {
    0 => usize::MAX,
    1 => header_count,
    2 => header_count.saturating_sub(1),
    3 => rng.small_len(40),
    4 => 0,
    _ => 128,
  }
}

impl Target for RequestHeadTarget {
  const NAME: &'static str = "request_head";
  const FUNCTIONS: &'static str = "parse_request_head, header_values (+ forwarding parsers on its headers)";
  type Case = Case;

  fn generate(rng: &mut Rng) -> Case {
    match rng.below(10) {
      0..=1 => {
        let len = if rng.chance(1, 32) { rng.range(0, 17_000) } else { rng.small_len(400) };
        let mut bytes = rng.bytes(len);
        let start: &[u8] =
          rng.pick::<&[u8]>(&[&b""[..], b"GET / HTTP/1.1\r\n", b"GET ", b"\r\n", b"GET / HTTP/1.1\r\nHost: a"]);
        bytes.splice(0..0, start.iter().copied());
        let max_headers = max_headers(rng, 4);
        Case { bytes, max_headers, expect: None }
      }
      2..=5 => {
        let head = http_gen::head(rng);
        let max_headers = max_headers(rng, head.headers.len());
        let mut bytes = head.bytes.clone();
        let trailing = rng.small_len(32);
        bytes.extend(rng.bytes(trailing));
        Case { bytes, max_headers, expect: Some(head) }
      }
      _ => {
        let head = http_gen::head(rng);
        let max_headers = max_headers(rng, head.headers.len());
        let mut bytes = head.bytes;
        let max_len = if bytes.len() > 4000 { 20_000 } else { 2000 };
        mutate::mutate(rng, &mut bytes, DICTIONARY, max_len);
        Case { bytes, max_headers, expect: None }
      }
    }
  }

  fn parts(case: &Case) -> Vec<Vec<u8>> {
    vec![case.bytes.clone(), case.max_headers.to_string().into_bytes()]
  }

  fn from_parts(parts: Vec<Vec<u8>>) -> Case {
    let mut parts = parts.into_iter();
    let bytes = parts.next().unwrap_or_default();
    let max_headers = parts
      .next()
      .and_then(|text| String::from_utf8(text).ok())
      .and_then(|text| text.trim().parse().ok())
      .unwrap_or(128);
    Case { bytes, max_headers, expect: None }
  }

  fn from_fuzz_input(data: &[u8]) -> Case {
    // The first byte picks the header limit.
    let (max_headers, bytes) = match data.split_first() {
      Some((&first, rest)) => (if first == 0xff { usize::MAX } else { usize::from(first) }, rest.to_vec()),
      None => (128, Vec::new()),
    };
    Case { bytes, max_headers, expect: None }
  }

  fn check(case: &Case, cx: &mut Cx) -> Checked {
    let outcome = check_any(&case.bytes, case.max_headers, cx)?;
    if let Some(head) = &case.expect {
      check_generated(case, head, cx)?;
    }
    Ok(outcome)
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let case = Self::from_parts(parts.to_vec());
    format!(
      "parse_request_head({}, {}) = {:?}",
      escape(&case.bytes, 300),
      case.max_headers,
      parse_request_head(&case.bytes, case.max_headers)
    )
  }
}

fn parse<'a>(cx: &mut Cx, bytes: &'a [u8], max_headers: usize) -> Parse<RequestHead<'a>, HeadError> {
  cx.call(parse_request_head(bytes, max_headers))
}

fn input(bytes: &[u8], max_headers: usize) -> Vec<Vec<u8>> {
  vec![bytes.to_vec(), max_headers.to_string().into_bytes()]
}

fn is_token_byte(byte: u8) -> bool {
  byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Invariants that hold for any input.
pub fn check_any(bytes: &[u8], max_headers: usize, cx: &mut Cx) -> Checked {
  let result = parse(cx, bytes, max_headers);
  let fail = |message: String| Err(Violation::on_parts(input(bytes, max_headers), message));
  let outcome = match &result {
    Parse::Complete(head) => {
      let len = head.head_len;
      if len == 0 || len > bytes.len() || len > MAX_REQUEST_HEAD_LEN {
        return fail(format!("head_len {len} for {} input bytes (cap {MAX_REQUEST_HEAD_LEN})", bytes.len()));
      }
      let head_bytes = &bytes[..len];
      if head_bytes.last() != Some(&b'\n') {
        return fail(format!("head of {len} bytes does not end with LF"));
      }
      if head.headers.len() > max_headers || head.version > 1 {
        return fail(format!("{} headers (max {max_headers}), version {}", head.headers.len(), head.version));
      }
      let method_ok = !head.method.is_empty() && head.method.bytes().all(is_token_byte);
      let target_ok =
        !head.target.is_empty() && head.target.bytes().all(|byte| (0x21..=0x7e).contains(&byte) || byte >= 0x80);
      if !method_ok || !target_ok {
        return fail(format!("method {:?} or target {:?} has bytes httparse should refuse", head.method, head.target));
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
        return fail("a field does not borrow from the head, or a header name is not a token".into());
      }
      let exact = parse(cx, head_bytes, max_headers);
      if exact != result {
        return Err(Violation::on_parts(input(head_bytes, max_headers), format!("head alone parses as {exact:?}")));
      }
      let shorter = parse(cx, &head_bytes[..len - 1], max_headers);
      if shorter != Parse::Incomplete {
        return Err(Violation::on_parts(
          input(&head_bytes[..len - 1], max_headers),
          format!("head without its last byte is {shorter:?}, expected Incomplete"),
        ));
      }
      // The hand-written request line parser must agree on the target.
      if let Parse::Complete(target) = cx.call(request_line_target(bytes)) {
        if target != head.target.as_bytes() {
          return fail(format!(
            "httparse found target {:?} but request_line_target {:?}",
            escape(head.target.as_bytes(), 80),
            escape(target, 80)
          ));
        }
      }
      // What the accept loop does next with the head.
      let forwarded_for = header_values(head, "x-forwarded-for");
      let forwarded = header_values(head, "Forwarded");
      let expected_count =
        |name: &str| head.headers.iter().filter(|header| header.name.eq_ignore_ascii_case(name)).count();
      if forwarded_for.len() != expected_count("X-Forwarded-For") || forwarded.len() != expected_count("forwarded") {
        return fail("header_values missed or invented values".into());
      }
      cx.call(parse_x_forwarded_for(&forwarded_for));
      cx.call(parse_forwarded(&forwarded));
      Outcome::Complete
    }
    Parse::Incomplete => {
      if bytes.len() >= MAX_REQUEST_HEAD_LEN {
        return fail(format!("Incomplete after {} bytes", bytes.len()));
      }
      Outcome::Incomplete
    }
    Parse::Invalid(error) => {
      if let HeadError::TooManyHeaders { max } = error {
        // httparse reports this only after reading max + 1 whole header
        // lines, so the head must hold that many before its blank line.
        let lines = header_lines(&bytes[..bytes.len().min(MAX_REQUEST_HEAD_LEN)]);
        if *max != max_headers || lines <= *max {
          return fail(format!(
            "TooManyHeaders {{ max: {max} }} (limit {max_headers}) for a head with {lines} header lines"
          ));
        }
      }
      let mut longer = bytes.to_vec();
      let extra = cx.rng.small_len(16);
      longer.extend((0..extra).map(|_| *cx.rng.pick(b"\r\n :aGET/HTTP1.")));
      let later = parse(cx, &longer, max_headers);
      if !later.is_invalid() {
        return Err(Violation::on_parts(
          input(&longer, max_headers),
          format!("Invalid input became {later:?} with more bytes"),
        ));
      }
      Outcome::Invalid
    }
  };
  for cut in cut_points(&mut cx.rng, bytes.len(), 64, 8, &[]) {
    let prefix = &bytes[..cut];
    match parse(cx, prefix, max_headers) {
      Parse::Complete(head) if !matches!(&result, Parse::Complete(full) if full.head_len == head.head_len) => {
        return fail(format!(
          "prefix of {cut} bytes is Complete (head_len {}) but the whole is {result:?}",
          head.head_len
        ));
      }
      Parse::Invalid(error) if !result.is_invalid() => {
        return fail(format!("prefix of {cut} bytes is Invalid({error:?}) but the whole is {result:?}"));
      }
      _ => {}
    }
  }
  Ok(outcome)
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

fn check_generated(case: &Case, head: &GenHead, cx: &mut Cx) -> Result<(), Violation> {
  let bytes = &case.bytes[..];
  let max_headers = case.max_headers;
  let head_len = head.bytes.len();
  let got = parse(cx, bytes, max_headers);
  let fail = |message: String| Err(Violation::on_parts(input(bytes, max_headers), message));
  if std::str::from_utf8(&head.target.bytes).is_err() {
    // httparse hands out the target as `&str` and refuses one that is not
    // UTF-8 (obs-text is otherwise allowed), before it looks at headers.
    if got != Parse::Invalid(HeadError::Malformed { source: httparse::Error::Token }) {
      return fail(format!("head with a non-UTF-8 target gave {got:?}"));
    }
    return Ok(());
  }
  if head_len > MAX_REQUEST_HEAD_LEN {
    if !got.is_invalid() {
      return fail(format!("head of {head_len} bytes, over the cap, gave {got:?}"));
    }
    return Ok(());
  }
  if head.headers.len() > max_headers {
    if got != Parse::Invalid(HeadError::TooManyHeaders { max: max_headers }) {
      return fail(format!("head with {} headers, max {max_headers}, gave {got:?}", head.headers.len()));
    }
    return Ok(());
  }
  let Parse::Complete(parsed) = &got else {
    return fail(format!(
      "generated head ({head_len} bytes, {} headers, max {max_headers}) gave {got:?}",
      head.headers.len()
    ));
  };
  let headers_match = parsed.headers.len() == head.headers.len()
    && parsed
      .headers
      .iter()
      .zip(&head.headers)
      .all(|(got, (name, value))| got.name.as_bytes() == name && got.value == value);
  if parsed.head_len != head_len
    || parsed.method.as_bytes() != head.method
    || parsed.target.as_bytes() != head.target.bytes
    || parsed.version != head.version
    || !headers_match
  {
    let first_difference = parsed
      .headers
      .iter()
      .zip(&head.headers)
      .find(|(got, (name, value))| got.name.as_bytes() != name || got.value != value)
      .map(|(got, (name, value))| {
        format!("{:?}: {:?} vs {:?}: {:?}", got.name, escape(got.value, 60), escape(name, 60), escape(value, 60))
      });
    return fail(format!(
      "generated head parsed differently: head_len {} vs {head_len}, {} vs {} headers, first difference {first_difference:?}",
      parsed.head_len,
      parsed.headers.len(),
      head.headers.len()
    ));
  }
  let newlines: Vec<usize> =
    head.bytes.iter().enumerate().filter(|(_, byte)| **byte == b'\n').map(|(at, _)| at).collect();
  let mut boundaries: Vec<usize> =
    (0..6).map(|_| newlines[cx.rng.below(newlines.len())]).flat_map(|at| [at, at + 1]).collect();
  boundaries.extend(head_len.saturating_sub(4)..head_len);
  for cut in cut_points(&mut cx.rng, head_len, 96, 16, &boundaries) {
    if cut >= head_len {
      continue;
    }
    let prefix = &bytes[..cut];
    let got = parse(cx, prefix, max_headers);
    if got != Parse::Incomplete {
      return Err(Violation::on_parts(
        input(prefix, max_headers),
        format!("strict prefix ({cut} of {head_len} bytes) of a valid head gave {got:?}"),
      ));
    }
  }
  Ok(())
}
