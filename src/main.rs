//! The `barge` command line: parses arguments, calls one library operation, prints its report.
//!
//! `anyhow` lives only here; the libraries return typed errors whose category
//! decides the exit code (see README: "Exit codes").

mod commands;
mod hint;
mod log;
mod progress;

use std::process::ExitCode;

use barge_bundle::BundleError;
use barge_pipeline::{ErrorKind, PipelineError};
use barge_transfer::TransferError;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;

use commands::{Done, Global};
use progress::Bars;

/// Carry OCI artifacts across an air gap: export them into one bundle, copy it, import it verified.
#[derive(Parser)]
#[command(name = "barge", version, about, max_term_width = 100, after_help = EXIT_CODES)]
struct Cli {
    /// How to print the result: text for people, json for one summary object on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Export artifacts from a registry into one bundle (ACR: ExportPipeline run).
    Export(commands::export::Args),
    /// Import a bundle into a registry, verifying every digest (ACR: ImportPipeline run).
    Import(commands::import::Args),
    /// Copy a bundle (any blob) from one location to another, checked before it takes its name.
    Copy(commands::copy::Args),
    /// Write a split bundle (NAME.parts.json and its parts) back as one bundle.
    Join(commands::join::Args),
    /// Measure a storage container or a directory: upload, download, server-side and relayed copy (azcopy bench).
    Bench(commands::bench::Args),
    /// Export and import pipelines (ACR's ExportPipeline and ImportPipeline).
    Pipeline {
        #[command(subcommand)]
        cmd: commands::pipeline::PipelineCmd,
    },
    /// Pipeline runs (ACR's PipelineRun).
    Run {
        #[command(subcommand)]
        cmd: commands::run::RunCmd,
    },
    /// The import trigger: import every new bundle that lands in an enabled import pipeline's container.
    Watch(commands::watch::Args),
    /// Sign a bundle: an SSH signature (SSHSIG, namespace barge-bundle) beside it as NAME.sig.
    Sign(commands::sign::Args),
    /// Check a bundle offline: every digest, every reference, no unsafe entry.
    Verify(commands::verify::Args),
    /// Show what a bundle holds (artifacts, platforms, referrers, sizes), reading only its head.
    Inspect(commands::inspect::Args),
    /// Record what a target registry holds for some repositories (for `export --have`).
    Inventory(commands::inventory::Args),
    /// Print a shell completion script: `barge completions bash > /etc/bash_completion.d/barge`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of barge, or of one of its commands: `barge man | man -l -`.
    Man {
        /// A command (`export`, `pipeline`, …); none for barge itself.
        command: Option<String>,
    },
}

/// One command, to the end.
async fn dispatch(cli: &Cli, bars: &Bars) -> anyhow::Result<Done> {
    let g = &cli.global;
    match &cli.command {
        Command::Export(a) => commands::export::run(g, a, bars).await,
        Command::Import(a) => commands::import::run(g, a, bars).await,
        Command::Copy(a) => commands::copy::run(g, a, bars).await,
        Command::Join(a) => commands::join::run(g, a, bars).await,
        Command::Bench(a) => commands::bench::run(g, a, bars).await,
        Command::Pipeline { cmd } => commands::pipeline::run(g.state_store()?.as_ref(), cmd).await,
        Command::Run { cmd } => commands::run::run(g.state_store()?.as_ref(), cmd).await,
        Command::Watch(a) => {
            commands::watch::run(g.state_store()?.as_ref(), a, g.quiet, cli.output == Output::Json).await
        }
        Command::Sign(a) => commands::sign::run(g, a, bars).await,
        Command::Verify(a) => commands::verify::run(g, a, bars).await,
        Command::Inspect(a) => commands::inspect::run(g, a).await,
        Command::Inventory(a) => commands::inventory::run(g, a).await,
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut <Cli as clap::CommandFactory>::command(), "barge", &mut out);
            Ok(Done::ok(String::from_utf8(out)?, json!({})))
        }
        Command::Man { command } => Ok(Done::ok(man_page(command.as_deref())?, json!({}))),
    }
}

const EXIT_OTHER: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTEGRITY: u8 = 3;
const EXIT_AUTH: u8 = 4;
const EXIT_NO_SPACE: u8 = 5;
const EXIT_PARTIAL: u8 = 6;
const EXIT_INTERRUPTED: u8 = 130;

fn kind_code(k: ErrorKind) -> u8 {
    match k {
        ErrorKind::Usage => EXIT_USAGE,
        ErrorKind::Integrity => EXIT_INTEGRITY,
        ErrorKind::Auth => EXIT_AUTH,
        ErrorKind::NoSpace => EXIT_NO_SPACE,
        ErrorKind::Other => EXIT_OTHER,
        ErrorKind::Partial => EXIT_PARTIAL,
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(t) = e.downcast_ref::<TransferError>() {
        return kind_code(t.category().into());
    }
    if let Some(p) = e.downcast_ref::<PipelineError>() {
        return kind_code(p.kind());
    }
    if let Some(b) = e.downcast_ref::<BundleError>() {
        return match b {
            BundleError::Io(io) if permission(io) => EXIT_AUTH,
            BundleError::Io(_) => EXIT_OTHER,
            _ => EXIT_INTEGRITY,
        };
    }
    // A plain IO error (reading a file named on the command line, say).
    if e.chain().filter_map(|c| c.downcast_ref::<std::io::Error>()).any(permission) {
        return EXIT_AUTH;
    }
    EXIT_OTHER
}

/// EACCES and EROFS alike: the caller may not write (or read) there.
fn permission(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
}

/// Set once the outcome is decided: a task that panics after this (one
/// that sees its sibling cancelled while the process ends) has nothing to say.
static ENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Report panics as the default hook does, except while the process ends.
fn quiet_panics_when_ending() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !ENDING.load(std::sync::atomic::Ordering::SeqCst) {
            default(info);
        }
    }));
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, before
/// the operation starts, so a signal never falls on the default action.
fn interrupted() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Large buffers (blocks, partitions) come and go on many threads. glibc would
/// raise its mmap threshold after the first free and then keep such buffers in
/// per-thread arenas, so RSS would grow with the thread count; a fixed
/// threshold returns them to the system when freed. One of the binary's two
/// `unsafe` blocks (the other reads the CPU time, `commands/bench.rs`); the libraries forbid it.
#[allow(unsafe_code)]
fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

