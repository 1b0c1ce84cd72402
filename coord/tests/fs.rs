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
        text.starts_with("#codis-rs-node version=1 owner=- len=1 crc=83dcefb7\n1"),
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

/// A write costs one journal sync whatever the number of nodes it changes, and no fsync of the
/// node files or their directories (those come with checkpoints and recoveries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_write_costs_one_journal_sync() {
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
    assert_eq!(after.journal - before.journal, 1, "{after:?}");
    assert_eq!((after.files, after.dirs), (before.files, before.dirs));
    c.update("/codis3/demo/slots/slot-0000", b"v2", None)
        .await
        .unwrap();
    let one = c.syncs();
    assert_eq!(one.journal - after.journal, 1, "{one:?}");
    assert_eq!(data_of(&c, "/codis3/demo/slots/slot-0000").await, b"v2");
    // A batch with the topology version bumped in it: still one sync.
    let counter = "/codis3/demo/version";
    let v1 = c.update_many_bump(&items, counter).await.unwrap();
    let v2 = c.update_many_bump(&items, counter).await.unwrap();
    assert_eq!((v1, v2), (Some(1), Some(2)));
    let bumped = c.syncs();
    assert_eq!(bumped.journal - one.journal, 2, "{bumped:?}");
    assert_eq!((bumped.files, bumped.dirs), (before.files, before.dirs));
    assert_eq!(c.read(counter).await.unwrap().unwrap().data, b"2");
}

/// Writing and reading hundreds of nodes offers the CPU to other threads every few dozen files
/// (a sched_yield), so that a topology read or a migration's pending actions do not hold a CPU
/// that a proxy or a load generator shares for milliseconds on end.
#[tokio::test]
async fn filesystem_many_nodes_yield_the_cpu_now_and_then() {
    use coord::coordinator::Coordinator;
    let dir = tempfile::tempdir().unwrap();
    let c = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    c.create("/codis3/demo/slots", b"").await.unwrap();
    let start = c.syncs().yields;
    let items: Vec<(String, Vec<u8>)> = (0..320)
        .map(|i| (format!("/codis3/demo/slots/slot-{i:04}"), b"v1".to_vec()))
        .collect();
    c.update_many(&items).await.unwrap();
    let written = c.syncs().yields;
    // 320 node files written: a yield every 32 of them (reads of the old versions add more).
    assert!(
        written - start >= 9,
        "{} yields for 320 writes",
        written - start
    );
    // A second coordinator knows nothing yet: it reads every child's file.
    let fresh = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    let children = fresh.read_children("/codis3/demo/slots").await.unwrap();
    assert_eq!(children.len(), 320);
    let read = fresh.syncs();
    assert!(read.node_reads >= 320, "{read:?}");
    assert!(read.yields >= 9, "{read:?}");
}

/// The data of the node at `path`, which must exist.
async fn data_of(c: &coord::fs::FsCoordinator, path: &str) -> Vec<u8> {
    use coord::coordinator::Coordinator;
    c.read(path)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{path} is missing"))
        .data
}

fn node_file(root: &std::path::Path, path: &str) -> std::path::PathBuf {
    let mut p = root.join("data");
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        p.push(comp);
    }
    p.join(".node")
}

/// Makes the journal look like one written in an earlier boot (what a reboot leaves behind).
fn pretend_reboot(root: &std::path::Path) {
    let j = root.join("journal");
    let bytes = std::fs::read(&j).unwrap();
    let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
    let header = std::str::from_utf8(&bytes[..nl]).unwrap();
    assert!(header.starts_with("#codis-rs-journal boot="), "{header}");
    let mut out = b"#codis-rs-journal boot=an-earlier-boot".to_vec();
    out.extend_from_slice(&bytes[nl..]);
    std::fs::write(&j, out).unwrap();
}

