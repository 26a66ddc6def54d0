//! The `#[napi]` surface: thin adapters from JavaScript values to the
//! primary and worker modules. The hand-written `index.js` is the public API;
//! this is what it calls.

mod error;
mod kernel;
mod listen;
mod primary;
mod worker;

pub use error::ErrorCode;
pub use kernel::{claim_listening_fd, ReuseportGroup};
pub use listen::ListenSpec;
pub use primary::{Balancer, BalancerOptions};
pub use worker::{claim_channel, connect_channel, WorkerChannel};