/// The roff man page of barge or of one of its commands.
fn man_page(command: Option<&str>) -> anyhow::Result<String> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    let (page, title) = match command {
        None => (cmd, "barge".to_string()),
        Some(name) => {
            let sub = cmd.find_subcommand(name).cloned();
            let sub = sub.ok_or_else(|| TransferError::InvalidLocation(format!("barge has no command {name:?}")))?;
            (sub, format!("barge-{name}"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).title(title).render(&mut out)?;
    Ok(String::from_utf8(out)?)
}

/// Shown by `barge --help`; README's table says the same.
const EXIT_CODES: &str = "Exit codes: 0 success, 1 other failure, 2 usage or invalid input, \
3 integrity (a digest, size or structure does not match), 4 authentication or permission, \
5 no space left, 6 partial success (some artifacts failed), 130 interrupted.";

/// Parse the command line; a usage error is printed as JSON too when `--output json` was asked for.
fn parse() -> Result<Cli, ExitCode> {
    let args = commands::copy::azcopy_spellings(std::env::args_os().collect());
    let json =
        args.windows(2).any(|w| w[0] == "--output" && w[1] == "json") || args.iter().any(|a| a == "--output=json");
    match Cli::try_parse_from(&args) {
        Ok(cli) => Ok(cli),
        Err(e) if json && e.use_stderr() => {
            // clap's message up to its usage block, on one line.
            let text = e.render().to_string();
            let head = text.split("\n\n").next().unwrap_or_default();
            let error = head.lines().map(str::trim).collect::<Vec<_>>().join(" ");
            let error = error.trim_start_matches("error: ");
            println!("{}", json!({"error": error, "exitCode": EXIT_USAGE}));
            Err(ExitCode::from(EXIT_USAGE))
        }
        Err(e) => {
            let _ = e.print();
            Err(ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 }))
        }
    }
}

fn main() -> ExitCode {
    bound_allocator();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    log::init(cli.global.verbose);
    quiet_panics_when_ending();
    let bars = Bars::new(cli.global.quiet || cli.output == Output::Json);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let signalled = {
        let _ctx = rt.enter();
        interrupted()
    };
    let signalled = match signalled {
        Ok(s) => s,
        Err(e) => {
            eprintln!("barge: error: installing the Ctrl-C and SIGTERM handlers: {e}");
            return ExitCode::from(EXIT_OTHER);
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = dispatch(&cli, &bars) => Some(r),
            _ = signalled => None,
        }
    });
    // The operation is dropped by now, and with it the temporary files it held.
    ENDING.store(true, std::sync::atomic::Ordering::SeqCst);
    bars.clear();
    let (code, outcome) = match result {
        None => (EXIT_INTERRUPTED, Err("interrupted; nothing was left half-written".to_string())),
        Some(Ok(done)) => (if done.partial { EXIT_PARTIAL } else { 0 }, Ok(done)),
        Some(Err(e)) => (exit_code(&e), Err(hint::message(&e))),
    };
    if code == EXIT_INTERRUPTED {
        // Tasks and blocking threads (hashing, a write in flight) may still
        // hold temporary files: remove them now, then end without waiting.
        barge_transfer::temp::remove_all_and_close();
    }
    print_outcome(&cli, code, outcome);
    let _ = std::io::Write::flush(&mut std::io::stdout());
    if code == EXIT_INTERRUPTED {
        std::process::exit(code.into());
    }
    // Let what is still running drop its temporary files, but never wait long.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    barge_transfer::temp::remove_all_and_close();
    ExitCode::from(code)
}

fn print_outcome(cli: &Cli, code: u8, outcome: Result<Done, String>) {
    // When the bundle itself went to standard output, the summary goes to standard error.
    let to_stderr = matches!(&cli.command, Command::Export(a) if a.writes_stdout());
    let say = |s: &str| if to_stderr { eprint!("{s}") } else { print!("{s}") };
    match (cli.output, outcome) {
        (Output::Json, Ok(done)) => {
            let mut v = done.json;
            v["exitCode"] = json!(code);
            say(&format!("{v}\n"));
        }
        (Output::Json, Err(msg)) => say(&format!("{}\n", json!({"error": msg, "exitCode": code}))),
        (Output::Text, Ok(done)) => {
            if !cli.global.quiet || done.partial {
                say(&done.text);
            }
        }
        (Output::Text, Err(msg)) => eprintln!("barge: error: {msg}"),
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Every command and every argument says what it is for.
    #[test]
    fn every_command_and_argument_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if !matches!(id, "help" | "version") && a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(p.clone());
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "barge", &mut missing);
        assert!(missing.is_empty(), "no help line: {missing:#?}");
    }
}
