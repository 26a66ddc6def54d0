//! `request_line_sid` and `request_line_target` (the hand-written request
//! line parser).
//!
//! Invariants:
//! - a valid request line (after optional empty lines) followed by anything
//!   gives the expected sid, handshake or sid error and the expected target;
//!   every strict prefix of the line is `Incomplete`; adding bytes after the
//!   line changes nothing; lines longer than 8 KiB are
//!   `Invalid(RequestLineTooLong)` once 8 KiB have arrived and `Incomplete`
//!   before;
//! - for any bytes: `request_line_sid` and `request_line_target` agree; a
//!   `Complete` target is exactly the middle field of the first
//!   CRLF-terminated line (method token, target, `HTTP/1.0` or `HTTP/1.1`)
//!   within 8 KiB, found by an independent reference; a returned sid is
//!   1-128 unreserved bytes inside the target and is what `find_query_param`
//!   finds; sid errors match the number and content of `sid` parameters;
//!   `Incomplete` only below 8 KiB; decisions never change as bytes arrive;
//!   when httparse also parses the head, it sees the same target.

use crate::http::{self, is_unreserved, SidExpect};
use crate::{
  broken, cut_points, escape, is_token_byte, is_within, offset_in, one_in, range, small_len, Bytes, Gen, NearMiss,
  Render,
};
use arbitrary::{Arbitrary, Unstructured};
use sticky_session_rs::core::parsers::http_head::{
  find_query_param, parse_request_head, request_line_sid, request_line_target, HeadError, MAX_REQUEST_LINE_LEN,
  MAX_SID_LEN,
};
use sticky_session_rs::core::parsers::Parse;

#[derive(Arbitrary, Debug)]
pub enum Input {
  Raw(Bytes),
  /// Empty lines, a valid request line, then anything.
  Line(ValidLine, Bytes),
  NearMiss(NearMiss<ValidLine>),
}

#[derive(Debug)]
pub struct ValidLine {
  pub bytes: Bytes,
  pub target: Bytes,
  pub sid: SidExpect,
  /// Header lines after the request line.
  pub headers: Bytes,
}

impl<'a> Arbitrary<'a> for ValidLine {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let mut bytes = b"\r\n".repeat(small_len(u, 3)?);
    let mut target = http::target(u)?;
    let sid = http::sid_expect(&target);
    let version: &[u8] = if one_in(u, 8)? { b"HTTP/1.0" } else { b"HTTP/1.1" };
    let method = http::method(u)?;
    if one_in(u, 24)? {
      // Pad the target so that the line ends within a few bytes of the cap.
      let fixed = bytes.len() + method.len() + 1 + target.bytes.len() + 1 + version.len() + 2;
      let wanted = MAX_REQUEST_LINE_LEN + range(u, 0, 4)? - 2;
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
    let headers = Bytes(http::after_request_line(u)?.to_vec());
    Ok(ValidLine { bytes: Bytes(bytes), target: Bytes(target.bytes), sid, headers })
  }
}

impl Render for ValidLine {
  const TOKENS: &'static [&'static [u8]] = &[
    b"GET ",
    b" HTTP/1.1\r\n",
    b" HTTP/1.0",
    b"HTTP/",
    b"\r\n",
    b"\n",
    b"?sid=",
    b"&sid=",
    b"sid",
    b"#",
    b"%",
    b"~",
    b" ",
    b"\x80",
    b"/socket.io/?EIO=4&transport=polling",
  ];

  fn render(&self) -> Vec<u8> {
    [&self.bytes.0[..], &self.headers.0].concat()
  }
}

