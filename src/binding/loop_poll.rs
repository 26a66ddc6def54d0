//! Receiving on the JavaScript thread's own event loop: a libuv poll handle
//! on the channel calls JavaScript with each batch the moment the channel is
//! readable — no receiver thread, no hand-over between threads, one wake-up
//! of the worker per batch.
//!
//! Node exports libuv to addons; its functions are looked up in the running
//! process, so an addon loaded elsewhere still loads. Bun's libuv functions
//! are stubs that abort the process: `lib/runtime.js` never asks for this
//! there (the receiver thread serves Bun).

// One unsafe operation per block, each with its own `SAFETY:` reason.
#![deny(clippy::multiple_unsafe_ops_per_block)]

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::{Arc, OnceLock};

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;

use crate::core::wire;
use crate::worker::{ChannelState, Delivered, Receiver, MAX_DELIVERY};

use super::received::Connection;

/// `uv_handle_type` of a poll handle, and the readable event (libuv 1.x ABI).
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;

type PollCallback = unsafe extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
type CloseCallback = unsafe extern "C" fn(handle: *mut c_void);

type HandleSize = unsafe extern "C" fn(c_int) -> usize;
type PollInit = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
type PollStart = unsafe extern "C" fn(*mut c_void, c_int, PollCallback) -> c_int;
type PollStop = unsafe extern "C" fn(*mut c_void) -> c_int;
type Close = unsafe extern "C" fn(*mut c_void, Option<CloseCallback>);

/// The libuv functions this needs, from the running process.
struct Libuv {
  handle_size: HandleSize,
  poll_init: PollInit,
  poll_start: PollStart,
  poll_stop: PollStop,
  close: Close,
}

fn libuv() -> Option<&'static Libuv> {
  static LIBUV: OnceLock<Option<Libuv>> = OnceLock::new();
  LIBUV
    .get_or_init(|| {
      Some(Libuv {
        // SAFETY: `size_t uv_handle_size(uv_handle_type)` in libuv 1.x (an
        // enum is a C int).
        handle_size: unsafe { function::<HandleSize>(c"uv_handle_size") }?,
        // SAFETY: `int uv_poll_init(uv_loop_t*, uv_poll_t*, int fd)`.
        poll_init: unsafe { function::<PollInit>(c"uv_poll_init") }?,
        // SAFETY: `int uv_poll_start(uv_poll_t*, int events, uv_poll_cb)`.
        poll_start: unsafe { function::<PollStart>(c"uv_poll_start") }?,
        // SAFETY: `int uv_poll_stop(uv_poll_t*)`.
        poll_stop: unsafe { function::<PollStop>(c"uv_poll_stop") }?,
        // SAFETY: `void uv_close(uv_handle_t*, uv_close_cb)`.
        close: unsafe { function::<Close>(c"uv_close") }?,
      })
    })
    .as_ref()
}

/// The C function `name` of the running process, as `F`; `None` when the
/// process has no such symbol.
///
/// # Safety
/// `F` is the function pointer type of the C function named `name`.
unsafe fn function<F: Copy>(name: &CStr) -> Option<F> {
  const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut c_void>()) };
  // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other
  // precondition.
  let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
  if symbol.is_null() {
    return None;
  }
  // SAFETY: `F` is a function pointer of the symbol's C signature (the
  // caller's contract), as large as the address it is read from (asserted
  // above).
  Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&symbol) })
}

/// What the poll handle's callback works with; owned by the handle (its
/// `data`), freed when libuv has closed it.
///
/// Lifetime: made and leaked by [`LoopPoll::start`]; freed only by
/// [`on_closed`], which libuv calls once, on a later turn of the loop, after
/// [`stop`] closed the handle. Until then every pointer to it is valid. It is
/// only used on the JavaScript thread (the loop's thread), and no `&mut` to
/// it is held while JavaScript runs: JavaScript may call `stop` through it.
struct Poll {
  uv: &'static Libuv,
  /// The `uv_poll_t`, allocated with libuv's size for it.
  handle: *mut c_void,
  env: sys::napi_env,
  callback: sys::napi_ref,
  context: sys::napi_async_context,
  receiver: Arc<Receiver>,
  buf: Vec<u8>,
  /// Stopped: no more reading, no more calls; the handle is closing.
  stopped: bool,
}

