//! Transfer sets: the artifacts of an export as a team keeps them in a file (YAML or JSON), and their expansion into requests.
//!
//! Parsing and expansion are pure: [`SetFile::parse`] checks every entry once;
//! [`Entry::expand`] turns an entry and its repository's tag list into
//! requests. Only [`resolve`] talks to registries (to list tags).

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use barge_bundle::{split_registry, Digest, FullReference, Platform, Reference, DOCKER_HUB};
use futures::stream::{self, StreamExt};
use serde::Deserialize;

use crate::registry::Registry;
use crate::{Result, TransferError};

/// One artifact an export is asked for: where to read it and what to call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// As the user named it (or as a set entry expands): `docker.io/library/alpine:3.20`, `hello:v1`.
    pub request: String,
    /// The registry to read it from: a key of [`Sources`].
    pub registry: String,
    pub reference: Reference,
    /// The platforms to take from a multi-platform index (empty: all). The
    /// index travels unchanged with only these children (a sparse index); a
    /// single image manifest travels whatever the selection.
    pub platforms: Vec<Platform>,
    /// Bring what refers to it (signatures, SBOMs, attestations).
    pub referrers: bool,
}

/// The registries an export reads from, by the name requests give them.
#[derive(Default, Clone)]
pub struct Sources {
    registries: BTreeMap<String, Arc<dyn Registry>>,
}

impl Sources {
    pub fn new() -> Sources {
        Sources::default()
    }

    pub fn one(name: &str, registry: Arc<dyn Registry>) -> Sources {
        let mut s = Sources::new();
        s.insert(name, registry);
        s
    }

    pub fn insert(&mut self, name: &str, registry: Arc<dyn Registry>) {
        self.registries.insert(name.to_string(), registry);
    }

    pub fn get(&self, name: &str) -> Result<&Arc<dyn Registry>> {
        self.registries.get(name).ok_or(TransferError::Internal("a request names a registry that was not opened"))
    }
}

/// The name a registry is known by in requests and the catalog: `--registry`
/// as given, without `docker://` or a trailing `/`.
pub fn registry_key(given: &str) -> String {
    given.strip_prefix("docker://").unwrap_or(given).trim_end_matches('/').to_string()
}

/// Requests from artifact names: short names (`repo:tag`) of `registry` when
/// one is given, else full references (`ghcr.io/org/app:v1`, `alpine`).
pub fn requests_from_names(names: &[String], registry: Option<&str>, referrers: bool) -> Result<Vec<ExportRequest>> {
    let mut bad = Vec::new();
    let mut out = Vec::new();
    for n in names {
        let parsed = match registry {
            Some(r) => Reference::parse(n).map(|reference| (registry_key(r), reference)),
            None => FullReference::parse(n).map(|f| (f.registry().to_string(), f.reference().clone())),
        };
        match parsed {
            Ok((registry, reference)) => {
                out.push(ExportRequest { request: n.clone(), registry, reference, platforms: Vec::new(), referrers })
            }
            Err(e) => bad.push(e.to_string()),
        }
    }
    if !bad.is_empty() {
        return Err(TransferError::InvalidArtifacts(bad));
    }
    Ok(out)
}

/// A transfer set, as written: `artifacts:` and one entry per repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetFile {
    pub entries: Vec<Entry>,
}

