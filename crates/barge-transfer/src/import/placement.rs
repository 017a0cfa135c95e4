//! Where import places each artifact: its repository path, rewritten by maps (`SRC=DST`) and put under a prefix; pure, checked before any write.
//!
//! The rule, applied to each catalog artifact:
//! - A map's SRC matches at path-component boundaries: `library` matches
//!   `library/alpine` and `library`, not `libraryx/a`.
//! - A SRC whose first component looks like a registry host (it contains `.`
//!   or `:`, or is `localhost`: docker's rule) is matched against
//!   `registry/repository`, the artifact's source registry as its catalog
//!   records it (the catalog's one source registry for bundles written before
//!   artifacts recorded theirs); `docker.io/library=hub` moves only artifacts
//!   exported from docker.io. A bare host (`docker.io=mirror`) matches every
//!   artifact of that registry. Any other SRC is matched against `repository`.
//! - The map that matches the longest part of the repository path wins; when a
//!   registry-qualified map and a plain one match the same part, the qualified
//!   one wins. Two maps with the same SRC are refused when parsed.
//! - The matched part is replaced by DST. DST may be empty: the matched part
//!   is dropped (`library=` makes `library/alpine` `alpine`); an artifact whose
//!   whole path was matched is then left without a name, which only a prefix
//!   can give it.
//! - The prefix, if any, is put in front. The result must be a valid
//!   repository name, and no two artifacts of the bundle may land on the same
//!   `repository:tag` at different digests; otherwise the import is refused
//!   before anything is read beyond the catalog or written.

use std::collections::BTreeMap;
use std::fmt;

use barge_bundle::{check_repository, Artifact, Catalog};

use crate::{Result, TransferError};

/// One rewrite, `SRC=DST`: a repository path prefix (registry-qualified or not) and its replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    /// The registry host a qualified SRC names (lowercase); `None` for a plain SRC.
    host: Option<String>,
    /// The repository path prefix SRC names (empty for a bare host).
    path: String,
    dst: String,
}

impl Map {
    /// Parse `SRC=DST`, split at the first `=`.
    pub fn parse(s: &str) -> Result<Map> {
        let bad = |why: String| TransferError::InvalidPlacement(format!("map {s:?}: {why}"));
        let (src, dst) = s
            .split_once('=')
            .ok_or_else(|| bad("not SRC=DST (a repository path prefix, '=', what replaces it)".into()))?;
        if src.is_empty() {
            return Err(bad("the source is empty; a prefix puts every artifact under a path".into()));
        }
        let (first, rest) = src.split_once('/').map_or((src, None), |(f, r)| (f, Some(r)));
        let (host, path) = if looks_like_host(first) {
            let ok = first.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
            if !ok {
                return Err(bad(format!("the registry {first:?} is not a HOST[:PORT]")));
            }
            // Docker's rule: `index.docker.io` is `docker.io`, as the catalog records it.
            let host = match first.to_ascii_lowercase() {
                h if h == "index.docker.io" => barge_bundle::DOCKER_HUB.to_string(),
                h => h,
            };
            (Some(host), rest.unwrap_or_default())
        } else {
            (None, src)
        };
        if !path.is_empty() || rest.is_some() {
            check_repository(path).map_err(|e| bad(format!("the source {path:?}: {e}")))?;
        }
        if !dst.is_empty() {
            check_repository(dst).map_err(|e| bad(format!("the destination {dst:?}: {e}")))?;
        }
        Ok(Map { host, path: path.to_string(), dst: dst.to_string() })
    }

    /// How much of `repository` this map matches (its length in bytes), if it matches.
    fn matches(&self, registry: Option<&str>, repository: &str) -> Option<usize> {
        if let Some(host) = &self.host {
            if !registry.is_some_and(|r| r.eq_ignore_ascii_case(host)) {
                return None;
            }
        }
        let p = &self.path;
        let whole = p.is_empty() || repository == p;
        (whole || repository.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('/'))).then_some(p.len())
    }

    /// `repository` with the matched part replaced by DST.
    fn apply(&self, repository: &str) -> String {
        let rest = repository[self.path.len()..].trim_start_matches('/');
        join(&self.dst, rest)
    }

    fn src(&self) -> String {
        match &self.host {
            Some(h) if self.path.is_empty() => h.clone(),
            Some(h) => format!("{h}/{}", self.path),
            None => self.path.clone(),
        }
    }
}

