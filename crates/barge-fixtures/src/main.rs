//! `barge-fixtures`: write generated images into an `oci:` directory (tests, benchmarks, the demo).

use std::path::PathBuf;
use std::process::ExitCode;

use barge_fixtures::{samples, tag, write_image, write_index, Image, Layer};

const USAGE: &str = "usage:
  barge-fixtures samples ROOT
  barge-fixtures image ROOT REPO:TAG SEED:SIZE...   (one layer per SEED:SIZE; SIZE in bytes, or with K, M, G)
  barge-fixtures index ROOT REPO:TAG OS/ARCH=SEED:SIZE[,SEED:SIZE]...   (one platform per argument)";

fn size(s: &str) -> Option<u64> {
    let (n, mul) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>().ok().map(|n| n * mul)
}

fn layers<'a>(specs: impl IntoIterator<Item = &'a str>) -> Result<Vec<Layer>, String> {
    specs
        .into_iter()
        .map(|l| {
            let (seed, sz) = l.split_once(':')?;
            Some(Layer { seed: seed.parse().ok()?, size: size(sz)? })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| "layers are SEED:SIZE".into())
}

/// `OS/ARCH=SEED:SIZE,SEED:SIZE`: one platform's image.
fn platform(spec: &str) -> Result<Image, String> {
    let (p, ls) = spec.split_once('=').ok_or("a platform is OS/ARCH=SEED:SIZE[,SEED:SIZE]...")?;
    let (os, arch) = p
        .split_once('/')
        .filter(|(o, a)| !o.is_empty() && !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| format!("platform {p:?} is not OS/ARCH (no variant)"))?;
    let mut image = Image::new(layers(ls.split(','))?);
    image.os = os.into();
    image.arch = arch.into();
    Ok(image)
}

fn run(args: &[String]) -> Result<(), String> {
    match args {
        [cmd, root] if cmd == "samples" => samples(&PathBuf::from(root)).map_err(|e| e.to_string()),
        [cmd, root, reference, specs @ ..] if (cmd == "image" || cmd == "index") && !specs.is_empty() => {
            let (repo, t) = reference.rsplit_once(':').ok_or("REPO:TAG needs a tag")?;
            let root = PathBuf::from(root);
            let d = if cmd == "image" {
                write_image(&root, repo, &Image::new(layers(specs.iter().map(String::as_str))?))
            } else {
                let images = specs.iter().map(|s| platform(s)).collect::<Result<Vec<_>, _>>()?;
                write_index(&root, repo, &images)
            };
            tag(&root, repo, t, &d.map_err(|e| e.to_string())?).map_err(|e| e.to_string())
        }
        _ => Err(USAGE.into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("barge-fixtures: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_argument_is_one_image() {
        let i = platform("linux/arm64=7:4K,8:1M").unwrap();
        assert_eq!((i.os.as_str(), i.arch.as_str()), ("linux", "arm64"));
        assert_eq!(i.layers.iter().map(|l| (l.seed, l.size)).collect::<Vec<_>>(), [(7, 4096), (8, 1 << 20)]);
        for bad in ["linux/arm/v7=1:4K", "linux=1:4K", "linux/arm64", "linux/arm64=1", "/amd64=1:4K"] {
            assert!(platform(bad).is_err(), "{bad}");
        }
    }
}
