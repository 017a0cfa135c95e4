//! Unit tests of import's decisions against `MemoryRegistry`: pre-flight refusals, write order, ContinueOnErrors, overwrite, deltas.

use std::collections::BTreeMap;
use std::sync::Arc;

use barge_bundle::forge::Forged;
use barge_bundle::oci::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST};
use barge_bundle::tar::{padding, BLOCK};
use barge_bundle::{Against, AgainstKind, BlobKind, Catalog, Digest};
use serde_json::json;

use super::{import, ImportOptions};
use crate::outcome::Status;
use crate::registry::{MemoryRegistry, RawManifest, Registry, Write};
use crate::store::LocalBlob;
use crate::{export, BlobStore, ExportOptions, Silent, TransferError};

async fn blob(reg: &MemoryRegistry, repo: &str, data: &[u8]) -> serde_json::Value {
    let d = Digest::sha256_of(data);
    reg.push_blob(repo, &d, data.len() as u64, &mut std::io::Cursor::new(data.to_vec())).await.unwrap();
    json!({"mediaType": OCI_LAYER_TAR, "digest": d, "size": data.len()})
}

fn raw(media_type: &str, v: serde_json::Value) -> RawManifest {
    let bytes = serde_json::to_vec(&v).unwrap();
    RawManifest { media_type: media_type.into(), digest: Digest::sha256_of(&bytes), bytes }
}

/// An image of one layer in `repo`, tagged `tag` unless `None`; returns its manifest.
async fn image(reg: &MemoryRegistry, repo: &str, tag: Option<&str>, seed: &str) -> RawManifest {
    let mut config = blob(reg, repo, format!(r#"{{"seed":"{seed}"}}"#).as_bytes()).await;
    config["mediaType"] = OCI_CONFIG.into();
    let layer = blob(reg, repo, format!("layer of {seed}").as_bytes()).await;
    let m =
        raw(OCI_MANIFEST, json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}));
    reg.set_tag(repo, tag, &m, true).await.unwrap();
    m
}

/// A source with `a/one:v1`, `a/two:v1` and the index `m/idx:v1` of two images.
async fn source() -> Arc<MemoryRegistry> {
    let reg = MemoryRegistry::new();
    image(&reg, "a/one", Some("v1"), "one").await;
    image(&reg, "a/two", Some("v1"), "two").await;
    let (x, y) = (image(&reg, "m/idx", None, "amd64").await, image(&reg, "m/idx", None, "arm64").await);
    let child = |m: &RawManifest| json!({"mediaType": OCI_MANIFEST, "digest": m.digest, "size": m.bytes.len()});
    let idx = raw(OCI_INDEX, json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child(&x), child(&y)]}));
    reg.set_tag("m/idx", Some("v1"), &idx, true).await.unwrap();
    Arc::new(reg)
}

const ARTIFACTS: [&str; 3] = ["a/one:v1", "a/two:v1", "m/idx:v1"];

/// Export the source's three artifacts into a bundle file.
async fn bundle(src: Arc<MemoryRegistry>, dir: &std::path::Path) -> Arc<dyn BlobStore> {
    let path = dir.join("bundle.tar");
    let artifacts: Vec<String> = ARTIFACTS.iter().map(|s| s.to_string()).collect();
    let opts = ExportOptions { referrers: false, overwrite: true, ..ExportOptions::default() };
    let requests = crate::requests_from_names(&artifacts, Some("memory"), false).unwrap();
    let sources = crate::Sources::one("memory", src);
    export(&sources, requests, &LocalBlob::new(path.clone()), &opts, &Silent).await.unwrap();
    Arc::new(LocalBlob::new(path))
}

fn opts() -> ImportOptions {
    ImportOptions { concurrency: 4, ..ImportOptions::default() }
}