/// One entry, checked: a repository of a registry and what to take from it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `artifacts[i]`, and the repository, for messages.
    pub name: String,
    pub registry: String,
    pub repository: String,
    pub tags: Vec<String>,
    pub tag_pattern: Option<regex::Regex>,
    pub latest: Option<usize>,
    pub digests: Vec<Digest>,
    pub platforms: Vec<Platform>,
    pub referrers: Option<bool>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        (&self.name, &self.registry, &self.repository, &self.tags, &self.latest, &self.digests, &self.platforms)
            == (&o.name, &o.registry, &o.repository, &o.tags, &o.latest, &o.digests, &o.platforms)
            && self.tag_pattern.as_ref().map(|r| r.as_str()) == o.tag_pattern.as_ref().map(|r| r.as_str())
            && self.referrers == o.referrers
    }
}
impl Eq for Entry {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    artifacts: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEntry {
    registry: Option<Text>,
    repository: Text,
    #[serde(default)]
    tags: Vec<Text>,
    tag_pattern: Option<Text>,
    latest: Option<usize>,
    #[serde(default)]
    digests: Vec<Text>,
    #[serde(default)]
    platforms: Vec<Text>,
    referrers: Option<bool>,
}

/// A set file's bytes, at most [`MAX_SET_BYTES`] (a device or a pipe that
/// never ends is refused, not read whole), and its name for messages.
fn read_limited(path: &std::path::Path) -> Result<(Vec<u8>, String)> {
    let shown = path.display().to_string();
    let io = |e| TransferError::io(format!("reading the set {shown}"), e);
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(io)?.take(MAX_SET_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_SET_BYTES {
        return Err(TransferError::InvalidSet(format!("{shown}: a set file has at most {} MiB", MAX_SET_BYTES >> 20)));
    }
    Ok((bytes, shown))
}

/// The most bytes a set file may have.
pub const MAX_SET_BYTES: u64 = 4 << 20;
/// The most a parsed set may hold (its strings, each with its overhead):
/// YAML aliases repeat what an anchor names, so a small file could otherwise
/// stand for gigabytes.
const MAX_EXPANDED: usize = 32 << 20;

thread_local! {
    /// What the set being parsed on this thread may still hold.
    static BUDGET: Cell<usize> = const { Cell::new(0) };
}

/// A string of a set file, counted against the parse's budget as it is read.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Text, D::Error> {
        let s = String::deserialize(d)?;
        let cost = s.len() + 64;
        let left = BUDGET.with(Cell::get);
        if cost > left {
            return Err(serde::de::Error::custom(format!(
                "the set stands for more than {} MiB once its aliases are expanded",
                MAX_EXPANDED >> 20
            )));
        }
        BUDGET.with(|b| b.set(left - cost));
        Ok(Text(s))
    }
}

fn texts(v: Vec<Text>) -> Vec<String> {
    v.into_iter().map(|t| t.0).collect()
}

/// An entry as written, its strings taken out of their [`Text`]s.
struct Plain {
    registry: Option<String>,
    repository: String,
    tags: Vec<String>,
    tag_pattern: Option<String>,
    latest: Option<usize>,
    digests: Vec<String>,
    platforms: Vec<String>,
    referrers: Option<bool>,
}

impl From<RawEntry> for Plain {
    fn from(raw: RawEntry) -> Plain {
        Plain {
            registry: raw.registry.map(|t| t.0),
            repository: raw.repository.0,
            tags: texts(raw.tags),
            tag_pattern: raw.tag_pattern.map(|t| t.0),
            latest: raw.latest,
            digests: texts(raw.digests),
            platforms: texts(raw.platforms),
            referrers: raw.referrers,
        }
    }
}

