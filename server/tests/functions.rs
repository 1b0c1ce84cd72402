//! Redis 7 Functions beyond single replies (those are in `differential.rs`): FUNCTION DUMP and
//! RESTORE across codis-server and a real redis-server, libraries kept by RDB files and the AOF,
//! replicas that get them by full sync and by the stream, and FCALL on keys of every core.

use std::time::{Duration, Instant};

use redis::{Connection, Value};
use testkit::{function_libraries as libraries, function_load};

const LIB: &str = "#!lua name=mylib\n\
    redis.register_function('incrby2', function(keys, args) return redis.call('incrby', keys[1], 2 * tonumber(args[1])) end)\n\
    redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}";

const LIB2: &str = "#!lua name=other\nredis.register_function('hello', function() return 'hi' end)";

fn fcall(c: &mut Connection, f: &str, keys: &[&str], args: &[&str]) -> redis::RedisResult<Value> {
    redis::cmd("FCALL")
        .arg(f)
        .arg(keys.len())
        .arg(keys)
        .arg(args)
        .query(c)
}

fn dump(c: &mut Connection) -> Vec<u8> {
    redis::cmd("FUNCTION").arg("DUMP").query(c).unwrap()
}

fn restore(c: &mut Connection, payload: &[u8], policy: Option<&str>) -> redis::RedisResult<()> {
    let mut cmd = redis::cmd("FUNCTION");
    cmd.arg("RESTORE").arg(payload);
    if let Some(p) = policy {
        cmd.arg(p);
    }
    cmd.query(c)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn function_dump_restores_between_redis_and_codis() {
    let Some((rs, _dir)) = testkit::redis_server(&[]) else {
        return;
    };
    let mut r = rs.conn();
    function_load(&mut r, LIB);
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    // Redis's payload into codis-server.
    restore(&mut c, &dump(&mut r), None).unwrap();
    assert_eq!(libraries(&mut c), ["mylib"]);
    assert_eq!(
        fcall(&mut c, "incrby2", &["n"], &["5"]).unwrap(),
        Value::Int(10)
    );
    // APPEND (the default) refuses a library that exists; REPLACE takes it.
    let err = restore(&mut c, &dump(&mut r), None).unwrap_err();
    assert!(
        err.to_string().contains("Library mylib already exists"),
        "{err}"
    );
    restore(&mut c, &dump(&mut r), Some("REPLACE")).unwrap();
    function_load(&mut c, LIB2);
    // codis-server's payload (two libraries) into redis-server, replacing what it has.
    restore(&mut r, &dump(&mut c), Some("FLUSH")).unwrap();
    assert_eq!(libraries(&mut r), ["mylib", "other"]);
    assert_eq!(
        fcall(&mut r, "hello", &[], &[]).unwrap(),
        Value::BulkString(b"hi".to_vec())
    );
    // A damaged payload changes nothing.
    let mut bad = dump(&mut c);
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let err = restore(&mut c, &bad, Some("FLUSH")).unwrap_err();
    assert!(
        err.to_string()
            .contains("payload version or checksum are wrong"),
        "{err}"
    );
    assert_eq!(libraries(&mut c), ["mylib", "other"]);
}

#[test]
fn fcall_runs_on_every_core_after_one_load() {
    let srv = testkit::codis_server(&["--cores", "3"]);
    let mut c = srv.conn();
    function_load(&mut c, LIB);
    // Keys spread over the three cores; every core compiles the library on first use.
    for i in 0..60 {
        let k = format!("key:{i}");
        assert_eq!(
            fcall(&mut c, "incrby2", &[&k], &["1"]).unwrap(),
            Value::Int(2)
        );
        assert_eq!(
            fcall(&mut c, "peek", &[&k], &[]).unwrap(),
            Value::BulkString(b"2".to_vec())
        );
    }
    // INFO memory counts the functions and the Lua states' memory.
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    assert!(info.contains("number_of_functions:2\r\n"), "{info}");
    let lua: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_lua:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory_lua");
    assert!(lua > 0, "{info}");
    // A new version of the library reaches every core.
    load_replace(&mut c, &LIB.replace("2 * tonumber", "3 * tonumber"));
    for i in 0..60 {
        let k = format!("key:{i}");
        assert_eq!(
            fcall(&mut c, "incrby2", &[&k], &["1"]).unwrap(),
            Value::Int(5)
        );
    }
    let _: () = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg("mylib")
        .query(&mut c)
        .unwrap();
    for i in 0..10 {
        let err = fcall(&mut c, "incrby2", &[&format!("key:{i}")], &["1"]).unwrap_err();
        assert!(err.to_string().contains("Function not found"), "{err}");
    }
}

fn load_replace(c: &mut Connection, code: &str) {
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(code)
        .query(c)
        .unwrap();
}

#[test]
fn libraries_survive_rdb_and_aof_restarts() {
    // RDB: SAVE, restart, the library is back; redis-server reads the same file.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    {
        let srv = testkit::codis_server(&["--cores", "2", "--dir", d]);
        let mut c = srv.conn();
        function_load(&mut c, LIB);
        let _: () = redis::cmd("SET").arg("n").arg(1).query(&mut c).unwrap();
        let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    }
    {
        let srv = testkit::codis_server(&["--cores", "2", "--dir", d]);
        let mut c = srv.conn();
        assert_eq!(libraries(&mut c), ["mylib"]);
        assert_eq!(
            fcall(&mut c, "incrby2", &["n"], &["1"]).unwrap(),
            Value::Int(3)
        );
        // DEBUG RELOAD: the file's libraries replace the server's.
        function_load(&mut c, LIB2);
        let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
        assert_eq!(libraries(&mut c), ["mylib", "other"]);
    }
    if testkit::have_redis_server() {
        let rdir = tempfile::tempdir().unwrap();
        std::fs::copy(dir.path().join("dump.rdb"), rdir.path().join("dump.rdb")).unwrap();
        let rd = rdir.path().to_str().unwrap().to_string();
        let (rs, _keep) = testkit::redis_server(&["--dir", &rd]).unwrap();
        let mut r = rs.conn();
        assert_eq!(libraries(&mut r), ["mylib", "other"]);
    }

    // AOF: the FUNCTION commands are replayed; after a rewrite the preamble carries them.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let aof = [
        "--cores",
        "2",
        "--dir",
        d,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ];
    {
        let srv = testkit::codis_server(&aof);
        let mut c = srv.conn();
        function_load(&mut c, LIB);
        function_load(&mut c, LIB2);
        let _: () = redis::cmd("FUNCTION")
            .arg("DELETE")
            .arg("other")
            .query(&mut c)
            .unwrap();
        assert_eq!(
            fcall(&mut c, "incrby2", &["n"], &["1"]).unwrap(),
            Value::Int(2)
        );
    }
    {
        let srv = testkit::codis_server(&aof);
        let mut c = srv.conn();
        assert_eq!(libraries(&mut c), ["mylib"]);
        assert_eq!(
            fcall(&mut c, "incrby2", &["n"], &["1"]).unwrap(),
            Value::Int(4)
        );
        let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
        wait_until("the AOF rewrite", Duration::from_secs(30), || {
            let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
            info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
        });
        function_load(&mut c, LIB2);
    }
    let srv = testkit::codis_server(&aof);
    let mut c = srv.conn();
    assert_eq!(libraries(&mut c), ["mylib", "other"]);
    assert_eq!(
        fcall(&mut c, "incrby2", &["n"], &["1"]).unwrap(),
        Value::Int(6)
    );
}

