//! Platforms (`os/arch[/variant]`) and the one rule that selects an index's children by them.
//!
//! Pure. Export walks only the children [`select_children`] keeps, the
//! closure rule derives an artifact's manifests the same way, and import's
//! rewrite of a sparse index filters its `manifests` by it: one rule, so the
//! three cannot disagree.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::oci::Descriptor;

/// The annotation BuildKit puts on an attestation manifest in an index.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// The annotation naming the child an attestation manifest is about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
const ATTESTATION: &str = "attestation-manifest";

/// One platform: `os/architecture[/variant]`, as `--platform` and the catalog write it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform {text:?} is not of the form os/arch[/variant] (such as linux/amd64 or linux/arm/v7)")]
pub struct PlatformError {
    pub text: String,
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        let err = || PlatformError { text: s.to_string() };
        let parts: Vec<&str> = s.split('/').collect();
        let word = |p: &str| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| word(p)) {
            return Err(err());
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platform a descriptor's `platform` object names, if it names os and architecture.
    pub fn of(platform: &Value) -> Option<Platform> {
        let field = |k: &str| platform.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        Some(Platform { os: field("os")?, architecture: field("architecture")?, variant: field("variant") })
    }

    /// Whether a descriptor's `platform` object is this selection: os and
    /// architecture equal; a selection with a variant needs that variant, one
    /// without takes any. A child that names no variant has its architecture's
    /// default, as containerd and skopeo read it (`arm64` is `arm64/v8`, `arm`
    /// is `arm/v7`, `amd64` is `amd64/v1`).
    pub fn matches(&self, platform: &Value) -> bool {
        let Some(p) = Platform::of(platform) else { return false };
        let variant = p.variant.as_deref().or_else(|| default_variant(&p.architecture));
        p.os == self.os
            && p.architecture == self.architecture
            && self.variant.as_deref().is_none_or(|v| Some(v) == variant)
    }
}

/// The variant an architecture has when a platform names none.
fn default_variant(architecture: &str) -> Option<&'static str> {
    match architecture {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        "amd64" => Some("v1"),
        _ => None,
    }
}

/// The digest an attestation manifest is about, when `d` is one.
fn attests(d: &Descriptor) -> Option<&str> {
    let a = d.annotations.as_ref()?;
    (a.get(REFERENCE_TYPE).map(String::as_str) == Some(ATTESTATION))
        .then(|| a.get(REFERENCE_DIGEST).map(String::as_str))
        .flatten()
}

/// The children of an index that travel with a selection: all of them when
/// the selection is empty; otherwise those whose platform matches, those
/// without a platform, and the attestation manifests of kept children. In the
/// index's order.
pub fn select_children<'a>(children: &'a [Descriptor], selected: &[Platform]) -> Vec<&'a Descriptor> {
    if selected.is_empty() {
        return children.iter().collect();
    }
    let kept = |c: &Descriptor| match &c.platform {
        None => true,
        Some(p) => selected.iter().any(|s| s.matches(p)),
    };
    let images: Vec<&Descriptor> = children.iter().filter(|c| attests(c).is_none() && kept(c)).collect();
    children
        .iter()
        .filter(|c| match attests(c) {
            Some(subject) => images.iter().any(|k| k.digest.to_string() == subject),
            None => kept(c),
        })
        .collect()
}

