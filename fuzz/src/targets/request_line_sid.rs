//! `request_line_sid` and `request_line_target` (the hand-written request
//! line parser).
//!
//! Invariants:
//! - a valid request line (after optional empty lines) followed by anything
//!   gives the expected sid, handshake or sid error; every strict prefix of
//!   the line is `Incomplete`; lines longer than 8 KiB are
//!   `Invalid(RequestLineTooLong)` once 8 KiB have arrived and `Incomplete`
//!   before;
//! - for any bytes: `request_line_sid` and `request_line_target` agree; a
//!   `Complete` target is exactly the middle field of the first CRLF-terminated
//!   line (method token, target, `HTTP/1.0` or `HTTP/1.1`) within 8 KiB; a
//!   returned sid is 1-128 unreserved bytes and is what `find_query_param`
//!   finds; sid errors match the number and content of `sid` parameters;
//!   `Incomplete` only below 8 KiB; decisions never change as bytes arrive;
//!   when httparse also parses the head, it sees the same target.

use crate::mutate::{self, escape};
use crate::targets::http_gen::{self, SidExpect};
use crate::{cut_points, is_within, offset_in, Checked, Cx, Outcome, Rng, Target, Violation};
use sticky_session_rs::parsers::http_head::{
  find_query_param, parse_request_head, request_line_sid, request_line_target, HeadError, MAX_REQUEST_LINE_LEN,
  MAX_SID_LEN,
};
use sticky_session_rs::parsers::Parse;

pub struct RequestLineSidTarget;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
  Nothing,
  /// The first `line_len` bytes are empty lines plus one valid request line
  /// with `target`; the sid outcome is `sid`.
  Line {
    line_len: usize,
    target: Vec<u8>,
    sid: SidExpect,
  },
}

#[derive(Debug)]
pub struct Case {
  pub bytes: Vec<u8>,
  pub expect: Expect,
}

const DICTIONARY: &[&[u8]] = &[
  b"GET ",
  b" HTTP/1.1\r\n",
  b" HTTP/1.0",
  b"HTTP/",
  b"\r\n",
  b"?sid=",
  b"&sid=",
  b"sid",
  b"#",
  b"%",
  b"~",
  b"/socket.io/?EIO=4&transport=polling",
];

impl Target for RequestLineSidTarget {
  const NAME: &'static str = "request_line_sid";
  const FUNCTIONS: &'static str = "request_line_sid, request_line_target";
  type Case = Case;

  fn generate(rng: &mut Rng) -> Case {
    match rng.below(10) {
      0..=1 => {
        let len = if rng.chance(1, 32) { rng.range(0, 9000) } else { rng.small_len(200) };
        let mut bytes = rng.bytes(len);
        let start: &[u8] = rng.pick::<&[u8]>(&[&b""[..], b"GET ", b"GET /?sid=", b"\r\n", b"\r", b"GET / HTTP/1."]);
        bytes.splice(0..0, start.iter().copied());
        Case { bytes, expect: Expect::Nothing }
      }
      2..=5 => valid_line(rng),
      _ => {
        let Case { mut bytes, .. } = valid_line(rng);
        let max_len = if bytes.len() > 4000 { 9000 } else { 1000 };
        mutate::mutate(rng, &mut bytes, DICTIONARY, max_len);
        Case { bytes, expect: Expect::Nothing }
      }
    }
  }

  fn parts(case: &Case) -> Vec<Vec<u8>> {
    vec![case.bytes.clone()]
  }

  fn from_parts(mut parts: Vec<Vec<u8>>) -> Case {
    Case { bytes: parts.drain(..).next().unwrap_or_default(), expect: Expect::Nothing }
  }

