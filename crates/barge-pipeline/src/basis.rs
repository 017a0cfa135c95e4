//! What an export run's delta is cut against: inventories and catalogs kept in the state store.
//!
//! `run create --have FILE` keeps the inventory under its digest, `--since
//! BUNDLE` keeps the old bundle's catalog under its digest, and every export
//! run that succeeds keeps its own catalog under the run's name, so a later
//! run can name it (`--since-run`) and a scheduled export ships deltas by
//! itself. The run's request holds only the digests and names, never the
//! documents.

use barge_bundle::{Catalog, Digest, Inventory};
use barge_transfer::DeltaBase;

use crate::state::{Kind, StateStore};
use crate::PipelineError;

/// The name a content-addressed document is stored under (state names are at most 50 characters);
/// the whole digest is checked again when it is read.
fn stored_name(d: &Digest) -> String {
    format!("{}-{}", d.algorithm().name(), &d.hex()[..32])
}

async fn keep(state: &dyn StateStore, kind: Kind, name: &str, bytes: &[u8]) -> Result<(), PipelineError> {
    match state.get(kind, name).await? {
        Some((old, _)) if old == bytes => Ok(()),
        // Another document under this name: write ours over it (the digest check on reading catches any mix-up).
        Some((_, v)) => state.put(kind, name, bytes, Some(&v)).await.map(drop),
        None => state.put(kind, name, bytes, None).await.map(drop),
    }
}

/// Keep an inventory file (checked) for runs to be cut against; its digest.
pub async fn keep_inventory(state: &dyn StateStore, bytes: &[u8]) -> Result<Digest, PipelineError> {
    let (_, digest) =
        Inventory::parse(bytes).map_err(|e| PipelineError::Invalid(format!("the inventory given to the run: {e}")))?;
    keep(state, Kind::Inventory, &stored_name(&digest), bytes).await?;
    Ok(digest)
}

/// Keep an old bundle's catalog (its `barge-catalog.json`, checked) for runs to be cut against; its digest.
pub async fn keep_catalog(state: &dyn StateStore, catalog_json: &[u8]) -> Result<Digest, PipelineError> {
    Catalog::parse(catalog_json)
        .map_err(|e| PipelineError::Invalid(format!("the earlier catalog given to the run: {e}")))?;
    let digest = Digest::sha256_of(catalog_json);
    keep(state, Kind::Catalog, &stored_name(&digest), catalog_json).await?;
    Ok(digest)
}

/// Keep an export run's catalog under the run's name, for `--since-run`.
pub async fn keep_run_catalog(state: &dyn StateStore, run: &str, catalog_json: &[u8]) -> Result<(), PipelineError> {
    keep(state, Kind::Catalog, run, catalog_json).await
}

/// A kept document, its whole digest checked when one is given.
async fn load(
    state: &dyn StateStore,
    kind: Kind,
    name: &str,
    digest: Option<&Digest>,
) -> Result<Vec<u8>, PipelineError> {
    let what = match kind {
        Kind::Inventory => "inventory",
        _ => "catalog",
    };
    let Some((bytes, _)) = state.get(kind, name).await? else {
        let shown = digest.map(Digest::to_string).unwrap_or_else(|| format!("of run {name}"));
        return Err(PipelineError::NotFound(format!("the {what} {shown} in the state store")));
    };
    if let Some(d) = digest {
        if &Digest::sha256_of(&bytes) != d {
            return Err(PipelineError::State(format!("the {what} kept as {name} is not {d}")));
        }
    }
    Ok(bytes)
}

/// What a run's request says its delta is cut against, read from the state store.
pub async fn load_basis(
    state: &dyn StateStore,
    have: Option<&str>,
    since: Option<&str>,
    since_run: Option<&str>,
) -> Result<Option<DeltaBase>, PipelineError> {
    let parse_digest =
        |s: &str| Digest::parse(s).map_err(|e| PipelineError::Invalid(format!("the run's request: {e}")));
    if let Some(h) = have {
        let d = parse_digest(h)?;
        let bytes = load(state, Kind::Inventory, &stored_name(&d), Some(&d)).await?;
        return Ok(Some(DeltaBase::from_inventory(&bytes)?));
    }
    let bytes = match (since, since_run) {
        (Some(s), _) => {
            let d = parse_digest(s)?;
            load(state, Kind::Catalog, &stored_name(&d), Some(&d)).await?
        }
        (None, Some(run)) => load(state, Kind::Catalog, run, None).await?,
        (None, None) => return Ok(None),
    };
    Ok(Some(DeltaBase::from_catalog(&bytes)?))
}
