//! `WorkerChannel`: a worker's end of its slot's channel, as JavaScript sees it.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;

use super::error::{Result, StickyError};
use super::loop_poll::LoopPoll;
use super::received::Connection;
use crate::core::wire::{self, Reply};
use crate::seqpacket;
use crate::worker::{Delivered, Receiver};

/// Batches queued towards JavaScript before the receiver thread waits: the
/// bound that turns a slow event loop into backpressure on the channel (and so
/// on the primary's per-slot limit) instead of descriptors piling up here.
const MAX_QUEUED_BATCHES: usize = 32;

#[napi(object)]
pub struct WorkerChannelStats {
  pub received: f64,
  pub lost_descriptors: f64,
  pub invalid_records: f64,
}

#[napi]
pub struct WorkerChannel {
  channel: Option<OwnedFd>,
  receiver: Option<Arc<Receiver>>,
  /// Receiving on the event loop (`startOnLoop`).
  poll: Option<LoopPoll>,
}

/// Closes a descriptor this process holds as a bare number: a worker's end
/// of a channel once it is forked, a connection a worker cannot adopt. Node's
/// `fs.closeSync` does this too; Deno's `fs` closes only what it opened
/// (EBADF otherwise). Returns false when `fd` was not open.
#[napi]
pub fn close_descriptor(fd: i32) -> bool {
  if fd < 3 {
    return false;
  }
  // Not through OwnedFd: `fd` may already be closed (then close reports
  // EBADF, and nothing else happens).
  nix::unistd::close(fd).is_ok()
}

/// Takes ownership of the channel fd the primary placed in this worker: checks
/// that it is one, and makes it close-on-exec so this worker's own children
/// never inherit it.
#[napi]
pub fn claim_channel(fd: i32) -> Result<WorkerChannel> {
  if fd < 3 {
    return Err(StickyError::NotAChannel { fd }.into());
  }
  // SAFETY: by the contract with the primary (the env variable naming it),
  // the fd is open and owned by nobody else here; when it turns out not to be
  // a channel it is released again, not closed. An integer from JavaScript
  // becomes a descriptor only this way.
  let channel = unsafe { OwnedFd::from_raw_fd(fd) };
  if !seqpacket::is_seqpacket_socket(&channel) || seqpacket::set_cloexec(&channel).is_err() {
    let _ = channel.into_raw_fd();
    return Err(StickyError::NotAChannel { fd }.into());
  }
  Ok(WorkerChannel { channel: Some(channel), receiver: None, poll: None })
}

/// Connects to the rendezvous socket `name` of a primary set up with
/// `setupMaster` (workers forked by the user), which must be held by
/// process `primary` of this user: `null` while nobody listens there yet.
/// The primary accepts only processes of its cluster; its first record (see
/// `setupArrived`) comes once it balances.
#[napi]
pub fn connect_channel(name: String, primary: u32) -> Result<Option<WorkerChannel>> {
  #[cfg(any(target_os = "linux", target_os = "android"))]
  {
    let channel = match seqpacket::connect_abstract(name.as_bytes()) {
      Ok(channel) => channel,
      Err(error) if error.raw_os_error() == Some(libc::ECONNREFUSED) => return Ok(None),
      Err(error) => return Err(StickyError::NoRendezvous(error).into()),
    };
    let (pid, uid) = seqpacket::peer_credentials(channel.as_fd()).map_err(StickyError::NoRendezvous)?;
    if pid != primary || uid != nix::unistd::geteuid().as_raw() {
      return Err(StickyError::ForeignRendezvous { name, pid, uid, primary }.into());
    }
    Ok(Some(WorkerChannel { channel: Some(channel), receiver: None, poll: None }))
  }
  #[cfg(not(any(target_os = "linux", target_os = "android")))]
  {
    let _ = (name, primary);
    Err(StickyError::Unsupported.into())
  }
}