#[tokio::test]
async fn tags_are_the_last_write_of_each_artifact_and_children_precede_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = bundle(source().await, dir.path()).await;
    let dst = Arc::new(MemoryRegistry::new());
    let r = import(store, dst.clone(), &opts(), &Silent).await.unwrap();
    assert!(r.artifacts.iter().all(|a| a.status == Status::Succeeded), "{:?}", r.artifacts);
    let writes = dst.writes();
    for repo in ["a/one", "a/two", "m/idx"] {
        let mine: Vec<&Write> = writes.iter().filter(|w| matches!(w, Write::Blob(r, _) | Write::Mount(r, _) | Write::Manifest(r, _) | Write::Tag(r, ..) if r == repo)).collect();
        let tag_at = mine.iter().position(|w| matches!(w, Write::Tag(..))).expect("a tag write");
        assert_eq!(tag_at, mine.len() - 1, "{repo}: the tag is not the last write: {mine:?}");
    }
    let children = writes.iter().filter(|w| matches!(w, Write::Manifest(r, _) if r == "m/idx")).count();
    assert_eq!(children, 2, "{writes:?}");
    // Again: everything is there, nothing is written.
    let store = bundle(source().await, dir.path()).await;
    let before = dst.writes().len();
    let r = import(store, dst.clone(), &opts(), &Silent).await.unwrap();
    assert!(r.artifacts.iter().all(|a| a.status == Status::Unchanged), "{:?}", r.artifacts);
    assert_eq!(dst.writes().len(), before, "a re-import wrote {:?}", &dst.writes()[before..]);
}

/// A target whose `a/two:v1` points elsewhere: the decision is made before any write.
async fn conflicting_target() -> Arc<MemoryRegistry> {
    let dst = Arc::new(MemoryRegistry::new());
    image(&dst, "a/two", Some("v1"), "something else").await;
    dst
}

#[tokio::test]
async fn a_tag_that_points_elsewhere_stops_the_import_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = bundle(source().await, dir.path()).await;
    let dst = conflicting_target().await;
    let before = dst.writes();
    let e = import(store, dst.clone(), &opts(), &Silent).await.unwrap_err();
    assert!(matches!(e, TransferError::TagExists { ref reference, .. } if reference == "a/two:v1"), "{e}");
    assert_eq!(dst.writes(), before, "the pre-flight refusal wrote something");
}

#[tokio::test]
async fn continue_on_errors_imports_the_rest_and_leaves_the_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = bundle(source().await, dir.path()).await;
    let dst = conflicting_target().await;
    let old = dst.resolve_tag("a/two", "v1").await.unwrap();
    let o = ImportOptions { continue_on_errors: true, ..opts() };
    let r = import(store, dst.clone(), &o, &Silent).await.unwrap();
    let status = |name: &str| r.artifacts.iter().find(|a| a.artifact == name).map(|a| a.status);
    assert_eq!(status("a/two:v1"), Some(Status::Failed));
    assert_eq!(status("a/one:v1"), Some(Status::Succeeded));
    assert_eq!(status("m/idx:v1"), Some(Status::Succeeded));
    assert_eq!(dst.resolve_tag("a/two", "v1").await.unwrap(), old, "the refused tag moved");
    // A failure at the write itself (not foreseen by the pre-flight) is one artifact's too.
    let store = bundle(source().await, dir.path()).await;
    let fresh = Arc::new(MemoryRegistry::new());
    fresh.refuse_tags_in("a/one");
    let r = import(store, fresh.clone(), &o, &Silent).await.unwrap();
    assert_eq!(r.artifacts.iter().filter(|a| a.status == Status::Failed).count(), 1, "{:?}", r.artifacts);
    assert_eq!(fresh.resolve_tag("a/one", "v1").await.unwrap(), None);
    assert!(fresh.resolve_tag("a/two", "v1").await.unwrap().is_some());
}

#[tokio::test]
async fn overwrite_tags_moves_the_conflicting_tag() {
    let dir = tempfile::tempdir().unwrap();
    let src = source().await;
    let wanted = src.resolve_tag("a/two", "v1").await.unwrap();
    let store = bundle(src, dir.path()).await;
    let dst = conflicting_target().await;
    let o = ImportOptions { overwrite_tags: true, ..opts() };
    import(store, dst.clone(), &o, &Silent).await.unwrap();
    assert_eq!(dst.resolve_tag("a/two", "v1").await.unwrap(), wanted);
}

