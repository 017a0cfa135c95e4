//! Properties of the bundle reader: it never panics, its walks agree, and what `verify` passes `import` takes whole (sparse indexes whose catalog lies about platforms included).

mod common;

use std::sync::OnceLock;

use barge_bundle::forge;
use barge_bundle::{verify_file, verify_reader, BlobKind, VerifyOptions};
use common::*;
use proptest::prelude::*;
use proptest::sample::Index;

/// The forged two-artifact bundle, plain and as one zstd frame.
fn bases() -> &'static (Vec<u8>, Vec<u8>) {
    static B: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    B.get_or_init(|| {
        let plain = forge::index().bundle(&[]);
        let z = zstd::bulk::compress(&plain, 3).unwrap();
        (plain, z)
    })
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Zero(Index, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), 1u8..=255).prop_map(|(i, b)| Damage::Flip(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..600)).prop_map(|(i, v)| Damage::Insert(i, v)),
        (any::<Index>(), 1usize..2048).prop_map(|(i, n)| Damage::Zero(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        if bytes.is_empty() {
            break;
        }
        match d {
            Damage::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            Damage::Flip(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] ^= b;
            }
            Damage::Insert(i, v) => {
                let at = i.index(bytes.len());
                bytes.splice(at..at, v.iter().copied());
            }
            Damage::Zero(i, n) => {
                let at = i.index(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes[at..end].fill(0);
            }
        }
    }
    bytes
}