/// A running poll, as the channel holds it.
pub struct LoopPoll(*mut Poll);

impl LoopPoll {
  /// Starts polling the receiver's channel on the event loop of `env`;
  /// `callback(connections, primaryClosed)` gets each batch. `None` (with
  /// nothing started) when libuv is not there to use.
  ///
  /// # Safety
  /// Called on the JavaScript thread of `env`, from a napi call (so inside a
  /// handle scope in which `callback` is valid), with `callback` a function.
  pub unsafe fn start(env: sys::napi_env, callback: sys::napi_value, receiver: Arc<Receiver>) -> Result<Self, String> {
    let uv = libuv().ok_or("this runtime does not export libuv")?;
    let mut event_loop = ptr::null_mut();
    // SAFETY: on env's thread (the caller's contract); the out pointer is a local.
    check(unsafe { sys::napi_get_uv_event_loop(env, &mut event_loop) }, "napi_get_uv_event_loop")?;
    // SAFETY: uv_handle_size takes any handle type and only returns a size.
    let size = unsafe { (uv.handle_size)(UV_POLL) };
    // SAFETY: calloc has no precondition; the result is checked for null.
    let handle = unsafe { libc::calloc(1, size) };
    if handle.is_null() {
      return Err("out of memory".into());
    }
    // SAFETY: `event_loop` is env's running loop, on its thread; `handle` is
    // zeroed memory of libuv's size for a poll handle, used for nothing else;
    // the fd is the receiver's channel, open while the receiver lives (the
    // `Poll` below keeps it until the handle is closed).
    let status = unsafe { (uv.poll_init)(event_loop.cast(), handle, receiver.raw_fd()) };
    if status != 0 {
      // SAFETY: from calloc above, unknown to libuv (its init failed), freed once.
      unsafe { libc::free(handle) };
      return Err(format!("uv_poll_init failed ({status})"));
    }
    let mut reference = ptr::null_mut();
    let mut name = ptr::null_mut();
    let mut context = ptr::null_mut();
    let made = (|| {
      // SAFETY: on env's thread, `callback` valid in the caller's handle
      // scope; the out pointer is a local.
      check(unsafe { sys::napi_create_reference(env, callback, 1, &mut reference) }, "napi_create_reference")?;
      // SAFETY: on env's thread; a NUL-terminated string of 13 bytes; the out
      // pointer is a local.
      check(unsafe { sys::napi_create_string_utf8(env, c"StickyChannel".as_ptr(), 13, &mut name) }, "a name")?;
      // SAFETY: on env's thread; `name` a string value made just above; the
      // out pointer is a local.
      check(unsafe { sys::napi_async_init(env, ptr::null_mut(), name, &mut context) }, "napi_async_init")
    })();
    let poll = Box::into_raw(Box::new(Poll {
      uv,
      handle,
      env,
      callback: reference,
      context,
      receiver,
      buf: vec![0u8; wire::MAX_HANDOFF_RECORD_LEN],
      stopped: false,
    }));
    // SAFETY: `uv_handle_t.data` (a `void*`) is the handle's first field in
    // libuv's ABI, and `handle` is a live allocation of the handle's size,
    // aligned for any type (calloc). From here the handle's data is the Poll,
    // as every callback below expects.
    unsafe { handle.cast::<*mut c_void>().write(poll.cast()) };
    if let Err(error) = made {
      // SAFETY: a Poll made just above, whose handle is initialised; on env's thread.
      unsafe { stop(poll) };
      return Err(error);
    }
    // SAFETY: the handle was initialised by uv_poll_init and is not closing;
    // its data is the Poll, as `on_readable` expects.
    let status = unsafe { (uv.poll_start)(handle, UV_READABLE, on_readable) };
    if status != 0 {
      // SAFETY: as for the stop above.
      unsafe { stop(poll) };
      return Err(format!("uv_poll_start failed ({status})"));
    }
    // SAFETY: on env's thread; the hook gets the Poll, which `stop` removes the
    // hook for before it closes the handle, so the hook never sees a freed Poll.
    let hooked = unsafe { sys::napi_add_env_cleanup_hook(env, Some(on_env_teardown), poll.cast()) };
    check(hooked, "a cleanup hook").inspect_err(|_| {
      // SAFETY: as for the stop above.
      unsafe { stop(poll) };
    })?;
    Ok(LoopPoll(poll))
  }

