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

/// Threads of this process whose name is `name` (`/proc/self/task/*/comm`).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim_end() == name)
                })
                .count()
        })
        .unwrap_or(0)
}

/// Reading a directory of 1,024 nodes (the slots) takes one blocking thread, not one per child:
/// the default `read_children` read 64 at a time, which kept ~64 tokio blocking threads alive in
/// every proxy and dashboard (each with its own allocator heap: their RSS grew for minutes).
#[test]
fn read_children_uses_one_blocking_thread() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_string_lossy().into_owned();
    let cfg = CoordConfig::new(Kind::Filesystem, &root, "demo");
    let base = "/codis3/demo/slots";
    // Fill the directory on another runtime: 1,024 back-to-back creates may each find the
    // previous blocking thread not yet idle again and start another one (a race in any
    // spawn_blocking pool), which says nothing about read_children.
    let fill = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("fs-rc-fill")
        .build()
        .unwrap();
    fill.block_on(async {
        let c = coord::connect(&cfg).await.unwrap();
        for i in 0..1024 {
            c.create(&format!("{base}/slot-{i:04}"), format!("{i}").as_bytes())
                .await
                .unwrap();
        }
    });
    drop(fill);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("fs-rc-test")
        .build()
        .unwrap();
    rt.block_on(async {
        let c = coord::connect(&cfg).await.unwrap();
        let kids = c.read_children(base).await.unwrap();
        assert_eq!(kids.len(), 1024);
        assert_eq!(kids[7].0, "slot-0007");
        assert_eq!(kids[7].1.data, b"7");
        // Idle blocking threads live on for 10 s: every one ever started is still there. One
        // read of 1,024 children used to start ~64 of them; now connect and the read use at most
        // a couple (the same not-yet-idle race may add one).
        let n = threads_named("fs-rc-test");
        assert!(n <= 4, "{n} blocking threads for one directory read");
    });
}

/// Holds the coordinator's write lock from outside (as a process stopped inside a write would).
fn hold_write_lock(root: &std::path::Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("data.lck"))
        .unwrap();
    // SAFETY: flock on a descriptor this function owns.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
}

/// A writer waits for a write lock held elsewhere, then goes on when it is released; one held
/// for good (a paused holder) fails the write with a clear error after 30 s instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_lock_held_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let c = coord::connect(&CoordConfig::new(
        Kind::Filesystem,
        &root.to_string_lossy(),
        "demo",
    ))
    .await
    .unwrap();
    assert_eq!(c.create("/codis3/demo/a", b"1").await.unwrap(), 1);

    let held = hold_write_lock(&root);
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(held);
    });
    assert_eq!(c.update("/codis3/demo/a", b"2", None).await.unwrap(), 2);
    release.join().unwrap();

    let _held = hold_write_lock(&root);
    let err = c.update("/codis3/demo/a", b"3", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable { path, .. } if path == "/codis3/demo/a"),
        "{err}"
    );
    assert!(err.to_string().contains("held the write lock"), "{err}");
    assert_eq!(c.read("/codis3/demo/a").await.unwrap().unwrap().data, b"2");
}

/// A watch learns of a write through inotify, not through its poll: with the poll set to an
/// hour, a write by another coordinator on the same root still reaches the watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_watch_wakes_on_inotify_without_polling() {
    use coord::coordinator::{Coordinator, WatchEvent, WatchKind};
    let dir = tempfile::tempdir().unwrap();
    let watcher = coord::fs::FsCoordinator::open(dir.path())
        .unwrap()
        .with_poll_interval(std::time::Duration::from_secs(3600));
    let writer = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    writer.create("/codis3/demo/slots", b"").await.unwrap();
    let mut w = watcher
        .watch("/codis3/demo/slots", WatchKind::Tree)
        .await
        .unwrap();
    for round in 0..3u32 {
        let path = format!("/codis3/demo/slots/slot-000{round}");
        writer.update(&path, b"x", None).await.unwrap();
        let ev = tokio::time::timeout(std::time::Duration::from_secs(30), w.next())
            .await
            .unwrap_or_else(|_| panic!("round {round}: no event within 30 s (poll is 1 h)"));
        match ev {
            Some(WatchEvent::Changed { path: p }) => assert_eq!(p, path),
            other => panic!("round {round}: {other:?}"),
        }
    }
}