#[test]
fn replicas_get_libraries_by_full_sync_and_by_the_stream() {
    let master = testkit::codis_server(&["--cores", "2"]);
    let mut m = master.conn();
    function_load(&mut m, LIB);
    let port = master.port.to_string();
    let replica = testkit::codis_server(&["--cores", "2", "--replicaof", "127.0.0.1", &port]);
    let mut r = replica.conn();
    // The full sync's RDB carries the library.
    wait_until("the full sync", Duration::from_secs(30), || {
        libraries(&mut r) == ["mylib"]
    });
    // The stream carries later FUNCTION commands, and FCALL's writes as their effects.
    function_load(&mut m, LIB2);
    assert_eq!(
        fcall(&mut m, "incrby2", &["n"], &["4"]).unwrap(),
        Value::Int(8)
    );
    wait_until("the stream", Duration::from_secs(30), || {
        libraries(&mut r) == ["mylib", "other"]
            && fcall(&mut r, "peek", &["n"], &[]).ok() == Some(Value::BulkString(b"8".to_vec()))
    });
    // A replica runs read-only functions and refuses the others, and FUNCTION LOAD.
    let err = fcall(&mut r, "incrby2", &["n"], &["1"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("Can not run script with write flag on readonly replica"),
        "{err}"
    );
    let err = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query::<()>(&mut r)
        .unwrap_err();
    assert!(err.to_string().contains("read only replica"), "{err}");
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut m).unwrap();
    wait_until(
        "FUNCTION FLUSH on the replica",
        Duration::from_secs(30),
        || libraries(&mut r).is_empty(),
    );
}