  /// Stops reading and calling JavaScript, at once (also from within the
  /// callback). Call on the JavaScript thread.
  pub fn stop(&mut self) {
    // SAFETY: the poll stays allocated until libuv closed its handle, which
    // happens on a later turn of the loop, after `stop` closed it (and `stop`
    // is idempotent); `LoopPoll` lives in a `WorkerChannel`, which only the
    // JavaScript thread uses.
    unsafe { stop(self.0) };
  }
}

fn check(status: sys::napi_status, what: &str) -> Result<(), String> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(format!("{what} failed (napi status {status})"))
  }
}

/// Stops the poll, lets go of the JavaScript callback, and closes the handle
/// (libuv frees it on a later turn of the loop, in `on_closed`). Idempotent.
///
/// # Safety
/// `poll` is a Poll made by [`LoopPoll::start`] whose handle was initialised,
/// not yet freed (see [`Poll`]: it is not, until a later turn of the loop
/// after the first `stop`); called on the JavaScript thread of its env, with
/// no reference to the Poll held elsewhere.
unsafe fn stop(poll: *mut Poll) {
  // SAFETY: a live Poll (the contract), borrowed only inside this function,
  // which runs no JavaScript.
  let state = unsafe { &mut *poll };
  if state.stopped {
    return;
  }
  state.stopped = true;
  // SAFETY: the handle is initialised and not yet closed (not stopped before).
  unsafe { (state.uv.poll_stop)(state.handle) };
  // SAFETY: on env's thread; the hook and argument `start` added (removing a
  // hook never added, when `start` failed before adding it, does nothing).
  unsafe { sys::napi_remove_env_cleanup_hook(state.env, Some(on_env_teardown), poll.cast()) };
  if !state.callback.is_null() {
    // SAFETY: on env's thread; the reference `start` made, deleted only here,
    // once (`stopped`).
    unsafe { sys::napi_delete_reference(state.env, state.callback) };
  }
  if !state.context.is_null() {
    // SAFETY: on env's thread; the context `start` made, destroyed only here, once.
    unsafe { sys::napi_async_destroy(state.env, state.context) };
  }
  // SAFETY: the handle is initialised and closed only here, once; `on_closed`
  // frees it and the Poll.
  unsafe { (state.uv.close)(state.handle, Some(on_closed)) };
}

/// libuv closed the handle: frees it and its Poll.
///
/// # Safety
/// Called by libuv, once, with a handle `stop` closed, whose data is its Poll.
unsafe extern "C" fn on_closed(handle: *mut c_void) {
  // SAFETY: the handle's first field is its data, the Poll (see `start`).
  let poll = unsafe { handle.cast::<*mut Poll>().read() };
  // SAFETY: the Poll came from `Box::into_raw` in `start`; libuv calls this
  // once and nothing uses the Poll after it, so it is freed once.
  drop(unsafe { Box::from_raw(poll) });
  // SAFETY: from calloc in `start`; libuv is done with it once it called this.
  unsafe { libc::free(handle) };
}

/// The env is being torn down (a worker thread, or the process, ends).
///
/// # Safety
/// Called by napi with the Poll `start` registered the hook with, on the
/// env's thread; `stop` removes the hook before the Poll can be freed, so the
/// Poll is live.
unsafe extern "C" fn on_env_teardown(poll: *mut c_void) {
  // SAFETY: a live Poll with an initialised handle, on its env's thread.
  unsafe { stop(poll.cast()) };
}

