//! Delta bundles: an inventory of the target, a delta export against it (or against the earlier bundle), its size, its import, and its refusal where the far side lacks what it left out.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use barge_bundle::catalog::Planned;
use barge_bundle::tar::{end_of_archive, padding, BLOCK};
use barge_bundle::{BlobKind, Catalog, Digest};
use barge_fixtures::{tag, write_image, write_index, Image, Layer};
use common::registry::TestRegistry;
use common::{barge, barge_ok, catalog_of, sha256_hex};

fn image(seeds: &[u64], arch: &str) -> Image {
    let mut i = Image::new(seeds.iter().map(|&seed| Layer { seed, size: 3000 + seed * 7 }).collect());
    i.arch = arch.into();
    i
}

/// The configs and layers an image manifest names, as the registry holds it
/// (skopeo compresses the layers when it pushes).
fn blobs_of(reg: &TestRegistry, reference: &str) -> BTreeSet<Digest> {
    let bytes = reg.raw(reference).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut out: BTreeSet<Digest> = m["layers"].as_array().unwrap().iter().map(|l| digest(&l["digest"])).collect();
    out.insert(digest(&m["config"]["digest"]));
    out
}

fn digest(v: &serde_json::Value) -> Digest {
    Digest::parse(v.as_str().unwrap()).unwrap()
}

/// The exact size of a bundle with this catalog: every planned entry's
/// header, data and padding, and the trailer.
fn planned_size(c: &Catalog) -> u64 {
    let entry = |size: u64| BLOCK as u64 + size + padding(size) as u64;
    let mut total = end_of_archive().len() as u64;
    for p in c.plan() {
        total += match p {
            Planned::Dir(_) => BLOCK as u64,
            Planned::File { bytes, .. } => entry(bytes.len() as u64),
            Planned::Blob(i) => entry(c.blobs[i].size),
        };
    }
    total
}

fn carried(c: &Catalog) -> BTreeSet<Digest> {
    c.blobs.iter().filter(|b| b.kind != BlobKind::Manifest).map(|b| b.digest.clone()).collect()
}