/// The machine stopped before the kernel wrote the node files back: after the reboot the next
/// coordinator opened on the root finds the nodes as the journal says they were written (torn,
/// missing, stale and deleted-but-back node files are all repaired; a torn journal tail, an
/// append that never returned, is ignored), and starts a journal of its own boot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_journal_replays_after_a_reboot() {
    use coord::coordinator::Coordinator;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let c = coord::fs::FsCoordinator::open(root).unwrap();
        let items: Vec<(String, Vec<u8>)> = (0..8)
            .map(|i| {
                (
                    format!("/codis3/demo/slots/slot-{i:04}"),
                    format!("s{i}").into_bytes(),
                )
            })
            .collect();
        c.update_many(&items).await.unwrap();
        c.update("/codis3/demo/slots/slot-0001", b"s1-again", None)
            .await
            .unwrap();
        c.create("/codis3/demo/gone", b"x").await.unwrap();
        c.delete("/codis3/demo/gone", None).await.unwrap();
    }
    let journal = root.join("journal");
    // What the lost page cache leaves: a torn node, a missing one, a stale one, a deleted one
    // back, and half a record at the journal's end.
    std::fs::write(node_file(root, "/codis3/demo/slots/slot-0000"), b"").unwrap();
    std::fs::remove_file(node_file(root, "/codis3/demo/slots/slot-0002")).unwrap();
    std::fs::write(
        node_file(root, "/codis3/demo/slots/slot-0001"),
        b"#codis-rs-node version=1 owner=-\ns1",
    )
    .unwrap();
    std::fs::create_dir_all(node_file(root, "/codis3/demo/gone").parent().unwrap()).unwrap();
    std::fs::write(
        node_file(root, "/codis3/demo/gone"),
        b"#codis-rs-node version=1 owner=-\nx",
    )
    .unwrap();
    let mut torn = std::fs::read(&journal).unwrap();
    torn.extend_from_slice(b"J\x40\x00\x00\x00\x01\x02");
    std::fs::write(&journal, &torn).unwrap();
    pretend_reboot(root);

    let c = coord::fs::FsCoordinator::open(root).unwrap();
    for i in 0..8 {
        let want = if i == 1 {
            "s1-again".to_string()
        } else {
            format!("s{i}")
        };
        let node = c
            .read(&format!("/codis3/demo/slots/slot-{i:04}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("slot {i} lost"));
        assert_eq!(node.data, want.as_bytes(), "slot {i}");
        assert_eq!(node.version, if i == 1 { 2 } else { 1 }, "slot {i}");
    }
    assert!(c.read("/codis3/demo/gone").await.unwrap().is_none());
    assert!(c.syncs().files >= 8, "{:?}", c.syncs());
    // A new journal for this boot, empty.
    let now = std::fs::read_to_string(&journal).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(now, format!("#codis-rs-journal boot={}\n", boot.trim()));
    // Writes go on from the replayed versions.
    assert_eq!(
        c.update("/codis3/demo/slots/slot-0001", b"s1-third", Some(2))
            .await
            .unwrap(),
        3
    );
}

/// Past its size limit the journal is checkpointed: the nodes it names are fsynced and it
/// starts again, so it stays small and a replay stays short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_journal_checkpoints_past_its_limit() {
    use coord::coordinator::Coordinator;
    let dir = tempfile::tempdir().unwrap();
    let c = coord::fs::FsCoordinator::open(dir.path())
        .unwrap()
        .with_journal_limit(8 << 10);
    let value = vec![b'v'; 1000];
    for round in 0..40u64 {
        let items: Vec<(String, Vec<u8>)> = (0..3)
            .map(|i| (format!("/codis3/demo/slots/slot-{i:04}"), value.clone()))
            .collect();
        c.update_many(&items).await.unwrap();
        let size = std::fs::metadata(dir.path().join("journal")).unwrap().len();
        assert!(
            size <= (8 << 10) + 4096,
            "round {round}: journal of {size} bytes"
        );
        let node = c
            .read("/codis3/demo/slots/slot-0002")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(node.version, round + 1);
    }
    let s = c.syncs();
    assert_eq!(s.journal, 40, "{s:?}"); // one per batch (the first one creates the parents too)
    assert!(s.files >= 3 && s.dirs >= 3, "no checkpoint: {s:?}");
    // What a checkpoint left is still what a reboot finds.
    pretend_reboot(dir.path());
    drop(c);
    let c = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    assert_eq!(data_of(&c, "/codis3/demo/slots/slot-0000").await, value);
}

/// A coordinator on `root` that wrote 300 slot nodes under `/codis3/demo`.
async fn with_300_slots(root: &std::path::Path) -> coord::fs::FsCoordinator {
    use coord::coordinator::Coordinator;
    let writer = coord::fs::FsCoordinator::open(root).unwrap();
    let items: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("/codis3/demo/slots/slot-{i:04}"), b"0".to_vec()))
        .collect();
    writer.update_many(&items).await.unwrap();
    writer
}