/// The channel is readable: read what is queued and hand it to JavaScript.
///
/// # Safety
/// Called by libuv on the loop's thread for a started poll handle, whose data
/// is its Poll (live: libuv calls no poll callback once the handle is
/// closing, and it is freed only after it closed).
unsafe extern "C" fn on_readable(handle: *mut c_void, status: c_int, _events: c_int) {
  // SAFETY: the handle's first field is its data, the Poll (see `start`).
  let poll = unsafe { handle.cast::<*mut Poll>().read() };
  // The borrow ends before JavaScript runs: it may stop the poll (`close`).
  let (batch, primary_closed, call) = {
    // SAFETY: the Poll is live (the contract); nothing else borrows it
    // during this block, which runs no JavaScript.
    let state = unsafe { &mut *poll };
    if state.stopped {
      return;
    }
    let mut batch = Vec::new();
    let channel = if status < 0 {
      ChannelState::Closed
    } else {
      state.receiver.read_available(&mut state.buf, &mut batch, MAX_DELIVERY)
    };
    (batch, channel == ChannelState::Closed, Call { env: state.env, callback: state.callback, context: state.context })
  };
  if !batch.is_empty() || primary_closed {
    // SAFETY: on the loop's thread, called from libuv (no JavaScript on the
    // stack); the callback reference and the context are live: the poll was
    // not stopped, and nothing stopped it since (no JavaScript ran).
    unsafe { deliver(call, batch, primary_closed) };
  }
  // JavaScript may have closed the channel meanwhile (`stop` is idempotent).
  if primary_closed {
    // SAFETY: the Poll is still live: even if JavaScript stopped it, it is
    // freed on a later turn of the loop; on the loop's thread.
    unsafe { stop(poll) };
  }
}

/// The JavaScript side of a delivery, copied out of the Poll.
#[derive(Clone, Copy)]
struct Call {
  env: sys::napi_env,
  callback: sys::napi_ref,
  context: sys::napi_async_context,
}

/// Calls the JavaScript callback as a macrotask (microtasks and
/// `process.nextTick` run after it); an exception it throws is uncaught, as
/// from any event.
///
/// # Safety
/// On the JavaScript thread of `call.env`, from the event loop (not from
/// within JavaScript), with `call.callback` and `call.context` live.
unsafe fn deliver(call: Call, batch: Vec<Delivered>, primary_closed: bool) {
  let Call { env, callback: reference, context } = call;
  let mut scope = ptr::null_mut();
  // SAFETY: on env's thread; the out pointer is a local; closed below.
  if unsafe { sys::napi_open_handle_scope(env, &mut scope) } != sys::Status::napi_ok {
    return;
  }
  let connections: Vec<Connection> = batch.into_iter().map(Connection::from).collect();
  let fds: Vec<i32> = connections.iter().map(|connection| connection.fd).collect();
  // SAFETY: on env's thread, inside the handle scope opened above.
  let connections = unsafe { Vec::<Connection>::to_napi_value(env, connections) };
  // SAFETY: as above.
  let closed = unsafe { bool::to_napi_value(env, primary_closed) };
  let args = match (connections, closed) {
    (Ok(connections), Ok(closed)) => Some([connections, closed]),
    _ => None,
  };
  let mut callback = ptr::null_mut();
  let mut receiver = ptr::null_mut();
  let called = match args {
    Some(args)
      // SAFETY: on env's thread; a live reference (the contract); the out pointer is a local.
      if unsafe { sys::napi_get_reference_value(env, reference, &mut callback) } == sys::Status::napi_ok
        // The receiver must be an object (napi_make_callback converts it).
        // SAFETY: on env's thread; the out pointer is a local.
        && unsafe { sys::napi_get_global(env, &mut receiver) } == sys::Status::napi_ok =>
    {
      let mut result = ptr::null_mut();
      // SAFETY: on env's thread, from the event loop (what make_callback is
      // for), with a live async context; `callback` and `receiver` are values
      // of this scope; `args` outlives the call.
      let status =
        unsafe { sys::napi_make_callback(env, context, receiver, callback, args.len(), args.as_ptr(), &mut result) };
      if status == sys::Status::napi_pending_exception {
        let mut exception = ptr::null_mut();
        // SAFETY: on env's thread, with an exception pending; the out pointer is a local.
        if unsafe { sys::napi_get_and_clear_last_exception(env, &mut exception) } == sys::Status::napi_ok {
          // SAFETY: on env's thread; the exception value just taken.
          unsafe { sys::napi_fatal_exception(env, exception) };
        }
      }
      true
    }
    _ => false,
  };
  if !called {
    // JavaScript never got them: close them rather than leak them.
    for fd in fds {
      // SAFETY: each fd was this process's own (`Connection::from` released
      // it for JavaScript, which never got it), closed once.
      unsafe { libc::close(fd) };
    }
  }
  // SAFETY: on env's thread; the scope opened above, closed once.
  unsafe { sys::napi_close_handle_scope(env, scope) };
}