  fn check(case: &Case, cx: &mut Cx) -> Checked {
    let bytes = &case.bytes[..];
    let outcome = check_any(bytes, cx)?;
    if let Expect::Line { line_len, target, sid } = &case.expect {
      check_line(bytes, *line_len, target, sid, cx)?;
    }
    Ok(outcome)
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let bytes = parts.first().map(Vec::as_slice).unwrap_or_default();
    format!(
      "request_line_sid({}) = {:?}\nrequest_line_target(..) = {:?}",
      escape(bytes, 200),
      request_line_sid(bytes).map(|sid| sid.map(|sid| escape(sid, 200))),
      request_line_target(bytes).map(|target| escape(target, 200)),
    )
  }
}

fn valid_line(rng: &mut Rng) -> Case {
  let mut bytes = Vec::new();
  for _ in 0..rng.small_len(3) {
    bytes.extend_from_slice(b"\r\n");
  }
  let mut target = http_gen::target(rng);
  let sid = http_gen::sid_expect(&target);
  let version: &[u8] = if rng.chance(7, 8) { b"HTTP/1.1" } else { b"HTTP/1.0" };
  let method = http_gen::method(rng);
  if rng.chance(1, 24) {
    // Pad the target so that the line ends within a few bytes of the cap.
    let fixed = bytes.len() + method.len() + 1 + target.bytes.len() + 1 + version.len() + 2;
    let wanted = MAX_REQUEST_LINE_LEN + rng.range(0, 4) - 2;
    let pad = wanted.saturating_sub(fixed + 5).max(1);
    target.bytes.extend_from_slice(b"&pad=");
    target.bytes.extend(std::iter::repeat_n(b'p', pad));
  }
  bytes.extend_from_slice(&method);
  bytes.push(b' ');
  bytes.extend_from_slice(&target.bytes);
  bytes.push(b' ');
  bytes.extend_from_slice(version);
  bytes.extend_from_slice(b"\r\n");
  let line_len = bytes.len();
  match rng.below(4) {
    0 => bytes.extend_from_slice(b"Host: a\r\nCookie: sid=attacker\r\nReferer: /?sid=x\r\n\r\n"),
    1 => {
      let len = rng.small_len(40);
      bytes.extend(rng.bytes(len));
    }
    _ => {}
  }
  Case { bytes, expect: Expect::Line { line_len, target: target.bytes, sid } }
}

fn is_token_byte(byte: u8) -> bool {
  byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn is_unreserved(byte: u8) -> bool {
  byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte)
}

/// The request line's target as the doc comment specifies it, found
/// independently: skip CRLF pairs, take the first CRLF-terminated line
/// within 8 KiB, split it into exactly three space-separated fields.
fn reference_target(bytes: &[u8]) -> Option<&[u8]> {
  let mut start = 0;
  while bytes[start..].starts_with(b"\r\n") {
    start += 2;
  }
  let line_len = bytes[start..].windows(2).position(|pair| pair == b"\r\n")?;
  if start + line_len + 2 > MAX_REQUEST_LINE_LEN {
    return None;
  }
  let line = &bytes[start..start + line_len];
  let fields: Vec<&[u8]> = line.split(|&byte| byte == b' ').collect();
  let [method, target, version] = fields.as_slice() else {
    return None;
  };
  let method_ok = !method.is_empty() && method.iter().all(|&byte| is_token_byte(byte));
  let target_ok = !target.is_empty() && target.iter().all(|&byte| (0x21..=0x7e).contains(&byte) || byte >= 0x80);
  let version_ok = *version == b"HTTP/1.0" || *version == b"HTTP/1.1";
  (method_ok && target_ok && version_ok).then_some(*target)
}

/// The `sid` values in the query, in order: the query runs from the first
/// `?` to the first `#`, parameters are split on `&` and at their first `=`.
fn reference_sids(target: &[u8]) -> Vec<&[u8]> {
  let end = target.iter().position(|&byte| byte == b'#').unwrap_or(target.len());
  let Some(question_mark) = target[..end].iter().position(|&byte| byte == b'?') else {
    return Vec::new();
  };
  target[question_mark + 1..end]
    .split(|&byte| byte == b'&')
    .filter(|param| !param.is_empty())
    .filter_map(|param| {
      let (name, value) = match param.iter().position(|&byte| byte == b'=') {
        Some(at) => (&param[..at], &param[at + 1..]),
        None => (param, &param[param.len()..]),
      };
      (name == b"sid").then_some(value)
    })
    .collect()
}

