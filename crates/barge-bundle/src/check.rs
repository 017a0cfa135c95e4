//! `BundleCheck`: the rules a bundle's entries must follow, applied entry by entry as a reader meets them.
//!
//! Pure: readers (the offline verifier, the streaming importer) do the IO and
//! the hashing, and feed this what they read. It enforces the order (layout
//! files and catalog before any blob, blobs in catalog order), refuses
//! duplicates and unlisted entries, hashes every manifest, and once the
//! manifests are read (they come first) derives what each artifact brings
//! from them and refuses a catalog that says otherwise (`closure.rs`).

use std::collections::{HashMap, HashSet};

use crate::catalog::{expect_digest, BlobKind, Catalog, CATALOG_NAME, INDEX_NAME, OCI_LAYOUT_NAME};
use crate::oci::{self, Index, Refs, MAX_MANIFEST_SIZE};
use crate::tar::{Entry, Kind};
use crate::{BundleError, Digest};

/// The largest `index.json` or catalog a reader loads.
pub const MAX_META_SIZE: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    OciLayout,
    Index,
    Catalog,
}

/// What an entry is, so the reader knows what to do with its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A directory entry: no data.
    Dir,
    /// A small file to read whole and pass to [`BundleCheck::meta`].
    Meta(Meta),
    /// `catalog().blobs[i]`: hash it; manifests also go to [`BundleCheck::manifest`].
    Blob(usize),
}

#[derive(Debug, Default)]
pub struct BundleCheck {
    layout: bool,
    index: Option<Index>,
    catalog: Option<Catalog>,
    positions: HashMap<Digest, usize>,
    seen: HashSet<String>,
    next_blob: usize,
    /// What every manifest read so far refers to.
    refs: HashMap<Digest, Refs>,
    /// The closure rule has passed (it runs once, when the manifests are all read).
    closed: bool,
}

impl BundleCheck {
    pub fn new() -> BundleCheck {
        BundleCheck::default()
    }

    pub fn catalog(&self) -> Option<&Catalog> {
        self.catalog.as_ref()
    }

    /// Classify the next entry, refusing what does not belong where it stands.
    pub fn entry(&mut self, e: &Entry) -> Result<Role, BundleError> {
        if !self.seen.insert(e.name.clone()) {
            return Err(BundleError::Duplicate(e.name.clone()));
        }
        if e.kind == Kind::Dir {
            let ok =
                e.name == "blobs/" || (e.name.starts_with("blobs/") && matches!(&e.name[6..], "sha256/" | "sha512/"));
            if !ok {
                return Err(BundleError::Unlisted(e.name.clone()));
            }
            // A directory holds no data; a size would be bytes a reader passes over unchecked.
            if e.size != 0 {
                return Err(BundleError::Corrupt(format!("directory {} claims {} bytes of data", e.name, e.size)));
            }
            return Ok(Role::Dir);
        }
        let meta = match e.name.as_str() {
            OCI_LAYOUT_NAME => Some(Meta::OciLayout),
            INDEX_NAME => Some(Meta::Index),
            CATALOG_NAME => Some(Meta::Catalog),
            _ => None,
        };
        if let Some(m) = meta {
            if self.catalog.is_some() && m != Meta::Catalog || self.next_blob > 0 {
                return Err(BundleError::Corrupt(format!("{} comes after the catalog", e.name)));
            }
            if e.size > MAX_META_SIZE {
                return Err(BundleError::Corrupt(format!("{} is {} bytes, larger than barge reads", e.name, e.size)));
            }
            return Ok(Role::Meta(m));
        }
        let Some(catalog) = &self.catalog else {
            if e.name.starts_with("blobs/") {
                return Err(BundleError::Corrupt(format!("blob entry {} comes before {CATALOG_NAME}", e.name)));
            }
            return Err(BundleError::Unlisted(e.name.clone()));
        };
        let digest = e
            .name
            .strip_prefix("blobs/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(alg, hex)| Digest::parse(&format!("{alg}:{hex}")).ok());
        let Some(&i) = digest.as_ref().and_then(|d| self.positions.get(d)) else {
            return Err(BundleError::Unlisted(e.name.clone()));
        };
        if i != self.next_blob {
            return Err(BundleError::Corrupt(format!(
                "blob {} is out of order (expected {} next)",
                catalog.blobs[i].digest,
                catalog.blobs.get(self.next_blob).map(|b| b.digest.to_string()).unwrap_or_default()
            )));
        }
        let b = &catalog.blobs[i];
        let kind = b.kind;
        if b.size != e.size {
            return Err(BundleError::SizeMismatch { digest: b.digest.clone(), expected: b.size, actual: e.size });
        }
        if b.kind == BlobKind::Manifest && b.size > MAX_MANIFEST_SIZE {
            return Err(BundleError::Corrupt(format!("manifest {} is larger than 4 MiB", b.digest)));
        }
        if kind != BlobKind::Manifest {
            self.close()?;
        }
        self.next_blob += 1;
        Ok(Role::Blob(i))
    }

    /// Apply the closure rule once; every manifest must have been read.
    fn close(&mut self) -> Result<(), BundleError> {
        if !self.closed {
            if let Some(c) = &self.catalog {
                crate::closure::check(c, &self.refs)?;
            }
            self.closed = true;
        }
        Ok(())
    }

    /// Take the content of a layout file or the catalog.
    pub fn meta(&mut self, m: Meta, bytes: &[u8]) -> Result<(), BundleError> {
        match m {
            Meta::OciLayout => {
                let v: serde_json::Value =
                    serde_json::from_slice(bytes).map_err(|e| BundleError::Corrupt(format!("oci-layout: {e}")))?;
                if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
                    return Err(BundleError::Corrupt("oci-layout does not say imageLayoutVersion 1.0.0".into()));
                }
                self.layout = true;
            }
            Meta::Index => {
                let idx: Index =
                    serde_json::from_slice(bytes).map_err(|e| BundleError::Corrupt(format!("index.json: {e}")))?;
                self.index = Some(idx);
            }
            Meta::Catalog => {
                let (true, Some(index)) = (self.layout, &self.index) else {
                    return Err(BundleError::Corrupt(format!("{CATALOG_NAME} comes before oci-layout and index.json")));
                };
                let c = Catalog::parse(bytes)?;
                c.check_index(index)?;
                self.positions = c.blobs.iter().enumerate().map(|(i, b)| (b.digest.clone(), i)).collect();
                self.catalog = Some(c);
            }
        }
        Ok(())
    }

