//! One module per command, each owning its arguments and its text and JSON rendering; what they share is here.

pub mod bench;
pub mod copy;
pub mod export;
pub mod import;
pub mod inspect;
pub mod inventory;
pub mod join;
pub mod pipeline;
pub mod run;
pub mod sign;
pub mod verify;
pub mod watch;

use std::path::PathBuf;

use anyhow::Context as _;
use barge_transfer::{ConnectOptions, Credentials, Location, Secret, StoreOptions};

/// The options every command takes (beside `--output`).
#[derive(clap::Args)]
pub struct Global {
    /// Print nothing but errors (and the JSON summary with --output json).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log what happens to stderr: -v for barge's own events, -vv for every
    /// library's too (RUST_LOG overrides). Secrets are redacted at every level.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Where pipelines and runs are kept: a directory (default:
    /// $XDG_STATE_HOME/barge), or a storage container URL that several
    /// machines share (its SAS from --state-secret).
    #[arg(long, global = true, env = "BARGE_STATE", value_name = "DIR|URL")]
    state: Option<String>,
    /// Where the SAS of a --state container is read: env:NAME or file:PATH.
    #[arg(long, global = true, value_name = "REF")]
    state_secret: Option<String>,
    /// A file holding the SAS token for storage URLs that carry none
    /// (also: AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CONNECTION_STRING).
    #[arg(long, global = true, value_name = "PATH")]
    pub sas_file: Option<PathBuf>,
}

impl Global {
    /// Pipelines and runs: in a storage container (`--state URL`) or a directory.
    pub fn state_store(&self) -> anyhow::Result<Box<dyn barge_pipeline::StateStore>> {
        let location = match &self.state {
            Some(s) => s.clone(),
            None => barge_pipeline::default_dir().display().to_string(),
        };
        let remote = location.starts_with("http://") || location.starts_with("https://");
        let sas = match (&self.state_secret, remote) {
            (Some(r), true) => Some(barge_pipeline::secret::SecretRef::parse(r)?.resolve()?),
            _ => None,
        };
        if !remote {
            std::fs::create_dir_all(&location).with_context(|| format!("creating the state directory {location}"))?;
        }
        let container = barge_transfer::store::open_container(&location, sas, 4)?;
        Ok(Box::new(barge_pipeline::BlobState::new(container)))
    }

    /// A bundle (or any blob) named on the command line: a file path or a storage URL.
    pub fn store(&self, location: &str, concurrency: usize) -> anyhow::Result<Box<dyn barge_transfer::BlobStore>> {
        let opts = StoreOptions { sas_file: self.sas_file.clone(), concurrency };
        Ok(Location::parse(location, &opts)?.open(&opts)?)
    }

    /// An integrity error of the bundle at `location`, naming the part at fault when it is a split bundle.
    pub async fn explain(&self, location: &str, e: barge_transfer::TransferError) -> barge_transfer::TransferError {
        let opts = StoreOptions { sas_file: self.sas_file.clone(), concurrency: 4 };
        match Location::parse(location, &opts) {
            Ok(l) => barge_transfer::store::parts::explain(&l, &opts, e).await,
            Err(_) => e,
        }
    }
}

/// How to reach and log in to a network registry.
#[derive(clap::Args)]
pub struct Connect {
    /// Reach this registry (HOST[:PORT]) over plain HTTP; loopback addresses always may be.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure: Vec<String>,
    /// Trust the CA certificates in this PEM file as well.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Log in as this user; the password is read from stdin (--password-stdin).
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// Read the password for --username from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Blobs transferred at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

impl Connect {
    pub fn options(&self) -> anyhow::Result<ConnectOptions> {
        let credentials = match &self.username {
            Some(u) => {
                let mut p = String::new();
                std::io::stdin().read_line(&mut p).context("reading the password from stdin")?;
                let p = p.trim_end_matches(['\n', '\r']);
                anyhow::ensure!(!p.is_empty(), "--password-stdin read an empty password");
                crate::log::secret(p);
                Some(Credentials { username: u.clone(), password: Secret::new(p) })
            }
            None => None,
        };
        Ok(ConnectOptions { insecure: self.insecure.clone(), ca_file: self.ca_file.clone(), credentials })
    }

    /// What a pipeline run is given: the same registry options, and the concurrency.
    pub fn run_options(&self) -> anyhow::Result<barge_pipeline::RunOptions> {
        Ok(barge_pipeline::RunOptions { connect: self.options()?, concurrency: self.concurrency })
    }
}

/// What a command prints on success, and whether it was complete.
pub struct Done {
    pub text: String,
    pub json: serde_json::Value,
    pub partial: bool,
}

impl Done {
    /// A complete result.
    pub fn ok(text: String, json: serde_json::Value) -> Done {
        Done { text, json, partial: false }
    }
}

pub fn parse_digest(s: &str) -> Result<barge_bundle::Digest, String> {
    barge_bundle::Digest::parse(s).map_err(|e| e.to_string())
}

pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A number of bytes, with an optional unit (KB, MB, GB, TB are powers of
/// 1000; KiB, MiB, GiB, TiB of 1024). `example` is shown when it is not one.
pub fn parse_bytes(s: &str, example: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?}: use bytes, MB, GB, MiB or GiB ({example})")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a size such as {example}"))?;
    n.checked_mul(unit_bytes).ok_or_else(|| format!("{s} is too large"))
}
