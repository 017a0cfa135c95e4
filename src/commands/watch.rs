//! `barge watch`: the import trigger, importing every new bundle that lands in an enabled import pipeline's container.

use std::time::Duration;

use barge_pipeline::watch::{watch, Event, WatchOptions};
use barge_pipeline::StateStore;
use serde_json::json;

use super::{Connect, Done};

#[derive(clap::Args)]
pub struct Args {
    /// Only these import pipelines (default: every import pipeline whose source trigger is enabled).
    #[arg(long = "pipeline")]
    pipelines: Vec<String>,
    /// Seconds between passes.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// One pass, then exit.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    connect: Connect,
}

/// One line per event as it happens: text on stderr unless quiet, or with
/// `--output json` one JSON object per line on stdout; the summary at exit
/// lists them all.
pub async fn run(state: &dyn StateStore, args: &Args, quiet: bool, as_json: bool) -> anyhow::Result<Done> {
    let opts = WatchOptions {
        pipelines: args.pipelines.clone(),
        interval: Duration::from_secs(args.interval.max(1)),
        once: args.once,
    };
    let events = std::sync::Mutex::new(Vec::new());
    let failed = std::sync::Mutex::new(None::<String>);
    let report = |e: Event| {
        let line = line(&e);
        if let Event::PipelineError { .. } = &e {
            failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| line.clone());
        }
        if as_json {
            println!("{}", object(&e));
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else if !quiet {
            eprintln!("{line}");
        }
        events.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    };
    watch(state, &opts, &args.connect.run_options()?, &report).await?;
    // One pass that could not look at a pipeline's container is a failure a script must see.
    if let Some(first) = failed.into_inner().unwrap_or_else(|p| p.into_inner()).filter(|_| args.once) {
        anyhow::bail!("a pass of the trigger failed: {first}");
    }
    let events = events.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(Done::ok(String::new(), json!({ "events": events })))
}

/// An event as one JSON object.
fn object(e: &Event) -> serde_json::Value {
    match e {
        Event::Imported { pipeline, blob, run, status, message } => json!({
            "event": "run", "pipeline": pipeline, "blob": blob, "run": run,
            "status": format!("{status:?}"), "message": message,
        }),
        Event::NotABundle { pipeline, blob } => json!({"event": "notABundle", "pipeline": pipeline, "blob": blob}),
        Event::PipelineError { pipeline, error } => json!({"event": "error", "pipeline": pipeline, "error": error}),
    }
}

fn line(e: &Event) -> String {
    match e {
        Event::Imported { pipeline, blob, run, status, message } => {
            format!(
                "{pipeline}: {blob}: run {run} {status:?}{}",
                message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            )
        }
        Event::NotABundle { pipeline, blob } => format!("{pipeline}: {blob}: not a barge bundle; skipped"),
        Event::PipelineError { pipeline, error } => format!("{pipeline}: {error}"),
    }
}