/// A batch write of N nodes costs N file fsyncs and one fsync per directory renamed into, and a
/// single write one of each: counted, so every reported write is durable (data, then rename).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_batch_write_fsync_counts() {
    use coord::coordinator::Coordinator;
    let dir = tempfile::tempdir().unwrap();
    let c = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    c.create("/codis3/demo/slots", b"").await.unwrap();
    let before = c.syncs();
    let items: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| (format!("/codis3/demo/slots/slot-{i:04}"), b"v1".to_vec()))
        .collect();
    c.update_many(&items).await.unwrap();
    let after = c.syncs();
    assert_eq!(after.files - before.files, 16, "{after:?}");
    assert_eq!(after.dirs - before.dirs, 16, "{after:?}");
    // Rewriting the same nodes: the same again, no more.
    c.update_many(&items).await.unwrap();
    let again = c.syncs();
    assert_eq!(again.files - after.files, 16, "{again:?}");
    assert_eq!(again.dirs - after.dirs, 16, "{again:?}");
    // One node: one file fsync, one directory fsync.
    c.update("/codis3/demo/slots/slot-0000", b"v2", None)
        .await
        .unwrap();
    let one = c.syncs();
    assert_eq!((one.files - again.files, one.dirs - again.dirs), (1, 1));
    assert_eq!(
        c.read("/codis3/demo/slots/slot-0000")
            .await
            .unwrap()
            .unwrap()
            .data,
        b"v2"
    );
    // A batch with the topology version bumped in it: one more node in the same round.
    let counter = "/codis3/demo/version";
    let v1 = c.update_many_bump(&items, counter).await.unwrap();
    let v2 = c.update_many_bump(&items, counter).await.unwrap();
    assert_eq!((v1, v2), (Some(1), Some(2)));
    let bumped = c.syncs();
    assert_eq!(bumped.files - one.files, 2 * 17, "{bumped:?}");
    assert_eq!(bumped.dirs - one.dirs, 2 * 17, "{bumped:?}");
    assert_eq!(c.read(counter).await.unwrap().unwrap().data, b"2");
}

/// A tree watch over many nodes re-reads only what was written (from the change log), not
/// the whole tree, at each write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_tree_watch_reads_only_written_nodes() {
    use coord::coordinator::{Coordinator, WatchEvent, WatchKind};
    let dir = tempfile::tempdir().unwrap();
    let writer = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    let items: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("/codis3/demo/slots/slot-{i:04}"), b"0".to_vec()))
        .collect();
    writer.update_many(&items).await.unwrap();
    let watcher = coord::fs::FsCoordinator::open(dir.path())
        .unwrap()
        .with_poll_interval(std::time::Duration::from_secs(3600));
    let mut w = watcher
        .watch("/codis3/demo", WatchKind::Tree)
        .await
        .unwrap();
    let start = watcher.syncs().node_reads;
    assert!(
        start >= 300,
        "the first signature reads every node: {start}"
    );
    for round in 0..5u32 {
        let before = watcher.syncs().node_reads;
        let path = format!("/codis3/demo/slots/slot-{:04}", round * 7);
        writer.update(&path, b"1", None).await.unwrap();
        let ev = tokio::time::timeout(std::time::Duration::from_secs(30), w.next())
            .await
            .unwrap_or_else(|_| panic!("round {round}: no event within 30 s"));
        assert_eq!(ev, Some(WatchEvent::Changed { path: path.clone() }));
        let reads = watcher.syncs().node_reads - before;
        assert!(
            reads < 10,
            "round {round}: {reads} node reads for one write"
        );
    }
    // A new node deep below the watch root is seen too (with the parent it created).
    writer
        .create("/codis3/demo/ack/proxy-1", b"a")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(std::time::Duration::from_secs(30), w.next()).await {
            Ok(Some(WatchEvent::Changed { path })) => seen.push(path),
            other => panic!("{other:?} after {seen:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["/codis3/demo/ack", "/codis3/demo/ack/proxy-1"]);
}