    /// Take blob `i` (a manifest, as [`Role::Blob`] said): check its digest
    /// and its declared media type, and keep what it refers to.
    pub fn manifest(&mut self, i: usize, bytes: &[u8]) -> Result<Refs, BundleError> {
        let Some(b) = self.catalog.as_ref().and_then(|c| c.blobs.get(i)) else {
            return Err(BundleError::Corrupt(format!("blob {i} is not in the catalog")));
        };
        let mut h = b.digest.hasher();
        h.update(bytes);
        expect_digest(&b.digest, h.finish())?;
        let declared = oci::declared_media_type(bytes, &b.media_type);
        if declared != b.media_type {
            return Err(BundleError::Corrupt(format!(
                "manifest {} declares media type {declared}, the catalog says {}",
                b.digest, b.media_type
            )));
        }
        let refs = oci::parse_refs(&b.media_type, bytes)
            .map_err(|e| BundleError::Corrupt(format!("manifest {}: {e}", b.digest)))?;
        self.refs.insert(b.digest.clone(), refs.clone());
        Ok(refs)
    }

    /// The archive ended: everything the catalog lists must have been seen.
    pub fn finish(mut self) -> Result<Catalog, BundleError> {
        let Some(catalog) = &self.catalog else {
            return Err(BundleError::Corrupt(format!("the bundle has no {CATALOG_NAME}")));
        };
        if let Some(next) = catalog.blobs.get(self.next_blob) {
            return Err(BundleError::Truncated(format!(
                "blob {} and {} more listed in the catalog are missing",
                next.digest,
                catalog.blobs.len() - self.next_blob - 1
            )));
        }
        self.close()?;
        self.catalog.ok_or_else(|| BundleError::Corrupt(format!("the bundle has no {CATALOG_NAME}")))
    }
}

#[cfg(test)]
mod tests {
    //! Every rule of `BundleCheck` (through the one reader), each refusal by a bundle that breaks only it.

    use crate::forge::{self, Forged};
    use crate::reader::{walk, Sequential};
    use crate::tar::Kind;
    use crate::BundleError;

    type Entries = Vec<(String, Vec<u8>, Kind)>;

    fn read(bytes: &[u8]) -> Result<crate::Catalog, BundleError> {
        walk(&mut Sequential::new(bytes, &|_| {}))
    }

