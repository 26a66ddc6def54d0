//! The worker process's side: the hand-off channel's receiver, and the
//! overflow relief of a kernel-steered worker's socket.

mod receiver;
pub mod relief;

pub use receiver::{ChannelState, Delivered, Receiver, MAX_DELIVERY};
