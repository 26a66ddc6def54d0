//! HTTP/1.x request head helpers: the request line, the header block, the
//! query string of the request target, and the engine.io `sid` that pins a
//! long-polling or WebSocket client to the worker holding its session.
//!
//! No I/O: every function takes bytes the accept loop has peeked and borrows
//! from them. The full head is parsed with `httparse`; the request line alone
//! is parsed by hand (see [`request_line_sid`] for why).

use super::{is_token_byte, Parse};
use std::fmt;

/// Longest request head [`parse_request_head`] accepts, blank line
/// included. Matches Node's default `--max-http-header-size` (16 KiB), so a
/// head the worker would accept is never rejected here.
pub const MAX_REQUEST_HEAD_LEN: usize = 16 * 1024;

/// Longest request line [`request_line_sid`] accepts, CRLF (and any empty
/// lines before it) included. 8 KiB is what nginx allows per line by
/// default (`large_client_header_buffers`) and leaves ample room for query
/// tokens next to the engine.io parameters.
pub const MAX_REQUEST_LINE_LEN: usize = 8 * 1024;

/// Longest engine.io session id accepted. The default generator
/// (`base64id`) produces 20 characters and UUIDs take 36; 128 leaves room
/// for custom `generateId` functions without letting a client make the
/// routing key arbitrarily large.
pub const MAX_SID_LEN: usize = 128;

/// The smallest header line, `a:` plus a bare LF (httparse accepts LF line
/// ends). No head within [`MAX_REQUEST_HEAD_LEN`] can hold more headers than
/// this allows. (It was 4, assuming CRLF: the fuzz harness found a valid head
/// of 4482 bare-LF lines refused as "too many headers".)
const MIN_HEADER_LINE_LEN: usize = 3;

const SID_PARAM: &[u8] = b"sid";
const HTTP_VERSIONS: [&[u8]; 2] = [b"HTTP/1.0", b"HTTP/1.1"];

/// A parsed request head; everything borrows from the peeked bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
  pub method: &'a str,
  /// The request target exactly as sent (origin-form `/path?query` or
  /// absolute-form `http://host/path?query`), not decoded.
  pub target: &'a str,
  /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
  pub version: u8,
  /// Header fields in the order received, duplicates kept.
  pub headers: Vec<HeaderField<'a>>,
  /// Bytes from the start of the buffer up to and including the blank line
  /// that ends the head; the body (or the next protocol) starts here.
  pub head_len: usize,
}

/// One header field line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
  pub name: &'a str,
  pub value: &'a [u8],
}

/// The part of a request line that is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLinePart {
  Method,
  Target,
  Version,
}

impl fmt::Display for RequestLinePart {
  fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
    formatter.write_str(match self {
      RequestLinePart::Method => "method",
      RequestLinePart::Target => "request target",
      RequestLinePart::Version => "HTTP version",
    })
  }
}

/// Why bytes can never start a usable HTTP/1.x request head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
  #[error("malformed HTTP request head: {source}")]
  Malformed {
    #[source]
    source: httparse::Error,
  },

  #[error("HTTP request head has more than {max} header fields")]
  TooManyHeaders { max: usize },

  #[error("HTTP request head is not finished within {max} bytes")]
  HeadTooLarge { max: usize },

  #[error("HTTP request line is not finished within {max} bytes")]
  RequestLineTooLong { max: usize },

  #[error("HTTP request line has a malformed {part} at offset {offset}")]
  MalformedRequestLine { part: RequestLinePart, offset: usize },

  #[error("engine.io sid is empty")]
  EmptySid,

  #[error("engine.io sid is {len} bytes long, more than the {max} allowed")]
  SidTooLong { len: usize, max: usize },

  #[error("engine.io sid has byte {byte:#04x} at offset {offset}; only A-Z a-z 0-9 - _ . ~ are allowed")]
  SidForbiddenByte { byte: u8, offset: usize },

  #[error("engine.io sid appears more than once in the query string")]
  DuplicateSid,
}