pub fn check(input: &Input) {
  match input {
    Input::Raw(Bytes(bytes)) | Input::NearMiss(NearMiss(Bytes(bytes), _)) => check_any(bytes),
    Input::Line(line, Bytes(trailing)) => {
      let bytes = [&line.bytes.0[..], &line.headers.0, trailing].concat();
      check_any(&bytes);
      check_line(&bytes, line);
    }
  }
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
  let fields: Vec<&[u8]> = bytes[start..start + line_len].split(|&byte| byte == b' ').collect();
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

fn is_sid_error(error: &HeadError) -> bool {
  matches!(
    error,
    HeadError::EmptySid | HeadError::SidTooLong { .. } | HeadError::SidForbiddenByte { .. } | HeadError::DuplicateSid
  )
}

/// Bytes appended to an input, after which a decision must not change.
const APPENDED: &[&[u8]] = &[b"\r\n", b" HTTP/1.1\r\n", b"GET /?sid=a HTTP/1.1\r\n", b"&sid=b#\r\n"];

/// Invariants that hold for any input.
pub fn check_any(bytes: &[u8]) {
  let sid = request_line_sid(bytes);
  let target = request_line_target(bytes);
  let fail = |message: String| -> ! { broken(bytes, format!("{message}; sid {sid:?}, target {target:?}")) };
  match (&target, &sid) {
    (Parse::Incomplete, Parse::Incomplete) => {
      if bytes.len() >= MAX_REQUEST_LINE_LEN {
        fail(format!("Incomplete after {} bytes", bytes.len()));
      }
    }
    (Parse::Invalid(target_error), Parse::Invalid(sid_error)) if target_error == sid_error => {
      if is_sid_error(target_error) {
        fail("request_line_target reports a sid error".into());
      }
    }
    (Parse::Complete(found), sid) => {
      if !is_within(bytes, found) {
        fail("target is not a slice of the input".into());
      }
      match reference_target(bytes) {
        Some(expected) if expected == *found && offset_in(bytes, expected) == offset_in(bytes, found) => {}
        expected => fail(format!(
          "target {:?} differs from the reference {:?}",
          escape(found, 80),
          expected.map(|target| escape(target, 80))
        )),
      }
      let sids = reference_sids(found);
      match sid {
        Parse::Complete(Some(value)) => {
          let valid = !value.is_empty() && value.len() <= MAX_SID_LEN && value.iter().all(|&byte| is_unreserved(byte));
          if !valid || sids.len() != 1 || find_query_param(found, b"sid") != Some(*value) || !is_within(found, value) {
            fail(format!("sid {:?} with reference sids {sids:?}", escape(value, 80)));
          }
        }
        Parse::Complete(None) => {
          if !sids.is_empty() {
            fail(format!("handshake, but the reference finds sids {sids:?}"));
          }
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
            fail(format!("sid error {error:?} with reference sids {sids:?}"));
          }
        }
        Parse::Incomplete => fail("target Complete but sid Incomplete".into()),
      }
    }
    _ => fail("request_line_sid and request_line_target disagree".into()),
  }

  // Appending bytes never changes a decision.
  for appended in APPENDED {
    let longer = [bytes, appended].concat();
    let later = request_line_sid(&longer);
    let changed = match (&sid, &later) {
      (Parse::Incomplete, _) => false,
      (Parse::Invalid(_), later) => !later.is_invalid(),
      (Parse::Complete(earlier), Parse::Complete(later)) => earlier != later,
      (Parse::Complete(_), _) => true,
    };
    if changed {
      broken(&longer, format!("{sid:?} became {later:?} when bytes were appended"));
    }
  }
  for cut in cut_points(bytes, 128, 12, &[]) {
    match request_line_sid(&bytes[..cut]) {
      Parse::Complete(value) if sid != Parse::Complete(value) => {
        fail(format!("prefix of {cut} bytes is Complete({value:?}) but the whole is {sid:?}"))
      }
      Parse::Invalid(error) if !sid.is_invalid() => {
        fail(format!("prefix of {cut} bytes is Invalid({error:?}) but the whole is {sid:?}"))
      }
      _ => {}
    }
  }

  // httparse, parsing the whole head, must see the same target.
  if let (Parse::Complete(found), Parse::Complete(head)) = (&target, parse_request_head(bytes, 128)) {
    if head.target.as_bytes() != *found {
      fail(format!(
        "request_line_target found {:?} but httparse {:?}",
        escape(found, 80),
        escape(head.target.as_bytes(), 80)
      ));
    }
  }
}

fn check_line(bytes: &[u8], line: &ValidLine) {
  let line_len = line.bytes.0.len();
  let too_long = line_len > MAX_REQUEST_LINE_LEN;
  let expected: Parse<Option<&[u8]>, HeadError> = if too_long {
    Parse::Invalid(HeadError::RequestLineTooLong { max: MAX_REQUEST_LINE_LEN })
  } else {
    match &line.sid {
      SidExpect::Handshake => Parse::Complete(None),
      SidExpect::Sid(value) => Parse::Complete(Some(value)),
      SidExpect::Error(error) => Parse::Invalid(error.clone()),
    }
  };
  let got = request_line_sid(bytes);
  if got != expected {
    broken(bytes, format!("valid request line gave {got:?}, expected {expected:?}"));
  }
  if !too_long {
    let got_target = request_line_target(bytes);
    if got_target != Parse::Complete(&line.target.0[..]) {
      broken(bytes, format!("request_line_target gave {got_target:?}, expected {:?}", line.target));
    }
  }
  let boundaries: Vec<usize> = (line_len.saturating_sub(12)..line_len).collect();
  for cut in cut_points(&bytes[..line_len], 256, 24, &boundaries) {
    if cut == line_len {
      continue;
    }
    let got = request_line_sid(&bytes[..cut]);
    let ok = if cut >= MAX_REQUEST_LINE_LEN {
      got == Parse::Invalid(HeadError::RequestLineTooLong { max: MAX_REQUEST_LINE_LEN })
    } else {
      got == Parse::Incomplete
    };
    if !ok {
      broken(&bytes[..cut], format!("strict prefix ({cut} of {line_len} bytes) of a valid request line gave {got:?}"));
    }
  }
  for cut in [line_len, (line_len + bytes.len()) / 2, bytes.len()] {
    let got = request_line_sid(&bytes[..cut]);
    if got != expected {
      broken(&bytes[..cut], format!("request line plus {} bytes gave {got:?}", cut - line_len));
    }
  }
}