fn omitted(c: &Catalog) -> BTreeSet<Digest> {
    c.omitted().iter().map(|o| o.blob.digest.clone()).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Export a set and import it; change one layer of one image (a new version
/// under a new tag) and add one tag; take the target's inventory; the delta
/// carries exactly the new config and layer (and every manifest), its size is
/// the planned size of those; it imports and skopeo finds every digest; into
/// an empty registry it is refused before any write; `--since` the first
/// bundle (or its catalog) cuts the same delta; verify reports and checks it.
#[test]
fn a_delta_carries_only_what_the_far_side_lacks() {
    let (src, target, empty) = (TestRegistry::start(), TestRegistry::start(), TestRegistry::start());
    let work = tempfile::tempdir().unwrap();
    let (w, layout) = (work.path(), work.path().join("layout"));
    let web1 = write_image(&layout, "app/web", &image(&[1, 2, 3], "amd64")).unwrap();
    tag(&layout, "app/web", "1", &web1).unwrap();
    src.push(&layout, "app/web", "1");
    let api = write_index(&layout, "app/api", &[image(&[1, 11], "amd64"), image(&[12], "arm64")]).unwrap();
    tag(&layout, "app/api", "1", &api).unwrap();
    src.push(&layout, "app/api", "1");
    let set = w.join("set.yaml");
    std::fs::write(
        &set,
        format!(
            "artifacts:\n  - registry: {h}\n    repository: app/web\n    tagPattern: \"^[a-z0-9]+$\"\n  \
             - registry: {h}\n    repository: app/api\n    tagPattern: \"^[a-z0-9]+$\"\n",
            h = src.host
        ),
    )
    .unwrap();
    let (set, full) = (s(&set).to_string(), w.join("full.tar"));
    barge_ok(&["export", "-f", &set, "--to", s(&full)], 0);
    barge_ok(&["import", s(&full), "--registry", &target.host], 0);

    // One layer of app/web changes (3 → 5): a new version under a new tag; app/api gains a tag.
    let web2 = write_image(&layout, "app/web", &image(&[1, 2, 5], "amd64")).unwrap();
    tag(&layout, "app/web", "2", &web2).unwrap();
    src.push(&layout, "app/web", "2");
    tag(&layout, "app/api", "stable", &api).unwrap();
    src.push(&layout, "app/api", "stable");
    let old = blobs_of(&src, "app/web:1");
    let new: BTreeSet<Digest> = blobs_of(&src, "app/web:2").difference(&old).cloned().collect();
    assert_eq!(new.len(), 2, "the changed layer and the new config");

    // The target's inventory.
    let have = w.join("have.json");
    let r = barge_ok(&["inventory", "--registry", &target.host, "-f", &set, "--to", s(&have), "--output", "json"], 0);
    let have_bytes = std::fs::read(&have).unwrap();
    let have_digest = format!("sha256:{}", sha256_hex(&have_bytes));
    assert_eq!(r.json()["digest"], have_digest.as_str());
    assert_eq!(r.json()["size"], have_bytes.len() as u64);
    assert_eq!(r.json()["repositories"], 2);
    let text = barge_ok(&["inventory", "--registry", &target.host, "app/web", "app/api", "--to", "-"], 0).stdout;
    let inv: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        inv["blobs"].as_object().unwrap().len(),
        8,
        "web: 3 layers + config; api: 3 layers + 2 configs; one layer shared"
    );

    // An `oci:` layout too; a repository that is not there is empty.
    let oci = format!("oci:{}", layout.display());
    let text = barge_ok(&["inventory", "--registry", &oci, "app/web", "app/api", "not/there", "--to", "-"], 0).stdout;
    let inv: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(inv["repositories"].as_array().unwrap().len(), 3);
    assert_eq!(inv["manifests"].as_array().unwrap().len(), 5, "web:1, web:2, the api index and its two children");

    // The delta: the dry run says so, the bundle holds exactly the new blobs.
    let r = barge_ok(&["export", "-f", &set, "--have", s(&have), "--dry-run", "--output", "json"], 0);
    assert_eq!(r.json()["delta"]["omitted"], 8, "{}", r.stdout);
    let delta = w.join("delta.tar");
    let r = barge_ok(&["export", "-f", &set, "--have", s(&have), "--to", s(&delta), "--output", "json"], 0);
    let report = r.json();
    assert_eq!(report["delta"]["against"]["digest"], have_digest.as_str(), "{report}");
    assert_eq!(report["delta"]["against"]["kind"], "inventory");
    let bytes = std::fs::read(&delta).unwrap();
    let c = catalog_of(&bytes);
    assert_eq!(carried(&c), new, "the delta carries exactly the new config and layer");
    assert_eq!(c.artifacts.len(), 4, "web:1, web:2, api:1, api:stable: every manifest travels");
    let all_manifests: BTreeSet<&Digest> = c.artifacts.iter().flat_map(|a| &a.manifests).collect();
    assert!(all_manifests.iter().all(|m| c.blobs.iter().any(|b| &&b.digest == m)));
    assert_eq!(bytes.len() as u64, planned_size(&c), "new blobs + manifests + catalog + tar overhead, nothing else");
    let full_bytes = std::fs::metadata(&full).unwrap().len();
    assert!((bytes.len() as u64) < full_bytes, "{} vs {full_bytes}", bytes.len());
    let text = barge_ok(&["export", "-f", &set, "--have", s(&have), "--to", s(&w.join("d2.tar"))], 0).stdout;
    assert!(text.contains("delta: 8 blobs") && text.contains(&have_digest), "{text}");

    // --since the first bundle, or its catalog alone, cuts the same delta.
    let since = w.join("since.tar");
    barge_ok(&["export", "-f", &set, "--since", s(&full), "--to", s(&since)], 0);
    let cs = catalog_of(&std::fs::read(&since).unwrap());
    assert_eq!((carried(&cs), omitted(&cs)), (carried(&c), omitted(&c)));
    let catalog_text = barge_ok(&["inspect", "--catalog", s(&full)], 0).stdout;
    let catalog_file = w.join("full-catalog.json");
    std::fs::write(&catalog_file, &catalog_text).unwrap();
    let catalog_digest = format!("sha256:{}", sha256_hex(catalog_text.as_bytes()));
    let r = barge_ok(&["export", "-f", &set, "--since", s(&catalog_file), "--dry-run", "--output", "json"], 0);
    let full_catalog = catalog_of(&std::fs::read(&full).unwrap());
    assert_eq!(r.json()["delta"]["against"]["kind"], "bundle");
    assert_eq!(r.json()["delta"]["against"]["digest"], catalog_digest.as_str());
    assert_eq!(
        cs.delta.as_ref().unwrap().against.digest.to_string(),
        catalog_digest,
        "the bundle or its catalog: one digest"
    );
    assert!(omitted(&cs).is_subset(&carried(&full_catalog)), "it leaves out only what the first bundle carried");

    // Verify checks what it carries and reports what it depends on; --have checks those.
    let text = barge_ok(&["verify", s(&delta)], 0).stdout;
    assert!(text.contains("delta: depends on 8 blobs") && text.contains(&have_digest), "{text}");
    barge_ok(&["verify", s(&delta), "--have", s(&have)], 0);
    let nothing = w.join("empty.json");
    barge_ok(&["inventory", "--registry", &empty.host, "app/web", "app/api", "--to", s(&nothing)], 0);
    let r = barge_ok(&["verify", s(&delta), "--have", s(&nothing), "--output", "json"], 3);
    let first_omitted = omitted(&c).into_iter().next().unwrap().to_string();
    assert!(r.stdout.contains(&first_omitted) && r.stdout.contains("lacks 8 of the blobs"), "{}", r.stdout);

    // Into an empty registry: refused before any write, the missing blobs listed, the inventory named.
    let r = barge(&["import", s(&delta), "--registry", &empty.host]);
    assert_eq!(r.code, 3, "import of a delta into an empty registry: {}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&first_omitted) && r.stderr.contains(&have_digest), "{}", r.stderr);
    for t in ["app/web:1", "app/web:2", "app/api:1", "app/api:stable"] {
        assert!(empty.raw(t).is_none(), "{t} was written into the empty registry");
    }

    // Into the target: every tag lands with its source's digest, and skopeo pulls the new version whole.
    barge_ok(&["import", s(&delta), "--registry", &target.host], 0);
    for t in ["app/web:1", "app/web:2", "app/api:1", "app/api:stable"] {
        let (want, got) = (src.raw(t).unwrap(), target.raw(t).unwrap_or_else(|| panic!("{t} missing")));
        assert_eq!(sha256_hex(&got), sha256_hex(&want), "{t}");
    }
    let pulled = w.join("pulled");
    let out = common::skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{}/app/web:2", target.host),
        &format!("oci:{}:web", pulled.display()),
    ]);
    assert!(out.status.success(), "skopeo pulls app/web:2: {}", String::from_utf8_lossy(&out.stderr));
}
