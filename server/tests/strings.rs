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
