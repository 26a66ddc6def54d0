//! `parse_ip_literal`.
//!
//! Invariants: every address in every spelling (IPv4, IPv6 expanded,
//! zero-padded, upper case, compressed anywhere, IPv4 tails, IPv4-mapped),
//! bracketed or not, with a `%zone` or `%25zone`, with surrounding ASCII or
//! Unicode whitespace, parses to its canonical form; for any string: a result
//! is canonical and survives printing and parsing again (bare, and bracketed
//! for IPv6), surrounding whitespace never changes the result, a `%` is only
//! accepted after an IPv6 address, and the accepted address part is ASCII.

use crate::gen;
use crate::mutate::{self, escape};
use crate::{Checked, Cx, Outcome, Rng, Target, Violation};
use std::net::IpAddr;
use sticky_session_rs::address::parse_ip_literal;

pub struct IpLiteralTarget;

#[derive(Debug)]
pub struct Case {
  pub text: String,
  pub expect: Option<IpAddr>,
}

const SPACES: &[&str] = &["", "", "", " ", "\t", "\n", " \r\n", "\u{a0}", "\u{3000}", "\u{2028}"];
const ALPHABET: &[char] = &[
  '0', '1', '9', 'a', 'f', 'F', 'x', ':', ':', '.', '.', '[', ']', '%', '2', '5', ' ', '/', 'é', '١', '１', '\u{a0}',
  '\0',
];

impl Target for IpLiteralTarget {
  const NAME: &'static str = "ip_literal";
  const FUNCTIONS: &'static str = "parse_ip_literal";
  type Case = Case;

  fn generate(rng: &mut Rng) -> Case {
    match rng.below(10) {
      0..=1 => {
        let len = rng.small_len(50);
        Case { text: (0..len).map(|_| *rng.pick(ALPHABET)).collect(), expect: None }
      }
      2..=6 => {
        let (text, ip) = valid(rng);
        Case { text, expect: Some(ip) }
      }
      _ => {
        let mut bytes = valid(rng).0.into_bytes();
        mutate::mutate(rng, &mut bytes, &[b"::", b"%", b"%25", b"[", b"]", b".", b"ffff:", b" "], 200);
        Case { text: String::from_utf8_lossy(&bytes).into_owned(), expect: None }
      }
    }
  }

  fn parts(case: &Case) -> Vec<Vec<u8>> {
    vec![case.text.clone().into_bytes()]
  }

  fn from_parts(parts: Vec<Vec<u8>>) -> Case {
    Case {
      text: String::from_utf8_lossy(parts.first().map(Vec::as_slice).unwrap_or_default()).into_owned(),
      expect: None,
    }
  }

  fn check(case: &Case, cx: &mut Cx) -> Checked {
    let text = case.text.as_str();
    let fail = |message: String| Err(Violation::on(text.as_bytes(), message));
    let got = cx.call(parse_ip_literal(text));
    if let Some(expected) = case.expect {
      if got != Some(expected.to_canonical()) {
        return fail(format!("{text:?} gave {got:?}, expected {}", expected.to_canonical()));
      }
    }
    let padded = cx.call(parse_ip_literal(&format!(" \t{text}\u{a0}\n")));
    if padded != got {
      return fail(format!("surrounding whitespace changed {got:?} to {padded:?}"));
    }
    let Some(ip) = got else {
      return Ok(Outcome::Invalid);
    };
    if ip.to_canonical() != ip {
      return fail(format!("{ip} is not canonical"));
    }
    let printed = ip.to_string();
    let mut again = vec![cx.call(parse_ip_literal(&printed))];
    if ip.is_ipv6() {
      again.push(cx.call(parse_ip_literal(&format!("[{printed}]"))));
      again.push(cx.call(parse_ip_literal(&format!("{printed}%eth0"))));
    }
    if again.iter().any(|reparsed| *reparsed != Some(ip)) {
      return fail(format!("{ip} does not survive printing and parsing: {again:?}"));
    }
    let address_part = text.trim().split('%').next().unwrap_or_default();
    if !address_part.is_ascii() {
      return fail(format!("accepted non-ASCII address text {:?}", escape(address_part.as_bytes(), 80)));
    }
    if text.contains('%') && !text.split('%').next().unwrap_or_default().contains(':') {
      return fail("accepted a zone after something that is not IPv6".into());
    }
    Ok(Outcome::Complete)
  }

  fn describe(parts: &[Vec<u8>]) -> String {
    let case = Self::from_parts(parts.to_vec());
    format!("parse_ip_literal({:?}) = {:?}", case.text, parse_ip_literal(&case.text))
  }
}

fn valid(rng: &mut Rng) -> (String, IpAddr) {
  let ip = gen::ip(rng);
  let core = match ip {
    IpAddr::V4(v4) => {
      if rng.chance(1, 4) {
        let mapped = v4.to_ipv6_mapped();
        let text = gen::ipv6_text(rng, mapped);
        return (format!("{}{text}{}", rng.pick(SPACES), rng.pick(SPACES)), IpAddr::V6(mapped));
      }
      v4.to_string()
    }
    IpAddr::V6(v6) => {
      let text = gen::ipv6_text(rng, v6);
      let zone = match rng.below(4) {
        0 => format!("%{}", gen::zone(rng)),
        1 => format!("%25{}", gen::zone(rng)),
        _ => String::new(),
      };
      if rng.coin() {
        format!("[{text}{zone}]")
      } else {
        format!("{text}{zone}")
      }
    }
  };
  (format!("{}{core}{}", rng.pick(SPACES), rng.pick(SPACES)), ip)
}