/// A writer of 300 slot nodes under `/codis3/demo`, and another coordinator on `root` (polling
/// only hourly: inotify must wake it) with a tree watch there.
async fn watched_300_slots(
    root: &std::path::Path,
) -> (
    coord::fs::FsCoordinator,
    coord::fs::FsCoordinator,
    coord::coordinator::Watch,
) {
    let writer = with_300_slots(root).await;
    let watcher = coord::fs::FsCoordinator::open(root)
        .unwrap()
        .with_poll_interval(std::time::Duration::from_secs(3600));
    let w = tree_watch(&watcher).await;
    (writer, watcher, w)
}

/// A tree watch on `/codis3/demo`, whose first signature read every node.
async fn tree_watch(watcher: &coord::fs::FsCoordinator) -> coord::coordinator::Watch {
    use coord::coordinator::{Coordinator, WatchKind};
    let w = watcher
        .watch("/codis3/demo", WatchKind::Tree)
        .await
        .unwrap();
    let reads = watcher.syncs().node_reads;
    assert!(
        reads >= 300,
        "the first signature reads every node: {reads}"
    );
    w
}

/// A tree watch over many nodes re-reads only what was written (from the change log), not
/// the whole tree, at each write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_tree_watch_reads_only_written_nodes() {
    use coord::coordinator::{Coordinator, WatchEvent};
    let dir = tempfile::tempdir().unwrap();
    let (writer, watcher, mut w) = watched_300_slots(dir.path()).await;
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

/// A tree watch that learns of a big write (a migration's 300 pending slots) catches up with
/// the journal once for the batch and answers every written node from it: not one journal
/// `stat` per node, which cost a watching proxy milliseconds of CPU on its serving core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_tree_watch_catches_up_once_per_batch() {
    use coord::coordinator::{Coordinator, WatchEvent};
    let dir = tempfile::tempdir().unwrap();
    let (writer, watcher, mut w) = watched_300_slots(dir.path()).await;
    let before = watcher.syncs();
    let items: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("/codis3/demo/slots/slot-{i:04}"),
                b"pending".to_vec(),
            )
        })
        .collect();
    writer.update_many(&items).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 300 {
        match tokio::time::timeout(std::time::Duration::from_secs(30), w.next()).await {
            Ok(Some(WatchEvent::Changed { path })) => {
                seen.insert(path);
            }
            other => panic!("{other:?} after {} events", seen.len()),
        }
    }
    let after = watcher.syncs();
    let catch_ups = after.catch_ups - before.catch_ups;
    // One per look at the log (inotify may split the write into a few looks), not one per node.
    assert!(
        catch_ups <= 10,
        "{catch_ups} catch-ups for one 300-node write"
    );
    // And the nodes came from the journal, not from their files.
    let reads = after.node_reads - before.node_reads;
    assert!(reads < 10, "{reads} node files read for one 300-node write");
}

/// Node files are rewritten in place: a reader in another coordinator (another process in
/// production) that reads while they are rewritten, shorter and longer, only ever sees a whole
/// value that was written, never a mix or an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_readers_never_see_a_half_rewritten_node() {
    use coord::coordinator::Coordinator;
    let dir = tempfile::tempdir().unwrap();
    let writer = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    let reader = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    let path = "/codis3/demo/slots/slot-0007";
    let value = |i: usize| {
        let n = [10, 3000, 700, 9000, 1][i % 5];
        vec![b'a' + (i % 26) as u8; n]
    };
    writer.update(path, &value(0), None).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let node = reader.read(path).await.unwrap().unwrap();
                let i = (node.version - 1) as usize;
                assert_eq!(node.data, value(i), "version {}", node.version);
                seen += 1;
            }
            seen
        })
    };
    for i in 1..300 {
        writer.update(path, &value(i), None).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(seen.await.unwrap() > 0);
}