type SidResult<'a> = Parse<Option<&'a [u8]>, HeadError>;

fn sid_of<'a>(cx: &mut Cx, bytes: &'a [u8]) -> SidResult<'a> {
  cx.call(request_line_sid(bytes))
}

fn target_of<'a>(cx: &mut Cx, bytes: &'a [u8]) -> Parse<&'a [u8], HeadError> {
  cx.call(request_line_target(bytes))
}

fn is_sid_error(error: &HeadError) -> bool {
  matches!(
    error,
    HeadError::EmptySid | HeadError::SidTooLong { .. } | HeadError::SidForbiddenByte { .. } | HeadError::DuplicateSid
  )
}

/// Invariants that hold for any input.
pub fn check_any(bytes: &[u8], cx: &mut Cx) -> Checked {
  let sid = sid_of(cx, bytes);
  let target = target_of(cx, bytes);
  let fail = |message: String| Err(Violation::on(bytes, format!("{message}; sid {sid:?}, target {target:?}")));
  let outcome = match (&target, &sid) {
    (Parse::Incomplete, Parse::Incomplete) => {
      if bytes.len() >= MAX_REQUEST_LINE_LEN {
        return fail(format!("Incomplete after {} bytes", bytes.len()));
      }
      Outcome::Incomplete
    }
    (Parse::Invalid(target_error), Parse::Invalid(sid_error)) if target_error == sid_error => {
      if is_sid_error(target_error) {
        return fail("request_line_target reports a sid error".into());
      }
      Outcome::Invalid
    }
    (Parse::Complete(found), sid) => {
      if !is_within(bytes, found) {
        return fail("target is not a slice of the input".into());
      }
      match reference_target(bytes) {
        Some(expected) if expected == *found && offset_in(bytes, expected) == offset_in(bytes, found) => {}
        expected => {
          return fail(format!(
            "target {:?} differs from the reference {:?}",
            escape(found, 80),
            expected.map(|t| escape(t, 80))
          ))
        }
      }
      let sids: Vec<&[u8]> = reference_sids(found);
      match sid {
        Parse::Complete(Some(value)) => {
          let valid = !value.is_empty() && value.len() <= MAX_SID_LEN && value.iter().all(|&byte| is_unreserved(byte));
          let found_by_query = cx.call(find_query_param(found, b"sid"));
          if !valid || sids.len() != 1 || found_by_query != Some(*value) || !is_within(found, value) {
            return fail(format!("sid {:?} with reference sids {sids:?}", escape(value, 80)));
          }
          Outcome::Complete
        }
        Parse::Complete(None) => {
          if !sids.is_empty() {
            return fail(format!("handshake, but the reference finds sids {sids:?}"));
          }
          Outcome::Complete
        }
        Parse::Invalid(error) => {
          let consistent = match (error, sids.as_slice()) {
            (HeadError::DuplicateSid, [_, _, ..]) => true,
            (HeadError::EmptySid, [only]) => only.is_empty(),
            (HeadError::SidTooLong { len, max }, [only]) => only.len() == *len && *len > *max && *max == MAX_SID_LEN,
            (HeadError::SidForbiddenByte { byte, offset }, [only]) => {
              only.get(*offset) == Some(byte)
                && !is_unreserved(*byte)
                && only[..*offset].iter().all(|&b| is_unreserved(b))
                && only.len() <= MAX_SID_LEN
            }
            _ => false,
          };
          if !consistent {
            return fail(format!("sid error {error:?} with reference sids {sids:?}"));
          }
          Outcome::Invalid
        }
        Parse::Incomplete => return fail("target Complete but sid Incomplete".into()),
      }
    }
    _ => return fail("request_line_sid and request_line_target disagree".into()),
  };

  // Appending bytes never changes a decision.
  let mut longer = bytes.to_vec();
  let extra = cx.rng.small_len(16);
  longer.extend((0..extra).map(|_| *cx.rng.pick(b"\r\n GET/?sid=aHTTP1.#&%")));
  let longer_sid = sid_of(cx, &longer);
  let changed = match (&sid, &longer_sid) {
    (Parse::Incomplete, _) => false,
    (Parse::Invalid(_), later) => !later.is_invalid(),
    (Parse::Complete(earlier), Parse::Complete(later)) => earlier != later,
    (Parse::Complete(_), _) => true,
  };
  if changed {
    return Err(Violation::on(&longer, format!("{sid:?} became {longer_sid:?} when bytes were appended")));
  }
  for cut in cut_points(&mut cx.rng, bytes.len(), 128, 12, &[]) {
    let prefix = &bytes[..cut];
    match sid_of(cx, prefix) {
      Parse::Complete(value) if sid != Parse::Complete(value) => {
        return Err(Violation::on(
          bytes,
          format!("prefix of {cut} bytes is Complete({value:?}) but the whole is {sid:?}"),
        ));
      }
      Parse::Invalid(error) if !sid.is_invalid() => {
        return Err(Violation::on(
          bytes,
          format!("prefix of {cut} bytes is Invalid({error:?}) but the whole is {sid:?}"),
        ));
      }
      _ => {}
    }
  }

  // httparse, parsing the whole head, must see the same target.
  if let (Parse::Complete(found), Parse::Complete(head)) = (&target, cx.call(parse_request_head(bytes, 128))) {
    if head.target.as_bytes() != *found {
      return Err(Violation::on(
        bytes,
        format!(
          "request_line_target found {:?} but httparse {:?}",
          escape(found, 80),
          escape(head.target.as_bytes(), 80)
        ),
      ));
    }
  }
  Ok(outcome)
}

