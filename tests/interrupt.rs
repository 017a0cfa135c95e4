//! SIGTERM in the middle of an export: exit 130 and no file left behind, under any name.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn sigterm_mid_export_leaves_nothing() {
    let w = Work::new();
    let layer = barge_fixtures::Layer { seed: 5, size: 256 << 20 };
    let d = barge_fixtures::write_image(&w.path("src"), "big/image", &barge_fixtures::Image::new(vec![layer])).unwrap();
    barge_fixtures::tag(&w.path("src"), "big/image", "v1", &d).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_barge"))
        .args(["export", "--registry", &w.reg("src"), "--to", &w.s("store-a/bundle"), "big/image:v1"])
        .spawn()
        .unwrap();
    // Wait until the temporary bundle exists and is growing.
    let started = Instant::now();
    loop {
        let tmp = std::fs::read_dir(w.path("store-a"))
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.metadata().map(|m| m.len() > 1 << 20).unwrap_or(false));
        if tmp.is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the export never started writing");
        assert!(child.try_wait().unwrap().is_none(), "the export finished before it could be interrupted");
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(snapshot(&w.path("store-a")).is_empty(), "an interrupted export left a file");
}