/// Under a placement every write (uploads, mounts, manifests, tags) goes to the target repository, and the
/// pre-flight reads the target there: a second import finds everything and writes nothing.
#[tokio::test]
async fn a_placement_is_used_for_every_read_and_write_of_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let dst = Arc::new(MemoryRegistry::new());
    let placement = crate::Placement::parse(Some("mirror"), &["a=apps".into(), "m/idx=idx".into()]).unwrap();
    let o = ImportOptions { placement, ..opts() };
    let r = import(bundle(source().await, dir.path()).await, dst.clone(), &o, &Silent).await.unwrap();
    let targets: Vec<_> = r.artifacts.iter().map(|a| (a.artifact.as_str(), a.target.as_deref().unwrap())).collect();
    assert_eq!(
        targets,
        [("a/one:v1", "mirror/apps/one:v1"), ("a/two:v1", "mirror/apps/two:v1"), ("m/idx:v1", "mirror/idx:v1")]
    );
    for w in dst.writes() {
        let (Write::Blob(repo, _) | Write::Mount(repo, _) | Write::Manifest(repo, _) | Write::Tag(repo, ..)) = &w;
        assert!(["mirror/apps/one", "mirror/apps/two", "mirror/idx"].contains(&repo.as_str()), "{w:?}");
    }
    assert!(dst.resolve_tag("mirror/idx", "v1").await.unwrap().is_some());
    let before = dst.writes().len();
    let r = import(bundle(source().await, dir.path()).await, dst.clone(), &o, &Silent).await.unwrap();
    assert!(r.artifacts.iter().all(|a| a.status == Status::Unchanged), "{:?}", r.artifacts);
    assert_eq!(dst.writes().len(), before, "a re-import wrote {:?}", &dst.writes()[before..]);
}

/// The file entries of a plain bundle (ustar names, no PAX), by name.
fn entries(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pos = 0;
    while pos + BLOCK <= bytes.len() && bytes[pos..pos + BLOCK].iter().any(|b| *b != 0) {
        let h = &bytes[pos..pos + BLOCK];
        let name = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_string();
        let size = String::from_utf8_lossy(&h[124..136]).trim_matches(|c: char| c == '\0' || c == ' ').to_string();
        let size = usize::from_str_radix(&size, 8).unwrap();
        out.insert(name, bytes[pos + BLOCK..pos + BLOCK + size].to_vec());
        pos += BLOCK + size + padding(size as u64);
    }
    out
}

/// The inventory a test's delta says it was cut against.
fn inventory() -> Against {
    Against {
        kind: AgainstKind::Inventory,
        digest: Digest::sha256_of(b"an inventory"),
        registry: Some("memory".into()),
        taken: Some("2026-11-30T10:00:00Z".into()),
    }
}

/// The full bundle in `dir` rewritten as a delta that leaves out `held`
/// (digest → the repository that holds it), written beside it as `name`.
fn delta(dir: &std::path::Path, name: &str, held: &Held) -> Arc<dyn BlobStore> {
    let bytes = std::fs::read(dir.join("bundle.tar")).unwrap();
    let files = entries(&bytes);
    let catalog = Catalog::parse(&files["barge-catalog.json"]).unwrap().omit(inventory(), held);
    let blobs = catalog.blobs.iter().map(|b| (b.digest.clone(), files[&b.digest.layout_path()].clone())).collect();
    let path = dir.join(name);
    std::fs::write(&path, Forged { catalog, blobs }.bundle(&[])).unwrap();
    Arc::new(LocalBlob::new(path))
}

type Held = BTreeMap<Digest, Option<String>>;

/// The configs and layers of the bundle's artifacts in `repos`, each with its artifact's repository.
fn held_by(full: &std::path::Path, repos: &[&str]) -> Held {
    let files = entries(&std::fs::read(full).unwrap());
    let catalog = Catalog::parse(&files["barge-catalog.json"]).unwrap();
    let kind = |d: &Digest| catalog.blobs.iter().find(|b| &b.digest == d).map(|b| b.kind);
    let mut held = Held::new();
    for a in catalog.artifacts.iter().filter(|a| repos.contains(&a.repository.as_str())) {
        for d in a.blobs.iter().filter(|d| kind(d) != Some(BlobKind::Manifest)) {
            held.insert(d.clone(), Some(a.repository.clone()));
        }
    }
    held
}

/// Copy each held blob from `src` into `dst`, in the repository named for it, except `but`.
async fn hold(src: &MemoryRegistry, dst: &MemoryRegistry, held: &Held, but: &[&Digest]) {
    for (d, repo) in held.iter().filter(|(d, _)| !but.contains(d)) {
        let repo = repo.as_deref().unwrap();
        let mut data = src.open_blob(repo, d, 0).await.unwrap();
        let mut v = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut data, &mut v).await.unwrap();
        dst.push_blob(repo, d, v.len() as u64, &mut std::io::Cursor::new(v)).await.unwrap();
    }
}

fn written(w: &Write) -> (&str, Option<&Digest>) {
    match w {
        Write::Blob(r, d) | Write::Mount(r, d) => (r, Some(d)),
        Write::Manifest(r, _) | Write::Tag(r, ..) => (r, None),
    }
}

