//! The worker process's side of the hand-off channel.

mod receiver;

pub use receiver::{ChannelState, Delivered, Receiver, MAX_DELIVERY};
