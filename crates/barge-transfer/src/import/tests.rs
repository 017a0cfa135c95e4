//! Unit tests of import's decisions against `MemoryRegistry`: pre-flight refusals, write order, ContinueOnErrors, overwrite.

use std::sync::Arc;

use barge_bundle::oci::{OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST};
use barge_bundle::Digest;
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
