//! String commands through a real client (the `redis` crate) on a two-core server: a pipeline of
//! every string command, big values, keys on both cores.

mod rawwire;

#[test]
fn every_string_command_in_one_pipeline() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    let (a, b) = rawwire::keys_on_two_cores("s");
    let mut p = redis::pipe();
    p.cmd("SET")
        .arg(&a)
        .arg("10")
        .cmd("GET")
        .arg(&a)
        .cmd("SET")
        .arg(&a)
        .arg("11")
        .arg("GET")
        .cmd("SETNX")
        .arg(&b)
        .arg("x")
        .cmd("SETEX")
        .arg("se")
        .arg(100)
        .arg("v")
        .cmd("PSETEX")
        .arg("pse")
        .arg(100000)
        .arg("v")
        .cmd("MSET")
        .arg(&a)
        .arg("1")
        .arg(&b)
        .arg("2")
        .cmd("MGET")
        .arg(&a)
        .arg(&b)
        .arg("nokey")
        .cmd("MSETNX")
        .arg(&a)
        .arg("9")
        .arg("fresh")
        .arg("9")
        .cmd("GETSET")
        .arg(&a)
        .arg("5")
        .cmd("GETDEL")
        .arg(&b)
        .cmd("GETEX")
        .arg(&a)
        .arg("PERSIST")
        .cmd("APPEND")
        .arg(&a)
        .arg("00")
        .cmd("STRLEN")
        .arg(&a)
        .cmd("GETRANGE")
        .arg(&a)
        .arg(0)
        .arg(1)
        .cmd("SETRANGE")
        .arg(&a)
        .arg(1)
        .arg("1")
        .cmd("INCR")
        .arg(&a)
        .cmd("DECR")
        .arg(&a)
        .cmd("INCRBY")
        .arg(&a)
        .arg(100)
        .cmd("DECRBY")
        .arg(&a)
        .arg(10)
        .cmd("INCRBYFLOAT")
        .arg(&a)
        .arg("0.5")
        .cmd("SETBIT")
        .arg("bits")
        .arg(7)
        .arg(1)
        .cmd("GETBIT")
        .arg("bits")
        .arg(7)
        .cmd("BITCOUNT")
        .arg("bits")
        .cmd("BITPOS")
        .arg("bits")
        .arg(1);
    let got: Vec<redis::Value> = p.query(&mut c).unwrap();
    use redis::Value::*;
    let s = |x: &str| BulkString(x.as_bytes().to_vec());
    let want = vec![
        Okay,
        s("10"),
        s("10"),
        Int(1),
        Okay,
        Okay,
        Okay,
        Array(vec![s("1"), s("2"), Nil]),
        Int(0),
        s("1"),
        s("2"),
        s("5"),
        Int(3),
        Int(3),
        s("50"),
        Int(3),
        Int(511),
        Int(510),
        Int(610),
        Int(600),
        s("600.5"),
        Int(0),
        Int(1),
        Int(1),
        Int(7),
    ];
    assert_eq!(got, want);
}

#[test]
fn big_values_and_wide_multi_key_commands() {
    let srv = testkit::codis_server(&["--cores", "2"]);
    let mut c = srv.conn();
    let big: Vec<u8> = (0..(4 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut c)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
    assert_eq!(back, big);
    let n: usize = redis::cmd("APPEND")
        .arg("big")
        .arg(&big[..1000])
        .query(&mut c)
        .unwrap();
    assert_eq!(n, big.len() + 1000);
    let n: usize = redis::cmd("SETRANGE")
        .arg("sparse")
        .arg(1 << 20)
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, (1 << 20) + 1);
    // 500 keys over both cores in one MSET / MGET / DEL.
    let mut mset = redis::cmd("MSET");
    let mut mget = redis::cmd("MGET");
    let mut del = redis::cmd("DEL");
    for i in 0..500 {
        mset.arg(format!("w{i}")).arg(i);
        mget.arg(format!("w{i}"));
        del.arg(format!("w{i}"));
    }
    let _: () = mset.query(&mut c).unwrap();
    let v: Vec<u32> = mget.query(&mut c).unwrap();
    assert_eq!(v, (0..500).collect::<Vec<u32>>());
    let n: usize = del.query(&mut c).unwrap();
    assert_eq!(n, 500);
}

