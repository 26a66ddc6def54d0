//! Parsers for the first bytes of an accepted TCP connection and for the
//! proxy-related HTTP headers that decide which worker gets it.
//!
//! No I/O: every function here takes bytes that the caller has already peeked
//! or read, and returns a value. Nothing blocks, allocates a socket or logs,
//! and no input, however hostile, makes a parser panic.
//!
//! Incremental parsers return [`Parse`], so the accept loop can peek again
//! with a larger buffer when a header has only partly arrived.

pub mod forwarded;
pub mod http_head;
pub mod proxy_protocol;
pub mod trusted;

/// RFC 9110 `tchar`: the bytes of a token (a method, a header or parameter name).
pub(crate) fn is_token_byte(byte: u8) -> bool {
  byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Outcome of parsing a prefix of a byte stream that may still be growing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T, E> {
  /// The bytes hold a whole, valid item. Bytes after it are not looked at.
  Complete(T),
  /// The bytes so far are a valid prefix; more bytes may make it `Complete`.
  Incomplete,
  /// No continuation of these bytes can ever be valid.
  Invalid(E),
}

impl<T, E> Parse<T, E> {
  /// Transforms the `Complete` value, leaving the other outcomes untouched.
  pub fn map<U>(self, transform: impl FnOnce(T) -> U) -> Parse<U, E> {
    match self {
      Parse::Complete(value) => Parse::Complete(transform(value)),
      Parse::Incomplete => Parse::Incomplete,
      Parse::Invalid(error) => Parse::Invalid(error),
    }
  }

  /// Transforms the `Invalid` error, leaving the other outcomes untouched.
  pub fn map_err<F>(self, transform: impl FnOnce(E) -> F) -> Parse<T, F> {
    match self {
      Parse::Complete(value) => Parse::Complete(value),
      Parse::Incomplete => Parse::Incomplete,
      Parse::Invalid(error) => Parse::Invalid(transform(error)),
    }
  }

  /// True for `Complete`.
  pub fn is_complete(&self) -> bool {
    matches!(self, Parse::Complete(_))
  }

  /// True for `Incomplete`: peek again once more bytes have arrived.
  pub fn is_incomplete(&self) -> bool {
    matches!(self, Parse::Incomplete)
  }

  /// True for `Invalid`: waiting for more bytes is pointless.
  pub fn is_invalid(&self) -> bool {
    matches!(self, Parse::Invalid(_))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn tokens_are_alphanumerics_and_the_fifteen_rfc_9110_symbols() {
    let tokens: Vec<u8> = (0..=255u8).filter(|&byte| is_token_byte(byte)).collect();
    assert_eq!(tokens.len(), 62 + 15);
    for byte in b"()<>@,;:\\\"/[]?={} \t\x7f\x80" {
      assert!(!is_token_byte(*byte), "{byte:#x} is a delimiter or not ASCII");
    }
  }

  #[test]
  fn map_and_map_err_touch_only_their_own_variant() {
    let complete: Parse<u8, &str> = Parse::Complete(1);
    assert_eq!(complete.map(u16::from), Parse::Complete(1u16));
    let invalid: Parse<u8, &str> = Parse::Invalid("bad");
    assert_eq!(invalid.clone().map(u16::from), Parse::Invalid("bad"));
    assert_eq!(invalid.map_err(str::len), Parse::Invalid(3));
    let incomplete: Parse<u8, &str> = Parse::Incomplete;
    assert!(incomplete.map_err(str::len).is_incomplete());
  }
}