impl fmt::Display for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.src(), self.dst)
    }
}

/// Docker's rule for the first component of a name: a registry host when it
/// has a `.` or a `:`, or is `localhost`.
fn looks_like_host(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Where import writes the artifacts: an optional prefix and the maps, each checked once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    prefix: Option<String>,
    maps: Vec<Map>,
}

impl Placement {
    /// A prefix (a repository path) and maps; refuses a bad prefix and two maps of the same SRC.
    pub fn new(prefix: Option<&str>, maps: Vec<Map>) -> Result<Placement> {
        if let Some(p) = prefix {
            check_repository(p).map_err(|e| TransferError::InvalidPlacement(format!("prefix {p:?}: {e}")))?;
        }
        let mut seen: BTreeMap<String, &Map> = BTreeMap::new();
        for m in &maps {
            if let Some(other) = seen.insert(m.src(), m) {
                return Err(TransferError::InvalidPlacement(format!(
                    "maps \"{other}\" and \"{m}\" both rewrite {:?}; keep one",
                    m.src()
                )));
            }
        }
        Ok(Placement { prefix: prefix.map(str::to_string), maps })
    }

    /// [`Placement::new`] from the maps' text (`SRC=DST` each).
    pub fn parse(prefix: Option<&str>, maps: &[String]) -> Result<Placement> {
        Placement::new(prefix, maps.iter().map(|m| Map::parse(m)).collect::<Result<_>>()?)
    }

    /// True when every artifact lands where the bundle names it.
    pub fn is_identity(&self) -> bool {
        self.prefix.is_none() && self.maps.is_empty()
    }

    /// The target repository of an artifact from `registry` at `repository`,
    /// and the map that placed it, unchecked.
    fn place(&self, registry: Option<&str>, repository: &str) -> (String, Option<&Map>) {
        let best = self
            .maps
            .iter()
            .filter_map(|m| m.matches(registry, repository).map(|n| ((n, m.host.is_some()), m)))
            .max_by_key(|(k, _)| *k)
            .map(|(_, m)| m);
        let mapped = best.map_or_else(|| repository.to_string(), |m| m.apply(repository));
        (join(self.prefix.as_deref().unwrap_or_default(), &mapped), best)
    }

    /// Where a repository named like the bundle's artifacts (from `registry`)
    /// lands in the target, when the placement moves it to another valid name.
    pub(crate) fn repository(&self, registry: Option<&str>, repository: &str) -> Option<String> {
        if self.is_identity() {
            return None;
        }
        let (placed, _) = self.place(registry, repository);
        (placed != repository && check_repository(&placed).is_ok()).then_some(placed)
    }

    /// What placed an artifact, for an error: the map and the prefix.
    fn how(&self, map: Option<&Map>) -> String {
        match (map, &self.prefix) {
            (Some(m), Some(p)) => format!("by the map {m} and the prefix {p}"),
            (Some(m), None) => format!("by the map {m}"),
            (None, Some(p)) => format!("by the prefix {p}"),
            (None, None) => "as the bundle names it".into(),
        }
    }

    /// The target repository of every catalog artifact, in catalog order.
    /// Refused, before anything is written: a name that is not a valid
    /// repository, and two artifacts on one `repository:tag` at different digests.
    pub(crate) fn targets(&self, catalog: &Catalog) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(catalog.artifacts.len());
        let mut tags: BTreeMap<(String, &str), (&Artifact, Option<&Map>)> = BTreeMap::new();
        for a in &catalog.artifacts {
            let registry = a.registry.as_deref().or(Some(catalog.source_registry.as_str()));
            let (repo, map) = self.place(registry, &a.repository);
            let target = target_name(&repo, a);
            if let Err(why) = check_repository(&repo) {
                return Err(TransferError::InvalidPlacement(format!(
                    "artifact {} would be imported as {target:?} ({}): {why}",
                    source_name(a),
                    self.how(map)
                )));
            }
            if let Some(tag) = &a.tag {
                if let Some((b, bmap)) = tags.insert((repo.clone(), tag), (a, map)) {
                    if b.digest != a.digest {
                        return Err(TransferError::InvalidPlacement(format!(
                            "artifacts {} ({}) and {} ({}) would both be imported as {target}, at different digests",
                            source_name(b),
                            self.how(bmap),
                            source_name(a),
                            self.how(map)
                        )));
                    }
                }
            }
            out.push(repo);
        }
        Ok(out)
    }
}

