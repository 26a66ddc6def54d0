//! A task of the accept loop never dies silently.

use std::future::Future;
use std::io;

use super::events::{EventSink, PrimaryEvent, Problem};

/// A supervised task: `done` finishes after it (and its report); `abort`
/// stops it without a report.
pub struct Supervised {
  pub done: tokio::task::JoinHandle<()>,
  task: tokio::task::AbortHandle,
}

impl Supervised {
  pub fn abort(self) {
    self.task.abort();
  }
}

/// Runs `task` on the loop and reports its failure, an error or a panic, as a
/// fatal `'error'` event (tokio would otherwise swallow a panicking task).
pub fn spawn_supervised<F>(events: &std::rc::Rc<EventSink>, what: &'static str, task: F) -> Supervised
where
  F: Future<Output = io::Result<()>> + 'static,
{
  let inner = tokio::task::spawn_local(task);
  let task = inner.abort_handle();
  let events = events.clone();
  let done = tokio::task::spawn_local(async move {
    let failure = match inner.await {
      Ok(Ok(())) => None,
      Ok(Err(error)) => Some(format!("{what} stopped: {error}")),
      Err(join) if join.is_panic() => Some(format!("{what} panicked: {}", panic_message(&*join.into_panic()))),
      Err(_) => None,
    };
    if let Some(message) = failure {
      events(PrimaryEvent::Problem(Problem::Stopped(message)));
    }
  });
  Supervised { done, task }
}

pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
  if let Some(text) = panic.downcast_ref::<&str>() {
    (*text).to_string()
  } else if let Some(text) = panic.downcast_ref::<String>() {
    text.clone()
  } else {
    "unknown panic".into()
  }
}
