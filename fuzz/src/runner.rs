//! Drives targets: generates and checks cases under `catch_unwind`, counts
//! outcomes, writes artifacts for failures, shrinks them, and replays them.

use crate::mutate::{escape, from_hex, to_hex};
use crate::targets::*;
use crate::{Cx, Outcome, Rng, Target, Violation};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Options {
  /// Cases to generate per target.
  pub inputs: u64,
  pub seed: u64,
  /// Where failing inputs are written.
  pub artifacts: PathBuf,
  /// Keep going after a failure (counting failures, writing the first few
  /// artifacts) instead of stopping the target at the first one.
  pub keep_going: bool,
}

/// What one target's run found.
pub struct Report {
  pub name: &'static str,
  pub inputs: u64,
  pub calls: u64,
  pub complete: u64,
  pub incomplete: u64,
  pub invalid: u64,
  pub elapsed: Duration,
  /// Stopped by the time budget before `inputs` cases.
  pub timed_out: bool,
  /// Cases that broke an invariant or panicked (each of the first three is
  /// printed to stderr with its artifact as it is found).
  pub failures: u64,
}

/// A target, type-erased for the command line.
pub struct Entry {
  pub name: &'static str,
  pub functions: &'static str,
  pub run: fn(&Options, Option<Duration>) -> Report,
  pub replay: fn(Vec<Vec<u8>>) -> String,
}

fn entry<T: Target>() -> Entry {
  Entry { name: T::NAME, functions: T::FUNCTIONS, run: run::<T>, replay: replay::<T> }
}

/// Every target, in the order they run.
pub fn entries() -> Vec<Entry> {
  vec![
    entry::<ProxyHeaderTarget>(),
    entry::<RequestHeadTarget>(),
    entry::<RequestLineSidTarget>(),
    entry::<FindQueryParamTarget>(),
    entry::<XForwardedForTarget>(),
    entry::<ForwardedTarget>(),
    entry::<PickClientTarget>(),
    entry::<TrustedProxiesTarget>(),
    entry::<DecodeHandoffTarget>(),
    entry::<DecodeReplyTarget>(),
    entry::<IpLiteralTarget>(),
  ]
}

thread_local! {
  static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records panic messages (with their location) instead of printing them, so
/// that a caught panic is reported once, with its input.
pub fn install_panic_hook() {
  panic::set_hook(Box::new(|info| {
    let message = info.to_string();
    LAST_PANIC.with(|last| *last.borrow_mut() = Some(message));
  }));
}

fn take_panic() -> String {
  LAST_PANIC.with(|last| last.borrow_mut().take()).unwrap_or_else(|| "panic without a message".into())
}

/// Result of checking one case, panics included.
enum Verdict {
  Pass(Outcome),
  Violated(Violation),
  Panicked(String),
}

fn verdict<T: Target>(case: &T::Case, cx: &mut Cx) -> Verdict {
  match panic::catch_unwind(AssertUnwindSafe(|| T::check(case, cx))) {
    Ok(Ok(outcome)) => Verdict::Pass(outcome),
    Ok(Err(violation)) => Verdict::Violated(violation),
    Err(_) => Verdict::Panicked(take_panic()),
  }
}

fn name_seed(name: &str) -> u64 {
  name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01B3))
}

/// Generates and checks `options.inputs` cases, or as many as fit in
/// `budget`, stopping at the first failure.
pub fn run<T: Target>(options: &Options, budget: Option<Duration>) -> Report {
  let started = Instant::now();
  let mut rng = Rng::new(options.seed ^ name_seed(T::NAME));
  let mut report = Report {
    name: T::NAME,
    inputs: 0,
    calls: 0,
    complete: 0,
    incomplete: 0,
    invalid: 0,
    elapsed: Duration::ZERO,
    timed_out: false,
    failures: 0,
  };
  for index in 0..options.inputs {
    if index % 64 == 0 && budget.is_some_and(|budget| started.elapsed() >= budget) {
      report.timed_out = true;
      break;
    }
    let check_seed = rng.next_u64();
    let case = T::generate(&mut rng);
    let mut cx = Cx::new(check_seed);
    let result = verdict::<T>(&case, &mut cx);
    report.inputs += 1;
    report.calls += cx.calls.max(1);
    let (parts, message) = match result {
      Verdict::Pass(Outcome::Complete) => {
        report.complete += 1;
        continue;
      }
      Verdict::Pass(Outcome::Incomplete) => {
        report.incomplete += 1;
        continue;
      }
      Verdict::Pass(Outcome::Invalid) => {
        report.invalid += 1;
        continue;
      }
      Verdict::Violated(violation) => (violation.input.unwrap_or_else(|| T::parts(&case)), violation.message),
      Verdict::Panicked(message) => (T::parts(&case), format!("panic: {message}")),
    };
    report.failures += 1;
    if report.failures <= 3 {
      eprint!("{}", report_failure::<T>(options, index, &case, parts, &message));
    }
    if !options.keep_going {
      break;
    }
  }
  report.elapsed = started.elapsed();
  report
}