/// A delta of `a/one` and `m/idx`'s configs and layers into a target that
/// holds them: every artifact imported, no left-out blob written, the
/// report says what the delta relied on.
#[tokio::test]
async fn a_delta_whose_dependencies_are_held_imports_and_writes_no_left_out_blob() {
    let dir = tempfile::tempdir().unwrap();
    let src = source().await;
    bundle(src.clone(), dir.path()).await;
    let held = held_by(&dir.path().join("bundle.tar"), &["a/one", "m/idx"]);
    assert_eq!(held.len(), 2 + 4, "a/one's config and layer, the index's two images'");
    let store = delta(dir.path(), "delta.tar", &held);
    let dst = Arc::new(MemoryRegistry::new());
    hold(&src, &dst, &held, &[]).await;
    let before = dst.writes().len();
    let r = import(store, dst.clone(), &opts(), &Silent).await.unwrap();
    assert!(r.artifacts.iter().all(|a| a.status == Status::Succeeded), "{:?}", r.artifacts);
    let after = &dst.writes()[before..];
    assert!(after.iter().all(|w| written(w).1.is_none_or(|d| !held.contains_key(d))), "{after:?}");
    assert_eq!(r.blobs_uploaded, 2, "a/two's config and layer travelled: {r:?}");
    let d = r.delta.as_ref().expect("a delta report");
    assert_eq!((d.omitted, d.relied_on, d.mounted), (6, 6, 0));
    assert!(d.missing.is_empty());
    assert!(d.against.starts_with("inventory sha256:") && d.against.ends_with(" of memory taken 2026-11-30T10:00:00Z"));
    for (repo, tag) in [("a/one", "v1"), ("a/two", "v1"), ("m/idx", "v1")] {
        assert_eq!(dst.resolve_tag(repo, tag).await.unwrap(), src.resolve_tag(repo, tag).await.unwrap());
    }
}

/// Into an empty target, and into one that lacks two of the left-out blobs:
/// refused in the pre-flight, naming them and the inventory, nothing written.
#[tokio::test]
async fn a_delta_with_a_missing_dependency_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let src = source().await;
    bundle(src.clone(), dir.path()).await;
    let held = held_by(&dir.path().join("bundle.tar"), &["a/one", "m/idx"]);
    let store = delta(dir.path(), "delta.tar", &held);
    let empty = Arc::new(MemoryRegistry::new());
    let e = import(store.clone(), empty.clone(), &opts(), &Silent).await.unwrap_err();
    let TransferError::MissingDependencies { against, missing } = &e else { panic!("{e}") };
    assert_eq!(missing, &held.keys().cloned().collect::<Vec<_>>(), "every left-out blob, sorted");
    assert_eq!(against, &super::preflight::against_words(&inventory()));
    assert_eq!(e.category(), crate::Category::Integrity);
    assert!(empty.writes().is_empty(), "a refused delta wrote {:?}", empty.writes());

    let lacking: Vec<&Digest> = held.keys().step_by(3).collect();
    let dst = Arc::new(MemoryRegistry::new());
    hold(&src, &dst, &held, &lacking).await;
    let before = dst.writes();
    let e = import(store, dst.clone(), &opts(), &Silent).await.unwrap_err();
    let TransferError::MissingDependencies { missing, .. } = &e else { panic!("{e}") };
    assert_eq!(missing.iter().collect::<Vec<_>>(), lacking);
    assert!(lacking.iter().all(|d| e.to_string().contains(&d.to_string())), "{e}");
    assert_eq!(dst.writes(), before, "a refused delta wrote something");
}

/// With ContinueOnErrors only the artifact that lacks a left-out blob fails,
/// and nothing is written in its repository; the others are imported.
#[tokio::test]
async fn continue_on_errors_fails_only_the_artifact_that_lacks_a_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let src = source().await;
    bundle(src.clone(), dir.path()).await;
    let held = held_by(&dir.path().join("bundle.tar"), &["a/one", "m/idx"]);
    let store = delta(dir.path(), "delta.tar", &held);
    let idx_only: Vec<&Digest> = held.iter().filter(|(_, r)| r.as_deref() == Some("m/idx")).map(|(d, _)| d).collect();
    let lacking = idx_only[0];
    let dst = Arc::new(MemoryRegistry::new());
    hold(&src, &dst, &held, &[lacking]).await;
    let before = dst.writes().len();
    let o = ImportOptions { continue_on_errors: true, ..opts() };
    let r = import(store, dst.clone(), &o, &Silent).await.unwrap();
    let status = |name: &str| r.artifacts.iter().find(|a| a.artifact == name).map(|a| a.status);
    assert_eq!(status("a/one:v1"), Some(Status::Succeeded));
    assert_eq!(status("a/two:v1"), Some(Status::Succeeded));
    assert_eq!(status("m/idx:v1"), Some(Status::Failed));
    let failed = r.artifacts.iter().find(|a| a.artifact == "m/idx:v1").unwrap();
    assert!(failed.error.as_deref().unwrap().contains(&lacking.to_string()), "{failed:?}");
    assert_eq!(r.delta.as_ref().unwrap().missing, vec![lacking.clone()]);
    assert_eq!(r.delta.as_ref().unwrap().relied_on, 2, "a/one's two");
    assert!(dst.writes()[before..].iter().all(|w| written(w).0 != "m/idx"), "{:?}", dst.writes());
    assert_eq!(dst.resolve_tag("m/idx", "v1").await.unwrap(), None);
}

