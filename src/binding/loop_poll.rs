//! Receiving on the JavaScript thread's own event loop: a libuv poll handle
//! on the channel calls JavaScript with each batch the moment the channel is
//! readable — no receiver thread, no hand-over between threads, one wake-up
//! of the worker per batch.
//!
//! Node exports libuv to addons; its functions are looked up in the running
//! process, so an addon loaded elsewhere still loads. Bun's libuv functions
//! are stubs that abort the process: `lib/runtime.js` never asks for this
//! there (the receiver thread serves Bun).

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::{Arc, OnceLock};

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;

use crate::wire;
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
      let find = |name: &CStr| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!symbol.is_null()).then_some(symbol)
      };
      // SAFETY: each symbol is libuv's function of that name, whose C
      // signature (libuv 1.x, stable) is the one it is cast to.
      unsafe {
        Some(Libuv {
          handle_size: std::mem::transmute::<*mut c_void, HandleSize>(find(c"uv_handle_size")?),
          poll_init: std::mem::transmute::<*mut c_void, PollInit>(find(c"uv_poll_init")?),
          poll_start: std::mem::transmute::<*mut c_void, PollStart>(find(c"uv_poll_start")?),
          poll_stop: std::mem::transmute::<*mut c_void, PollStop>(find(c"uv_poll_stop")?),
          close: std::mem::transmute::<*mut c_void, Close>(find(c"uv_close")?),
        })
      }
    })
    .as_ref()
}

/// What the poll handle's callback works with; owned by the handle (its
/// `data`), freed when libuv has closed it.
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
  /// Called on the JavaScript thread of `env`, with `callback` a function.
  pub unsafe fn start(env: sys::napi_env, callback: sys::napi_value, receiver: Arc<Receiver>) -> Result<Self, String> {
    let uv = libuv().ok_or("this runtime does not export libuv")?;
    let mut event_loop = ptr::null_mut();
    check(sys::napi_get_uv_event_loop(env, &mut event_loop), "napi_get_uv_event_loop")?;
    let handle = libc::calloc(1, (uv.handle_size)(UV_POLL));
    if handle.is_null() {
      return Err("out of memory".into());
    }
    let status = (uv.poll_init)(event_loop.cast(), handle, receiver.raw_fd());
    if status != 0 {
      libc::free(handle);
      return Err(format!("uv_poll_init failed ({status})"));
    }
    let mut reference = ptr::null_mut();
    let mut name = ptr::null_mut();
    let mut context = ptr::null_mut();
    let made = check(sys::napi_create_reference(env, callback, 1, &mut reference), "napi_create_reference")
      .and_then(|()| check(sys::napi_create_string_utf8(env, c"StickyChannel".as_ptr(), 13, &mut name), "a name"))
      .and_then(|()| check(sys::napi_async_init(env, ptr::null_mut(), name, &mut context), "napi_async_init"));
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
    // `uv_handle_t.data` is the handle's first field.
    handle.cast::<*mut c_void>().write(poll.cast());
    if let Err(error) = made {
      stop(poll);
      return Err(error);
    }
    let status = (uv.poll_start)(handle, UV_READABLE, on_readable);
    if status != 0 {
      stop(poll);
      return Err(format!("uv_poll_start failed ({status})"));
    }
    check(sys::napi_add_env_cleanup_hook(env, Some(on_env_teardown), poll.cast()), "a cleanup hook").inspect_err(
      |_| {
        stop(poll);
      },
    )?;
    Ok(LoopPoll(poll))
  }

  /// Stops reading and calling JavaScript, at once (also from within the
  /// callback). Call on the JavaScript thread.
  pub fn stop(&mut self) {
    // SAFETY: the poll stays allocated until libuv closed its handle, which
    // happens after this returns; `stop` is idempotent.
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
/// (libuv frees it on a later turn of the loop, in `on_closed`).
unsafe fn stop(poll: *mut Poll) {
  let state = &mut *poll;
  if state.stopped {
    return;
  }
  state.stopped = true;
  (state.uv.poll_stop)(state.handle);
  sys::napi_remove_env_cleanup_hook(state.env, Some(on_env_teardown), poll.cast());
  if !state.callback.is_null() {
    sys::napi_delete_reference(state.env, state.callback);
  }
  if !state.context.is_null() {
    sys::napi_async_destroy(state.env, state.context);
  }
  (state.uv.close)(state.handle, Some(on_closed));
}

unsafe extern "C" fn on_closed(handle: *mut c_void) {
  let poll = handle.cast::<*mut Poll>().read();
  drop(Box::from_raw(poll));
  libc::free(handle);
}

unsafe extern "C" fn on_env_teardown(poll: *mut c_void) {
  stop(poll.cast());
}

/// The channel is readable: read what is queued and hand it to JavaScript.
unsafe extern "C" fn on_readable(handle: *mut c_void, status: c_int, _events: c_int) {
  let poll = handle.cast::<*mut Poll>().read();
  let state = &mut *poll;
  if state.stopped {
    return;
  }
  let mut batch = Vec::new();
  let channel = if status < 0 {
    ChannelState::Closed
  } else {
    state.receiver.read_available(&mut state.buf, &mut batch, MAX_DELIVERY)
  };
  let primary_closed = channel == ChannelState::Closed;
  if !batch.is_empty() || primary_closed {
    deliver(state, batch, primary_closed);
  }
  // JavaScript may have closed the channel meanwhile (`stop` is idempotent).
  if primary_closed {
    stop(poll);
  }
}

/// Calls the JavaScript callback as a macrotask (microtasks and
/// `process.nextTick` run after it); an exception it throws is uncaught, as
/// from any event.
unsafe fn deliver(state: &mut Poll, batch: Vec<Delivered>, primary_closed: bool) {
  let env = state.env;
  let mut scope = ptr::null_mut();
  if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
    return;
  }
  let connections: Vec<Connection> = batch.into_iter().map(Connection::from).collect();
  let fds: Vec<i32> = connections.iter().map(|connection| connection.fd).collect();
  let mut callback = ptr::null_mut();
  let mut receiver = ptr::null_mut();
  let args = match (Vec::<Connection>::to_napi_value(env, connections), bool::to_napi_value(env, primary_closed)) {
    (Ok(connections), Ok(closed)) => Some([connections, closed]),
    _ => None,
  };
  let called = match args {
    Some(args)
      if sys::napi_get_reference_value(env, state.callback, &mut callback) == sys::Status::napi_ok
        // The receiver must be an object (napi_make_callback converts it).
        && sys::napi_get_global(env, &mut receiver) == sys::Status::napi_ok =>
    {
      let mut result = ptr::null_mut();
      let status =
        sys::napi_make_callback(env, state.context, receiver, callback, args.len(), args.as_ptr(), &mut result);
      if status == sys::Status::napi_pending_exception {
        let mut exception = ptr::null_mut();
        if sys::napi_get_and_clear_last_exception(env, &mut exception) == sys::Status::napi_ok {
          sys::napi_fatal_exception(env, exception);
        }
      }
      true
    }
    _ => false,
  };
  if !called {
    // JavaScript never got them: close them rather than leak them.
    for fd in fds {
      libc::close(fd);
    }
  }
  sys::napi_close_handle_scope(env, scope);
}
