//! `Reference`: an artifact as ACR names it (`repo`, `repo:tag`, `repo@sha256:…`), checked once when parsed.

use std::fmt;

use crate::Digest;

/// An artifact named by repository plus tag and/or digest.
///
/// `repo` alone means `repo:latest`. `repo:tag@digest` pins the digest and
/// keeps the tag as the name it is imported under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid artifact {shown:?}: {why}")]
pub struct ReferenceError {
    shown: String,
    why: String,
}

const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let err = |why: String| ReferenceError { shown: s.chars().take(300).collect(), why };
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| err(format!("bad digest: {e}")))?)),
            None => (s, None),
        };
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if !name_tag[i..].contains('/') => (&name_tag[..i], Some(name_tag[i + 1..].to_string())),
            _ => (name_tag, None),
        };
        check_repository(name).map_err(err)?;
        if let Some(t) = &tag {
            check_tag(t).map_err(err)?;
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference { repository: name.to_string(), tag, digest })
    }

    pub fn from_parts(
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<Reference, ReferenceError> {
        let mut s = repository.to_string();
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        Reference::parse(&s)
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` when the artifact named the repository alone).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// An artifact named in full, as docker names it: `registry/repository[:tag][@digest]`.
///
/// Docker's normalisation applies: a first path component that holds a `.` or
/// a `:`, or is `localhost`, is the registry; otherwise the registry is
/// `docker.io`, and a one-component name gains `library/` (`alpine` means
/// `docker.io/library/alpine:latest`). `index.docker.io` is `docker.io`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FullReference {
    registry: String,
    reference: Reference,
}

/// Docker Hub, as references name it.
pub const DOCKER_HUB: &str = "docker.io";

impl FullReference {
    pub fn parse(s: &str) -> Result<FullReference, ReferenceError> {
        let err = |why: String| ReferenceError { shown: s.chars().take(300).collect(), why };
        let (registry, rest) = split_registry(s);
        let registry = registry.map(str::to_string).unwrap_or_else(|| DOCKER_HUB.to_string());
        check_registry(&registry).map_err(err)?;
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_string() } else { registry };
        let rest = match registry == DOCKER_HUB && !rest.split(['@', ':']).next().unwrap_or("").contains('/') {
            true => format!("library/{rest}"),
            false => rest.to_string(),
        };
        let reference = Reference::parse(&rest).map_err(|e| err(e.why))?;
        Ok(FullReference { registry, reference })
    }

    pub fn new(registry: &str, reference: Reference) -> Result<FullReference, ReferenceError> {
        check_registry(registry).map_err(|why| ReferenceError { shown: registry.to_string(), why })?;
        Ok(FullReference { registry: registry.to_string(), reference })
    }

    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }
}

impl fmt::Display for FullReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.reference)
    }
}

/// Split `host[:port]/path…` into the registry and the rest by docker's rule;
/// `None` when the name has no registry component (Docker Hub's).
pub fn split_registry(s: &str) -> (Option<&str>, &str) {
    match s.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (Some(first), rest),
        _ => (None, s),
    }
}

/// A registry host as references name it: `name[:port]` or `[ipv6][:port]`.
pub fn check_registry(host: &str) -> Result<(), String> {
    let bad = || format!("registry {host:?} must be HOST or HOST:PORT");
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
            if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
                return Err(bad());
            }
            let port = match after {
                "" => None,
                a => Some(a.strip_prefix(':').ok_or_else(bad)?),
            };
            (None, port)
        }
        None => match host.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        },
    };
    if let Some(n) = name {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if n.is_empty() || n.len() > 253 || !n.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    if let Some(p) = port {
        if !matches!(p.parse::<u32>(), Ok(1..=65535)) || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("registry {host:?}: port {p:?} is not a port number (1 to 65535)"));
        }
    }
    Ok(())
}

/// The distribution grammar for repository names: lowercase components
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, at most 255 bytes.
pub fn check_repository(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty repository name".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("repository name longer than {MAX_NAME} characters"));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository names must be lowercase".into());
    }
    for comp in name.split('/') {
        if !component_ok(comp.as_bytes()) {
            return Err(format!("repository path component {comp:?} must match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*"));
        }
    }
    Ok(())
}

fn component_ok(c: &[u8]) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if c.is_empty() || !alnum(c[0]) || !alnum(c[c.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < c.len() {
        if alnum(c[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or "-+".
        let start = i;
        while i < c.len() && !alnum(c[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// The distribution grammar for tags: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.is_empty() || b.len() > MAX_TAG || !word(b[0]) || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return Err(format!("tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_forms() {
        let r = Reference::parse("samples/hello-world").unwrap();
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.to_string(), "samples/hello-world:latest");
        let r = Reference::parse("samples/hello-world:v1").unwrap();
        assert_eq!((r.repository(), r.tag()), ("samples/hello-world", Some("v1")));
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = Reference::parse(&format!("myrepo@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), d);
        let r = Reference::parse(&format!("a/b:v2@{d}")).unwrap();
        assert_eq!(r.tag(), Some("v2"));
        assert!(r.digest().is_some());
    }

    #[test]
    fn full_references_follow_dockers_normalisation() {
        let d = format!("sha256:{}", "ab".repeat(32));
        for (given, registry, shown) in [
            ("alpine", "docker.io", "docker.io/library/alpine:latest"),
            ("alpine:3.20", "docker.io", "docker.io/library/alpine:3.20"),
            ("docker.io/library/alpine:3.20", "docker.io", "docker.io/library/alpine:3.20"),
            ("index.docker.io/library/alpine", "docker.io", "docker.io/library/alpine:latest"),
            ("docker.io/alpine", "docker.io", "docker.io/library/alpine:latest"),
            ("bitnami/redis:7", "docker.io", "docker.io/bitnami/redis:7"),
            ("ghcr.io/org/app:v1", "ghcr.io", "ghcr.io/org/app:v1"),
            ("127.0.0.1:5000/team/x:1", "127.0.0.1:5000", "127.0.0.1:5000/team/x:1"),
            ("localhost/x", "localhost", "localhost/x:latest"),
            ("[::1]:5000/x:1", "[::1]:5000", "[::1]:5000/x:1"),
        ] {
            let r = FullReference::parse(given).unwrap();
            assert_eq!((r.registry(), r.to_string().as_str()), (registry, shown), "{given}");
        }
        let r = FullReference::parse(&format!("ghcr.io/org/app@{d}")).unwrap();
        assert_eq!((r.reference().repository(), r.reference().tag()), ("org/app", None));
        for bad in ["", "ghcr.io/", "ghcr.io/Org/app", "bad_host.io/x", "h:99999/x", "h:/x", "-h.io/x", "Alpine"] {
            assert!(FullReference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects() {
        for bad in ["", "Samples/x", "a//b", "a/", "-a", "a:", "a:-x", "a@sha256:12", "a b", "a..b", "a/../b"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Reference::parse(&format!("a:{}", "t".repeat(129))).is_err());
        assert!(Reference::parse("a__b-c--d.e/f_g").is_ok());
    }

    #[test]
    fn full_references_agree_with_skopeo() {
        // `skopeo --debug inspect docker://NAME` (skopeo 1.9.3) names what it tries to access.
        let zeros = format!("sha256:{}", "0".repeat(64));
        for (given, skopeo) in [
            ("alpine", "docker.io/library/alpine:latest"),
            ("library/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/alpine", "docker.io/library/alpine:latest"),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("127.0.0.1/x", "127.0.0.1/x:latest"),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
            ("a.b/c", "a.b/c:latest"),
            ("a_b/c", "docker.io/a_b/c:latest"),
            ("a-b/c", "docker.io/a-b/c:latest"),
            ("ab:5000/c", "ab:5000/c:latest"),
            ("ab/c/d", "docker.io/ab/c/d:latest"),
            ("registry-1.docker.io/x", "registry-1.docker.io/x:latest"),
            ("docker.io/a/b/c", "docker.io/a/b/c:latest"),
            ("foo.com:443/bar", "foo.com:443/bar:latest"),
            (&format!("x/y@{zeros}"), &format!("docker.io/x/y@{zeros}")),
        ] {
            assert_eq!(FullReference::parse(given).map(|r| r.to_string()).as_deref(), Ok(skopeo), "{given}");
        }
        // skopeo refuses these too ("repository name must be lowercase").
        for refused in ["Localhost/x", "MyReg/x", "x/Y", "docker.io/Alpine"] {
            assert!(FullReference::parse(refused).is_err(), "{refused}");
        }
    }
}