/// A left-out blob that the target holds in the repository the catalog names
/// for it, not in the artifact's own target repository, is mounted from
/// there, after the bundle has passed and before the artifact's manifests.
#[tokio::test]
async fn a_dependency_held_in_another_repository_is_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let src = source().await;
    bundle(src.clone(), dir.path()).await;
    let held = held_by(&dir.path().join("bundle.tar"), &["a/one", "a/two", "m/idx"]);
    let store = delta(dir.path(), "delta.tar", &held);
    let dst = Arc::new(MemoryRegistry::new());
    hold(&src, &dst, &held, &[]).await;
    let before = dst.writes().len();
    let placement = crate::Placement::parse(Some("copy"), &[]).unwrap();
    let o = ImportOptions { placement, ..opts() };
    let r = import(store, dst.clone(), &o, &Silent).await.unwrap();
    assert!(r.artifacts.iter().all(|a| a.status == Status::Succeeded), "{:?}", r.artifacts);
    let after = &dst.writes()[before..];
    let mounts: Vec<(&str, &Digest)> =
        after.iter().filter_map(|w| if let Write::Mount(r, d) = w { Some((r.as_str(), d)) } else { None }).collect();
    assert_eq!(mounts.len(), held.len(), "{after:?}");
    for (d, repo) in &held {
        assert!(mounts.contains(&(format!("copy/{}", repo.as_deref().unwrap()).as_str(), d)), "{d} not mounted");
    }
    assert!(!after.iter().any(|w| matches!(w, Write::Blob(..))), "{after:?}");
    let first_manifest = after.iter().position(|w| matches!(w, Write::Manifest(..) | Write::Tag(..))).unwrap();
    assert!(after[first_manifest..].iter().all(|w| !matches!(w, Write::Mount(..))), "{after:?}");
    assert_eq!((r.blobs_mounted, r.delta.as_ref().unwrap().mounted), (held.len(), held.len()));
    assert_eq!(dst.resolve_tag("copy/m/idx", "v1").await.unwrap(), src.resolve_tag("m/idx", "v1").await.unwrap());
}

/// A delta cut against an earlier bundle names that bundle's repositories: under a placement, a left-out blob is
/// found where the same placement put that repository, and mounted from there.
#[tokio::test]
async fn a_dependency_named_as_the_bundle_names_it_is_found_where_it_was_placed() {
    let dir = tempfile::tempdir().unwrap();
    let src = source().await;
    bundle(src.clone(), dir.path()).await;
    let mut held = held_by(&dir.path().join("bundle.tar"), &["a/two"]);
    held.values_mut().for_each(|r| *r = Some("a/one".into()));
    let store = delta(dir.path(), "delta.tar", &held);
    let dst = Arc::new(MemoryRegistry::new());
    for d in held.keys() {
        let mut v = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut src.open_blob("a/two", d, 0).await.unwrap(), &mut v).await.unwrap();
        dst.push_blob("mirror/a/one", d, v.len() as u64, &mut std::io::Cursor::new(v)).await.unwrap();
    }
    let before = dst.writes().len();
    let o = ImportOptions { placement: crate::Placement::parse(Some("mirror"), &[]).unwrap(), ..opts() };
    let r = import(store, dst.clone(), &o, &Silent).await.unwrap();
    assert!(r.artifacts.iter().all(|a| a.status == Status::Succeeded), "{:?}", r.artifacts);
    let mounts: Vec<Write> = dst.writes()[before..].iter().filter(|w| matches!(w, Write::Mount(..))).cloned().collect();
    assert_eq!(mounts.len(), held.len(), "{mounts:?}");
    assert!(mounts.iter().all(|w| matches!(w, Write::Mount(r, _) if r == "mirror/a/two")), "{mounts:?}");
}