fn report_failure<T: Target>(
  options: &Options,
  index: u64,
  case: &T::Case,
  parts: Vec<Vec<u8>>,
  message: &str,
) -> String {
  let mut out = String::new();
  let _ = writeln!(out, "FAILED {} on input #{index} (seed {}): {message}", T::NAME, options.seed);
  let case_text = format!("{case:?}");
  let artifact = options.artifacts.join(format!("{}-{index}.hex", T::NAME));
  let written = write_artifact::<T>(&artifact, &parts, message, &case_text, options.seed, index);
  for (number, part) in parts.iter().enumerate() {
    let _ = writeln!(out, "  part {number}: {}", escape(part, 300));
    let hex = to_hex(part);
    let shown = if hex.len() > 2000 { format!("{}... ({} bytes)", &hex[..2000], part.len()) } else { hex };
    let _ = writeln!(out, "  hex {number}: {shown}");
  }
  match written {
    Ok(()) => {
      let _ = writeln!(out, "  artifact: {}", artifact.display());
    }
    Err(error) => {
      let _ = writeln!(out, "  artifact not written: {error}");
    }
  }
  if let Some(smaller) = shrink::<T>(&parts) {
    let minimized = options.artifacts.join(format!("{}-{index}.min.hex", T::NAME));
    if write_artifact::<T>(&minimized, &smaller, message, "(minimized)", options.seed, index).is_ok() {
      let _ = writeln!(out, "  minimized artifact: {}", minimized.display());
    }
    for (number, part) in smaller.iter().enumerate() {
      let _ = writeln!(out, "  minimized part {number}: {}", escape(part, 300));
    }
    let _ = writeln!(out, "  {}", T::describe(&smaller));
  } else {
    let _ = writeln!(out, "  {}", T::describe(&parts));
  }
  let _ = writeln!(
    out,
    "  replay: cargo run --release --manifest-path fuzz/Cargo.toml --bin fuzz_parsers -- --replay {}",
    artifact.display()
  );
  out
}

fn write_artifact<T: Target>(
  path: &Path,
  parts: &[Vec<u8>],
  message: &str,
  case: &str,
  seed: u64,
  index: u64,
) -> std::io::Result<()> {
  if let Some(directory) = path.parent() {
    std::fs::create_dir_all(directory)?;
  }
  let mut text = String::new();
  let _ = writeln!(text, "# parser: {}", T::NAME);
  let _ = writeln!(text, "# functions: {}", T::FUNCTIONS);
  let _ = writeln!(text, "# seed: {seed}, input #{index}");
  for line in message.lines() {
    let _ = writeln!(text, "# failure: {line}");
  }
  let case: String = case.chars().take(4000).collect();
  let _ = writeln!(text, "# case: {case}");
  let _ = writeln!(text, "# one part per line below, hex after '= '");
  for part in parts {
    let _ = writeln!(text, "= {}", to_hex(part));
  }
  std::fs::write(path, text)
}

/// Reads an artifact: the parser name and the parts.
pub fn read_artifact(path: &Path) -> Result<(String, Vec<Vec<u8>>), String> {
  let text = std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
  let mut name = None;
  let mut parts = Vec::new();
  for line in text.lines() {
    if let Some(parser) = line.strip_prefix("# parser:") {
      name = Some(parser.trim().to_owned());
    } else if let Some(hex) = line.strip_prefix('=') {
      parts.push(from_hex(hex).ok_or_else(|| format!("bad hex line: {line}"))?);
    } else if !line.starts_with('#') && !line.trim().is_empty() {
      // A bare hex line (hand-written artifact).
      parts.push(from_hex(line).ok_or_else(|| format!("bad hex line: {line}"))?);
    }
  }
  let name = name
    .or_else(|| {
      let stem = path.file_name()?.to_str()?;
      Some(stem.split('-').next()?.to_owned())
    })
    .ok_or("no parser name in the artifact")?;
  Ok((name, parts))
}

/// Runs the general invariants on an artifact's parts and says what the
/// parser returns.
pub fn replay<T: Target>(parts: Vec<Vec<u8>>) -> String {
  let case = T::from_parts(parts.clone());
  let mut cx = Cx::new(0);
  let verdict = match verdict::<T>(&case, &mut cx) {
    Verdict::Pass(outcome) => format!("general invariants hold ({outcome:?})"),
    Verdict::Violated(violation) => format!("VIOLATION: {}", violation.message),
    Verdict::Panicked(message) => format!("PANIC: {message}"),
  };
  format!("{}\n{verdict}", T::describe(&parts))
}