/// The artifact as its source named it: `registry/repository:tag` where the catalog records its registry.
fn source_name(a: &Artifact) -> String {
    match &a.registry {
        Some(r) => format!("{r}/{}", a.ref_name()),
        None => a.ref_name(),
    }
}

/// The artifact's reference in the target: `repository:tag`, or `repository@digest` without a tag.
pub(crate) fn target_name(repository: &str, a: &Artifact) -> String {
    match &a.tag {
        Some(t) => format!("{repository}:{t}"),
        None => format!("{repository}@{}", a.digest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use barge_bundle::Digest;

    fn artifact(registry: Option<&str>, repository: &str, tag: &str, seed: &[u8]) -> Artifact {
        Artifact {
            request: String::new(),
            registry: registry.map(str::to_string),
            repository: repository.into(),
            tag: Some(tag.into()),
            digest: Digest::sha256_of(seed),
            media_type: String::new(),
            size: 1,
            manifests: vec![],
            blobs: vec![],
            platforms: vec![],
        }
    }

    fn catalog(artifacts: Vec<Artifact>) -> Catalog {
        Catalog {
            format_version: 1,
            tool: String::new(),
            created: String::new(),
            source_registry: "old.example:5000".into(),
            artifacts,
            blobs: vec![],
            delta: None,
        }
    }

    fn placement(prefix: Option<&str>, maps: &[&str]) -> Result<Placement> {
        Placement::parse(prefix, &maps.iter().map(|m| m.to_string()).collect::<Vec<_>>())
    }

    /// (registry, repository, maps, prefix) -> the target repository, or an error containing the text given.
    type Row<'a> = (Option<&'a str>, &'a str, Vec<&'a str>, Option<&'a str>, std::result::Result<&'a str, &'a str>);

    #[test]
    fn where_an_artifact_lands() {
        let hub = Some("docker.io");
        let long = "a".repeat(250);
        let table: Vec<Row> = vec![
            (hub, "library/alpine", vec![], None, Ok("library/alpine")),
            (hub, "library/alpine", vec![], Some("mirror"), Ok("mirror/library/alpine")),
            (hub, "library/alpine", vec![], Some("a/b"), Ok("a/b/library/alpine")),
            (hub, "library/alpine", vec!["library=hub"], None, Ok("hub/alpine")),
            (hub, "library/alpine", vec!["library=hub"], Some("p"), Ok("p/hub/alpine")),
            // Whole components only.
            (hub, "libraryx/a", vec!["library=hub"], None, Ok("libraryx/a")),
            (hub, "library", vec!["library=hub"], None, Ok("hub")),
            // A registry-qualified SRC matches that registry's artifacts only.
            (hub, "library/alpine", vec!["docker.io/library=hub"], None, Ok("hub/alpine")),
            (Some("ghcr.io"), "library/alpine", vec!["docker.io/library=hub"], None, Ok("library/alpine")),
            (None, "library/alpine", vec!["docker.io/library=hub"], None, Ok("library/alpine")),
            (Some("Docker.IO"), "library/alpine", vec!["docker.io/library=hub"], None, Ok("hub/alpine")),
            (hub, "library/alpine", vec!["index.docker.io/library=hub"], None, Ok("hub/alpine")),
            (Some("localhost:5000"), "team/x", vec!["localhost:5000=local"], None, Ok("local/team/x")),
            (Some("localhost"), "team/x", vec!["localhost/team=t"], None, Ok("t/x")),
            // Old bundles: the catalog's one source registry.
            (None, "team/x", vec!["old.example:5000/team=t"], None, Ok("t/x")),
            // The longest match wins; a qualified SRC wins a tie with a plain one.
            (hub, "library/alpine", vec!["library=a", "library/alpine=b"], None, Ok("b")),
            (hub, "library/alpine", vec!["library/alpine=b", "docker.io/library=a"], None, Ok("b")),
            (hub, "library/alpine", vec!["library=a", "docker.io/library=q"], None, Ok("q/alpine")),
            (hub, "library/alpine", vec!["docker.io=m", "library=a"], None, Ok("a/alpine")),
            // An empty DST drops the matched part; a whole path dropped needs a prefix.
            (hub, "library/alpine", vec!["library="], None, Ok("alpine")),
            (hub, "library/alpine", vec!["library/alpine="], Some("p"), Ok("p")),
            (hub, "library/alpine", vec!["library/alpine="], None, Err("empty repository name")),
            (hub, "library/alpine", vec!["docker.io/library="], None, Ok("alpine")),
            // Results are checked.
            (hub, &long, vec![], Some("prefix"), Err("longer than")),
        ];
        for (registry, repository, maps, prefix, want) in table {
            let p = placement(prefix, &maps).unwrap();
            let got = p.targets(&catalog(vec![artifact(registry, repository, "1", b"x")]));
            match (got, want) {
                (Ok(t), Ok(w)) => assert_eq!(t, vec![w.to_string()], "{registry:?} {repository} {maps:?} {prefix:?}"),
                (Err(e), Err(w)) => {
                    let e = e.to_string();
                    assert!(e.contains(w) && e.contains(repository) && !e.contains('\n'), "{e}");
                    if let Some(m) = maps.first() {
                        assert!(e.contains(m), "the error names the map: {e}");
                    }
                }
                (got, want) => panic!("{registry:?} {repository} {maps:?} {prefix:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bad_maps_and_prefixes_are_refused_when_parsed() {
        for (prefix, maps, want) in [
            (None, vec!["library"], "not SRC=DST"),
            (None, vec!["=hub"], "source is empty"),
            (None, vec!["Library=hub"], "lowercase"),
            (None, vec!["library=Hub"], "lowercase"),
            (None, vec!["library=hub/"], "component"),
            (None, vec!["lib//x=hub"], "component"),
            (None, vec!["docker.io/=hub"], "empty repository name"),
            (None, vec!["bad host!.io/x=y"], "HOST[:PORT]"),
            (None, vec!["library=a", "library=b"], "both rewrite \"library\""),
            (None, vec!["docker.io/x=a", "Docker.io/x=b"], "both rewrite"),
            (Some("Prefix"), vec![], "prefix \"Prefix\""),
            (Some(""), vec![], "empty repository name"),
            (Some("a/"), vec![], "prefix"),
        ] {
            let e = placement(prefix, &maps).unwrap_err();
            assert_eq!(e.category(), crate::Category::Usage);
            let e = e.to_string();
            assert!(e.contains(want), "{prefix:?} {maps:?}: {e}");
        }
        // Same path, one plain and one qualified: two different SRCs.
        placement(None, &["library=a", "docker.io/library=b"]).unwrap();
        assert!(placement(None, &[]).unwrap().is_identity());
        assert_eq!(Map::parse("Docker.io/library=hub").unwrap().to_string(), "docker.io/library=hub");
    }

    #[test]
    fn two_artifacts_on_one_tag_at_different_digests_are_refused() {
        let a = artifact(Some("docker.io"), "library/alpine", "3.20", b"a");
        let b = artifact(Some("quay.io"), "org/alpine", "3.20", b"b");
        let p = placement(None, &["library=x", "org=x"]).unwrap();
        let e = p.targets(&catalog(vec![a.clone(), b.clone()])).unwrap_err().to_string();
        assert!(e.contains("x/alpine:3.20") && e.contains("library=x") && e.contains("org=x"), "{e}");
        assert!(e.contains("docker.io/library/alpine:3.20") && e.contains("quay.io/org/alpine:3.20"), "{e}");
        // The same digest twice is one artifact; another tag is another.
        let same = artifact(Some("quay.io"), "org/alpine", "3.20", b"a");
        assert_eq!(p.targets(&catalog(vec![a.clone(), same])).unwrap(), vec!["x/alpine", "x/alpine"]);
        let other = artifact(Some("quay.io"), "org/alpine", "3.21", b"b");
        p.targets(&catalog(vec![a.clone(), other])).unwrap();
        // Without any map, two registries' same path collide too.
        let c = artifact(Some("quay.io"), "library/alpine", "3.20", b"c");
        let e = Placement::default().targets(&catalog(vec![a, c])).unwrap_err().to_string();
        assert!(e.contains("as the bundle names it"), "{e}");
    }
}
