//! The one place where Rust errors become JavaScript errors.
//!
//! Every error thrown to JavaScript has a stable `code`: an errno name where
//! the operating system refused (`EADDRINUSE`, as `net` reports it), else an
//! `ERR_STICKY_*` code; the message says what to do.

use napi::Status;

/// The `code` property of a thrown error.
pub struct ErrorCode(pub String);

impl AsRef<str> for ErrorCode {
  fn as_ref(&self) -> &str {
    &self.0
  }
}

impl From<Status> for ErrorCode {
  fn from(status: Status) -> Self {
    ErrorCode(format!("ERR_STICKY_NAPI_{}", status.as_ref()))
  }
}

pub fn js_error(code: impl Into<String>, message: impl Into<String>) -> napi::Error<ErrorCode> {
  napi::Error::new(ErrorCode(code.into()), message.into())
}

/// Maps a napi failure (e.g. creating a callback) into our error type.
pub fn from_napi(error: napi::Error) -> napi::Error<ErrorCode> {
  js_error(format!("ERR_STICKY_NAPI_{}", error.status.as_ref()), error.reason.clone())
}
