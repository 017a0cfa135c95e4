//! `barge-fixtures`: write generated images into an `oci:` directory (tests, benchmarks, the demo).

use std::path::PathBuf;
use std::process::ExitCode;

use barge_fixtures::{samples, tag, write_image, Image, Layer};

const USAGE: &str = "usage:
  barge-fixtures samples ROOT
  barge-fixtures image ROOT REPO:TAG SEED:SIZE...   (one layer per SEED:SIZE; SIZE in bytes, or with K, M, G)";

fn size(s: &str) -> Option<u64> {
    let (n, mul) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>().ok().map(|n| n * mul)
}

fn run(args: &[String]) -> Result<(), String> {
    match args {
        [cmd, root] if cmd == "samples" => samples(&PathBuf::from(root)).map_err(|e| e.to_string()),
        [cmd, root, reference, layers @ ..] if cmd == "image" && !layers.is_empty() => {
            let (repo, t) = reference.rsplit_once(':').ok_or("REPO:TAG needs a tag")?;
            let layers = layers
                .iter()
                .map(|l| {
                    let (seed, sz) = l.split_once(':')?;
                    Some(Layer { seed: seed.parse().ok()?, size: size(sz)? })
                })
                .collect::<Option<Vec<_>>>()
                .ok_or("layers are SEED:SIZE")?;
            let root = PathBuf::from(root);
            let d = write_image(&root, repo, &Image::new(layers)).map_err(|e| e.to_string())?;
            tag(&root, repo, t, &d).map_err(|e| e.to_string())
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