impl SetFile {
    /// Parse a set (YAML, or JSON, which is YAML) named `file` in messages.
    /// `default_registry` is `--registry`: the registry of entries that name none.
    pub fn parse(bytes: &[u8], file: &str, default_registry: Option<&str>) -> Result<SetFile> {
        let invalid = |why: String| TransferError::InvalidSet(format!("{file}: {why}"));
        BUDGET.with(|b| b.set(MAX_EXPANDED));
        let raw: std::result::Result<RawSet, _> = serde_norway::from_slice(bytes);
        BUDGET.with(|b| b.set(0));
        let raw = raw.map_err(|e| invalid(one_line(&e.to_string())))?;
        if raw.artifacts.is_empty() {
            return Err(invalid("`artifacts` lists nothing".into()));
        }
        let entries = raw
            .artifacts
            .into_iter()
            .enumerate()
            .map(|(i, e)| Entry::check(e, i, default_registry).map_err(|why| invalid(format!("artifacts[{i}]{why}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(SetFile { entries })
    }

    /// Read and parse the set file at `path` (at most [`MAX_SET_BYTES`]: a
    /// device or a pipe that never ends is refused, not read whole).
    pub fn read(path: &std::path::Path, default_registry: Option<&str>) -> Result<SetFile> {
        let (bytes, shown) = read_limited(path)?;
        SetFile::parse(&bytes, &shown, default_registry)
    }

    /// The set file at `path` (read as [`SetFile::read`] reads it) as a JSON
    /// document, to keep with a pipeline run and parse again when it runs,
    /// against the pipeline's registry. Its shape and size are checked here;
    /// entries that name no registry are checked when the run is submitted.
    pub fn document(path: &std::path::Path) -> Result<serde_json::Value> {
        let (bytes, shown) = read_limited(path)?;
        let invalid =
            |e: serde_norway::Error| TransferError::InvalidSet(format!("{shown}: {}", one_line(&e.to_string())));
        // Checked under the budget first, so the second reading is as bounded.
        BUDGET.with(|b| b.set(MAX_EXPANDED));
        let raw: std::result::Result<RawSet, _> = serde_norway::from_slice(&bytes);
        BUDGET.with(|b| b.set(0));
        raw.map_err(invalid)?;
        serde_norway::from_slice(&bytes).map_err(invalid)
    }

    /// The registries the set reads from.
    pub fn registries(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.iter().map(|e| e.registry.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Entry {
    /// Check one entry; an error is `.field: why`, to follow `artifacts[i]`.
    fn check(raw: RawEntry, i: usize, default_registry: Option<&str>) -> std::result::Result<Entry, String> {
        let e = Plain::from(raw);
        let (registry, repository) = match (e.registry.as_deref(), default_registry) {
            (Some(r), _) | (None, Some(r)) => {
                crate::registry::RegistryAddr::parse(r).map_err(|err| format!(".registry: {err}"))?;
                let r = registry_key(r);
                let r = if r == "index.docker.io" { DOCKER_HUB } else { r.as_str() };
                let repo = match r == DOCKER_HUB && !e.repository.contains('/') {
                    true => format!("library/{}", e.repository),
                    false => e.repository.clone(),
                };
                (r.to_string(), repo)
            }
            // No registry: the repository is a full name, normalised as docker does.
            (None, None) => {
                if e.repository.contains(['@', ':']) && split_registry(&e.repository).1.contains([':', '@']) {
                    return Err(
                        ".repository: name the repository alone; tags and digests go in `tags` and `digests`".into()
                    );
                }
                let full = FullReference::parse(&e.repository).map_err(|err| format!(".repository: {err}"))?;
                (full.registry().to_string(), full.reference().repository().to_string())
            }
        };
        barge_bundle::check_repository(&repository).map_err(|why| format!(".repository: {why}"))?;
        for (j, t) in e.tags.iter().enumerate() {
            barge_bundle::check_tag(t).map_err(|why| format!(".tags[{j}]: {why}"))?;
        }
        let tag_pattern = match &e.tag_pattern {
            Some(p) => {
                Some(regex::Regex::new(p).map_err(|err| format!(".tagPattern: {}", one_line(&err.to_string())))?)
            }
            None => None,
        };
        if e.latest == Some(0) {
            return Err(".latest: must be 1 or more".into());
        }
        let digests = e
            .digests
            .iter()
            .enumerate()
            .map(|(j, d)| Digest::parse(d).map_err(|err| format!(".digests[{j}]: {err}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let platforms = e
            .platforms
            .iter()
            .enumerate()
            .map(|(j, p)| p.parse::<Platform>().map_err(|err| format!(".platforms[{j}]: {err}")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Entry {
            name: format!("artifacts[{i}] ({registry}/{repository})"),
            registry,
            repository,
            tags: e.tags,
            tag_pattern,
            latest: e.latest,
            digests,
            platforms,
            referrers: e.referrers,
        })
    }

    /// Whether expanding needs the repository's tag list.
    pub fn lists_tags(&self) -> bool {
        self.tag_pattern.is_some() || self.latest.is_some()
    }

    /// The requests this entry stands for, given its repository's tags (when
    /// it lists them). Exact tags and digests always; a pattern's matches (all
    /// tags when only `latest` is given), cut to the `latest` highest
    /// versions; `latest` alone when the entry names nothing.
    pub fn expand(&self, listed: &[String], platforms: &[Platform], referrers: bool) -> Result<Vec<ExportRequest>> {
        let mut tags: Vec<String> = self.tags.clone();
        if self.lists_tags() {
            let mut matched: Vec<&String> =
                listed.iter().filter(|t| self.tag_pattern.as_ref().is_none_or(|p| p.is_match(t))).collect();
            if let Some(n) = self.latest {
                matched.retain(|t| Version::parse(t).is_some());
                matched.sort_by(|a, b| Version::parse(b).cmp(&Version::parse(a)).then_with(|| a.cmp(b)));
                matched.truncate(n);
            }
            if matched.is_empty() {
                let what = match &self.tag_pattern {
                    Some(p) => format!("a tag matching tagPattern {:?}", p.as_str()),
                    None => "a version-like tag for `latest`".to_string(),
                };
                return Err(TransferError::NotFound(format!(
                    "{what} among the {} tags of set entry {}",
                    listed.len(),
                    self.name
                )));
            }
            tags.extend(matched.into_iter().cloned());
        }
        if tags.is_empty() && self.digests.is_empty() && !self.lists_tags() {
            tags.push("latest".into());
        }
        tags.sort();
        tags.dedup();
        let platforms = if self.platforms.is_empty() { platforms.to_vec() } else { self.platforms.clone() };
        let referrers = self.referrers.unwrap_or(referrers);
        let mut out = Vec::new();
        let targets = tags.iter().map(|t| (Some(t.as_str()), None)).chain(self.digests.iter().map(|d| (None, Some(d))));
        for (tag, digest) in targets {
            let reference = Reference::from_parts(&self.repository, tag, digest.cloned())
                .map_err(|e| TransferError::InvalidSet(format!("set entry {}: {e}", self.name)))?;
            out.push(ExportRequest {
                request: format!("{}/{reference}", self.registry),
                registry: self.registry.clone(),
                reference,
                platforms: platforms.clone(),
                referrers,
            });
        }
        Ok(out)
    }
}

/// Expand a set against its registries: tag lists are read only for entries
/// with a pattern or `latest`, at most `concurrency` at once. An entry that
/// matches nothing is an error, or with `skip_unmatched` a failure to report
/// (its name and the error) while the rest go on.
pub async fn resolve(
    set: &SetFile,
    sources: &Sources,
    platforms: &[Platform],
    referrers: bool,
    skip_unmatched: bool,
    concurrency: usize,
) -> Result<(Vec<ExportRequest>, Vec<(String, TransferError)>)> {
    let listed: Vec<Result<Vec<String>>> = stream::iter(&set.entries)
        .map(|e| async move {
            match e.lists_tags() {
                true => sources.get(&e.registry)?.tags(&e.repository).await,
                false => Ok(Vec::new()),
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut requests = Vec::new();
    let mut skipped = Vec::new();
    for (e, tags) in set.entries.iter().zip(listed) {
        match tags.and_then(|t| e.expand(&t, platforms, referrers)) {
            Ok(r) => requests.extend(r),
            Err(err) if skip_unmatched => skipped.push((e.name.clone(), err)),
            Err(err) => return Err(err),
        }
    }
    Ok((requests, skipped))
}

/// A tag read as a version, for `latest`: `v1.2.3`, `3.20`, `1.2.3-rc.1`; up to
/// four numeric parts. Tags that are not versions (`latest`, `main`) are None.
#[derive(Debug, PartialEq, Eq)]
struct Version {
    numbers: [u64; 4],
    /// Pre-release identifiers; a release (none) sorts above its pre-releases.
    pre: Option<Vec<String>>,
}

impl Version {
    fn parse(tag: &str) -> Option<Version> {
        let t = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        let t = t.split('+').next()?;
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, Some(p.split('.').map(str::to_string).collect())),
            None => (t, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 4 {
            return None;
        }
        let mut numbers = [0u64; 4];
        for (n, p) in numbers.iter_mut().zip(&parts) {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *n = p.parse().ok()?;
        }
        Some(Version { numbers, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, o: &Version) -> Ordering {
        self.numbers.cmp(&o.numbers).then_with(|| match (&self.pre, &o.pre) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => {
                // Semver: numeric identifiers compare as numbers and below alphanumeric ones.
                for (x, y) in a.iter().zip(b) {
                    let c = match (x.parse::<u64>(), y.parse::<u64>()) {
                        (Ok(m), Ok(n)) => m.cmp(&n),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        (Err(_), Err(_)) => x.cmp(y),
                    };
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, o: &Version) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(yaml: &str, registry: Option<&str>) -> Result<SetFile> {
        SetFile::parse(yaml.as_bytes(), "set.yaml", registry)
    }

    fn shown(r: &[ExportRequest]) -> Vec<String> {
        r.iter().map(|r| r.request.clone()).collect()
    }

    #[test]
    fn the_issue_example_parses_and_expands() {
        let s = set(
            r#"
artifacts:
  - registry: docker.io
    repository: library/alpine
    tags: ["3.20", "3.21"]
    tagPattern: "^3\\.2[0-9]$"
    latest: 2
    platforms: ["linux/amd64"]
    referrers: false
"#,
            None,
        )
        .unwrap();
        let e = &s.entries[0];
        let listed: Vec<String> = ["3.19", "3.20", "3.21", "3.22", "3.23", "latest", "edge"].map(String::from).to_vec();
        let r = e.expand(&listed, &[], true).unwrap();
        assert_eq!(
            shown(&r),
            [
                "docker.io/library/alpine:3.20",
                "docker.io/library/alpine:3.21",
                "docker.io/library/alpine:3.22",
                "docker.io/library/alpine:3.23"
            ]
        );
        assert!(r
            .iter()
            .all(|r| r.platforms == ["linux/amd64".parse().unwrap()] && !r.referrers && r.registry == "docker.io"));
    }

    #[test]
    fn registries_come_from_the_entry_the_flag_or_the_name() {
        let s = set("artifacts:\n  - repository: alpine\n  - repository: ghcr.io/org/app\n    tags: [v1]\n  - registry: 127.0.0.1:5000\n    repository: team/x\n", None).unwrap();
        let r: Vec<String> = s.entries.iter().flat_map(|e| shown(&e.expand(&[], &[], true).unwrap())).collect();
        assert_eq!(r, ["docker.io/library/alpine:latest", "ghcr.io/org/app:v1", "127.0.0.1:5000/team/x:latest"]);
        assert_eq!(s.registries(), ["127.0.0.1:5000", "docker.io", "ghcr.io"]);
        let s = set(r#"{"artifacts": [{"repository": "hello", "digests": ["sha256:78644e707286c9e72732b53620dd16d1ec0430b58761fa73926efd29d4d8dfcc"]}]}"#, Some("oci:/tmp/l")).unwrap();
        let r = s.entries[0].expand(&[], &["linux/arm64".parse().unwrap()], true).unwrap();
        assert_eq!(r[0].registry, "oci:/tmp/l");
        assert_eq!(r[0].reference.repository(), "hello");
        assert_eq!(r[0].platforms, ["linux/arm64".parse().unwrap()]);
    }

    #[test]
    fn bad_sets_name_the_entry_and_field() {
        for (yaml, says) in [
            ("artifacts: []", "lists nothing"),
            ("artifacts:\n  - repository: a\n    tagz: [x]", "unknown field `tagz`"),
            ("artifacts:\n  - repository: a\n  - repository: B", "artifacts[1].repository"),
            ("artifacts:\n  - repository: a\n    tags: [\"-x\"]", "artifacts[0].tags[0]"),
            ("artifacts:\n  - repository: a\n    tagPattern: \"(\"", "artifacts[0].tagPattern"),
            ("artifacts:\n  - repository: a\n    latest: 0", "artifacts[0].latest"),
            ("artifacts:\n  - repository: a\n    digests: [sha256:12]", "artifacts[0].digests[0]"),
            ("artifacts:\n  - repository: a\n    platforms: [amd64]", "artifacts[0].platforms[0]"),
            ("artifacts:\n  - repository: a:1", "artifacts[0].repository"),
            ("artifacts:\n  - registry: a/b\n    repository: a", "artifacts[0].registry"),
            ("{", "set.yaml"),
        ] {
            let e = set(yaml, None).unwrap_err().to_string();
            assert!(e.contains(says) && e.starts_with("set.yaml: ") && !e.contains('\n'), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn an_entry_that_matches_nothing_is_named() {
        let s = set("artifacts:\n  - repository: a/b\n    registry: r.io\n    tagPattern: \"^9\"\n", None).unwrap();
        let e = s.entries[0].expand(&["1".into(), "2".into()], &[], true).unwrap_err().to_string();
        assert_eq!(
            e,
            "a tag matching tagPattern \"^9\" among the 2 tags of set entry artifacts[0] (r.io/a/b) not found"
        );
    }

    #[test]
    fn latest_takes_the_highest_versions() {
        let s = set("artifacts:\n  - repository: a\n    registry: r.io\n    latest: 3\n", None).unwrap();
        let listed: Vec<String> =
            ["1.9", "1.10", "v1.10.1", "1.10.1-rc.1", "1.10.1-rc.2", "2.0.0-alpha", "latest", "main", "1.2.3.4"]
                .map(String::from)
                .to_vec();
        let r = s.entries[0].expand(&listed, &[], true).unwrap();
        let tags: Vec<&str> = r.iter().map(|r| r.reference.tag().unwrap()).collect();
        assert_eq!(tags, ["1.10.1-rc.2", "2.0.0-alpha", "v1.10.1"]);
        assert!(Version::parse("1.0.0-alpha.1") < Version::parse("1.0.0-alpha.beta"));
        assert!(Version::parse("1.0.0-rc.2") < Version::parse("1.0.0-rc.10"));
        assert!(Version::parse("1.0.0-rc.10") < Version::parse("1.0.0"));
        assert_eq!(Version::parse("latest"), None);
    }

    #[test]
    fn aliases_that_repeat_too_much_are_refused_not_expanded() {
        // 2,000 entries each aliasing one list of 10,000 tags: a 200 KB file
        // that stands for 20 million strings.
        let mut yaml = String::from("artifacts:\n  - registry: r.io\n    repository: a\n    tags: &t [");
        yaml.extend((0..10_000).map(|i| format!("t{i},")));
        yaml.push_str("]\n");
        yaml.extend((0..2_000).map(|_| "  - {registry: r.io, repository: a, tags: *t}\n".to_string()));
        let t = std::time::Instant::now();
        let e = set(&yaml, None).unwrap_err().to_string();
        assert!(e.contains("once its aliases are expanded") && e.starts_with("set.yaml: "), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
        // A modest use of anchors still parses, and the budget is per parse.
        let s = set("artifacts:\n  - {registry: r.io, repository: a, platforms: &p [linux/amd64]}\n  - {registry: r.io, repository: b, platforms: *p}\n", None).unwrap();
        assert_eq!(s.entries[1].platforms, ["linux/amd64".parse().unwrap()]);
    }

    #[test]
    fn a_set_file_is_read_up_to_its_limit() {
        let e = SetFile::read(std::path::Path::new("/dev/zero"), None).unwrap_err().to_string();
        assert_eq!(e, "/dev/zero: a set file has at most 4 MiB");
        let dir = std::env::temp_dir().join(format!("barge-set-{}", std::process::id()));
        std::fs::write(&dir, b"artifacts:\n  - repository: \xff\n").unwrap();
        let e = SetFile::read(&dir, None).unwrap_err().to_string();
        std::fs::remove_file(&dir).unwrap();
        assert!(e.contains("invalid") && e.contains("UTF-8") && !e.contains('\n'), "{e}");
    }
}