/// Long strings edited in place (APPEND, SETRANGE, SETBIT, BITFIELD on 512 bytes or more): the
/// bytes match a model after thousands of edits, the TTL stays, WATCH sees the edits, and the
/// edited value survives DUMP/RESTORE, DEBUG RELOAD (RDB) and a replica's full sync and stream.
#[test]
fn long_strings_edited_in_place() {
    // Own directories: DEBUG RELOAD writes dump.rdb there (a test server started without --dir
    // loads the one in its working directory).
    let (dir, rdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let srv = testkit::codis_server(&["--cores", "2", "--dir", dir.path().to_str().unwrap()]);
    let mut c = srv.conn();
    let replica = testkit::codis_server(&["--cores", "2", "--dir", rdir.path().to_str().unwrap()]);
    let mut r = replica.conn();
    let (a, b) = rawwire::keys_on_two_cores("edit");
    // The replica syncs first, so later edits reach it as a stream.
    let _: () = redis::cmd("SET").arg(&a).arg("seed").query(&mut c).unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(srv.port)
        .query(&mut r)
        .unwrap();
    let mut model = b"seed".to_vec();
    let mut p = redis::pipe();
    for i in 0..3000u32 {
        let piece = format!("<{i:05}>").repeat(20);
        p.cmd("APPEND").arg(&a).arg(&piece).ignore();
        model.extend_from_slice(piece.as_bytes());
        if i % 7 == 0 {
            let at = (i as usize * 131) % model.len();
            p.cmd("SETRANGE").arg(&a).arg(at).arg("#!").ignore();
            if model.len() < at + 2 {
                model.resize(at + 2, 0);
            }
            model[at..at + 2].copy_from_slice(b"#!");
        }
        if i % 11 == 0 {
            let bit = (i as usize * 977) % (model.len() * 8);
            p.cmd("SETBIT").arg(&a).arg(bit).arg(1).ignore();
            model[bit / 8] |= 0x80 >> (bit % 8);
        }
    }
    p.cmd("PEXPIRE").arg(&a).arg(600_000).ignore();
    let _: () = p.query(&mut c).unwrap();
    // Past the end: SETBIT and BITFIELD grow the string with zeros.
    let len = model.len();
    let _: i64 = redis::cmd("SETBIT")
        .arg(&a)
        .arg((len + 100) * 8 + 3)
        .arg(1)
        .query(&mut c)
        .unwrap();
    model.resize(len + 101, 0);
    model[len + 100] |= 0x80 >> 3;
    let got: Vec<i64> = redis::cmd("BITFIELD")
        .arg(&a)
        .arg("INCRBY")
        .arg("u16")
        .arg((len + 200) * 8)
        .arg(513)
        .arg("GET")
        .arg("u8")
        .arg(0)
        .query(&mut c)
        .unwrap();
    model.resize(len + 202, 0);
    model[len + 200] = 2;
    model[len + 201] = 1;
    assert_eq!(got, vec![513, model[0] as i64]);
    let v: Vec<u8> = redis::cmd("GET").arg(&a).query(&mut c).unwrap();
    assert_eq!(v.len(), model.len());
    assert!(v == model, "the edited string differs from the model");
    let ttl: i64 = redis::cmd("PTTL").arg(&a).query(&mut c).unwrap();
    assert!(ttl > 500_000, "{ttl}");
    let enc: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(&a)
        .query(&mut c)
        .unwrap();
    assert_eq!(enc, "raw");

    // WATCH: an in-place edit by another client aborts the transaction.
    let mut other = srv.conn();
    let _: () = redis::cmd("WATCH").arg(&a).query(&mut c).unwrap();
    let _: i64 = redis::cmd("APPEND")
        .arg(&a)
        .arg("!")
        .query(&mut other)
        .unwrap();
    model.push(b'!');
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let _: () = redis::cmd("GET").arg(&a).query(&mut c).unwrap();
    let res: Option<Vec<Vec<u8>>> = redis::cmd("EXEC").query(&mut c).unwrap();
    assert!(
        res.is_none(),
        "EXEC ran although the watched key was edited"
    );

    // DUMP/RESTORE onto the other core, then an RDB round trip.
    let dump: Vec<u8> = redis::cmd("DUMP").arg(&a).query(&mut c).unwrap();
    let _: () = redis::cmd("RESTORE")
        .arg(&b)
        .arg(0)
        .arg(dump)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
    for k in [&a, &b] {
        let v: Vec<u8> = redis::cmd("GET").arg(k).query(&mut c).unwrap();
        assert!(
            v == model,
            "{k} differs from the model after RESTORE/RELOAD"
        );
    }

    // The replica followed every edit.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(&a).query(&mut r).unwrap();
        if v.as_deref() == Some(&model[..]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica's copy never matched (len {:?} against {})",
            v.map(|v| v.len()),
            model.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