/// When a selection keeps none of an index's platform children (it has some),
/// the platforms the index has, to name in the error; else `None`.
pub fn unmatched(children: &[Descriptor], selected: &[Platform]) -> Option<Vec<String>> {
    let platforms: Vec<(&Descriptor, Platform)> = children
        .iter()
        .filter(|c| attests(c).is_none())
        .filter_map(|c| Some((c, Platform::of(c.platform.as_ref()?)?)))
        .collect();
    if selected.is_empty() || platforms.is_empty() {
        return None;
    }
    let any = platforms.iter().any(|(c, _)| selected.iter().any(|s| c.platform.as_ref().is_some_and(|p| s.matches(p))));
    let mut has: Vec<String> = platforms.iter().map(|(_, p)| p.to_string()).collect();
    has.sort();
    has.dedup();
    (!any).then_some(has)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn parse_and_display() {
        for (text, ok) in [
            ("linux/amd64", Some(("linux", "amd64", None))),
            ("linux/arm/v7", Some(("linux", "arm", Some("v7")))),
            ("windows/amd64", Some(("windows", "amd64", None))),
            ("linux/ppc64le", Some(("linux", "ppc64le", None))),
            ("linux", None),
            ("linux/", None),
            ("/amd64", None),
            ("linux/arm/v7/x", None),
            ("Linux/AMD64", None),
            ("linux/amd 64", None),
            ("", None),
        ] {
            match (text.parse::<Platform>(), ok) {
                (Ok(p), Some((os, arch, variant))) => {
                    assert_eq!((p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()), (os, arch, variant));
                    assert_eq!(p.to_string(), text);
                }
                (Err(e), None) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("{text:?}")) && msg.contains("os/arch[/variant]"), "{msg}");
                }
                (r, want) => panic!("{text:?}: {r:?}, wanted {want:?}"),
            }
        }
    }

    fn child(name: &str, platform: Option<Value>) -> Descriptor {
        let mut d = Descriptor::new(crate::oci::OCI_MANIFEST, Digest::sha256_of(name.as_bytes()), 1);
        d.platform = platform;
        d
    }

    fn attestation(name: &str, of: &str) -> Descriptor {
        let mut d = child(name, Some(json!({"os": "unknown", "architecture": "unknown"})));
        d.annotations = Some(BTreeMap::from([
            (REFERENCE_TYPE.to_string(), ATTESTATION.to_string()),
            (REFERENCE_DIGEST.to_string(), Digest::sha256_of(of.as_bytes()).to_string()),
        ]));
        d
    }

    #[test]
    fn select_keeps_the_matching_the_unplatformed_and_their_attestations() {
        let p = |os: &str, arch: &str, v: Option<&str>| {
            let mut o = json!({"os": os, "architecture": arch});
            if let Some(v) = v {
                o["variant"] = json!(v);
            }
            Some(o)
        };
        let children = vec![
            child("amd", p("linux", "amd64", None)),
            child("arm64", p("linux", "arm64", Some("v8"))),
            child("armv7", p("linux", "arm", Some("v7"))),
            child("armv6", p("linux", "arm", Some("v6"))),
            child("plain", None),
            attestation("att-amd", "amd"),
            attestation("att-armv7", "armv7"),
        ];
        let names = ["amd", "arm64", "armv7", "armv6", "plain", "att-amd", "att-armv7"];
        let sel = |s: &[&str]| s.iter().map(|t| t.parse::<Platform>().unwrap()).collect::<Vec<_>>();
        for (selection, kept) in [
            (vec![], names.to_vec()),
            (vec!["linux/amd64"], vec!["amd", "plain", "att-amd"]),
            (vec!["linux/arm64"], vec!["arm64", "plain"]),
            (vec!["linux/arm64/v8"], vec!["arm64", "plain"]),
            (vec!["linux/arm"], vec!["armv7", "armv6", "plain", "att-armv7"]),
            (vec!["linux/arm/v7"], vec!["armv7", "plain", "att-armv7"]),
            (vec!["linux/arm/v5"], vec!["plain"]),
            (vec!["linux/amd64", "linux/arm/v6"], vec!["amd", "armv6", "plain", "att-amd"]),
            (vec!["unknown/unknown"], vec!["plain"]),
            (vec!["windows/amd64"], vec!["plain"]),
        ] {
            let got: Vec<&str> = select_children(&children, &sel(&selection))
                .into_iter()
                .map(|d| names[children.iter().position(|c| c.digest == d.digest).unwrap()])
                .collect();
            assert_eq!(got, kept, "{selection:?}");
        }
        let has =
            Some(vec!["linux/amd64".into(), "linux/arm/v6".into(), "linux/arm/v7".into(), "linux/arm64/v8".into()]);
        assert_eq!(unmatched(&children, &sel(&["linux/s390x"])), has);
        assert_eq!(unmatched(&children, &sel(&["linux/amd64"])), None);
        assert_eq!(unmatched(&children, &[]), None);
        assert_eq!(unmatched(&[child("plain", None)], &sel(&["linux/s390x"])), None, "no platforms to miss");
    }

    #[test]
    fn a_child_without_a_variant_has_its_architectures_default() {
        let bare = |arch: &str| json!({"os": "linux", "architecture": arch});
        for (selection, platform, kept) in [
            ("linux/arm64/v8", bare("arm64"), true),
            ("linux/arm/v7", bare("arm"), true),
            ("linux/amd64/v1", bare("amd64"), true),
            ("linux/arm/v6", bare("arm"), false),
            ("linux/amd64/v3", bare("amd64"), false),
            ("linux/arm64/v8", json!({"os": "linux", "architecture": "arm64", "variant": "v9"}), false),
            ("linux/s390x/v1", bare("s390x"), false),
        ] {
            let s: Platform = selection.parse().unwrap();
            assert_eq!(s.matches(&platform), kept, "{selection} against {platform}");
        }
    }
}
