//! The fuzzed parsers, one [`Target`](crate::Target) each, and generators
//! shared between them.

pub mod find_query_param;
pub mod forwarded;
pub mod http_gen;
pub mod ip_literal;
pub mod nodes;
pub mod pick_client;
pub mod proxy_header;
pub mod request_head;
pub mod request_line_sid;
pub mod trusted_proxies;
pub mod wire;
pub mod x_forwarded_for;

pub use find_query_param::FindQueryParamTarget;
pub use forwarded::ForwardedTarget;
pub use ip_literal::IpLiteralTarget;
pub use pick_client::PickClientTarget;
pub use proxy_header::ProxyHeaderTarget;
pub use request_head::RequestHeadTarget;
pub use request_line_sid::RequestLineSidTarget;
pub use trusted_proxies::TrustedProxiesTarget;
pub use wire::{DecodeHandoffTarget, DecodeReplyTarget};
pub use x_forwarded_for::XForwardedForTarget;