/// Finds the value of the query parameter `name` in a request target.
///
/// The name must match a whole parameter name, byte for byte (case-sensitive,
/// not percent-decoded), at the start of the query string or right after a
/// `&`: `xsid=1` does not match `sid`, nor does `sid=` in the path or in the
/// fragment. The value runs to the next `&`, `#` or the end and is returned
/// undecoded; a parameter without `=` has an empty value. The first
/// occurrence wins. An empty `name` never matches.
pub fn find_query_param<'a>(request_target: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
  if name.is_empty() {
    return None;
  }
  query_params(request_target).find(|(param_name, _)| *param_name == name).map(|(_, value)| value)
}

/// Parses an HTTP/1.x request head (request line and header fields up to the
/// blank line) with at most `max_headers` header fields.
///
/// Heads longer than [`MAX_REQUEST_HEAD_LEN`] are `Invalid`. The syntax rules
/// are httparse's: it skips empty lines before the request line and accepts
/// bare LF line endings.
pub fn parse_request_head(buf: &[u8], max_headers: usize) -> Parse<RequestHead<'_>, HeadError> {
  let window = buf.get(..MAX_REQUEST_HEAD_LEN).unwrap_or(buf);
  // httparse needs a slot per header up front. More slots than the smallest
  // header lines that fit in the window could never be filled, so the
  // caller's limit is clamped rather than trusted with an allocation.
  let slot_count = max_headers.min(MAX_REQUEST_HEAD_LEN / MIN_HEADER_LINE_LEN);
  let mut header_slots = vec![httparse::EMPTY_HEADER; slot_count];
  let mut request = httparse::Request::new(&mut header_slots);
  let head_len = match request.parse(window) {
    Ok(httparse::Status::Complete(head_len)) => head_len,
    Ok(httparse::Status::Partial) if window.len() >= MAX_REQUEST_HEAD_LEN => {
      return Parse::Invalid(HeadError::HeadTooLarge { max: MAX_REQUEST_HEAD_LEN })
    }
    Ok(httparse::Status::Partial) => return Parse::Incomplete,
    Err(httparse::Error::TooManyHeaders) => return Parse::Invalid(HeadError::TooManyHeaders { max: max_headers }),
    Err(source) => return Parse::Invalid(HeadError::Malformed { source }),
  };
  debug_assert!(head_len <= window.len());
  // httparse fills all three before it reports Complete.
  let (Some(method), Some(target), Some(version)) = (request.method, request.path, request.version) else {
    return Parse::Invalid(HeadError::Malformed { source: httparse::Error::Token });
  };
  let headers = request.headers.iter().map(|header| HeaderField { name: header.name, value: header.value }).collect();
  Parse::Complete(RequestHead { method, target, version, headers, head_len })
}

/// All values of the header `name` (compared case-insensitively), in the
/// order received. Per RFC 9110 §5.3 a list-valued header sent on several
/// lines means the same as one line with the values joined by commas, so
/// callers parsing lists (such as `X-Forwarded-For`) should treat the values
/// as consecutive parts of one list.
pub fn header_values<'a>(head: &RequestHead<'a>, name: &str) -> Vec<&'a [u8]> {
  head.headers.iter().filter(|header| header.name.eq_ignore_ascii_case(name)).map(|header| header.value).collect()
}