fn check_line(bytes: &[u8], line_len: usize, target: &[u8], sid: &SidExpect, cx: &mut Cx) -> Result<(), Violation> {
  let too_long = line_len > MAX_REQUEST_LINE_LEN;
  let expected: SidResult<'_> = if too_long {
    Parse::Invalid(HeadError::RequestLineTooLong { max: MAX_REQUEST_LINE_LEN })
  } else {
    match sid {
      SidExpect::Handshake => Parse::Complete(None),
      SidExpect::Sid(value) => Parse::Complete(Some(value)),
      SidExpect::Error(error) => Parse::Invalid(error.clone()),
    }
  };
  let got = sid_of(cx, bytes);
  if got != expected {
    return Err(Violation::on(bytes, format!("valid request line gave {got:?}, expected {expected:?}")));
  }
  if !too_long {
    let got_target = target_of(cx, bytes);
    if got_target != Parse::Complete(target) {
      return Err(Violation::on(
        bytes,
        format!("request_line_target gave {got_target:?}, expected {:?}", escape(target, 80)),
      ));
    }
  }
  let boundaries: Vec<usize> = (line_len.saturating_sub(12)..line_len).collect();
  for cut in cut_points(&mut cx.rng, line_len, 256, 24, &boundaries) {
    if cut >= line_len {
      continue;
    }
    let prefix = &bytes[..cut];
    let got = sid_of(cx, prefix);
    let ok = if cut >= MAX_REQUEST_LINE_LEN {
      got == Parse::Invalid(HeadError::RequestLineTooLong { max: MAX_REQUEST_LINE_LEN })
    } else {
      got == Parse::Incomplete
    };
    if !ok {
      return Err(Violation::on(
        prefix,
        format!("strict prefix ({cut} of {line_len} bytes) of a valid request line gave {got:?}"),
      ));
    }
  }
  for cut in [line_len, (line_len + bytes.len()) / 2, bytes.len()] {
    let got = sid_of(cx, &bytes[..cut]);
    if got != expected {
      return Err(Violation::on(&bytes[..cut], format!("request line plus {cut} bytes gave {got:?}")));
    }
  }
  Ok(())
}
