//! The bundle through Azure Blob Storage (Azurite): registry → source account → target account → registry.

mod common;

use common::azurite::{Azurite, DST, SRC};
use common::*;

#[test]
fn export_copy_import_through_two_accounts() {
    let w = Work::new();
    let az = Azurite::start();
    let src_url = az.url(SRC, "transfer/bundle.tar", "racwdl");
    let dst_url = az.url(DST, "transfer/bundle.tar", "racwdl");
    let reg = w.reg("src");
    let mut args = vec!["export", "--output", "json", "--registry", &reg];
    args.extend(["--to", &src_url]);
    args.extend(SAMPLES);
    let e = barge_ok(&args, 0).json();
    let c = barge_ok(&["copy", "--output", "json", "--verify", &src_url, &dst_url], 0).json();
    assert_eq!(c["sha256"], e["catalogDigest"], "{c}");
    assert_eq!(c["verified"], true);
    assert!(c["blocks"]["serverSide"].as_u64().unwrap() >= 1, "Put Block From URL was not used: {c}");
    let i = barge_ok(&["import", "--output", "json", &dst_url, "--registry", &w.reg("dst")], 0).json();
    assert_eq!(i["catalogDigest"], e["catalogDigest"]);
    for (repo, tag) in [("samples/hello-world", "v1"), ("samples/multiarch", "v1"), ("library/tools", "latest")] {
        assert_eq!(
            skopeo_raw(&format!("oci:{}/{repo}:{tag}", w.s("src"))),
            skopeo_raw(&format!("oci:{}/{repo}:{tag}", w.s("dst"))),
            "{repo}:{tag}"
        );
    }
    // Exporting again without --overwrite is refused; the blob stays as it was.
    let r = barge(&["export", "--registry", &reg, "--to", &src_url, "samples/hello-world:v1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--overwrite"), "{}", r.stderr);
    let again = barge_ok(&["copy", "--output", "json", "--overwrite", &src_url, &w.s("store-b/check")], 0).json();
    assert_eq!(again["sha256"], e["catalogDigest"]);
    // No SAS signature appears in any output.
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains("sig="), "{out}");
    }
}
