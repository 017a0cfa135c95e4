//! Deterministic generated OCI images written into `oci:` layouts, for tests, benchmarks and the demo.
//!
//! Layer content comes from a seeded generator, so the same seed gives the
//! same layer (how images share layers) and layers of any size stream to disk
//! without being held in memory.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use barge_bundle::oci::{Descriptor, Index, OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, REF_NAME};
use barge_bundle::tar::{encode_header, end_of_archive, padding, Kind};
use barge_bundle::{Algorithm, Digest, Hasher};

/// One layer: a tar holding one file of `size` pseudo-random bytes from `seed`.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    pub seed: u64,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub os: String,
    pub arch: String,
    pub created: String,
}

impl Image {
    pub fn new(layers: Vec<Layer>) -> Image {
        Image { layers, os: "linux".into(), arch: "amd64".into(), created: "2026-01-01T00:00:00Z".into() }
    }
}

/// splitmix64: fast, seedable, good enough to make incompressible bytes.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Writes a blob under a temporary name while hashing, then renames it into place.
struct BlobWriter {
    file: io::BufWriter<fs::File>,
    tmp: std::path::PathBuf,
    hasher: Hasher,
    size: u64,
}

impl BlobWriter {
    fn new(repo_dir: &Path) -> io::Result<BlobWriter> {
        let dir = repo_dir.join("blobs/sha256");
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".gen-{}", std::process::id()));
        Ok(BlobWriter {
            file: io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?),
            tmp,
            hasher: Hasher::new(Algorithm::Sha256),
            size: 0,
        })
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.hasher.update(b);
        self.size += b.len() as u64;
        self.file.write_all(b)
    }

    fn finish(mut self, repo_dir: &Path) -> io::Result<(Digest, u64)> {
        self.file.flush()?;
        let d = self.hasher.finish();
        fs::rename(&self.tmp, repo_dir.join(d.layout_path()))?;
        Ok((d, self.size))
    }
}

fn put_blob(repo_dir: &Path, bytes: &[u8]) -> io::Result<(Digest, u64)> {
    let mut w = BlobWriter::new(repo_dir)?;
    w.write(bytes)?;
    w.finish(repo_dir)
}

fn put_layer(repo_dir: &Path, layer: Layer) -> io::Result<(Digest, u64)> {
    let mut w = BlobWriter::new(repo_dir)?;
    w.write(&encode_header(&format!("data-{:016x}.bin", layer.seed), layer.size, Kind::File))?;
    let mut noise = Noise(layer.seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = layer.size;
    while left > 0 {
        let n = (left as usize).min(buf.len());
        noise.fill(&mut buf[..n]);
        w.write(&buf[..n])?;
        left -= n as u64;
    }
    w.write(&vec![0u8; padding(layer.size)])?;
    w.write(&end_of_archive())?;
    w.finish(repo_dir)
}

fn init_layout(repo_dir: &Path) -> io::Result<()> {
    fs::create_dir_all(repo_dir)?;
    fs::write(repo_dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
}

/// Write an image's blobs and manifest into `root/repo`; returns the manifest's descriptor.
pub fn write_image(root: &Path, repo: &str, image: &Image) -> io::Result<Descriptor> {
    let dir = root.join(repo);
    init_layout(&dir)?;
    let mut layers = Vec::new();
    for l in &image.layers {
        let (d, size) = put_layer(&dir, *l)?;
        layers.push(Descriptor::new(OCI_LAYER_TAR, d, size));
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    let config = serde_json::json!({
        "created": image.created,
        "architecture": image.arch,
        "os": image.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cs) = put_blob(&dir, &serde_json::to_vec(&config).expect("json"))?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor::new(OCI_CONFIG, cd, cs),
        "layers": layers,
        "annotations": {"org.opencontainers.image.created": image.created},
    });
    let (md, ms) = put_blob(&dir, &serde_json::to_vec(&manifest).expect("json"))?;
    let mut desc = Descriptor::new(OCI_MANIFEST, md, ms);
    desc.platform = Some(serde_json::json!({"os": image.os, "architecture": image.arch}));
    Ok(desc)
}

/// Write a multi-platform index of `images` into `root/repo`; returns its descriptor.
pub fn write_index(root: &Path, repo: &str, images: &[Image]) -> io::Result<Descriptor> {
    let dir = root.join(repo);
    let children = images.iter().map(|i| write_image(root, repo, i)).collect::<io::Result<Vec<_>>>()?;
    let index = Index { schema_version: 2, media_type: Some(OCI_INDEX.into()), manifests: children, annotations: None };
    let (d, s) = put_blob(&dir, &serde_json::to_vec(&index).expect("json"))?;
    Ok(Descriptor::new(OCI_INDEX, d, s))
}

/// Name `desc` as `tag` in the repository's `index.json`, replacing an older entry of that name.
pub fn tag(root: &Path, repo: &str, tag: &str, desc: &Descriptor) -> io::Result<()> {
    let path = root.join(repo).join("index.json");
    let mut index: Index = match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Index::empty(),
        Err(e) => return Err(e),
    };
    index.manifests.retain(|d| d.ref_name() != Some(tag));
    let mut d = desc.clone();
    d.platform = None;
    d.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), tag.to_string())]));
    index.manifests.push(d);
    fs::write(&path, serde_json::to_vec(&index).expect("json"))
}

/// The demo and test set: a single image, a two-platform index, and an image
/// sharing a layer with the first, all small.
pub fn samples(root: &Path) -> io::Result<()> {
    let base = Layer { seed: 1, size: 4096 };
    let d = write_image(root, "samples/hello-world", &Image::new(vec![base, Layer { seed: 2, size: 1500 }]))?;
    tag(root, "samples/hello-world", "v1", &d)?;
    let mut amd = Image::new(vec![Layer { seed: 10, size: 3000 }]);
    amd.arch = "amd64".into();
    let mut arm = Image::new(vec![Layer { seed: 11, size: 3000 }]);
    arm.arch = "arm64".into();
    let d = write_index(root, "samples/multiarch", &[amd, arm])?;
    tag(root, "samples/multiarch", "v1", &d)?;
    let d = write_image(root, "library/tools", &Image::new(vec![base, Layer { seed: 3, size: 2048 }]))?;
    tag(root, "library/tools", "1.0", &d)?;
    tag(root, "library/tools", "latest", &d)
}
