//! A task of the accept loop never dies silently.

use std::future::Future;
use std::io;

use super::events::{EventSink, PrimaryEvent, Problem};

/// Runs `task` on the loop and reports its failure, an error or a panic, as a
/// fatal `'error'` event (tokio would otherwise swallow a panicking task).
pub fn spawn_supervised<F>(events: &std::rc::Rc<EventSink>, what: &'static str, task: F) -> tokio::task::JoinHandle<()>
where
  F: Future<Output = io::Result<()>> + 'static,
{
  let inner = tokio::task::spawn_local(task);
  let events = events.clone();
  tokio::task::spawn_local(async move {
    let failure = match inner.await {
      Ok(Ok(())) => None,
      Ok(Err(error)) => Some(format!("{what} stopped: {error}")),
      Err(join) if join.is_panic() => Some(format!("{what} panicked: {}", panic_message(&*join.into_panic()))),
      Err(_) => None,
    };
    if let Some(message) = failure {
      events(PrimaryEvent::Problem(Problem::Stopped(message)));
    }
  })
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