/// Extracts the engine.io session id from the request line alone:
/// `Complete(Some(sid))` for a request that continues a session,
/// `Complete(None)` for a handshake (no `sid` parameter).
///
/// Only the request line is read, never the headers, so a `Referer` or
/// `Cookie` carrying `sid=` cannot steer routing. The sid comes from the
/// query string (see [`find_query_param`]) and must be 1 to [`MAX_SID_LEN`]
/// bytes of the RFC 3986 unreserved set `A-Z a-z 0-9 - _ . ~`. That covers
/// engine.io's default ids (URL-safe base64) and UUIDs. A percent sign is
/// rejected: the server decodes the query, so `a%62c` and `abc` would name
/// the same session but route differently. A sid that appears twice is
/// rejected, because which one the server uses depends on its query parser.
///
/// The line is parsed by hand rather than with `httparse`, which only
/// reports success once the whole header block has arrived and fails on
/// header bytes that do not matter here. The syntax is stricter than
/// httparse's: the line must end with CRLF (bare LF is rejected), the
/// version must be HTTP/1.0 or HTTP/1.1, and the target must be visible
/// ASCII or bytes >= 0x80. Empty lines (CRLF) before it are skipped. Lines
/// longer than [`MAX_REQUEST_LINE_LEN`] are `Invalid`.
pub fn request_line_sid(buf: &[u8]) -> Parse<Option<&[u8]>, HeadError> {
  let target = match parse_request_line_target(buf) {
    Parse::Complete(target) => target,
    Parse::Incomplete => return Parse::Incomplete,
    Parse::Invalid(error) => return Parse::Invalid(error),
  };
  let mut sids = query_params(target).filter(|(name, _)| *name == SID_PARAM).map(|(_, value)| value);
  let Some(sid) = sids.next() else {
    return Parse::Complete(None);
  };
  if sids.next().is_some() {
    return Parse::Invalid(HeadError::DuplicateSid);
  }
  match validate_sid(sid) {
    Ok(()) => Parse::Complete(Some(sid)),
    Err(error) => Parse::Invalid(error),
  }
}

fn validate_sid(sid: &[u8]) -> Result<(), HeadError> {
  if sid.is_empty() {
    return Err(HeadError::EmptySid);
  }
  if sid.len() > MAX_SID_LEN {
    return Err(HeadError::SidTooLong { len: sid.len(), max: MAX_SID_LEN });
  }
  match sid.iter().position(|&byte| !is_unreserved(byte)) {
    Some(offset) => Err(HeadError::SidForbiddenByte { byte: sid.get(offset).copied().unwrap_or_default(), offset }),
    None => Ok(()),
  }
}