    #[test]
    fn every_entry_rule_refuses_what_breaks_it() {
        let good = forge::index();
        let first_blob =
            |e: &Entries| e.iter().position(|(n, _, k)| *k == Kind::File && n.starts_with("blobs/sha256/")).unwrap();
        type Break = Box<dyn Fn(&mut Entries)>;
        let cases: Vec<(&str, Break, &str)> = vec![
            ("duplicate", Box::new(|e| e.push(e[0].clone())), "appears twice"),
            ("stray dir", Box::new(|e| e.insert(4, ("etc/".into(), vec![], Kind::Dir))), "not listed"),
            (
                "dir with data",
                Box::new(|e| e.iter_mut().find(|x| x.0 == "blobs/").unwrap().1 = vec![0; 1024]),
                "directory blobs/ claims 1024 bytes",
            ),
            ("stray file", Box::new(|e| e.insert(3, ("notes.txt".into(), b"x".to_vec(), Kind::File))), "not listed"),
            ("meta after catalog", Box::new(|e| e.swap(1, 2)), "before oci-layout and index.json"),
            (
                "layout file after blobs",
                Box::new(|e| {
                    let l = e.remove(0);
                    e.push(l);
                }),
                "before oci-layout and index.json",
            ),
            (
                "blob before catalog",
                Box::new(move |e| {
                    let i = first_blob(e);
                    let b = e.remove(i);
                    e.insert(2, b);
                }),
                "comes before barge-catalog.json",
            ),
            (
                "unlisted blob",
                Box::new(move |e| {
                    let i = first_blob(e);
                    e[i].0 = format!("blobs/sha256/{}", "0".repeat(64));
                }),
                "not listed",
            ),
            (
                "out of order",
                Box::new(move |e| {
                    let i = first_blob(e);
                    e.swap(i, i + 1);
                }),
                "out of order",
            ),
            ("size", Box::new(|e| e.last_mut().unwrap().1.push(b'!')), "the catalog says"),
            (
                "manifest digest",
                Box::new(move |e| {
                    let i = first_blob(e);
                    e[i].1.push(b' ');
                    let n = e[i].1.len();
                    e[i].1.truncate(n - 2);
                    e[i].1.push(b' ');
                }),
                "does not match its digest",
            ),
            (
                "layout version",
                Box::new(|e| e[0].1 = br#"{"imageLayoutVersion":"2.0.0"}"#.to_vec()),
                "imageLayoutVersion 1.0.0",
            ),
            ("index not json", Box::new(|e| e[1].1 = b"[".to_vec()), "index.json:"),
            (
                "index differs",
                Box::new(|e| {
                    let mut v: serde_json::Value = serde_json::from_slice(&e[1].1).unwrap();
                    v["manifests"].as_array_mut().unwrap().pop();
                    e[1].1 = serde_json::to_vec(&v).unwrap();
                }),
                "index.json names 1 artifacts",
            ),
            ("missing blob", Box::new(|e| drop(e.pop())), "missing"),
            ("no catalog", Box::new(|e| e.truncate(2)), "has no barge-catalog.json"),
        ];
        for (name, change, needle) in cases {
            let mut e = good.entries();
            change(&mut e);
            let err = read(&Forged::tar(&e)).expect_err(name).to_string();
            assert!(err.contains(needle), "{name}: {err:?} does not say {needle:?}");
        }
        read(&Forged::tar(&good.entries())).expect("the untouched forge passes");
    }

    #[test]
    fn manifests_over_4_mib_and_damaged_end_markers_are_refused() {
        let mut f = forge::image(None);
        let big = vec![b' '; (4 << 20) + 1];
        let d = crate::Digest::sha256_of(&big);
        let md = f.catalog.artifacts[0].digest.clone();
        let blob = f.blob(&md);
        blob.digest = d.clone();
        blob.size = big.len() as u64;
        let a = f.artifact("a/b:v1");
        (a.digest, a.manifests, a.size) = (d.clone(), vec![d.clone()], big.len() as u64);
        f.blobs.push((d, big));
        let err = read(&f.bundle(&[])).unwrap_err().to_string();
        assert!(err.contains("larger than 4 MiB"), "{err}");

        let mut bytes = forge::image(None).bundle(&[]);
        let n = bytes.len();
        bytes[n - 10] = 1;
        let err = read(&bytes).unwrap_err().to_string();
        assert!(err.contains("end-of-archive marker is damaged"), "{err}");
    }
}
