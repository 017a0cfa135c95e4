//! `barge sign`: a detached SSH signature (`NAME.sig`, with its statement `NAME.sig.msg`) beside a bundle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use barge_transfer::sign::SIG_SUFFIX;
use barge_transfer::{AllowedSigners, Location, SigningKey, StoreOptions, TransferError};
use serde_json::json;

use super::{Done, Global};
use crate::progress::Bars;

#[derive(clap::Args)]
pub struct Args {
    /// The bundle: a file path or a storage URL.
    bundle: String,
    /// The key that signs: a passphrase-free OpenSSH private key file (ssh-keygen's), or a
    /// public key file whose private key the ssh-agent at SSH_AUTH_SOCK holds.
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
}

/// The signing key named by `--key`/`--sign-key`, the agent taken from SSH_AUTH_SOCK.
pub fn signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let agent = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from);
    Ok(SigningKey::load(path, agent.as_deref())?)
}

/// The allowed-signers file of `--allowed-signers`.
pub fn allowed_signers(path: &Path) -> anyhow::Result<Arc<AllowedSigners>> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TransferError::io(format!("reading {shown}"), e))?;
    Ok(Arc::new(AllowedSigners::parse(&text, &shown)?))
}

pub async fn run(g: &Global, a: &Args, bars: &Bars) -> anyhow::Result<Done> {
    let key = signing_key(&a.key)?;
    let opts = StoreOptions { sas_file: g.sas_file.clone(), concurrency: 1 };
    let location = Location::parse(&a.bundle, &opts)?;
    let shown = location.open(&opts)?.display();
    let signer = barge_transfer::sign::sign_bundle(&location, &opts, &key, None, bars).await?;
    bars.clear();
    let text = format!("signed {shown} with {signer}: {shown}{SIG_SUFFIX}\n");
    Ok(Done::ok(text, json!({"bundle": shown, "signature": format!("{shown}{SIG_SUFFIX}"), "signer": signer})))
}