/// A quiet tree watch does not re-read its whole subtree every second: once a second it
/// re-checks only its ephemeral nodes, which still lets it see an ephemeral vanish when its
/// owner goes away without writing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_quiet_tree_watch_rechecks_only_ephemerals() {
    use coord::coordinator::{Coordinator, WatchEvent};
    let dir = tempfile::tempdir().unwrap();
    let _writer = with_300_slots(dir.path()).await;
    let owner = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    owner
        .create_ephemeral("/codis3/demo/proxy/proxy-1", b"p")
        .await
        .unwrap();
    let watcher = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    let mut w = tree_watch(&watcher).await;
    let start = watcher.syncs().node_reads;
    // Three quiet seconds: three looks, each re-reading the ephemeral and its parents only
    // (a full rescan would read the 300 slots each time).
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let quiet = watcher.syncs().node_reads - start;
    assert!(quiet < 60, "{quiet} node reads in 3.5 quiet seconds");
    // The owner goes away: its ephemeral vanishes with no write, and the watch says so.
    owner.close().await;
    drop(owner);
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), w.next())
        .await
        .expect("the vanished ephemeral is reported within 10 s");
    assert_eq!(
        ev,
        Some(WatchEvent::Changed {
            path: "/codis3/demo/proxy/proxy-1".into()
        })
    );
    assert!(watcher
        .read("/codis3/demo/proxy/proxy-1")
        .await
        .unwrap()
        .is_none());
}

/// A coordinator does not read back the nodes it wrote (it knows them from its own journal
/// record), learns other processes' writes from the journal, and keeps every version right
/// across both and across journal checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_known_nodes_follow_the_journal() {
    use coord::coordinator::Coordinator;
    let dir = tempfile::tempdir().unwrap();
    // A small journal: a few checkpoints (a new journal file, everything unknown again)
    // happen along the way.
    let a = coord::fs::FsCoordinator::open(dir.path())
        .unwrap()
        .with_journal_limit(24 << 10);
    let b = coord::fs::FsCoordinator::open(dir.path()).unwrap();
    let paths: Vec<String> = (0..16)
        .map(|i| format!("/codis3/demo/slots/slot-{i:04}"))
        .collect();
    let items = |tag: &str| -> Vec<(String, Vec<u8>)> {
        paths
            .iter()
            .map(|p| (p.clone(), format!("{tag}:{p}").into_bytes()))
            .collect()
    };
    a.update_many(&items("v1")).await.unwrap();
    let mut expected: Vec<u64> = vec![1; 16];
    let mut own_rounds_without_reads = 0;
    for round in 2..40u64 {
        let before = a.syncs().node_reads;
        a.update_many(&items(&format!("v{round}"))).await.unwrap();
        let nodes = a.read_many(&paths).await.unwrap();
        if a.syncs().node_reads == before {
            own_rounds_without_reads += 1;
        }
        for (i, n) in nodes.iter().enumerate() {
            expected[i] += 1;
            let n = n.as_ref().unwrap();
            assert_eq!(n.version, expected[i], "round {round}, {}", paths[i]);
            assert_eq!(n.data, format!("v{round}:{}", paths[i]).into_bytes());
        }
        // Another process writes one of them: both see it, at the next version.
        let k = (round as usize * 5) % 16;
        let v = b
            .update(&paths[k], format!("b{round}").as_bytes(), None)
            .await
            .unwrap();
        expected[k] += 1;
        assert_eq!(v, expected[k]);
        let seen = a.read(&paths[k]).await.unwrap().unwrap();
        assert_eq!(
            (seen.version, seen.data),
            (v, format!("b{round}").into_bytes())
        );
        // b knows the slots only from what it read: its reads agree with a's writes too.
        let from_b = b.read_many(&paths).await.unwrap();
        for (i, n) in from_b.iter().enumerate() {
            assert_eq!(n.as_ref().unwrap().version, expected[i], "b, {}", paths[i]);
        }
        // And with its files: a third coordinator, which knows nothing, reads the same.
        let fresh = coord::fs::FsCoordinator::open(dir.path()).unwrap();
        let from_files = fresh.read_many(&paths).await.unwrap();
        assert_eq!(from_files, a.read_many(&paths).await.unwrap());
    }
    assert!(
        own_rounds_without_reads >= 30,
        "only {own_rounds_without_reads} of 38 rounds wrote and read back without a node read"
    );
    assert!(a.syncs().files > 0, "the journal was never checkpointed");
    // A delete is known too.
    a.delete(&paths[3], None).await.unwrap();
    assert_eq!(b.read(&paths[3]).await.unwrap(), None);
    a.update(&paths[3], b"again", None).await.unwrap();
    assert_eq!(b.read(&paths[3]).await.unwrap().unwrap().version, 1);
}
