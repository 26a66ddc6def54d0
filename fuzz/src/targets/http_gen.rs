//! Generators of request targets, request lines and whole request heads,
//! with what the parsers must find in them.

use crate::rng::Rng;
use crate::targets::nodes;
use sticky_session_rs::parsers::http_head::{HeadError, MAX_SID_LEN};

const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";
const BASE64ID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Bytes allowed in a request target that are not unreserved (and not `&`
/// or `#`, which would end a parameter).
const SID_FORBIDDEN: &[u8] = b"%+/=!*'():@$,;?[]\x80\xc3\xa9\xff";

fn chars(rng: &mut Rng, alphabet: &[u8], len: usize) -> Vec<u8> {
  (0..len).map(|_| *rng.pick(alphabet)).collect()
}

/// An engine.io session id: mostly valid (base64id, UUID, any unreserved
/// string up to the limit), sometimes empty, too long or with a forbidden
/// byte.
pub fn sid(rng: &mut Rng) -> Vec<u8> {
  match rng.below(12) {
    0..=3 => chars(rng, BASE64ID, 20),
    4 => {
      let hex = chars(rng, b"0123456789abcdef", 32);
      [&hex[0..8], b"-", &hex[8..12], b"-", &hex[12..16], b"-", &hex[16..20], b"-", &hex[20..32]].concat()
    }
    5..=6 => {
      let len = rng.range(1, MAX_SID_LEN);
      chars(rng, UNRESERVED, len)
    }
    7 => {
      let len = MAX_SID_LEN + rng.range(0, 1);
      chars(rng, UNRESERVED, len)
    }
    8 => Vec::new(),
    9 => {
      let len = rng.range(MAX_SID_LEN, 600);
      chars(rng, UNRESERVED, len)
    }
    _ => {
      let len = rng.range(1, 30);
      let mut value = chars(rng, UNRESERVED, len);
      let at = rng.below(value.len() + 1);
      value.insert(at, *rng.pick(SID_FORBIDDEN));
      value
    }
  }
}

/// A request target and its query parameters in order (`(name, value)`,
/// empty parameters left out, a parameter without `=` has an empty value).
#[derive(Debug, Clone)]
pub struct GenTarget {
  pub bytes: Vec<u8>,
  pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

fn random_value(rng: &mut Rng) -> Vec<u8> {
  let len = rng.small_len(24);
  (0..len)
    .map(|_| match rng.below(10) {
      0 => *rng.pick(b"%=?/:@!$'()*+,;[]"),
      1 => rng.range(0x80, 0xff) as u8,
      _ => *rng.pick(UNRESERVED),
    })
    .collect()
}

/// A request target with a query string built from engine.io parameters,
/// `sid`s, look-alike names (`xsid`, `SID`, `%73id`, ...), random parameters,
/// empty parameters and an optional fragment that may hold `sid=` too.
pub fn target(rng: &mut Rng) -> GenTarget {
  let path: Vec<u8> = match rng.below(12) {
    0 => b"*".to_vec(),
    1 => b"http://example.com/socket.io/".to_vec(),
    2 => b"https://a.example:8443/x/".to_vec(),
    3 => b"/a/b;sid=path/".to_vec(),
    4 => b"/sid=inpath/".to_vec(),
    5 => {
      let len = rng.small_len(40);
      let mut path = b"/".to_vec();
      path.extend((0..len).map(|_| *rng.pick(b"abc/%20.-_~:@!$&'()*+,;=\x80\xff")));
      path
    }
    6 => b"/engine.io/".to_vec(),
    7 => b"/".to_vec(),
    _ => b"/socket.io/".to_vec(),
  };
  let mut bytes = path;
  let mut params = Vec::new();
  if rng.chance(7, 8) {
    bytes.push(b'?');
    let count = rng.small_len(8);
    let with_sid = rng.chance(2, 3);
    let sid_at = rng.below(count + 1);
    for index in 0..=count {
      let (name, value, has_equals): (Vec<u8>, Vec<u8>, bool) = if with_sid && index == sid_at {
        (b"sid".to_vec(), sid(rng), true)
      } else if index == count {
        continue;
      } else {
        match rng.below(12) {
          0 => (b"EIO".to_vec(), rng.pick(&[&b"4"[..], b"3"]).to_vec(), true),
          1 => (b"transport".to_vec(), rng.pick(&[&b"polling"[..], b"websocket"]).to_vec(), true),
          2 => (b"t".to_vec(), chars(rng, BASE64ID, 7), true),
          3 => (b"sid".to_vec(), sid(rng), true),
          4 => {
            let name =
              *rng.pick::<&[u8]>(&[&b"xsid"[..], b"sidx", b"SID", b"Sid", b"%73id", b"sid%20", b"si", b"s", b"_sid"]);
            (name.to_vec(), sid(rng), true)
          }
          5 => (b"sid".to_vec(), Vec::new(), rng.coin()),
          6 => (b"a".to_vec(), b"sid=x".to_vec(), true),
          7 => (Vec::new(), Vec::new(), false),
          8 => (Vec::new(), random_value(rng), true),
          _ => {
            let name_len = rng.range(1, 8);
            let name = chars(rng, b"abcdefghijklmnopqrstuvwxyz%0123456789-_.~", name_len);
            (name, random_value(rng), rng.chance(7, 8))
          }
        }
      };
      if index > 0 || rng.chance(1, 8) {
        bytes.push(b'&');
      }
      bytes.extend_from_slice(&name);
      if has_equals {
        bytes.push(b'=');
        bytes.extend_from_slice(&value);
      }
      if !name.is_empty() || has_equals {
        params.push((name, if has_equals { value } else { Vec::new() }));
      }
    }
    if rng.chance(1, 8) {
      bytes.push(b'&');
    }
  }
  if rng.chance(1, 6) {
    bytes.push(b'#');
    bytes.extend_from_slice(rng.pick::<&[u8]>(&[&b"frag"[..], b"&sid=evil", b"?sid=evil", b"a#b", b""]));
  }
  GenTarget { bytes, params }
}

/// What `request_line_sid` must return for a request line with this target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidExpect {
  Handshake,
  Sid(Vec<u8>),
  Error(HeadError),
}

pub fn sid_expect(target: &GenTarget) -> SidExpect {
  let sids: Vec<&Vec<u8>> = target.params.iter().filter(|(name, _)| name == b"sid").map(|(_, value)| value).collect();
  match sids.as_slice() {
    [] => SidExpect::Handshake,
    [_, _, ..] => SidExpect::Error(HeadError::DuplicateSid),
    [sid] if sid.is_empty() => SidExpect::Error(HeadError::EmptySid),
    [sid] if sid.len() > MAX_SID_LEN => SidExpect::Error(HeadError::SidTooLong { len: sid.len(), max: MAX_SID_LEN }),
    [sid] => match sid.iter().position(|byte| !UNRESERVED.contains(byte)) {
      Some(offset) => SidExpect::Error(HeadError::SidForbiddenByte { byte: sid[offset], offset }),
      None => SidExpect::Sid(sid.to_vec()),
    },
  }
}

pub fn method(rng: &mut Rng) -> Vec<u8> {
  match rng.below(10) {
    0 => {
      let len = rng.range(1, 10);
      chars(rng, b"ABCXYZabc!#$%&'*+-.^_`|~09", len)
    }
    1 => rng.pick(&[&b"M-SEARCH"[..], b"OPTIONS", b"CONNECT", b"PATCH", b"DELETE", b"HEAD", b"PUT"]).to_vec(),
    2..=3 => b"POST".to_vec(),
    _ => b"GET".to_vec(),
  }
}

/// A request head with the fields `parse_request_head` must report.
#[derive(Debug, Clone)]
pub struct GenHead {
  pub bytes: Vec<u8>,
  pub method: Vec<u8>,
  pub target: GenTarget,
  pub version: u8,
  pub headers: Vec<(Vec<u8>, Vec<u8>)>,
  /// Bare LF line endings (httparse accepts them) rather than CRLF.
  pub bare_lf: bool,
}

fn header_value(rng: &mut Rng, name: &[u8]) -> Vec<u8> {
  let lower = name.to_ascii_lowercase();
  let value = match &lower[..] {
    b"x-forwarded-for" => nodes::xff_values(rng).0.concat(),
    b"forwarded" => nodes::forwarded_values(rng).0.concat(),
    b"cookie" => b"io=abc; sid=attacker".to_vec(),
    b"referer" => b"https://example.com/?sid=attacker&EIO=4".to_vec(),
    b"host" => b"example.com:3000".to_vec(),
    b"upgrade" => b"websocket".to_vec(),
    _ => {
      let len = rng.small_len(40);
      (0..len)
        .map(|_| match rng.below(12) {
          0 => b' ',
          1 => b'\t',
          2 => rng.range(0x80, 0xff) as u8,
          _ => rng.range(0x21, 0x7e) as u8,
        })
        .collect()
    }
  };
  // httparse skips leading and trims trailing whitespace, so a generated
  // value has none; whitespace is added around it separately.
  let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
  let start = value.iter().position(|byte| !is_space(byte)).unwrap_or(value.len());
  let end = value.iter().rposition(|byte| !is_space(byte)).map_or(start, |last| last + 1);
  value[start..end].to_vec()
}

const HEADER_NAMES: &[&[u8]] = &[
  b"Host",
  b"X-Forwarded-For",
  b"x-forwarded-for",
  b"Forwarded",
  b"Cookie",
  b"Referer",
  b"Upgrade",
  b"Connection",
  b"User-Agent",
  b"Sec-WebSocket-Key",
  b"Content-Length",
];

/// Builds a request head. `huge` pads it towards the 16 KiB cap, `many`
/// fills it with thousands of tiny header lines.
pub fn head(rng: &mut Rng) -> GenHead {
  let bare_lf = rng.chance(1, 8);
  let eol: &[u8] = if bare_lf { b"\n" } else { b"\r\n" };
  let method = method(rng);
  let target = target(rng);
  let version = u8::from(rng.chance(7, 8));
  let mut bytes = Vec::new();
  for _ in 0..rng.small_len(2) {
    bytes.extend_from_slice(eol);
  }
  bytes.extend_from_slice(&method);
  bytes.push(b' ');
  bytes.extend_from_slice(&target.bytes);
  bytes.extend_from_slice(if version == 1 { b" HTTP/1.1" } else { b" HTTP/1.0" });
  bytes.extend_from_slice(eol);
  let mut headers = Vec::new();
  let mode = rng.below(40);
  if mode == 0 {
    // Thousands of minimal header lines: `a:` + EOL.
    let count = rng.range(1000, 6000);
    for _ in 0..count {
      bytes.extend_from_slice(b"a:");
      bytes.extend_from_slice(eol);
      headers.push((b"a".to_vec(), Vec::new()));
    }
  } else {
    for _ in 0..rng.small_len(12) {
      let name = if rng.chance(3, 4) {
        rng.pick(HEADER_NAMES).to_vec()
      } else {
        let len = rng.range(1, 16);
        chars(rng, b"abcXYZ019!#$%&'*+-.^_`|~", len)
      };
      let value = header_value(rng, &name);
      bytes.extend_from_slice(&name);
      bytes.push(b':');
      bytes.extend_from_slice(rng.pick::<&[u8]>(&[&b" "[..], b"", b"\t", b"  "]));
      bytes.extend_from_slice(&value);
      if !value.is_empty() {
        bytes.extend_from_slice(rng.pick::<&[u8]>(&[&b""[..], b"", b" ", b"\t"]));
      }
      bytes.extend_from_slice(eol);
      headers.push((name, value));
    }
    if mode == 1 {
      // One long header value that ends the head near the 16 KiB cap.
      let blank_line = eol.len();
      let fixed = bytes.len() + b"X-Pad: ".len() + eol.len() + blank_line;
      let wanted = (16 * 1024 + rng.range(0, 6)).saturating_sub(3);
      let pad = wanted.saturating_sub(fixed).max(1);
      let value = vec![b'p'; pad];
      bytes.extend_from_slice(b"X-Pad: ");
      bytes.extend_from_slice(&value);
      bytes.extend_from_slice(eol);
      headers.push((b"X-Pad".to_vec(), value));
    }
  }
  bytes.extend_from_slice(eol);
  GenHead { bytes, method, target, version, headers, bare_lf }
}

#[cfg(test)]
mod tests {
  use super::*;
  use sticky_session_rs::parsers::http_head::find_query_param;

  #[test]
  fn generated_params_are_what_find_query_param_sees() {
    let mut rng = Rng::new(5);
    for _ in 0..20_000 {
      let target = target(&mut rng);
      for (name, _) in target.params.iter().filter(|(name, _)| !name.is_empty()) {
        let first = target.params.iter().find(|(other, _)| other == name).map(|(_, value)| value.as_slice());
        assert_eq!(find_query_param(&target.bytes, name), first, "{:?}", String::from_utf8_lossy(&target.bytes));
      }
    }
  }
}