#[napi]
impl WorkerChannel {
  /// Tells the primary this worker is ready and starts delivering
  /// connections on a thread of its own (any runtime):
  /// `on_connections(connections, primaryClosed)` receives arrays of
  /// `Connection`; `primaryClosed` is true once, last, when the primary
  /// closed this channel (this worker was replaced during a reload, or the
  /// primary is gone): finish what is in flight and exit.
  #[napi(ts_args_type = "onConnections: (connections: Array<Connection>, primaryClosed: boolean) => void")]
  pub fn start(&mut self, on_connections: Function<'_, FnArgs<(Vec<Connection>, bool)>, ()>) -> Result<()> {
    let receiver = self.hello()?;
    let deliver = on_connections
      .build_threadsafe_function::<(Vec<Delivered>, bool)>()
      .callee_handled::<false>()
      .max_queue_size::<MAX_QUEUED_BATCHES>()
      .build_callback(|context| {
        let (batch, primary_closed) = context.value;
        Ok(FnArgs::from((batch.into_iter().map(Connection::from).collect::<Vec<_>>(), primary_closed)))
      })
      .map_err(StickyError::from)?;
    receiver
      .spawn_thread(move |batch, primary_closed| {
        // Blocking: a full queue makes this thread wait, so the kernel queue
        // and then the primary feel the backpressure. On failure (JavaScript
        // is gone) the batch is dropped here and its fds closed.
        deliver.call((batch, primary_closed), ThreadsafeFunctionCallMode::Blocking) == Status::Ok
      })
      .map_err(StickyError::Receive)?;
    Ok(())
  }

  /// As `start`, on the JavaScript thread's own event loop (Node): each
  /// batch is read and delivered when the channel becomes readable, with no
  /// thread in between. Not for Bun, whose libuv functions abort.
  #[napi(ts_args_type = "onConnections: (connections: Array<Connection>, primaryClosed: boolean) => void")]
  pub fn start_on_loop(
    &mut self,
    env: Env,
    on_connections: Function<'_, FnArgs<(Vec<Connection>, bool)>, ()>,
  ) -> Result<()> {
    let receiver = self.hello()?;
    // SAFETY: on the JavaScript thread of `env`, with a function.
    let poll =
      unsafe { LoopPoll::start(env.raw(), on_connections.raw(), receiver) }.map_err(StickyError::ReceiveOnLoop)?;
    self.poll = Some(poll);
    Ok(())
  }

  /// Whether the primary's first record is here, without waiting:
  /// `'arrived'` (`start` will not wait), `'waiting'`, `'closed'` (the
  /// primary closed the connection: it refused this process, and `start`
  /// says so) or `'reset'` (the primary's rendezvous socket closed before it
  /// took this connection: connect again).
  #[napi(ts_return_type = "'arrived' | 'waiting' | 'closed' | 'reset'")]
  pub fn setup_state(&self) -> &'static str {
    use nix::sys::socket::{recv, MsgFlags};
    let Some(channel) = self.channel.as_ref() else { return "closed" };
    let mut head = [0u8; 1];
    match recv(channel.as_raw_fd(), &mut head, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
      Ok(0) => "closed",
      Ok(_) => "arrived",
      Err(nix::errno::Errno::EAGAIN) => "waiting",
      Err(nix::errno::Errno::ECONNRESET) => "reset",
      Err(_) => "closed",
    }
  }

  /// Says hello: the primary starts sending from here.
  fn hello(&mut self) -> Result<Arc<Receiver>> {
    let channel = self.channel.take().ok_or(StickyError::ChannelState)?;
    let receiver = Receiver::start(channel).map_err(|error| match error.kind() {
      std::io::ErrorKind::ConnectionRefused => StickyError::ChannelRefused,
      _ => StickyError::Receive(error),
    })?;
    self.receiver = Some(receiver.clone());
    Ok(receiver)
  }

  /// Stops taking connections: nothing more is read here, and the primary
  /// sends the ones this worker did not read to other workers.
  #[napi]
  pub fn close(&mut self) {
    self.channel = None;
    if let Some(poll) = self.poll.as_mut() {
      poll.stop();
    }
    if let Some(receiver) = self.receiver.as_ref() {
      receiver.close();
    }
  }

  /// Tells the primary that this worker opened (`opened`) or closed an
  /// engine.io session, so requests carrying its `sid` are routed here.
  /// Returns false if the report could not be sent.
  #[napi]
  pub fn report_session(&self, sid: String, opened: bool) -> bool {
    let sid = sid.as_bytes();
    if sid.is_empty() || sid.len() > wire::MAX_SESSION_ID_LEN {
      return false;
    }
    let reply = if opened { Reply::SessionOpened { sid } } else { Reply::SessionClosed { sid } };
    self.receiver.as_ref().is_some_and(|receiver| receiver.send_reply(reply))
  }

  #[napi]
  pub fn stats(&self) -> WorkerChannelStats {
    match &self.receiver {
      Some(receiver) => WorkerChannelStats {
        received: receiver.stats().received.load(Relaxed) as f64,
        lost_descriptors: receiver.stats().lost_descriptors.load(Relaxed) as f64,
        invalid_records: receiver.stats().invalid_records.load(Relaxed) as f64,
      },
      None => WorkerChannelStats { received: 0.0, lost_descriptors: 0.0, invalid_records: 0.0 },
    }
  }
}
