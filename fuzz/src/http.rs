//! Request targets, request lines and whole request heads, with what the
//! parsers must find in them.

use crate::{below, nodes, one_in, pick, range, small_len, Gen};
use arbitrary::Unstructured;
use sticky_session_rs::core::parsers::http_head::{HeadError, MAX_REQUEST_HEAD_LEN, MAX_SID_LEN};

const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";
const BASE64ID: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Bytes allowed in a request target that are not unreserved (and not `&`
/// or `#`, which would end a parameter).
const SID_FORBIDDEN: &[u8] = b"%+/=!*'():@$,;?[]\x80\xc3\xa9\xff";

pub fn is_unreserved(byte: u8) -> bool {
  UNRESERVED.contains(&byte)
}

fn chars(u: &mut Unstructured, alphabet: &[u8], len: usize) -> Gen<Vec<u8>> {
  (0..len).map(|_| pick(u, alphabet).copied()).collect()
}

/// An engine.io session id: mostly valid (base64id, UUID, any unreserved
/// string up to the limit), sometimes empty, too long or with a forbidden
/// byte.
pub fn sid(u: &mut Unstructured) -> Gen<Vec<u8>> {
  Ok(match below(u, 12)? {
    0..=3 => chars(u, BASE64ID, 20)?,
    4 => {
      let hex = chars(u, b"0123456789abcdef", 32)?;
      [&hex[0..8], b"-", &hex[8..12], b"-", &hex[12..16], b"-", &hex[16..20], b"-", &hex[20..32]].concat()
    }
    5..=6 => {
      let len = range(u, 1, MAX_SID_LEN)?;
      chars(u, UNRESERVED, len)?
    }
    7 => Vec::new(),
    8 => {
      let len = MAX_SID_LEN + range(u, 0, 1)?;
      chars(u, UNRESERVED, len)?
    }
    9 => {
      let len = range(u, MAX_SID_LEN, 600)?;
      chars(u, UNRESERVED, len)?
    }
    _ => {
      let len = range(u, 1, 30)?;
      let mut value = chars(u, UNRESERVED, len)?;
      let at = range(u, 0, value.len())?;
      value.insert(at, *pick(u, SID_FORBIDDEN)?);
      value
    }
  })
}

/// A request target and its query parameters in order (`(name, value)`,
/// empty parameters left out, a parameter without `=` has an empty value).
#[derive(Debug, Clone)]
pub struct GenTarget {
  pub bytes: Vec<u8>,
  pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

fn random_value(u: &mut Unstructured) -> Gen<Vec<u8>> {
  (0..small_len(u, 24)?)
    .map(|_| {
      Ok(match below(u, 10)? {
        0 => *pick(u, b"%=?/:@!$'()*+,;[]")?,
        1 => u.int_in_range(0x80..=0xff)?,
        _ => *pick(u, UNRESERVED)?,
      })
    })
    .collect()
}

/// A request target with a query string built from engine.io parameters,
/// `sid`s, look-alike names (`xsid`, `SID`, `%73id`, ...), random parameters,
/// empty parameters and an optional fragment that may hold `sid=` too.
pub fn target(u: &mut Unstructured) -> Gen<GenTarget> {
  let mut bytes: Vec<u8> = match below(u, 12)? {
    0..=3 => b"/socket.io/".to_vec(),
    4 => b"*".to_vec(),
    5 => b"http://example.com/socket.io/".to_vec(),
    6 => b"https://a.example:8443/x/".to_vec(),
    7 => b"/a/b;sid=path/".to_vec(),
    8 => b"/sid=inpath/".to_vec(),
    9 => {
      let mut path = b"/".to_vec();
      let len = small_len(u, 40)?;
      path.extend(chars(u, b"abc/%20.-_~:@!$&'()*+,;=\x80\xff", len)?);
      path
    }
    10 => b"/engine.io/".to_vec(),
    _ => b"/".to_vec(),
  };
  let mut params = Vec::new();
  if !one_in(u, 8)? {
    bytes.push(b'?');
    let count = small_len(u, 8)?;
    let with_sid = below(u, 3)? < 2;
    let sid_at = range(u, 0, count)?;
    for index in 0..=count {
      let (name, value, has_equals): (Vec<u8>, Vec<u8>, bool) = if with_sid && index == sid_at {
        (b"sid".to_vec(), sid(u)?, true)
      } else if index == count {
        continue;
      } else {
        match below(u, 12)? {
          0 => (b"EIO".to_vec(), pick(u, &[&b"4"[..], b"3"])?.to_vec(), true),
          1 => (b"transport".to_vec(), pick(u, &[&b"polling"[..], b"websocket"])?.to_vec(), true),
          2 => (b"t".to_vec(), chars(u, BASE64ID, 7)?, true),
          3 => (b"sid".to_vec(), sid(u)?, true),
          4 => {
            let name =
              *pick::<&[u8]>(u, &[&b"xsid"[..], b"sidx", b"SID", b"Sid", b"%73id", b"sid%20", b"si", b"s", b"_sid"])?;
            (name.to_vec(), sid(u)?, true)
          }
          5 => (b"sid".to_vec(), Vec::new(), u.arbitrary()?),
          6 => (b"a".to_vec(), b"sid=x".to_vec(), true),
          7 => (Vec::new(), Vec::new(), false),
          8 => (Vec::new(), random_value(u)?, true),
          _ => {
            let name_len = range(u, 1, 8)?;
            let name = chars(u, b"abcdefghijklmnopqrstuvwxyz%0123456789-_.~", name_len)?;
            (name, random_value(u)?, !one_in(u, 8)?)
          }
        }
      };
      if index > 0 || one_in(u, 8)? {
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
    if one_in(u, 8)? {
      bytes.push(b'&');
    }
  }
  if one_in(u, 6)? {
    bytes.push(b'#');
    bytes.extend_from_slice(pick::<&[u8]>(u, &[&b"frag"[..], b"&sid=evil", b"?sid=evil", b"a#b", b""])?);
  }
  Ok(GenTarget { bytes, params })
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
    [sid] => match sid.iter().position(|&byte| !is_unreserved(byte)) {
      Some(offset) => SidExpect::Error(HeadError::SidForbiddenByte { byte: sid[offset], offset }),
      None => SidExpect::Sid(sid.to_vec()),
    },
  }
}

pub fn method(u: &mut Unstructured) -> Gen<Vec<u8>> {
  Ok(match below(u, 10)? {
    0..=5 => b"GET".to_vec(),
    6..=7 => b"POST".to_vec(),
    8 => pick(u, &[&b"M-SEARCH"[..], b"OPTIONS", b"CONNECT", b"PATCH", b"DELETE", b"HEAD", b"PUT"])?.to_vec(),
    _ => {
      let len = range(u, 1, 10)?;
      chars(u, b"ABCXYZabc!#$%&'*+-.^_`|~09", len)?
    }
  })
}

/// A request head with the fields `parse_request_head` must report.
#[derive(Debug, Clone)]
pub struct GenHead {
  pub bytes: Vec<u8>,
  pub method: Vec<u8>,
  pub target: GenTarget,
  pub version: u8,
  pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

fn header_value(u: &mut Unstructured, name: &[u8]) -> Gen<Vec<u8>> {
  let value = match &name.to_ascii_lowercase()[..] {
    b"x-forwarded-for" => nodes::xff_values(u)?.0.concat(),
    b"forwarded" => nodes::forwarded_values(u)?.0.concat(),
    b"cookie" => b"io=abc; sid=attacker".to_vec(),
    b"referer" => b"https://example.com/?sid=attacker&EIO=4".to_vec(),
    b"host" => b"example.com:3000".to_vec(),
    b"upgrade" => b"websocket".to_vec(),
    _ => (0..small_len(u, 40)?)
      .map(|_| {
        Ok(match below(u, 12)? {
          0 => b' ',
          1 => b'\t',
          2 => u.int_in_range(0x80..=0xff)?,
          _ => u.int_in_range(0x21..=0x7e)?,
        })
      })
      .collect::<Gen<_>>()?,
  };
  // httparse skips leading and trims trailing whitespace, so a generated
  // value has none; whitespace is added around it separately.
  let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
  let start = value.iter().position(|byte| !is_space(byte)).unwrap_or(value.len());
  let end = value.iter().rposition(|byte| !is_space(byte)).map_or(start, |last| last + 1);
  Ok(value[start..end].to_vec())
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

/// Builds a request head with CRLF or bare-LF line ends and optional empty
/// lines first. One in 40 holds thousands of minimal header lines, one in
/// 40 ends within a few bytes of the 16 KiB cap.
pub fn head(u: &mut Unstructured) -> Gen<GenHead> {
  let bare_lf = one_in(u, 8)?;
  let eol: &[u8] = if bare_lf { b"\n" } else { b"\r\n" };
  let method = method(u)?;
  let target = target(u)?;
  let version = u8::from(!one_in(u, 8)?);
  let mut bytes = eol.repeat(small_len(u, 2)?);
  bytes.extend_from_slice(&method);
  bytes.push(b' ');
  bytes.extend_from_slice(&target.bytes);
  bytes.extend_from_slice(if version == 1 { b" HTTP/1.1" } else { b" HTTP/1.0" });
  bytes.extend_from_slice(eol);
  let mut headers = Vec::new();
  let mode = below(u, 40)?;
  if mode == 39 {
    // Thousands of minimal header lines: `a:` + EOL.
    for _ in 0..range(u, 1000, 6000)? {
      bytes.extend_from_slice(b"a:");
      bytes.extend_from_slice(eol);
      headers.push((b"a".to_vec(), Vec::new()));
    }
  } else {
    for _ in 0..small_len(u, 12)? {
      let name = if below(u, 4)? < 3 {
        pick(u, HEADER_NAMES)?.to_vec()
      } else {
        let len = range(u, 1, 16)?;
        chars(u, b"abcXYZ019!#$%&'*+-.^_`|~", len)?
      };
      let value = header_value(u, &name)?;
      bytes.extend_from_slice(&name);
      bytes.push(b':');
      bytes.extend_from_slice(pick::<&[u8]>(u, &[&b" "[..], b"", b"\t", b"  "])?);
      bytes.extend_from_slice(&value);
      if !value.is_empty() {
        bytes.extend_from_slice(pick::<&[u8]>(u, &[&b""[..], b"", b" ", b"\t"])?);
      }
      bytes.extend_from_slice(eol);
      headers.push((name, value));
    }
    if mode == 38 {
      // One long header value that ends the head near the 16 KiB cap.
      let fixed = bytes.len() + b"X-Pad: ".len() + 2 * eol.len();
      let wanted = (MAX_REQUEST_HEAD_LEN + range(u, 0, 6)?).saturating_sub(3);
      let value = vec![b'p'; wanted.saturating_sub(fixed).max(1)];
      bytes.extend_from_slice(b"X-Pad: ");
      bytes.extend_from_slice(&value);
      bytes.extend_from_slice(eol);
      headers.push((b"X-Pad".to_vec(), value));
    }
  }
  bytes.extend_from_slice(eol);
  Ok(GenHead { bytes, method, target, version, headers })
}

/// What follows a generated request line: nothing, or headers that carry
/// `sid=` where routing must not look.
pub fn after_request_line(u: &mut Unstructured) -> Gen<&'static [u8]> {
  pick(u, &[&b""[..], b"Host: a\r\nCookie: sid=attacker\r\nReferer: /?sid=x\r\n\r\n"]).copied()
}
