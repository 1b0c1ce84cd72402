//! The conformance suite on the filesystem coordinator, plus its unreachable-root case.

mod common;

use std::sync::Arc;

use coord::{CoordConfig, Error, Kind};

#[test]
fn owner_process() {
    common::owner_main();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_string_lossy().into_owned();
    let f: common::Factory = Arc::new(move || CoordConfig::new(Kind::Filesystem, &root, "demo"));
    common::run_suite(f, "owner_process").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_unreachable_root_then_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::write(&root, b"a file where the root directory should be").unwrap();
    let cfg = CoordConfig::new(Kind::Filesystem, &root.to_string_lossy(), "demo");
    let c = coord::connect(&cfg).await.unwrap();
    let err = c.create("/codis3/demo/x", b"1").await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { path, .. } if path == "/codis3/demo/x"),
        "{err}"
    );
    assert!(err.to_string().contains("filesystem root"), "{err}");
    std::fs::remove_file(&root).unwrap();
    assert_eq!(c.create("/codis3/demo/x", b"1").await.unwrap(), 1);
    // the node file is where the layout says, with the header and the bytes
    let file = root.join("data/codis3/demo/x/.node");
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.starts_with("#codis-rs-node version=1 owner=-\n1"),
        "{text}"
    );
    // a garbled header is reported as corrupt, naming the path
    std::fs::write(root.join("data/codis3/demo/x/.node"), b"garbage").unwrap();
    let err = c.read("/codis3/demo/x").await.unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if path == "/codis3/demo/x"),
        "{err}"
    );
}
