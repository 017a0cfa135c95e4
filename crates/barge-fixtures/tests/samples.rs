//! The committed `fixtures/registry` is exactly what the generator writes.

use std::path::Path;

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn committed_fixtures_match_the_generator() {
    let tmp = tempfile::tempdir().unwrap();
    barge_fixtures::samples(tmp.path()).unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/registry");
    let (a, b) = (tree(tmp.path()), tree(&committed));
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>(),
        "regenerate with: cargo run -p barge-fixtures -- samples fixtures/registry"
    );
    assert!(a == b, "fixtures/registry differs from the generator's output; regenerate it");
}
