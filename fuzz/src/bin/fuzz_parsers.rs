//! Deterministic fuzzing of the sticky-session-rs parsers on stable Rust.
//!
//! ```text
//! cargo run --release --manifest-path fuzz/Cargo.toml --bin fuzz_parsers -- [options]
//!   --inputs N      cases per parser (default 1000000)
//!   --quick         same as --inputs 20000
//!   --seed S        PRNG seed (default 1); a run is reproducible from it
//!   --seconds T     stop after T seconds in total, split evenly between parsers
//!   --only A,B      run only these parsers (see --list)
//!   --artifacts D   where failing inputs go (default fuzz/artifacts)
//!   --keep-going    count every failing input instead of stopping a parser
//!                   at its first (artifacts for the first 3 per parser)
//!   --replay FILE   re-run an artifact and print what the parser returns
//!   --list          list the parsers
//! ```
//!
//! Prints one line per parser and finally `N passed, M failed`; exits with
//! status 1 if any parser failed (its input is in the artifacts directory).
//!
//! Built by cargo-fuzz (`--cfg fuzzing`, which `cargo fuzz build` applies to
//! every binary) this is instead a libFuzzer target over all parsers, the
//! first input byte choosing the parser.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sticky_session_rs_fuzz::runner::fuzz_any(data));

#[cfg(not(fuzzing))]
fn main() -> std::process::ExitCode {
  driver::main()
}

#[cfg(not(fuzzing))]
mod driver {

  use std::path::PathBuf;
  use std::process::ExitCode;
  use std::time::{Duration, Instant};
  use sticky_session_rs_fuzz::runner::{self, Options};

  const USAGE: &str = "usage: fuzz_parsers [--inputs N | --quick] [--seed S] [--seconds T] [--only A,B] \
  [--artifacts DIR] [--keep-going] [--replay FILE] [--list]";

  struct Arguments {
    options: Options,
    seconds: Option<f64>,
    only: Option<Vec<String>>,
    replay: Option<PathBuf>,
    list: bool,
  }

  fn parse_arguments() -> Result<Arguments, String> {
    let mut arguments = Arguments {
      options: Options {
        inputs: 1_000_000,
        seed: 1,
        artifacts: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts"),
        keep_going: false,
      },
      seconds: None,
      only: None,
      replay: None,
      list: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
      let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
      match arg.as_str() {
        "--inputs" => {
          let text = value("--inputs")?.replace('_', "");
          arguments.options.inputs = text.parse().map_err(|_| format!("bad --inputs {text}"))?;
        }
        "--quick" => arguments.options.inputs = 20_000,
        "--seed" => {
          let text = value("--seed")?;
          arguments.options.seed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
          }
          .map_err(|_| format!("bad --seed {text}"))?;
        }
        "--seconds" => {
          let text = value("--seconds")?;
          let seconds: f64 = text.parse().map_err(|_| format!("bad --seconds {text}"))?;
          if seconds.is_nan() || seconds <= 0.0 {
            return Err(format!("bad --seconds {text}"));
          }
          arguments.seconds = Some(seconds);
        }
        "--only" => arguments.only = Some(value("--only")?.split(',').map(str::to_owned).collect()),
        "--artifacts" => arguments.options.artifacts = PathBuf::from(value("--artifacts")?),
        "--replay" => arguments.replay = Some(PathBuf::from(value("--replay")?)),
        "--list" => arguments.list = true,
        "--keep-going" => arguments.options.keep_going = true,
        "-h" | "--help" => return Err(USAGE.into()),
        other => return Err(format!("unknown argument {other}\n{USAGE}")),
      }
    }
    Ok(arguments)
  }

  pub fn main() -> ExitCode {
    let arguments = match parse_arguments() {
      Ok(arguments) => arguments,
      Err(message) => {
        eprintln!("{message}");
        return ExitCode::from(2);
      }
    };
    let entries = runner::entries();

    if arguments.list {
      for entry in &entries {
        println!("{:<18} {}", entry.name, entry.functions);
      }
      return ExitCode::SUCCESS;
    }

    runner::install_panic_hook();

    if let Some(path) = &arguments.replay {
      let (name, parts) = match runner::read_artifact(path) {
        Ok(artifact) => artifact,
        Err(message) => {
          eprintln!("{message}");
          return ExitCode::from(2);
        }
      };
      let Some(entry) = entries.iter().find(|entry| entry.name == name) else {
        eprintln!("unknown parser {name} in {}", path.display());
        return ExitCode::from(2);
      };
      let result = (entry.replay)(parts);
      println!("{result}");
      return if result.contains("VIOLATION") || result.contains("PANIC") {
        ExitCode::FAILURE
      } else {
        ExitCode::SUCCESS
      };
    }

    let selected: Vec<_> = match &arguments.only {
      Some(names) => {
        if let Some(unknown) = names.iter().find(|name| !entries.iter().any(|entry| entry.name == name.as_str())) {
          eprintln!("unknown parser {unknown}; --list shows them");
          return ExitCode::from(2);
        }
        entries.iter().filter(|entry| names.iter().any(|name| name == entry.name)).collect()
      }
      None => entries.iter().collect(),
    };
    let budget = arguments.seconds.map(|seconds| Duration::from_secs_f64(seconds / selected.len().max(1) as f64));

    let options = &arguments.options;
    println!(
      "fuzz_parsers: seed {}, {} inputs per parser{}, debug assertions {}",
      options.seed,
      options.inputs,
      budget.map(|budget| format!(", at most {:.1}s per parser", budget.as_secs_f64())).unwrap_or_default(),
      if cfg!(debug_assertions) { "on" } else { "off" },
    );
    let started = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    for entry in selected {
      let report = (entry.run)(options, budget);
      let status = match (report.failures, report.timed_out) {
        (0, false) => "ok".to_owned(),
        (0, true) => "ok (time cap)".to_owned(),
        (failures, _) => format!("FAILED ({failures} failing inputs)"),
      };
      println!(
        "{:<18} inputs={:<8} calls={:<9} complete={:<8} incomplete={:<8} invalid={:<8} elapsed={:>6.2}s {status}",
        report.name,
        report.inputs,
        report.calls,
        report.complete,
        report.incomplete,
        report.invalid,
        report.elapsed.as_secs_f64(),
      );
      if report.failures == 0 {
        passed += 1;
      } else {
        failed += 1;
      }
    }
    println!("total elapsed {:.2}s", started.elapsed().as_secs_f64());
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
      ExitCode::SUCCESS
    } else {
      ExitCode::FAILURE
    }
  }
}