/// RFC 3986 `unreserved`.
fn is_unreserved(byte: u8) -> bool {
  byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

/// The `name=value` pairs of the query string, in order; empty pairs (from
/// `&&`) are skipped.
fn query_params(request_target: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
  // The fragment is cut first: a `?` after `#` does not start a query.
  let before_fragment = request_target.split(|&byte| byte == b'#').next().unwrap_or_default();
  let query = before_fragment
    .iter()
    .position(|&byte| byte == b'?')
    .and_then(|question_mark| before_fragment.get(question_mark.saturating_add(1)..))
    .unwrap_or_default();
  query.split(|&byte| byte == b'&').filter(|param| !param.is_empty()).map(|param| {
    match param.iter().position(|&byte| byte == b'=') {
      Some(equals) => {
        let (name, equals_and_value) = param.split_at(equals);
        (name, equals_and_value.get(1..).unwrap_or_default())
      }
      None => (param, &[][..]),
    }
  })
}

/// The request target of the request line (query included, not decoded), once
/// the line is complete; the same syntax rules as [`request_line_sid`].
pub fn request_line_target(buf: &[u8]) -> Parse<&[u8], HeadError> {
  parse_request_line_target(buf)
}

/// Checks the request line at the start of `buf` and returns its target.
fn parse_request_line_target(buf: &[u8]) -> Parse<&[u8], HeadError> {
  let window = buf.get(..MAX_REQUEST_LINE_LEN).unwrap_or(buf);
  let need_more = || {
    if window.len() >= MAX_REQUEST_LINE_LEN {
      Parse::Invalid(HeadError::RequestLineTooLong { max: MAX_REQUEST_LINE_LEN })
    } else {
      Parse::Incomplete
    }
  };

  let mut line_start = 0;
  while window.get(line_start..).is_some_and(|rest| rest.starts_with(b"\r\n")) {
    line_start = line_start.saturating_add(2);
  }
  let rest = window.get(line_start..).unwrap_or_default();
  if rest == b"\r" {
    // Could be another empty line.
    return need_more();
  }

  let (line, is_terminated) = match rest.windows(2).position(|pair| pair == b"\r\n") {
    Some(line_len) => (rest.get(..line_len).unwrap_or_default(), true),
    None => (rest, false),
  };
  // An unterminated line ending in CR is finished if the next byte is LF,
  // so what precedes the CR must already be a whole version.
  let (line, version_is_finished) = match line.strip_suffix(b"\r") {
    Some(before_carriage_return) if !is_terminated => (before_carriage_return, true),
    _ => (line, is_terminated),
  };
  let malformed = |part, offset_in_line: usize| {
    Parse::Invalid(HeadError::MalformedRequestLine { part, offset: line_start.saturating_add(offset_in_line) })
  };

  let mut parts = line.splitn(3, |&byte| byte == b' ');
  let method = parts.next().unwrap_or_default();
  let target = parts.next();
  let version = parts.next();
  debug_assert!(parts.next().is_none());

  if let Some(offset) = method.iter().position(|&byte| !is_token_byte(byte)) {
    return malformed(RequestLinePart::Method, offset);
  }
  let Some(target) = target else {
    return if version_is_finished { malformed(RequestLinePart::Method, method.len()) } else { need_more() };
  };
  if method.is_empty() {
    return malformed(RequestLinePart::Method, 0);
  }
  let target_offset = method.len().saturating_add(1);
  if let Some(offset) = target.iter().position(|&byte| !is_target_byte(byte)) {
    return malformed(RequestLinePart::Target, target_offset.saturating_add(offset));
  }
  let version_offset = target_offset.saturating_add(target.len()).saturating_add(1);
  let Some(version) = version else {
    return if version_is_finished { malformed(RequestLinePart::Target, target_offset) } else { need_more() };
  };
  if target.is_empty() {
    return malformed(RequestLinePart::Target, target_offset);
  }
  if version_is_finished {
    if !HTTP_VERSIONS.contains(&version) {
      return malformed(RequestLinePart::Version, version_offset);
    }
  } else if !HTTP_VERSIONS.iter().any(|known| known.starts_with(version)) {
    return malformed(RequestLinePart::Version, version_offset);
  }
  if is_terminated {
    Parse::Complete(target)
  } else {
    need_more()
  }
}

/// Visible ASCII, plus obs-text that some clients send unencoded.
fn is_target_byte(byte: u8) -> bool {
  (0x21..=0x7E).contains(&byte) || byte >= 0x80
}

#[cfg(test)]
mod tests {
  use super::*;
  use proptest::prelude::*;

  fn sid(buf: &[u8]) -> Parse<Option<&[u8]>, HeadError> {
    request_line_sid(buf)
  }

  fn complete_head(buf: &[u8]) -> RequestHead<'_> {
    match parse_request_head(buf, 32) {
      Parse::Complete(head) => head,
      other => panic!("expected Complete, got {other:?}"),
    }
  }

  // --- find_query_param ----------------------------------------------------

  #[test]
  fn a_head_of_many_bare_lf_header_lines_within_the_size_limit_is_accepted() {
    let mut head = b"GET / HTTP/1.1\n".to_vec();
    for _ in 0..4482 {
      head.extend_from_slice(b"a:\n");
    }
    head.extend_from_slice(b"\n");
    assert!(head.len() <= MAX_REQUEST_HEAD_LEN);
    assert!(matches!(parse_request_head(&head, 4482), Parse::Complete(parsed) if parsed.headers.len() == 4482));
  }

  #[test]
  fn query_params_are_found_only_as_whole_names_in_the_query() {
    let cases: &[(&str, Option<&str>)] = &[
      ("/socket.io/?EIO=4&transport=polling&sid=abc", Some("abc")),
      ("/socket.io/?sid=abc&EIO=4", Some("abc")),
      ("/?sid=abc#frag", Some("abc")),
      ("/?sid=a=b", Some("a=b")),
      ("/?sid=", Some("")),
      ("/?sid", Some("")),
      ("/?&&sid=1&&", Some("1")),
      ("/?sid=first&sid=second", Some("first")),
      ("http://example.com/socket.io/?sid=abs", Some("abs")),
      ("/?xsid=abc", None),
      ("/?a=1&xsid=abc", None),
      ("/?a=sid=abc", None),
      ("/?sidx=abc", None),
      ("/?SID=abc", None),
      ("/?%73id=abc", None),
      ("/sid=abc", None),
      ("/sid=abc?x=1", None),
      ("/path;sid=abc?x=1", None),
      ("/?a=1#&sid=abc", None),
      ("/path#?sid=abc", None),
      ("*", None),
      ("", None),
    ];
    for (target, expected) in cases {
      assert_eq!(find_query_param(target.as_bytes(), b"sid"), expected.map(str::as_bytes), "target {target}");
    }
  }

  #[test]
  fn an_empty_parameter_name_never_matches() {
    assert_eq!(find_query_param(b"/?=x&a=1", b""), None);
  }

  // --- parse_request_head and header_values --------------------------------

  #[test]
  fn a_request_head_parses_with_its_length_and_headers_in_order() {
    let stream = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
Host: example.com\r\n\
X-Forwarded-For: 203.0.113.1, 10.0.0.1\r\n\
Upgrade: websocket\r\n\
x-forwarded-for: 10.0.0.2\r\n\
\r\n\
\x81\x05hello";
    let head = complete_head(stream);
    assert_eq!(head.method, "GET");
    assert_eq!(head.target, "/socket.io/?EIO=4&transport=websocket");
    assert_eq!(head.version, 1);
    assert_eq!(head.headers.len(), 4);
    assert_eq!(stream.get(head.head_len..), Some(&b"\x81\x05hello"[..]));
    assert_eq!(header_values(&head, "X-FORWARDED-FOR"), vec![&b"203.0.113.1, 10.0.0.1"[..], &b"10.0.0.2"[..]]);
    assert_eq!(header_values(&head, "forwarded"), Vec::<&[u8]>::new());
  }

  #[test]
  fn a_head_without_its_blank_line_is_incomplete() {
    assert!(parse_request_head(b"", 8).is_incomplete());
    assert!(parse_request_head(b"GET / HTTP/1.1\r\nHost: a\r\n", 8).is_incomplete());
  }

  #[test]
  fn a_head_with_too_many_headers_is_invalid() {
    let stream = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
    assert_eq!(parse_request_head(stream, 2), Parse::Invalid(HeadError::TooManyHeaders { max: 2 }));
    assert!(parse_request_head(stream, 3).is_complete());
    assert!(parse_request_head(stream, usize::MAX).is_complete());
  }

  #[test]
  fn a_head_longer_than_the_cap_is_invalid() {
    let mut stream = b"GET / HTTP/1.1\r\nX-Padding: ".to_vec();
    stream.resize(MAX_REQUEST_HEAD_LEN - 1, b'a');
    assert!(parse_request_head(&stream, 8).is_incomplete());
    stream.push(b'a');
    assert_eq!(parse_request_head(&stream, 8), Parse::Invalid(HeadError::HeadTooLarge { max: MAX_REQUEST_HEAD_LEN }));
  }

  #[test]
  fn a_malformed_head_is_invalid() {
    for stream in [&b"\x16\x03\x01\x02\x00"[..], b"GET / HTTP/2.0\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"]
    {
      assert!(parse_request_head(stream, 8).is_invalid(), "{stream:?}");
    }
  }

  // --- request_line_sid ----------------------------------------------------

  #[test]
  fn a_handshake_has_no_sid_and_a_continuation_has_one() {
    assert_eq!(sid(b"GET /socket.io/?EIO=4&transport=polling&t=Nk1 HTTP/1.1\r\n"), Parse::Complete(None));
    assert_eq!(
      sid(b"GET /socket.io/?EIO=4&transport=websocket&sid=AbC-_12xyz HTTP/1.1\r\nHost: a\r\n"),
      Parse::Complete(Some(&b"AbC-_12xyz"[..]))
    );
    assert_eq!(
      sid(b"POST /socket.io/?EIO=3&sid=f1d2.3~x&transport=polling HTTP/1.0\r\n"),
      Parse::Complete(Some(&b"f1d2.3~x"[..]))
    );
    assert_eq!(
      sid(b"\r\n\r\nGET /?sid=after-empty-lines HTTP/1.1\r\n"),
      Parse::Complete(Some(&b"after-empty-lines"[..]))
    );
  }

  #[test]
  fn a_sid_in_a_header_is_never_read() {
    let stream = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n\
Referer: https://example.com/?sid=attacker\r\n\
Cookie: sid=attacker\r\n\r\n";
    assert_eq!(sid(stream), Parse::Complete(None));
  }

  #[test]
  fn look_alike_parameters_are_not_taken_for_the_sid() {
    for line in [
      &b"GET /?xsid=abc HTTP/1.1\r\n"[..],
      b"GET /sid=abc HTTP/1.1\r\n",
      b"GET /?q=1#&sid=abc HTTP/1.1\r\n",
      b"GET /?a=sid=abc HTTP/1.1\r\n",
    ] {
      assert_eq!(sid(line), Parse::Complete(None), "{line:?}");
    }
  }

  #[test]
  fn unusable_sids_are_invalid() {
    let too_long = format!("GET /?sid={} HTTP/1.1\r\n", "a".repeat(MAX_SID_LEN + 1));
    let longest = format!("GET /?sid={} HTTP/1.1\r\n", "a".repeat(MAX_SID_LEN));
    assert!(sid(longest.as_bytes()).is_complete());
    let cases: &[(&[u8], HeadError)] = &[
      (b"GET /?sid= HTTP/1.1\r\n", HeadError::EmptySid),
      (b"GET /?sid&EIO=4 HTTP/1.1\r\n", HeadError::EmptySid),
      (too_long.as_bytes(), HeadError::SidTooLong { len: MAX_SID_LEN + 1, max: MAX_SID_LEN }),
      (b"GET /?sid=a%62c HTTP/1.1\r\n", HeadError::SidForbiddenByte { byte: b'%', offset: 1 }),
      (b"GET /?sid=a/b HTTP/1.1\r\n", HeadError::SidForbiddenByte { byte: b'/', offset: 1 }),
      (b"GET /?sid=a+b HTTP/1.1\r\n", HeadError::SidForbiddenByte { byte: b'+', offset: 1 }),
      (b"GET /?sid=a&sid=b HTTP/1.1\r\n", HeadError::DuplicateSid),
      (b"GET /?sid=a&sid=a HTTP/1.1\r\n", HeadError::DuplicateSid),
    ];
    for (line, expected) in cases {
      assert_eq!(sid(line), Parse::Invalid(expected.clone()), "{line:?}");
    }
  }

  #[test]
  fn malformed_request_lines_are_invalid() {
    for line in [
      &b"\x16\x03\x01\x02\x00"[..],
      b"PRI * HTTP/2.0\r\n",
      b"GET /?sid=a HTTP/1.1\n",
      b"GET /?sid=a HTTP/1.1 \r\n",
      b"GET  /?sid=a HTTP/1.1\r\n",
      b"GET /?sid=a  HTTP/1.1\r\n",
      b" GET /?sid=a HTTP/1.1\r\n",
      b"GET\r\n",
      b"GET /\r\n",
      b"GET /a\x00b HTTP/1.1\r\n",
      b"GET /a\tb HTTP/1.1\r\n",
      b"G(T / HTTP/1.1\r\n",
      b"GET / http/1.1\r\n",
      b"GET / HTTP/1.1\rX",
      b"\r\r\n",
      b"\n",
    ] {
      assert!(sid(line).is_invalid(), "{:?}", String::from_utf8_lossy(line));
    }
  }

  #[test]
  fn request_line_errors_point_at_the_bad_part() {
    assert_eq!(
      sid(b"GET / HTTP/3"),
      Parse::Invalid(HeadError::MalformedRequestLine { part: RequestLinePart::Version, offset: 6 })
    );
    assert_eq!(
      sid(b"\r\nGET /\x7f"),
      Parse::Invalid(HeadError::MalformedRequestLine { part: RequestLinePart::Target, offset: 7 })
    );
  }

  #[test]
  fn a_request_line_without_crlf_within_the_cap_is_invalid() {
    let mut line = b"GET /?sid=abc&pad=".to_vec();
    line.resize(MAX_REQUEST_LINE_LEN - 1, b'a');
    assert!(sid(&line).is_incomplete());
    line.push(b'a');
    assert_eq!(sid(&line), Parse::Invalid(HeadError::RequestLineTooLong { max: MAX_REQUEST_LINE_LEN }));
  }

  #[test]
  fn a_request_line_exactly_at_the_cap_is_accepted() {
    let prefix = b"GET /?sid=abc&pad=";
    let suffix = b" HTTP/1.1\r\n";
    let mut line = prefix.to_vec();
    line.resize(MAX_REQUEST_LINE_LEN - suffix.len(), b'a');
    line.extend_from_slice(suffix);
    assert_eq!(line.len(), MAX_REQUEST_LINE_LEN);
    assert_eq!(sid(&line), Parse::Complete(Some(&b"abc"[..])));
  }

  // --- properties ----------------------------------------------------------

  fn param_name() -> impl Strategy<Value = String> {
    "[a-z]{1,6}"
  }

  fn param_value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._~-]{0,12}"
  }

  fn valid_request_line() -> impl Strategy<Value = (Vec<u8>, Option<String>)> {
    (
      prop_oneof![Just("GET"), Just("POST"), Just("OPTIONS"), Just("M-SEARCH")],
      "(/[a-z0-9.]{0,8}){1,3}",
      proptest::collection::vec((param_name(), param_value()).prop_filter("not sid", |(name, _)| name != "sid"), 0..4),
      proptest::option::of("[a-zA-Z0-9._~-]{1,40}"),
      any::<prop::sample::Index>(),
      prop_oneof![Just("HTTP/1.0"), Just("HTTP/1.1")],
      0usize..3,
    )
      .prop_map(|(method, path, params, sid, sid_position, version, empty_lines)| {
        let mut pairs: Vec<String> = params.iter().map(|(name, value)| format!("{name}={value}")).collect();
        if let Some(sid) = &sid {
          pairs.insert(sid_position.index(pairs.len() + 1), format!("sid={sid}"));
        }
        let query = if pairs.is_empty() { String::new() } else { format!("?{}", pairs.join("&")) };
        let line = format!("{}{method} {path}{query} {version}\r\n", "\r\n".repeat(empty_lines));
        (line.into_bytes(), sid)
      })
  }

  fn valid_request_head() -> impl Strategy<Value = Vec<u8>> {
    (valid_request_line(), proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,24}"), 0..6)).prop_map(
      |((line, _), headers)| {
        let mut head = line;
        for (name, value) in headers {
          head.extend_from_slice(format!("{name}: {}\r\n", value.trim()).as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
      },
    )
  }

  proptest! {
    #[test]
    fn a_name_that_is_only_a_suffix_of_another_parameter_never_matches(
      name in param_name(),
      longer_prefix in "[a-z_]{1,4}",
      value in param_value(),
      others in proptest::collection::vec((param_name(), param_value()), 0..4),
      path in "(/[a-z0-9=]{0,8}){1,2}",
    ) {
      let mut pairs: Vec<String> = others
        .iter()
        .filter(|(other_name, _)| *other_name != name)
        .map(|(other_name, other_value)| format!("{other_name}={other_value}"))
        .collect();
      pairs.push(format!("{longer_prefix}{name}={value}"));
      pairs.push(format!("{name}{longer_prefix}={value}"));
      pairs.push(format!("Q={name}={value}"));
      let target = format!("{path}/{name}={value}?{}#&{name}={value}", pairs.join("&"));
      prop_assert_eq!(find_query_param(target.as_bytes(), name.as_bytes()), None);

      let with_real = format!("{path}?{}&{name}={value}", pairs.join("&"));
      prop_assert_eq!(
        find_query_param(with_real.as_bytes(), name.as_bytes()),
        Some(value.as_bytes())
      );
    }

    #[test]
    fn every_strict_prefix_of_a_valid_request_line_is_incomplete(
      (line, expected_sid) in valid_request_line(),
      trailing in "[ -~\r\n]{0,40}",
    ) {
      let mut stream = line.clone();
      stream.extend_from_slice(trailing.as_bytes());
      for cut in 0..line.len() {
        prop_assert_eq!(sid(&stream[..cut]), Parse::Incomplete, "cut {}", cut);
      }
      let expected = Parse::Complete(expected_sid.as_deref().map(str::as_bytes));
      for cut in line.len()..=stream.len() {
        prop_assert_eq!(sid(&stream[..cut]), expected.clone());
      }
    }

    #[test]
    fn every_strict_prefix_of_a_valid_request_head_is_incomplete(
      head in valid_request_head(),
      body in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
      let mut stream = head.clone();
      stream.extend_from_slice(&body);
      for cut in 0..head.len() {
        prop_assert_eq!(parse_request_head(&stream[..cut], 8), Parse::Incomplete, "cut {}", cut);
      }
      match parse_request_head(&stream, 8) {
        Parse::Complete(parsed) => prop_assert_eq!(parsed.head_len, head.len()),
        other => prop_assert!(false, "expected Complete, got {:?}", other),
      }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
      bytes in proptest::collection::vec(any::<u8>(), 0..300),
      max_headers in 0usize..40,
    ) {
      let _ = request_line_sid(&bytes);
      let _ = find_query_param(&bytes, b"sid");
      if let Parse::Complete(head) = parse_request_head(&bytes, max_headers) {
        let _ = header_values(&head, "x-forwarded-for");
      }
      let mut after_method = b"GET /?".to_vec();
      after_method.extend_from_slice(&bytes);
      let _ = request_line_sid(&after_method);
      let _ = parse_request_head(&after_method, max_headers);
    }

    #[test]
    fn a_request_line_decision_never_changes_when_more_bytes_arrive(
      start in valid_request_line().prop_map(|(line, _)| line),
      mutation in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
      let mut stream = start;
      for (index, byte) in mutation {
        let position = index.index(stream.len());
        if let Some(slot) = stream.get_mut(position) {
          *slot = byte;
        }
      }
      let mut earlier = Parse::Incomplete;
      for cut in 0..=stream.len() {
        let now = sid(&stream[..cut]);
        match &earlier {
          Parse::Complete(_) => prop_assert_eq!(&now, &earlier),
          Parse::Invalid(_) => prop_assert!(now.is_invalid(), "{:?} after Invalid", now),
          Parse::Incomplete => {}
        }
        earlier = now;
      }
    }
  }
}