/// Whether the raw parts (no expectations) still fail.
fn still_fails<T: Target>(parts: &[Vec<u8>]) -> bool {
  let case = T::from_parts(parts.to_vec());
  let mut cx = Cx::new(0);
  !matches!(verdict::<T>(&case, &mut cx), Verdict::Pass(_))
}

/// Removes chunks of bytes while the failure persists (delta debugging,
/// bounded). `None` when the parts do not fail on their own.
fn shrink<T: Target>(parts: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
  if !still_fails::<T>(parts) {
    return None;
  }
  let mut best = parts.to_vec();
  let mut attempts = 0;
  for part in 0..best.len() {
    let mut chunk = best[part].len().div_ceil(2).max(1);
    while chunk >= 1 && attempts < 4000 {
      let mut start = 0;
      let mut removed_any = false;
      while start < best[part].len() && attempts < 4000 {
        let mut candidate = best.clone();
        let end = (start + chunk).min(candidate[part].len());
        candidate[part].drain(start..end);
        attempts += 1;
        if still_fails::<T>(&candidate) {
          best = candidate;
          removed_any = true;
        } else {
          start += chunk;
        }
      }
      if !removed_any {
        if chunk == 1 {
          break;
        }
        chunk /= 2;
      }
    }
  }
  Some(best)
}

/// One libFuzzer input: the raw bytes through the target's general checks,
/// then a structured case seeded by the same bytes. Panics on any violation
/// so that libFuzzer records the input.
pub fn fuzz_one<T: Target>(data: &[u8]) {
  let mut cx = Cx::new(Rng::from_bytes(data).next_u64());
  let raw = T::from_fuzz_input(data);
  if let Err(violation) = T::check(&raw, &mut cx) {
    panic!("{}: {} (case {raw:?})", T::NAME, violation.message);
  }
  let mut rng = Rng::from_bytes(data);
  let structured = T::generate(&mut rng);
  if let Err(violation) = T::check(&structured, &mut cx) {
    let parts: Vec<String> =
      violation.input.unwrap_or_else(|| T::parts(&structured)).iter().map(|part| to_hex(part)).collect();
    panic!("{}: {} (input hex {parts:?})", T::NAME, violation.message);
  }
}

/// Without cargo-fuzz, a fuzz target binary replays the files (or the files
/// in the directories) given as arguments, e.g. a corpus or a crash file.
pub fn replay_files(name: &str, checks: &[fn(&[u8])]) -> std::process::ExitCode {
  install_panic_hook();
  let mut files = Vec::new();
  for arg in std::env::args().skip(1) {
    let path = PathBuf::from(arg);
    match std::fs::read_dir(&path) {
      Ok(directory) => files.extend(directory.filter_map(|entry| entry.ok().map(|entry| entry.path()))),
      Err(_) => files.push(path),
    }
  }
  if files.is_empty() {
    eprintln!("{name}: built without cargo-fuzz; pass corpus files or directories to replay them, or run `cargo fuzz run {name}`");
    return std::process::ExitCode::from(2);
  }
  files.sort();
  let mut failed = 0;
  for file in &files {
    let Ok(data) = std::fs::read(file) else {
      continue;
    };
    for check in checks {
      if panic::catch_unwind(|| check(&data)).is_err() {
        failed += 1;
        println!("{}: {}", file.display(), take_panic());
      }
    }
  }
  println!("{name}: {} files replayed, {failed} failed", files.len());
  if failed == 0 {
    std::process::ExitCode::SUCCESS
  } else {
    std::process::ExitCode::FAILURE
  }
}

/// One libFuzzer input for any parser: the first byte picks the target (in
/// [`entries`] order), the rest is its input.
pub fn fuzz_any(data: &[u8]) {
  let checks: [fn(&[u8]); 11] = [
    fuzz_one::<ProxyHeaderTarget>,
    fuzz_one::<RequestHeadTarget>,
    fuzz_one::<RequestLineSidTarget>,
    fuzz_one::<FindQueryParamTarget>,
    fuzz_one::<XForwardedForTarget>,
    fuzz_one::<ForwardedTarget>,
    fuzz_one::<PickClientTarget>,
    fuzz_one::<TrustedProxiesTarget>,
    fuzz_one::<DecodeHandoffTarget>,
    fuzz_one::<DecodeReplyTarget>,
    fuzz_one::<IpLiteralTarget>,
  ];
  if let Some((&selector, rest)) = data.split_first() {
    checks[usize::from(selector) % checks.len()](rest);
  }
}
