//! The generators must actually reach the cases the invariants are about;
//! a generator that silently stopped producing them would make the fuzz run
//! pass for the wrong reason.

use sticky_session_rs::parsers::http_head::{HeadError, MAX_REQUEST_HEAD_LEN, MAX_REQUEST_LINE_LEN};
use sticky_session_rs_fuzz::targets::http_gen::SidExpect;
use sticky_session_rs_fuzz::targets::*;
use sticky_session_rs_fuzz::{Rng, Target};

fn cases<T: Target>(count: usize) -> Vec<T::Case> {
  let mut rng = Rng::new(42);
  (0..count).map(|_| T::generate(&mut rng)).collect()
}

#[test]
fn proxy_headers_cover_every_expectation() {
  use proxy_header::Expect;
  let cases = cases::<ProxyHeaderTarget>(20_000);
  let count = |predicate: &dyn Fn(&Expect) -> bool| cases.iter().filter(|case| predicate(&case.expect)).count();
  assert!(count(&|expect| matches!(expect, Expect::Nothing)) > 1000);
  assert!(count(&|expect| matches!(expect, Expect::Valid(h) if h.version == 1 && h.source.is_some())) > 500);
  assert!(count(&|expect| matches!(expect, Expect::Valid(h) if h.version == 1 && h.source.is_none())) > 100);
  assert!(count(&|expect| matches!(expect, Expect::Valid(h) if h.version == 2 && h.source.is_some())) > 500);
  assert!(count(&|expect| matches!(expect, Expect::Valid(h) if h.version == 2 && h.source.is_none())) > 100);
  assert!(count(&|expect| matches!(expect, Expect::Valid(h) if h.header_len > 4000)) > 10);
  assert!(count(&|expect| matches!(expect, Expect::V1TooLong)) > 10);
}

#[test]
fn request_lines_cover_every_sid_outcome_and_the_length_cap() {
  use request_line_sid::Expect;
  let cases = cases::<RequestLineSidTarget>(20_000);
  let sid = |predicate: &dyn Fn(&SidExpect) -> bool| {
    cases.iter().filter(|case| matches!(&case.expect, Expect::Line { sid, .. } if predicate(sid))).count()
  };
  assert!(sid(&|sid| matches!(sid, SidExpect::Handshake)) > 500);
  assert!(sid(&|sid| matches!(sid, SidExpect::Sid(_))) > 500);
  for error in [HeadError::DuplicateSid, HeadError::EmptySid] {
    assert!(sid(&|sid| *sid == SidExpect::Error(error.clone())) > 20, "{error:?}");
  }
  assert!(sid(&|sid| matches!(sid, SidExpect::Error(HeadError::SidTooLong { .. }))) > 20);
  assert!(sid(&|sid| matches!(sid, SidExpect::Error(HeadError::SidForbiddenByte { .. }))) > 20);
  let long = |predicate: &dyn Fn(usize) -> bool| {
    cases.iter().filter(|case| matches!(case.expect, Expect::Line { line_len, .. } if predicate(line_len))).count()
  };
  assert!(long(&|len| len > MAX_REQUEST_LINE_LEN) > 5);
  assert!(long(&|len| len <= MAX_REQUEST_LINE_LEN && len > MAX_REQUEST_LINE_LEN - 8) > 5);
}

#[test]
fn request_heads_reach_both_limits() {
  let cases = cases::<RequestHeadTarget>(20_000);
  let heads: Vec<_> =
    cases.iter().filter_map(|case| case.expect.as_ref().map(|head| (head, case.max_headers))).collect();
  assert!(heads.len() > 5000);
  assert!(heads.iter().filter(|(head, _)| head.bytes.len() > MAX_REQUEST_HEAD_LEN).count() > 20);
  assert!(
    heads.iter().filter(|(head, _)| head.bytes.len() <= MAX_REQUEST_HEAD_LEN && head.bytes.len() > 16_000).count() > 20
  );
  assert!(heads.iter().filter(|(head, max)| head.headers.len() > *max).count() > 200);
  assert!(heads.iter().filter(|(head, _)| head.bare_lf).count() > 200);
  assert!(
    heads
      .iter()
      .filter(|(head, _)| head.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(b"x-forwarded-for")))
      .count()
      > 500
  );
}

#[test]
fn forwarding_chains_hold_every_kind_of_node() {
  use sticky_session_rs::parsers::forwarded::ForwardedNode;
  let xff = cases::<XForwardedForTarget>(5_000);
  let nodes: Vec<ForwardedNode> = xff.iter().filter_map(|case| case.expect.clone()).flatten().collect();
  for kind in [ForwardedNode::Unknown, ForwardedNode::Obfuscated] {
    assert!(nodes.iter().filter(|node| **node == kind).count() > 100, "{kind:?}");
  }
  assert!(nodes.iter().filter(|node| matches!(node, ForwardedNode::Ip(ip) if ip.is_ipv6())).count() > 1000);
  let forwarded = cases::<ForwardedTarget>(5_000);
  let multi_line = forwarded.iter().filter(|case| case.values.len() > 1 && case.expect.is_some()).count();
  assert!(multi_line > 200, "{multi_line}");
}