/// Verify through both walks (positioned reads of a file, and one sequential
/// pass of a stream); they must agree, and neither may panic.
fn verify_both(bytes: &[u8], dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join("bundle");
    std::fs::write(&path, bytes).unwrap();
    let opts = VerifyOptions { threads: 2, ..Default::default() };
    let by_file = verify_file(&path, &opts, &|_| {});
    let by_stream = verify_reader(bytes, &opts, &|_| {});
    assert_eq!(
        by_file.is_ok(),
        by_stream.is_ok(),
        "the walks disagree: file {:?}, stream {:?}",
        by_file.as_ref().err(),
        by_stream.as_ref().err()
    );
    by_file.map(drop).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary, truncated and mutated bundles, plain and zstd: an error or a pass, never a panic.
    #[test]
    fn the_reader_never_panics_and_its_walks_agree(
        compressed in any::<bool>(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let (plain, z) = bases();
        let base = if compressed { z.clone() } else { plain.clone() };
        let dir = tempfile::tempdir().unwrap();
        let _ = verify_both(&apply(base, &damages), dir.path());
    }

    /// Pure noise, and noise behind a valid start.
    #[test]
    fn noise_never_panics(noise in prop::collection::vec(any::<u8>(), 0..4096), keep in any::<Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let _ = verify_both(&noise, dir.path());
        let (plain, _) = bases();
        let mut v = plain[..keep.index(plain.len())].to_vec();
        v.extend(noise);
        let _ = verify_both(&v, dir.path());
    }
}

/// A lie a catalog can tell about the (real) manifests and blobs it ships.
#[derive(Debug, Clone)]
enum Lie {
    DropBlob(Index, Index),
    DropManifest(Index, Index),
    AddBlob(Index, Index),
    AddManifest(Index, Index),
    Kind(Index, u8),
    MediaType(Index, Index),
    DupArtifact(Index),
    SwapManifests(Index, Index, Index),
    DropCatalogBlob(Index),
    Size(Index),
    Nothing,
}

const MEDIA_TYPES: [&str; 4] = [
    barge_bundle::oci::OCI_MANIFEST,
    barge_bundle::oci::OCI_INDEX,
    barge_bundle::oci::DOCKER_MANIFEST,
    barge_bundle::oci::OCI_LAYER_TAR,
];

fn lie() -> impl Strategy<Value = Lie> {
    let i = any::<Index>;
    prop_oneof![
        (i(), i()).prop_map(|(a, b)| Lie::DropBlob(a, b)),
        (i(), i()).prop_map(|(a, b)| Lie::DropManifest(a, b)),
        (i(), i()).prop_map(|(a, b)| Lie::AddBlob(a, b)),
        (i(), i()).prop_map(|(a, b)| Lie::AddManifest(a, b)),
        (i(), 0u8..3).prop_map(|(a, k)| Lie::Kind(a, k)),
        (i(), i()).prop_map(|(a, m)| Lie::MediaType(a, m)),
        i().prop_map(Lie::DupArtifact),
        (i(), i(), i()).prop_map(|(a, b, c)| Lie::SwapManifests(a, b, c)),
        i().prop_map(Lie::DropCatalogBlob),
        i().prop_map(Lie::Size),
        Just(Lie::Nothing),
    ]
}

fn tell(f: &mut forge::Forged, lie: &Lie) {
    let c = &mut f.catalog;
    let (na, nb) = (c.artifacts.len(), c.blobs.len());
    let digests: Vec<_> = c.blobs.iter().map(|b| b.digest.clone()).collect();
    if na == 0 || nb == 0 {
        return;
    }
    match lie {
        Lie::DropBlob(a, i) => {
            let a = &mut c.artifacts[a.index(na)];
            if !a.blobs.is_empty() {
                a.blobs.remove(i.index(a.blobs.len()));
            }
        }
        Lie::DropManifest(a, i) => {
            let a = &mut c.artifacts[a.index(na)];
            if !a.manifests.is_empty() {
                a.manifests.remove(i.index(a.manifests.len()));
            }
        }
        Lie::AddBlob(a, i) => c.artifacts[a.index(na)].blobs.push(digests[i.index(nb)].clone()),
        Lie::AddManifest(a, i) => c.artifacts[a.index(na)].manifests.insert(0, digests[i.index(nb)].clone()),
        Lie::Kind(i, k) => {
            c.blobs[i.index(nb)].kind = [BlobKind::Manifest, BlobKind::Config, BlobKind::Layer][*k as usize];
            c.blobs.sort_by_key(|b| b.kind);
        }
        Lie::MediaType(i, m) => c.blobs[i.index(nb)].media_type = MEDIA_TYPES[m.index(MEDIA_TYPES.len())].into(),
        Lie::DupArtifact(a) => {
            let dup = c.artifacts[a.index(na)].clone();
            c.artifacts.push(dup);
        }
        Lie::SwapManifests(a, i, j) => {
            let a = &mut c.artifacts[a.index(na)];
            let n = a.manifests.len();
            if n > 0 {
                a.manifests.swap(i.index(n), j.index(n));
            }
        }
        Lie::DropCatalogBlob(i) => drop(c.blobs.remove(i.index(nb))),
        Lie::Size(a) => c.artifacts[a.index(na)].size += 1,
        Lie::Nothing => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// verify and import apply the same rules: a bundle verify passes imports
    /// into an empty `oci:` layout and skopeo copies every tag whole; one it
    /// refuses, import refuses too (exit 3) and tags nothing.
    #[test]
    fn what_verify_passes_imports_whole(lies in prop::collection::vec(lie(), 1..3)) {
        let mut f = forge::index();
        for l in &lies {
            tell(&mut f, l);
        }
        let dir = tempfile::tempdir().unwrap();
        let bundle = f.bundle(&[]);
        let verdict = verify_both(&bundle, dir.path());
        let path = dir.path().join("bundle");
        let target = dir.path().join("dst");
        let reg = format!("oci:{}", target.display());
        let r = barge(&["import", &path.display().to_string(), "--registry", &reg]);
        match verdict {
            Ok(()) => {
                prop_assert_eq!(r.code, 0, "verify passed but import failed: {}", r.stderr);
                for a in &f.catalog.artifacts {
                    let out = dir.path().join(format!("read-{}", a.ref_name().replace(['/', ':', '@'], "-")));
                    let src = format!("oci:{}/{}", target.display(), a.ref_name());
                    let s = skopeo(&["copy", "--all", &src, &format!("dir:{}", out.display())]);
                    prop_assert!(s.status.success(), "skopeo reads {}: {}", a.ref_name(), String::from_utf8_lossy(&s.stderr));
                }
            }
            Err(e) => {
                prop_assert_eq!(r.code, 3, "verify refused ({}) but import said: {}", e, r.stderr);
                let tagged: Vec<_> = snapshot(&target).into_iter().filter(|(p, _)| p.ends_with("index.json")).collect();
                prop_assert!(tagged.is_empty(), "a refused import tagged {:?}", tagged);
            }
        }
    }
}

/// Platform strings a lying catalog may claim for the sparse index (the forged
/// index has linux/amd64, linux/arm64/v8 and an attestation of amd64).
const PLATFORMS: [&str; 7] =
    ["linux/amd64", "linux/arm64", "linux/arm64/v8", "linux/arm64/v7", "linux/arm", "unknown/unknown", "windows/amd64"];

/// The catalog's platforms replaced by the subset `mask` of [`PLATFORMS`]:
/// rebuilt (its format version follows) or written over (it stays); or its
/// format version alone changed.
#[derive(Debug, Clone)]
enum PlatformLie {
    Relabel(u8),
    Overwrite(u8),
    Version(u32),
    Nothing,
}

fn platform_lie() -> impl Strategy<Value = PlatformLie> {
    prop_oneof![
        (0u8..128).prop_map(PlatformLie::Relabel),
        (0u8..128).prop_map(PlatformLie::Overwrite),
        (1u32..=2).prop_map(PlatformLie::Version),
        Just(PlatformLie::Nothing),
    ]
}

fn subset(mask: u8) -> Vec<String> {
    PLATFORMS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, p)| p.to_string()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// A sparse bundle whose catalog lies about its platforms: verify and import
    /// agree; what verify passes imports into an `oci:` layout, and skopeo reads
    /// every platform the bundle carries from the imported index.
    #[test]
    fn what_verify_passes_of_a_sparse_index_skopeo_reads(carried in 0usize..3, lie in platform_lie()) {
        let selection: &[&str] = [&["linux/amd64"][..], &["linux/arm64"], &["linux/amd64", "linux/arm64/v8"]][carried];
        let mut f = forge::multi(selection);
        let c = &f.catalog;
        match lie {
            PlatformLie::Relabel(m) => {
                let mut artifacts = c.artifacts.clone();
                artifacts[0].platforms = subset(m);
                f.catalog = barge_bundle::Catalog::new(&c.tool, &c.created, &c.source_registry, artifacts, c.blobs.clone());
            }
            PlatformLie::Overwrite(m) => f.catalog.artifacts[0].platforms = subset(m),
            PlatformLie::Version(v) => f.catalog.format_version = v,
            PlatformLie::Nothing => {}
        }
        let dir = tempfile::tempdir().unwrap();
        let verdict = verify_both(&f.bundle(&[]), dir.path());
        let target = dir.path().join("dst");
        let reg = format!("oci:{}", target.display());
        let r = barge(&["import", &dir.path().join("bundle").display().to_string(), "--registry", &reg]);
        match verdict {
            Ok(()) => {
                prop_assert_eq!(r.code, 0, "verify passed but import failed: {}", r.stderr);
                let src = format!("oci:{}/{}", target.display(), f.catalog.artifacts[0].ref_name());
                let archs = [("amd64", selection.contains(&"linux/amd64")), ("arm64", selection.len() != 1 || carried == 1)];
                for (arch, _) in archs.iter().filter(|(_, kept)| *kept) {
                    let out = format!("oci:{}:{arch}", dir.path().join("read").display());
                    let s = skopeo(&["copy", "--quiet", "--preserve-digests", "--override-os", "linux", "--override-arch", arch, &src, &out]);
                    prop_assert!(s.status.success(), "skopeo reads {arch}: {}", String::from_utf8_lossy(&s.stderr));
                }
            }
            Err(e) => {
                prop_assert_eq!(r.code, 3, "verify refused ({}) but import said: {}", e, r.stderr);
                let tagged: Vec<_> = snapshot(&target).into_iter().filter(|(p, _)| p.ends_with("index.json")).collect();
                prop_assert!(tagged.is_empty(), "a refused import tagged {:?}", tagged);
            }
        }
    }
}
