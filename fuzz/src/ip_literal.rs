//! `parse_ip_literal`.
//!
//! Invariants: every address in every spelling (IPv4, IPv6 expanded,
//! zero-padded, upper case, compressed anywhere, IPv4 tails, IPv4-mapped),
//! bracketed or not, with a `%zone` or `%25zone`, with surrounding ASCII or
//! Unicode whitespace, parses to its canonical form; for any string: a
//! result is canonical and survives printing and parsing again (bare, and
//! bracketed or with a zone for IPv6), surrounding whitespace never changes
//! the result, a `%` is only accepted after an IPv6 address, and the
//! accepted address part is ASCII.

use crate::{addresses, below, broken, pick, Bytes, Gen, NearMiss, Render};
use arbitrary::{Arbitrary, Unstructured};
use std::net::IpAddr;
use sticky_session_rs::core::address::parse_ip_literal;

#[derive(Arbitrary, Debug)]
pub enum Input {
  /// Any text (invalid UTF-8 replaced by U+FFFD).
  Raw(Bytes),
  Valid(Literal),
  NearMiss(NearMiss<Literal>),
}

/// An address and one of its spellings.
#[derive(Debug)]
pub struct Literal {
  pub text: String,
  pub ip: IpAddr,
}

const SPACES: &[&str] = &["", "", "", " ", "\t", "\n", " \r\n", "\u{a0}", "\u{3000}", "\u{2028}"];

impl<'a> Arbitrary<'a> for Literal {
  fn arbitrary(u: &mut Unstructured<'a>) -> Gen<Self> {
    let ip = addresses::ip(u)?;
    let core = match ip {
      IpAddr::V4(v4) if below(u, 4)? == 3 => {
        let mapped = v4.to_ipv6_mapped();
        let text = addresses::ipv6_text(u, mapped)?;
        return Ok(Literal { text: format!("{}{text}{}", pick(u, SPACES)?, pick(u, SPACES)?), ip: IpAddr::V6(mapped) });
      }
      IpAddr::V4(v4) => v4.to_string(),
      IpAddr::V6(v6) => {
        let text = addresses::ipv6_text(u, v6)?;
        let zone = match below(u, 4)? {
          2 => format!("%{}", addresses::zone(u)?),
          3 => format!("%25{}", addresses::zone(u)?),
          _ => String::new(),
        };
        if u.arbitrary()? {
          format!("[{text}{zone}]")
        } else {
          format!("{text}{zone}")
        }
      }
    };
    Ok(Literal { text: format!("{}{core}{}", pick(u, SPACES)?, pick(u, SPACES)?), ip })
  }
}

impl Render for Literal {
  const TOKENS: &'static [&'static [u8]] =
    &[b"::", b":", b"%", b"%25", b"[", b"]", b".", b"ffff:", b" ", b"\xc2\xa0", b"0", b"/"];

  fn render(&self) -> Vec<u8> {
    self.text.clone().into_bytes()
  }
}

pub fn check(input: &Input) {
  match input {
    Input::Raw(Bytes(text)) | Input::NearMiss(NearMiss(Bytes(text), _)) => {
      check_any(&String::from_utf8_lossy(text));
    }
    Input::Valid(Literal { text, ip }) => {
      let got = check_any(text);
      if got != Some(ip.to_canonical()) {
        broken(text.as_bytes(), format!("gave {got:?}, expected {}", ip.to_canonical()));
      }
    }
  }
}

fn check_any(text: &str) -> Option<IpAddr> {
  let fail = |message: String| -> ! { broken(text.as_bytes(), message) };
  let got = parse_ip_literal(text);
  let padded = parse_ip_literal(&format!(" \t{text}\u{a0}\n"));
  if padded != got {
    fail(format!("surrounding whitespace changed {got:?} to {padded:?}"));
  }
  let ip = got?;
  if ip.to_canonical() != ip {
    fail(format!("{ip} is not canonical"));
  }
  let printed = ip.to_string();
  let mut again = vec![parse_ip_literal(&printed)];
  if ip.is_ipv6() {
    again.push(parse_ip_literal(&format!("[{printed}]")));
    again.push(parse_ip_literal(&format!("{printed}%eth0")));
  }
  if again.iter().any(|reparsed| *reparsed != Some(ip)) {
    fail(format!("{ip} does not survive printing and parsing: {again:?}"));
  }
  let address_part = text.trim().split('%').next().unwrap_or_default();
  if !address_part.is_ascii() {
    fail(format!("accepted non-ASCII address text {address_part:?}"));
  }
  if text.contains('%') && !text.split('%').next().unwrap_or_default().contains(':') {
    fail("accepted a zone after something that is not IPv6".into());
  }
  got
}
