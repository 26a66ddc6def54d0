#![no_main]
use libfuzzer_sys::fuzz_target;
use sticky_session_rs::parsers::proxy_protocol::parse_proxy_header;

fuzz_target!(|data: &[u8]| {
  let _ = parse_proxy_header(data);
});
