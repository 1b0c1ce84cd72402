//! Differential tests: the same requests go, as raw RESP, to a real redis-server 7.0 and to a
//! two-core codis-server; the reply bytes must be identical.
//!
//! Scripts are groups of command lines (split like redis-cli does, quotes and `\xHH` allowed)
//! separated by blank lines. Each group runs on fresh connections after `FLUSHALL`. A line prefix
//! changes the comparison: `~` compares only the reply type (first byte), `!` runs the line without
//! comparing (setup whose reply legitimately differs), `^` also requires both servers to close the
//! connection after replying. Framing cases are raw byte strings with their expected replies.

mod rawwire;

use rawwire::{multibulk, show, split, Raw, Reply};

/// Both servers, or `None` (test skipped) when redis-server is not installed.
struct Pair {
    redis: RedisPort,
    /// The redis-server process and its directory, dropped (killed, removed) with the pair.
    _keep: Box<dyn std::any::Any>,
    codis: testkit::Proc,
}

struct RedisPort {
    port: u16,
}

fn pair(codis_extra: &[&str], redis_extra: &[&str]) -> Option<Pair> {
    let mut redis_args = vec!["--enable-debug-command", "yes"];
    redis_args.extend_from_slice(redis_extra);
    let keep = testkit::redis_server(&redis_args)?;
    let redis = RedisPort { port: keep.0.port };
    let mut args = vec!["--cores", "2"];
    args.extend_from_slice(codis_extra);
    let codis = testkit::codis_server(&args);
    Some(Pair {
        redis,
        _keep: Box::new(keep),
        codis,
    })
}

/// Run `script` against both servers; returns a description of every difference.
fn run_script(p: &Pair, script: &str) -> Vec<String> {
    let mut diffs = Vec::new();
    for group in script.split("\n\n") {
        let lines: Vec<&str> = group
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if lines.is_empty() {
            continue;
        }
        let mut r = Raw::connect(p.redis.port);
        let mut c = Raw::connect(p.codis.port);
        assert_eq!(r.line("FLUSHALL"), b"+OK\r\n");
        assert_eq!(c.line("FLUSHALL"), b"+OK\r\n");
        for line in lines {
            let (mode, cmd) = match line.chars().next() {
                Some(m @ ('~' | '!' | '^')) => (m, line[1..].trim_start()),
                _ => (' ', line),
            };
            let args = split(cmd);
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            let req = multibulk(&refs);
            r.send(&req);
            c.send(&req);
            let (rr, cr) = (r.read(), c.read());
            let same = match mode {
                '!' => true,
                '~' => match (&rr, &cr) {
                    (Reply::Frame(a), Reply::Frame(b)) => a.first() == b.first(),
                    _ => rr == cr,
                },
                _ => rr == cr,
            };
            if !same {
                diffs.push(format!(
                    "{cmd}\n    redis: {}\n    codis: {}",
                    rr.show(),
                    cr.show()
                ));
            }
            if mode == '^' {
                let (rc, cc) = (r.is_closed(), c.is_closed());
                if rc != cc {
                    diffs.push(format!("{cmd}: closed by redis {rc}, by codis {cc}"));
                }
            }
        }
    }
    diffs
}

fn check(name: &str, script: &str) {
    let Some(p) = pair(&[], &[]) else { return };
    let diffs = run_script(&p, script);
    assert!(
        diffs.is_empty(),
        "{name}: {} replies differ from redis-server:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

const STRINGS: &str = r#"
SET k v
GET k
GET nokey
SET k v2 XX
GET k
SET k v3 NX
SET n v NX
GET n
SET k v foo
SET k v EX 0
SET k v EX -5
SET k v PX 0
SET k v EX abc
SET k v EX 10 PX 100
SET k v NX XX
SET k v EX 100 KEEPTTL
SET k v KEEPTTL EX 100
SET k v EX
SET k v GET GET
SET k v ex 9223372036854775807
SET k v px 9223372036854775807
SET k v exat 9223372036854775807
SET k v pxat 9223372036854775807
SET k v EX 100
TTL k
SET k v2 KEEPTTL
TTL k
SET k v3
TTL k
SET k v GET
SET nokey2 v GET
SET k v NX GET
SET newkey v NX GET
SET k v XX GET
SET missing v XX GET
EXISTS missing
SET k v EXAT 1
GET k
SET k v PXAT 2
GET k
SET k v exat 99999999999
TTL nokey
SET k v pxat 99999999999999
EXPIRETIME k
SET "" empty
GET ""
SET "bin\x00key" "bin\x00val"
GET "bin\x00key"

SETNX k v
SETNX k v2
GET k
SETEX k 100 v
TTL k
SETEX k 0 v
SETEX k -1 v
SETEX k abc v
SETEX k 9223372036854775807 v
PSETEX k 100000 v
TTL k
PSETEX k 0 v
GETSET k new
GETSET nokey3 v
GET nokey3
SETEX k 100 v
GETSET k v2
TTL k

MSET a 1 b 2 c 3
MGET a b c d
MSET a 1 b
MSETNX a 1 x 2
MSETNX x 1 y 2
MGET x y
MSETNX x
MSETNX p 1 p 2
GET p
MSET q 1 q 2
GET q
GETDEL a
GETDEL a
GETEX b
GETEX b EX 100
TTL b
GETEX b PERSIST
TTL b
GETEX b EX 0
GETEX b EX 10 PX 10
GETEX b PERSIST EX 10
GETEX b foo
GETEX nokey EX 10
GETEX b PXAT 1
EXISTS b
GETEX c EXAT 99999999999
EXPIRETIME c
GETEX c PX 9223372036854775807

APPEND s hello
APPEND s " world"
GET s
STRLEN s
STRLEN nokey
GETRANGE s 0 4
GETRANGE s -5 -1
GETRANGE s 5 2
GETRANGE s -1 -5
GETRANGE s 0 1000
GETRANGE s -100 2
GETRANGE s a 1
GETRANGE nokey 0 -1
GETRANGE s 0 -100
SUBSTR s 0 2
SETRANGE s 6 W
GET s
SETRANGE s -1 x
SETRANGE nk 5 x
GET nk
SETRANGE nk2 5 ""
EXISTS nk2
SETRANGE s 0 ""
SETRANGE s 536870912 x
SETRANGE s 536870911 ""
SETRANGE s abc x
SET ex v EX 100
APPEND ex x
TTL ex
SETRANGE ex 0 y
TTL ex

INCR i
INCR i
INCRBY i 10
INCRBY i -5
DECR i
DECRBY i 3
INCRBY i abc
INCRBY i 1.5
INCRBY i ""
SET i 9223372036854775807
INCR i
INCRBY i 0
SET i -9223372036854775808
DECR i
DECRBY i -9223372036854775808
DECRBY i 9223372036854775807
SET s2 abc
INCR s2
SET sp " 1"
INCR sp
SET lz 010
INCR lz
SET plus +1
INCR plus
SET big 99999999999999999999
INCR big
SET ct 5 EX 100
INCR ct
TTL ct
DECRBY ct 2
TTL ct
GET ct
RPUSH lst a
INCR lst
INCRBY lst 2
SET ex v
SET ex 5 EX 100
INCR ex
TTL ex
SET nul "1\x00"
INCR nul

INCRBYFLOAT f 1.5
INCRBYFLOAT f 0.1
INCRBYFLOAT f -1.6
INCRBYFLOAT f 1e3
INCRBYFLOAT f abc
INCRBYFLOAT f inf
INCRBYFLOAT f -inf
INCRBYFLOAT f nan
INCRBYFLOAT f ""
INCRBYFLOAT f " 1"
GET f
SET f 10.50
INCRBYFLOAT f 0.1
SET f 3.0e3
INCRBYFLOAT f 200
INCRBYFLOAT nf 0.1
INCRBYFLOAT g 1.23456789012
INCRBYFLOAT g 100000000000000000000
INCRBYFLOAT h 5
INCRBYFLOAT h -5
SET h abc
INCRBYFLOAT h 1
INCR f

SETBIT bk 7 1
SETBIT bk 7 0
GETBIT bk 7
SETBIT bk 100 1
GET bk
STRLEN bk
SETBIT bk -1 1
SETBIT bk 4294967296 1
SETBIT bk 4294967295 abc
SETBIT bk 0 2
SETBIT bk 0 -1
SETBIT bk abc 1
GETBIT bk 100
GETBIT bk 10000
GETBIT nokey 0
GETBIT bk abc
GETBIT bk -1
SET bits foobar
BITCOUNT bits
BITCOUNT bits 0 0
BITCOUNT bits 1 1
BITCOUNT bits 1 -2
BITCOUNT bits 5 30 BIT
BITCOUNT bits 5 30 BYTE
BITCOUNT bits -10 -2 BIT
BITCOUNT bits 0
BITCOUNT bits 0 1 foo
BITCOUNT bits 0 1 BIT extra
BITCOUNT bits a b
BITCOUNT bits 2 1
BITCOUNT nokey
BITCOUNT nokey 0 -1
SET bp "\xff\xf0\x00"
BITPOS bp 0
BITPOS bp 1
SET bp2 "\x00\xff\xf0"
BITPOS bp2 1 0
BITPOS bp2 1 2
BITPOS bp2 1 2 -1 BYTE
BITPOS bp2 1 7 15 BIT
BITPOS bp2 0 8 -1 BIT
BITPOS bp2 1 1 0
SET bp3 "\x00\x00\x00"
BITPOS bp3 1
BITPOS bp3 0
BITPOS nokey 0
BITPOS nokey 1
BITPOS nokey 1 0 -1
BITPOS bp 2
BITPOS bp a
BITPOS bp 0 a
BITPOS bp 0 0 -1 foo
BITPOS bp 0 0 -1 BIT extra
BITPOS bp 0 0 -1
SET allone "\xff\xff"
BITPOS allone 0
BITPOS allone 0 0
BITPOS allone 0 0 -1
BITPOS allone 0 0 -1 BIT
BITPOS allone 0 -1
BITPOS allone 1 10

SET n 123
OBJECT ENCODING n
SET s abc
OBJECT ENCODING s
SET long 0123456789012345678901234567890123456789012345
OBJECT ENCODING long
SET n2 -9223372036854775808
OBJECT ENCODING n2
SET n3 " 12"
OBJECT ENCODING n3
SET n4 12345678901234567890
OBJECT ENCODING n4
INCR n
OBJECT ENCODING n
OBJECT ENCODING nokey
OBJECT REFCOUNT s
OBJECT REFCOUNT nokey
SET s 01234567890123456789012345678901234567890123
OBJECT ENCODING s
SET s 012345678901234567890123456789012345678901234
OBJECT ENCODING s
INCRBYFLOAT fl 1.5
OBJECT ENCODING fl

GET
GET a b
SET k
MGET
MSET
MSET a
GETEX
GETDEL
SETEX a 1
SETNX a
INCR
INCRBY a
INCRBYFLOAT a
BITCOUNT
BITPOS a
APPEND a
GETRANGE a 1
SETRANGE a 1
STRLEN
GetSet a
"#;

const KEYS: &str = r#"
MSET a 1 b 2 c 3
DEL a b nokey
DEL a
EXISTS b c nokey c
UNLINK c
EXISTS c
SET b 2
TOUCH b b nokey
TYPE b
TYPE nokey
EXPIRE b 100
TTL b
EXPIRE b 100 NX
EXPIRE b 200 XX
TTL b
EXPIRE b 50 GT
EXPIRE b 300 GT
TTL b
EXPIRE b 500 LT
EXPIRE b 100 LT
TTL b
EXPIRE b 10 NX XX
EXPIRE b 10 NX GT
EXPIRE b 10 GT LT
EXPIRE b 10 FOO
EXPIRE b abc FOO
EXPIRE b abc
EXPIRE b 10 nx nx
EXPIRE nokey 10
EXPIRE nokey 10 XX
PERSIST b
PERSIST b
PERSIST nokey
TTL b
PTTL b
EXPIRE b 100 GT
EXPIRE b 100 XX
EXPIRE b 100 LT
TTL b
PEXPIRE b 100000
~PTTL b
EXPIREAT b 99999999999
EXPIRETIME b
PEXPIRETIME b
PEXPIREAT b 99999999999000
PEXPIRETIME b
EXPIRETIME nokey
PEXPIRETIME nokey
SET p 1
EXPIRETIME p
PEXPIRETIME p
EXPIRE b 0
EXISTS b
SET b 1
EXPIRE b -1
EXISTS b
SET b 1
EXPIREAT b 1
EXISTS b
SET b 1
PEXPIREAT b 0
EXISTS b
SET b 1
EXPIRE b 9223372036854775807
EXPIRE b 9223372036854775
EXPIRE b -9223372036854775808
EXPIRE b -9223372036854775
EXISTS b
SET b 1
PEXPIRE b 9223372036854775807
EXPIREAT b 9223372036854775807
PEXPIREAT b 9223372036854775807
EXPIRETIME b
SET b 1
PEXPIREAT b -9223372036854775808
EXISTS b
TTL nokey
PTTL nokey
SET b 1
EXPIRE b 100
SET b 2
TTL b

SET a 1
RENAME a b
GET b
EXISTS a
RENAME nokey x
RENAME nokey nokey
RENAME b b
RENAMENX b b
RENAMENX nokey x
SET c 2
RENAMENX b c
RENAMENX b d
GET d
SET t v EX 100
RENAME t t2
TTL t2
SET t3 v
RENAME t3 t2
TTL t2
RENAME
RENAME a

SET d v
COPY d e
GET e
COPY d e
COPY d e REPLACE
COPY d d
COPY nokey e
COPY nokey nokey
COPY d e DB 1
COPY d e DB 100
COPY d e DB -1
COPY d e DB abc
COPY d e DB
COPY d e FOO
COPY d e REPLACE REPLACE
COPY d d DB 0
COPY d d DB 1
SET t v EX 100
COPY t t4
TTL t4
SELECT 1
GET e
GET d
SELECT 0
MOVE d 1
MOVE d 1
MOVE e 0
MOVE e 16
MOVE e -1
MOVE e abc
MOVE nokey 1
SET e 1
SELECT 1
SET e 2
SELECT 0
MOVE e 1
GET e
SELECT 1
GET e
MOVE d 0
GET d

SET a 1
KEYS *
KEYS a
KEYS b
KEYS [a]
KEYS "\\a"
RANDOMKEY
DEL a
RANDOMKEY
KEYS *
DBSIZE
MSET a 1 b 2 c 3
DBSIZE
FLUSHDB
DBSIZE
SET a 1
FLUSHDB ASYNC
FLUSHDB SYNC
FLUSHDB FOO
FLUSHDB ASYNC SYNC
FLUSHALL FOO
SELECT 1
SET x 1
SELECT 0
SET y 1
FLUSHDB
SELECT 1
DBSIZE
FLUSHALL
DBSIZE

SET a 1
SCAN abc
SCAN 0 COUNT 0
SCAN 0 COUNT -1
SCAN 0 COUNT abc
SCAN 0 FOO bar
SCAN 0 MATCH
SCAN 0 COUNT 10 MATCH a
SCAN 0 TYPE string
SCAN 0 TYPE list
SCAN 0 MATCH nomatch
SCAN 18446744073709551616
SCAN " 1"
SCAN 1x

SET s abc
OBJECT FREQ nokey
OBJECT IDLETIME nokey
OBJECT FOO s
OBJECT ENCODING
OBJECT ENCODING s extra
OBJECT
OBJECT HELP
OBJECT help extra

DEL
EXISTS
UNLINK
TOUCH
TYPE
TYPE a b
EXPIRE a
TTL
PTTL a b
PERSIST
RENAMENX a
COPY a
MOVE a
KEYS
SCAN
RANDOMKEY a
DBSIZE a

SET key:5 keep
DEBUG POPULATE 1000
DEBUG POPULATE 10 pre 3
DEBUG POPULATE 3 long 12
DBSIZE
GET key:5
GET key:999
GET pre:7
GET long:2
STRLEN long:0
DEBUG POPULATE -1
DEBUG POPULATE x
DEBUG POPULATE 1 a b c
DEBUG POPULATE
"#;

/// SORT and SORT_RO. BY/GET patterns carry the sorted key's `{tag}` (codis-server, like Redis
/// Cluster, refuses patterns whose keys may lie in another slot: `tests/sort.rs`). `{u}` and `{x}`
/// hash to slots of different cores, so `… STORE {x}…` of a `{u}` key runs on a scratch copy
/// (`multi.rs`), pattern keys included. Orders a client cannot rely on (a hash table set unsorted,
/// ALPHA ties among set or sorted-set members) stay out. Out-of-range scores come last: Redis
/// tests `errno` without clearing it, so one stays "out of range" for later SORTs.
const SORT: &str = r#"
RPUSH l 3 1 2 10 -5 2.5 1e2 0x10 " 7" +4 .5 007
SORT l
SORT l ASC
SORT l DESC
SORT l LIMIT 1 2
SORT l LIMIT -1 2
SORT l LIMIT 10 10
SORT l LIMIT 12 1
SORT l LIMIT 0 0
SORT l LIMIT 0 -5
SORT l LIMIT 2 -1
SORT l desc limit 1 3
SORT l LIMIT 0 1 LIMIT 3 2 DESC ASC
SORT l ALPHA
SORT l ALPHA DESC LIMIT 1 3
SORT_RO l
SORT_RO l DESC LIMIT 0 2 ALPHA
RPUSH bad 1 x 2
SORT bad
SORT bad LIMIT 0 1
SORT bad ALPHA
SORT bad STORE d
EXISTS d
RPUSH odd "" "\x00abc" "7\x00x" inf -Infinity "0x1p-1074"
SORT odd
RPUSH ws " "
SORT ws
RPUSH nan nan
SORT nan
RPUSH al a B b A "\xc3\xa9" "\xff" "" "a\x00c" "a\x00b" Z z 1 10 2
SORT al ALPHA
SORT al ALPHA DESC
SORT al ALPHA STORE ald
LRANGE ald 0 -1

SADD s 5 3 9 1 -2
SORT s
SORT s DESC LIMIT 1 2
SORT s BY nosort
SORT s ALPHA
SADD ms b a c 10 2 zz
SORT ms ALPHA
SORT ms ALPHA DESC LIMIT 2 2
SORT ms
SORT ms BY nosort STORE msd
LRANGE msd 0 -1
SORT ms BY nosort DESC LIMIT 1 3 STORE msd
LRANGE msd 0 -1
EVAL "return redis.call('SORT', KEYS[1], 'BY', 'nosort')" 1 ms
EVAL "return redis.call('SORT_RO', KEYS[1], 'BY', 'nosort', 'DESC')" 1 ms

ZADD z 3 a 1 b 2 c 0 d 2 e
OBJECT ENCODING z
SORT z ALPHA
SORT z ALPHA DESC LIMIT 1 2
OBJECT ENCODING z
SORT z BY nosort
SORT z BY nosort DESC
SORT z BY nosort LIMIT 1 2
SORT z BY nosort DESC LIMIT 1 2
SORT z BY nosort LIMIT 3 5
SORT z BY nosort DESC LIMIT 5 5
SORT z BY nosort LIMIT 0 0
SORT z
ZADD zn 1 10 2 9 3 8
SORT_RO zn
OBJECT ENCODING zn
ZADD zw 1 a
WATCH zw
SORT zw
MULTI
PING
EXEC

RPUSH l 3 1 2 10 -5
SORT l BY nosort
SORT l BY nosort DESC
SORT l BY nosort LIMIT 2 2
SORT l BY nosort DESC LIMIT 2 2
SORT l BY nosort DESC LIMIT 10 3
SORT l BY nosort LIMIT -3 -3
SORT l BY nosort GET #
SORT l BY nosort GET # GET nostar
SORT l GET # GET # LIMIT 0 2
SORT l BY nosort STORE d
LRANGE d 0 -1
SORT l BY nosort DESC LIMIT 1 2 STORE d
LRANGE d 0 -1
SORT l STORE d
LRANGE d 0 -1
TYPE d
OBJECT ENCODING d
SET d x
EXPIRE d 100
SORT l LIMIT 0 2 STORE d
TTL d
LRANGE d 0 -1
HSET hd f v
SORT l STORE hd
TYPE hd
SORT l STORE d GET # GET nostar
LRANGE d 0 -1
SORT l LIMIT 9 9 STORE d
EXISTS d
SORT l STORE d STORE d2
EXISTS d d2
SORT l STORE l DESC
LRANGE l 0 -1
SORT_RO l STORE d
SORT nokey
SORT nokey STORE d
EXISTS d
SORT nokey BY nosort LIMIT 0 1 GET # GET {nokey}x_*
SORT_RO nokey
~HELLO 3
SORT l GET nostar LIMIT 0 2
SORT l BY nosort GET # GET nostar
~HELLO 2

SET str x
HSET h f v
SORT str
SORT h
SORT_RO str
SORT str STORE d
SORT str LIMIT a b
SORT str FOO
SORT l LIMIT a b
SORT l LIMIT 1 x
SORT l LIMIT 1
SORT l LIMIT
SORT l STORE
SORT l FOO
SORT l BY
SORT l GET
SORT l ASC FOO
SORT l STORE d FOO
EXISTS d
SORT_RO l BY
SORT
SORT_RO
sort
COMMAND GETKEYS SORT k STORE d
COMMAND GETKEYS SORT k LIMIT 0 1 GET # STORE d STORE e
COMMAND GETKEYS SORT_RO k BY x GET y
COMMAND GETKEYS SORT k FOO STORE d

RPUSH {u}l 1 2 3 4 5
MSET {u}w_1 50 {u}w_2 30 {u}w_3 10 {u}w_4 40 {u}w_5 20
MSET {u}o_1 one {u}o_2 two {u}o_3 three {u}o_5 five
HSET {u}h_1 f a1 g 5
HSET {u}h_2 f a2 g 4
HSET {u}h_3 f a3 g 3
HSET {u}h_4 g 2
SET {u}bad_1 x
SORT {u}l BY {u}w_*
SORT {u}l BY {u}w_* DESC
SORT {u}l BY {u}w_* LIMIT 1 2
SORT {u}l BY {u}w_* GET # GET {u}o_*
SORT {u}l BY {u}w_* GET {u}o_* GET {u}h_*->f
SORT {u}l BY {u}h_*->g
SORT {u}l BY {u}h_*->g ALPHA
SORT {u}l BY {u}h_*->f ALPHA
SORT {u}l BY {u}h_*->f ALPHA DESC
SORT {u}l BY {u}h_*->f ALPHA LIMIT 1 2
SORT {u}l BY {u}o_* ALPHA
SORT {u}l BY {u}o_*
SORT {u}l BY {u}bad_*
SORT {u}l BY {u}nokey_*
SORT {u}l BY {u}nokey_* ALPHA
SORT {u}l BY {u}nokey_* ALPHA LIMIT 1 3
SORT {u}l BY {u}nokey_* ALPHA DESC LIMIT 1 3
SORT {u}l BY {u}h_* GET {u}h_*
SORT {u}l BY {u}w_*->x GET {u}w_*->x
SORT {u}l GET {u}h_*->
SORT {u}l GET {u}h_*->f->g
SORT {u}l BY nosort BY {u}w_*
SORT {u}l BY {u}w_* BY nosort
SORT {u}l LIMIT 0 3 BY nosort ASC BY {u}w_* GET {u}o_* DESC
SORT_RO {u}l BY {u}w_* GET {u}o_*
~HELLO 3
SORT {u}l BY {u}w_* GET {u}o_* GET {u}h_*->f
~HELLO 2
SORT {u}l BY {u}w_* STORE {u}d GET {u}o_* GET #
LRANGE {u}d 0 -1
SADD {u}s 1 2 3 5
SORT {u}s BY {u}w_* GET {u}o_*
ZADD {u}z 1 1 2 2 3 3 4 4
SORT {u}z BY {u}w_* GET {u}o_* DESC
SORT {u}z BY {u}h_*->f ALPHA

RPUSH {u}l 1 2 3 4 5
MSET {u}w_1 50 {u}w_2 30 {u}w_3 10 {u}w_4 40 {u}w_5 20
MSET {u}o_1 one {u}o_2 two {u}o_3 three {u}o_5 five
HSET {u}h_1 f a1
HSET {u}h_3 f a3
SORT {u}l BY {u}w_* STORE {x}d GET {u}o_* GET #
LRANGE {x}d 0 -1
SORT {u}l BY {u}w_* STORE {x}d GET {u}o_* GET # GET {u}h_*->f
LRANGE {x}d 0 -1
SORT {u}l BY {u}w_* LIMIT 1 2 STORE {x}d2 GET {u}o_*
LRANGE {x}d2 0 -1
SORT {u}l BY {u}nokey_* ALPHA DESC LIMIT 1 3 STORE {x}d3
LRANGE {x}d3 0 -1
SORT {u}l STORE {x}d4
LRANGE {x}d4 0 -1
SORT {u}nokey STORE {x}d4
EXISTS {x}d4
SORT {u}l BY {u}w_* STORE {u}w_9 GET {u}w_*
LRANGE {u}w_9 0 -1
MULTI
SET {x}k 1
SORT {u}l BY {u}w_* GET {u}o_*
RPUSH {u}l 6
SET {u}w_6 0
SET {u}o_6 six
SORT {u}l BY {u}w_* GET {u}o_*
SORT {u}l BY {u}w_* GET {u}o_* STORE {x}k2
LRANGE {x}k2 0 -1
EXEC
EVAL "return redis.call('SORT', KEYS[1], 'BY', '{u}w_*', 'GET', '{u}o_*')" 1 {u}l
EVAL "return redis.call('SORT', KEYS[1], 'STORE', KEYS[2])" 2 {u}l {x}d5
LRANGE {x}d5 0 -1

RPUSH rng 1 1e400 1e-310
SORT rng
"#;

/// Commands on keys of another type, and generic key commands on non-string values.
const WRONGTYPE: &str = r#"
HSET h f v
SADD st a b
GET h
SET h v GET
GETSET h v
GETDEL h
GETEX h
APPEND h x
STRLEN h
GETRANGE h 0 -1
SETRANGE h 0 x
INCR h
INCRBY st 1
DECR h
INCRBYFLOAT h 1
SETBIT h 0 1
GETBIT h 0
BITCOUNT h
BITPOS h 1
MGET h st nokey
SETNX h v
TYPE h
TYPE st
EXISTS h st
RENAME h h2
TYPE h2
HGET h2 f
COPY st st2
SCARD st2
SISMEMBER st2 a
RENAMENX st2 h2
MOVE st2 1
SELECT 1
TYPE st2
SELECT 0
EXPIRE h2 100
TTL h2
PERSIST h2
SET h2 v
TYPE h2
MSET st 1
TYPE st
DEL h2 st
SADD st a
SCAN 0 TYPE set
SCAN 0 TYPE hash
"#;

const CONN: &str = r#"
PING
PING hello
PING a b
ping
PiNg x
ECHO hi
ECHO
ECHO a b
SELECT 1
SELECT 16
SELECT -1
SELECT abc
SELECT 0
SELECT
SELECT 1.5
CLIENT SETNAME foo
CLIENT GETNAME
CLIENT SETNAME "a b"
CLIENT SETNAME "a\nb"
CLIENT GETNAME
CLIENT SETNAME ""
CLIENT GETNAME
CLIENT FOO
CLIENT
CLIENT SETNAME
CLIENT SETNAME a b
CLIENT GETNAME x
CLIENT ID x
CLIENT KILL 1.2.3.4:5
CLIENT KILL ID 999999
CLIENT KILL FOO bar
CLIENT KILL ID
~CLIENT ID
~CLIENT LIST
~CLIENT INFO
CLIENT NO-EVICT on
CONFIG GET maxmemory
CONFIG GET nosuch
CONFIG GET databases
CONFIG GET maxclients
CONFIG SET nosuch 1
CONFIG SET maxclients
CONFIG SET maxclients abc
CONFIG FOO
CONFIG GET
CONFIG
CONFIG RESETSTAT
CONFIG RESETSTAT x
HELLO 4
HELLO 1
HELLO abc
HELLO 3 FOO
HELLO 2 SETNAME
HELLO 2 AUTH a
~HELLO 2 AUTH default x
~HELLO
~HELLO 2
~TIME
TIME x
DBSIZE
DEBUG SLEEP 0
DEBUG SLEEP 0.01
DEBUG OBJECT nokey
DEBUG FOO
DEBUG
ROLE x
LASTSAVE x
AUTH
AUTH a
AUTH a b
AUTH a b c
FOO
FOO bar baz
"foo bar" x
""
SHUTDOWN FOO
SHUTDOWN NOSAVE NOW ABORT
SHUTDOWN SAVE NOSAVE
SHUTDOWN ABORT
MEMORY
MEMORY FOO
MEMORY USAGE
CLIENT SETINFO a b
CONFIG SET a b c
COMMAND FOO
COMMAND COUNT x
COMMAND INFO nosuch
COMMAND GETKEYS
COMMAND GETKEYS nosuch a
COMMAND GETKEYS get
COMMAND GETKEYS get a
COMMAND GETKEYS mset a b c d
COMMAND GETKEYS ping
COMMAND GETKEYS ping a
COMMAND GETKEYS get a b
COMMAND GETKEYS set a
COMMAND DOCS nosuch
^QUIT

SET a 1
~HELLO 3 SETNAME x
GET a
GET nokey
MGET a nokey
CLIENT GETNAME
INCRBYFLOAT f 1.5
TTL a
SELECT 0
~HELLO 2
GET nokey
"#;

/// BITOP, BITFIELD, BITFIELD_RO, LCS, and strings long enough to be edited in place (APPEND,
/// SETRANGE, SETBIT, BITFIELD on 512 bytes or more): replies, lengths, bytes, TTLs, encodings.
const BITS: &str = r#"
SET a "\xff\x0f\x00"
SET b "\x0f\xf0"
BITOP AND d a b
GET d
BITOP OR d a b
GET d
BITOP XOR d a b
GET d
BITOP NOT d a
GET d
OBJECT ENCODING d
BITOP AND d a nokey
GET d
BITOP OR d nokey1 nokey2
EXISTS d
BITOP NOT d a b
BITOP NAND d a b
BITOP AND d
SET dst x EX 100
BITOP OR dst a
TTL dst
LPUSH l x
BITOP AND d a l
SET n 1234
BITOP OR d2 n
GET d2
OBJECT ENCODING d2

BITFIELD bf SET u8 0 255
GET bf
BITFIELD bf GET u8 0 GET i8 0 GET u4 4 GET i4 0
BITFIELD bf INCRBY u8 0 10
BITFIELD bf OVERFLOW SAT INCRBY u8 0 300 INCRBY i8 8 -200
BITFIELD bf OVERFLOW FAIL INCRBY u8 0 1 GET u8 0
BITFIELD bf OVERFLOW WRAP INCRBY i8 8 100 INCRBY i8 8 100
BITFIELD bf SET i64 16 -1 GET i64 16 GET u63 16 INCRBY i64 16 1
BITFIELD bf OVERFLOW WRAP SET u2 100 7 GET u2 100 OVERFLOW SAT SET u2 102 7 GET u2 102
BITFIELD bf SET i16 #3 -12345 GET i16 #3 GET u16 48
BITFIELD bf OVERFLOW SAT SET i8 0 200 SET i8 8 -200 SET u8 16 -1
BITFIELD bf OVERFLOW FAIL SET u8 0 300 SET i8 0 -129 GET u8 0
STRLEN bf
OBJECT ENCODING bf
BITFIELD nokey GET u8 0 GET i64 100
BITFIELD newkey OVERFLOW FAIL INCRBY u8 80 300
EXISTS newkey
STRLEN newkey
BITFIELD bf
BITFIELD bf GET u64 0
BITFIELD bf GET i65 0
BITFIELD bf GET i0 0
BITFIELD bf GET I8 0
BITFIELD bf GET u8 -1
BITFIELD bf GET u8 4294967296
BITFIELD bf GET u8 #536870912
BITFIELD bf SET u8 0 x
BITFIELD bf INCRBY u8 0
BITFIELD bf OVERFLOW
BITFIELD bf OVERFLOW NOPE GET u8 0
BITFIELD bf FOO u8 0
BITFIELD
BITFIELD_RO bf GET u8 0 GET i8 8
BITFIELD_RO bf GET u8 0 SET u8 0 1
BITFIELD_RO bf OVERFLOW SAT GET u8 0
BITFIELD_RO bf INCRBY u8 0 x
BITFIELD_RO nokey GET u16 0
LPUSH list x
BITFIELD list GET u8 0
BITFIELD list SET u8 0 1
BITFIELD_RO list GET u8 0
SET ttl abc EX 100
BITFIELD ttl SET u8 0 65
TTL ttl
GET ttl

SET s1 ohmytext
SET s2 mynewtext
LCS s1 s2
LCS s1 s2 LEN
LCS s1 s2 IDX
LCS s1 s2 IDX WITHMATCHLEN
LCS s1 s2 IDX MINMATCHLEN 4 WITHMATCHLEN
LCS s1 s2 IDX MINMATCHLEN -3
LCS s1 s2 LEN IDX
LCS s1 s2 MINMATCHLEN
LCS s1 s2 MINMATCHLEN x
LCS s1 s2 FOO
LCS s1 nokey
LCS nokey1 nokey2 IDX
SET a1 "ACCGGTCGAGTGCGCGGAAGCCGGCCGAA"
SET a2 "GTCGTTCGGAATGCCGTTGCTCTGTAAA"
LCS a1 a2
LCS a1 a2 IDX WITHMATCHLEN
LPUSH l x
LCS s1 l
LCS s1
~HELLO 3
LCS s1 s2 IDX WITHMATCHLEN
~HELLO 2

SETRANGE big 600 x
STRLEN big
OBJECT ENCODING big
APPEND big tail
STRLEN big
GETRANGE big 595 700
SETRANGE big 2 abc
GETRANGE big 0 8
SETBIT big 8000 1
STRLEN big
GETBIT big 8000
BITCOUNT big
SETBIT big 8000 0
BITCOUNT big
BITFIELD big INCRBY u32 100 5000 GET u32 100
STRLEN big
BITPOS big 1
BITCOUNT big 3 500
BITCOUNT big 17 4003 BIT
BITCOUNT big -300 -2
BITCOUNT big 5 5 BIT
BITPOS big 0 2
BITPOS big 1 100 -1 BIT
BITPOS big 0 600 -1
BITPOS big 1 650 -1
BITPOS big 0 4000 4100 BIT
OBJECT ENCODING big
EXPIRE big 100
APPEND big more
SETRANGE big 5000 x
SETBIT big 50000 1
TTL big
STRLEN big
GETRANGE big -10 -1
SET big short
OBJECT ENCODING big
GET big
LPUSH lst x
APPEND lst x
SETRANGE lst 1000 x
SETBIT lst 9000 1
"#;

const GEO: &str = r#"
GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
GEOADD Sicily 13.361389 38.115556 Palermo
ZRANGE Sicily 0 -1 WITHSCORES
ZSCORE Sicily Palermo
GEOPOS Sicily Palermo Catania NonExisting
GEODIST Sicily Palermo Catania
GEODIST Sicily Palermo Catania km
GEODIST Sicily Palermo Catania KM
GEODIST Sicily Palermo Catania mi
GEODIST Sicily Palermo Catania ft
GEODIST Sicily Palermo Catania m
GEODIST Sicily Palermo Palermo
GEODIST Sicily Palermo Foo
GEODIST Sicily Foo Bar
GEODIST nokey Palermo Catania
GEODIST Sicily Palermo Catania yards
GEODIST Sicily Palermo Catania km extra
GEOHASH Sicily Palermo Catania nope
GEOHASH nokey a b
GEOPOS nokey a b
GEORADIUS Sicily 15 37 100 km
GEORADIUS Sicily 15 37 200 km WITHDIST
GEORADIUS Sicily 15 37 200 km WITHCOORD
GEORADIUS Sicily 15 37 200 km WITHDIST WITHCOORD
GEORADIUS Sicily 15 37 200 km WITHHASH WITHDIST WITHCOORD ASC
GEORADIUS Sicily 15 37 200 km DESC
GEORADIUS Sicily 15 37 200 km COUNT 1
GEORADIUS Sicily 15 37 200 km COUNT 1 DESC
GEORADIUS_RO Sicily 15 37 200 km WITHDIST ASC
GEORADIUSBYMEMBER Sicily Palermo 200 km WITHDIST
GEORADIUSBYMEMBER_RO Sicily Palermo 200 km WITHDIST WITHCOORD
GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km ASC WITHCOORD WITHDIST
GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 400 400 km ASC WITHCOORD WITHDIST WITHHASH
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 200 km DESC WITHDIST
GEOSEARCH Sicily FROMMEMBER Palermo BYBOX 300 300 mi
GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 0 m WITHDIST
GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 1 km
GEOSEARCH nokey FROMLONLAT 15 37 BYRADIUS 1 km
GEOSEARCH nokey FROMMEMBER x BYRADIUS 1 km
GEORADIUSBYMEMBER nokey x 1 km
GEORADIUSBYMEMBER nokey x abc zz
GEORADIUS nokey 15 37 1 km

GEOADD nyc -73.9454966 40.747533 "lic market"
GEOADD nyc CH 40.747533 -73.9454966 "lic market"
GEOADD nyc CH 40.747533 -73.9454966 "lic market"
GEOPOS nyc "lic market"
GEOADD nyc NX -73.9454966 40.747533 "lic market"
GEOPOS nyc "lic market"
GEOADD nyc XX -83.9454966 40.747533 "lic market"
GEOPOS nyc "lic market"
GEOADD nyc CH NX -73.9454966 40.747533 "lic market"
GEOADD nyc CH XX -73.9454966 40.747533 "lic market"
GEOADD nyc XX -73.9454966 40.747533 newone
GEOADD nyc xx nx -73.9454966 40.747533 "lic market"
GEOADD nyc ch xx foo -73.9454966 40.747533 "lic market"
GEOADD nyc -73.9454966 40.747533
GEOADD nyc 200 100 x
GEOADD nyc -73.9454966 85.06 x
GEOADD nyc 180.0000001 0 x
GEOADD nyc 0 -85.051129 x
GEOADD nyc abc 10 x
GEOADD nyc 10 abc x
GEOADD nyc 10 10 a 200 10 b
EXISTS b
ZCARD nyc
GEOADD nyc
GEOADD nyc 1 2
GEOADD xxk XX 1 2 a
EXISTS xxk

GEOADD nyc -73.9454966 40.747533 "lic market" -73.9733487 40.7648057 "central park n/q/r" -73.9903085 40.7362513 "union square" -74.0131604 40.7126674 "wtc one" -73.7858139 40.6428986 "jfk" -73.9375699 40.7498929 "q4" -73.9564142 40.7480973 4545
ZRANGE nyc 0 -1 WITHSCORES
GEORADIUS nyc -73.9798091 40.7598464 3 km asc
GEOSEARCH nyc fromlonlat -73.9798091 40.7598464 bybox 6 6 km asc
GEOSEARCH nyc fromlonlat -73.9798091 40.7598464 frommember xxx bybox 6 6 km asc
GEOSEARCH nyc frommember xxx fromlonlat -73.9798091 40.7598464 bybox 6 6 km asc
GEOSEARCH nyc bybox 3 3 km asc desc withhash withdist withcoord
GEOSEARCH nyc fromlonlat -73.9798091 40.7598464 byradius 3 km bybox 3 3 km asc
GEOSEARCH nyc fromlonlat -73.9798091 40.7598464 asc desc withhash withdist withcoord
GEOSEARCH nyc fromlonlat -73.9798091 40.7598464 bybox 6 6 km asc storedist
GEOSEARCH nyc fromlonlat -73.9798091 40.7598464 bybox 6 6 km store d
GEOSEARCH nyc fromlonlat -73.9798091 40.7598464 bybox 6 6 km asc bogus
GEORADIUS nyc -73.9798091 40.7598464 3 km withdist asc
GEOSEARCH nyc fromlonlat -73.9798091 40.7598464 bybox 6 6 km withdist asc
GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 3
GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 3 ANY
GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 3 ANY ASC
GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 3 ANY DESC WITHDIST
GEORADIUS nyc -73.9798091 40.7598464 10 km ANY ASC
GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT
GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 0
GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT -3
GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT abc
GEORADIUS nyc -73.9798091 40.7598464 10 km COUNT 2 DESC
GEORADIUS nyc -73.9798091 40.7598464 10 km
GEORADIUS nyc -73.9798091 40.7598464 10 km WITHHASH
GEORADIUS nyc -73.9798091 40.7598464 10 yd
GEORADIUS nyc -73.9798091 40.7598464 -10 km
GEORADIUS nyc -73.9798091 40.7598464 abc km
GEORADIUS nyc -73.9798091 95 10 km
GEORADIUS nyc abc 40 10 km
GEORADIUS_RO nyc -73.9798091 40.7598464 10 km STORE d
GEORADIUSBYMEMBER_RO nyc jfk 10 km STOREDIST d
GEORADIUSBYMEMBER nyc "wtc one" 7 km
GEORADIUSBYMEMBER nyc "wtc one" 7 km withdist
GEORADIUSBYMEMBER nyc nosuch 7 km
GEORADIUSBYMEMBER nyc jfk 7 parsecs
GEORADIUSBYMEMBER nyc jfk abc km
GEOSEARCH nyc frommember "wtc one" bybox 14 14 km
GEOSEARCH nyc frommember "wtc one" bybox 14 14 km withcoord withdist withhash desc count 4
GEOSEARCH nyc frommember nosuch bybox 14 14 km
GEOSEARCH nyc frommember jfk bybox -1 14 km
GEOSEARCH nyc frommember jfk bybox 1 abc km
GEOSEARCH nyc frommember jfk bybox abc 1 km
GEOSEARCH nyc frommember jfk bybox 1 1 xx
GEOSEARCH nyc frommember jfk byradius abc km
GEOSEARCH nyc frommember jfk byradius 1000 km count 2 any
GEOSEARCH nyc frommember jfk byradius 1000 km any
GEOSEARCH nyc fromlonlat 200 40 byradius 1 km
GEOSEARCH nyc frommember jfk
GEOSEARCH nyc frommember jfk byradius 1
geosearch nyc byradius 1 km
GeoSearch nyc byradius 1 km frommember jfk fromlonlat 1 1
GEOSEARCHSTORE d nyc frommember jfk byradius 1 km withdist
GEOSEARCHSTORE d nyc frommember jfk byradius 1 km store x
GEOSEARCHSTORE d nyc frommember jfk
GEORADIUS nyc -73.9798091 40.7598464 10 km STORE
GEORADIUS nyc -73.9798091 40.7598464 10 km STORE d WITHDIST
GEORADIUS nyc -73.9798091 40.7598464 10 km STOREDIST d WITHCOORD
GEORADIUSBYMEMBER nyc jfk 10 km STORE d WITHHASH

GEOADD points{t} 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
GEORADIUS points{t} 13.361389 38.115556 500 km STORE points2{t}
ZRANGE points2{t} 0 -1 WITHSCORES
GEORADIUSBYMEMBER points{t} Palermo 500 km STORE points2{t}
ZRANGE points2{t} 0 -1 WITHSCORES
GEORADIUSBYMEMBER points{t} Catania 500 km STOREDIST points2{t}
ZRANGE points2{t} 0 -1 WITHSCORES
GEOSEARCHSTORE points2{t} points{t} FROMLONLAT 13.361389 38.115556 BYRADIUS 500 km
ZRANGE points2{t} 0 -1 WITHSCORES
GEOSEARCHSTORE points2{t} points{t} FROMLONLAT 13.361389 38.115556 BYRADIUS 500 km STOREDIST
ZRANGE points2{t} 0 -1 WITHSCORES
GEOSEARCHSTORE points2{t} points{t} FROMLONLAT 13.361389 38.115556 BYBOX 500 500 mi STOREDIST DESC COUNT 1
ZRANGE points2{t} 0 -1 WITHSCORES
GEORADIUS points{t} 13.361389 38.115556 500 km STOREDIST points2{t} ASC COUNT 1
ZRANGE points2{t} 0 -1 WITHSCORES
GEORADIUS points{t} 13.361389 38.115556 500 km STOREDIST points2{t} DESC COUNT 1
ZRANGE points2{t} 0 -1 WITHSCORES
GEORADIUS points{t} 13.361389 38.115556 500 km STORE a{t} STOREDIST points2{t}
ZRANGE points2{t} 0 -1 WITHSCORES
EXISTS a{t}
GEORADIUS points{t} 10 10 1 km STORE points2{t}
EXISTS points2{t}
GEORADIUS nokey{t} 10 10 1 km STORE points{t}
EXISTS points{t}

GEOADD src 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
SET dst x
EXPIRE dst 100
GEOSEARCHSTORE dst src FROMMEMBER Palermo BYRADIUS 200 km
TTL dst
ZRANGE dst 0 -1 WITHSCORES
GEORADIUS src 15 37 200 km STOREDIST dst2
ZRANGE dst2 0 -1 WITHSCORES
GEORADIUSBYMEMBER src Catania 1000 mi STORE dst3 COUNT 1
ZRANGE dst3 0 -1 WITHSCORES
GEOSEARCHSTORE src src FROMMEMBER Palermo BYRADIUS 1 km
ZRANGE src 0 -1 WITHSCORES
GEOSEARCHSTORE nokey2 nokey FROMMEMBER x BYRADIUS 1 km
GEOSEARCHSTORE dst nokey FROMMEMBER x BYRADIUS 1 km
EXISTS dst

SET str x
GEOADD str 1 2 a
GEOPOS str a
GEODIST str a b
GEOHASH str a
GEOSEARCH str FROMLONLAT 1 1 BYRADIUS 1 km
GEOSEARCHSTORE d str FROMLONLAT 1 1 BYRADIUS 1 km
GEORADIUS str 1 1 1 km
GEORADIUSBYMEMBER str a 1 km
GEORADIUS_RO str 1 1 1 yd
GEOSEARCH str FROMLONLAT 1 1
GEOSEARCHSTORE d str FROMLONLAT 1 1 BYRADIUS 1 km
LPUSH l a
GEOSEARCHSTORE l src FROMLONLAT 1 1 BYRADIUS 1 km
GEOADD z 1 1 a
GEOSEARCHSTORE str z FROMLONLAT 1 1 BYRADIUS 1000 km
TYPE str
GEOPOS
GEOADD k 1
GEORADIUS k 1 1 1
GEORADIUSBYMEMBER k a 1
GEOSEARCH k FROMLONLAT 1 1
GEOSEARCHSTORE k k FROMLONLAT 1 1
GEODIST k a

GEOADD k1 -0.15307903289794921875 85 n1 0.3515625 85.00019260486917005437 n2
GEOSEARCH k1 FROMLONLAT 0.4 85.05 BYBOX 40000 40000 km WITHCOORD WITHDIST
GEOADD k2 -4.95211958885192871094 85 n3 11.25 85.0511 n4
GEOSEARCH k2 FROMLONLAT -179 85 BYBOX 40000 40000 km WITHCOORD
GEOADD k3 -45 65.50900022111811438208 n5 90 85.0511 n6
GEOSEARCH k3 FROMLONLAT 0 86 BYBOX 40000 40000 km
GEOADD k4 45 65 n1 -135 85.05 n2
GEOSEARCH k4 FROMLONLAT 45 65 BYBOX 40000 40000 km WITHCOORD ASC
GEOPOS k4 n1 n2
GEOHASH k4 n1 n2
GEOADD poles 0 85.05112878 np 0 -85.05112878 sp 180 0 am -180 0 am2 179.9999 1 e -179.9999 1 w
GEOPOS poles np sp am am2 e w
GEOHASH poles np sp am am2 e w
ZRANGE poles 0 -1 WITHSCORES
GEODIST poles np sp km
GEODIST poles am am2
GEODIST poles e w
GEOSEARCH poles FROMMEMBER e BYRADIUS 50 km WITHDIST ASC
GEOSEARCH poles FROMMEMBER w BYBOX 100 100 km WITHDIST ASC
GEOSEARCH poles FROMLONLAT 0 0 BYRADIUS 30000 km WITHDIST ASC
GEOSEARCH poles FROMLONLAT 0 0 BYRADIUS 20000 km ASC
GEOSEARCH poles FROMLONLAT 0 84 BYRADIUS 200 km WITHDIST
GEOSEARCH poles FROMLONLAT 170 -84 BYBOX 10000 1000 km WITHDIST
GEORADIUS poles 0 0 100000 km WITHDIST DESC
GEORADIUS poles 180 0 0 m WITHDIST

GEOADD points 179.5 36 point1
GEOADD points -179.5 36 point2
GEOSEARCH points fromlonlat 179 37 bybox 400 400 km asc
GEOSEARCH points fromlonlat -179 37 bybox 400 400 km asc
GEOSEARCH points fromlonlat 180 36 byradius 100 km withdist asc
GEOADD points -122.407107 37.794300 1
GEOADD points -122.227336 37.794300 2
GEORADIUS points -122.407107 37.794300 30 mi ASC WITHDIST
GEOADD points -5.6 42.6 test
GEOHASH points test
GEOADD points 10 20 a 30 40 b
GEOPOS points a b x
GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania 12.758489 38.788135 edge1 17.241510 38.788135 eage2
GEORADIUS Sicily 15 37 200 km asc
GEOSEARCH Sicily fromlonlat 15 37 bybox 400 400 km asc
GEOADD Sicily 12.75 36.995 test1 12.75 36.50 test2 13.00 36.50 test3
GEOSEARCH Sicily fromlonlat 15 37 bybox 400 2 km
GEOADD Sicily -1 37.00 test3
GEOSEARCH Sicily fromlonlat 15 37 bybox 3000 2 km asc
GEOADD Sicily 12.758489 38.788135 edge1 17.241510 38.788135 edge2 17.250000 35.202000 edge3 12.750000 35.202000 edge4 12.748489955781654 37 edge5 15 38.798135872540925 edge6 17.251510044218346 37 edge7 15 35.201864127459075 edge8 12.692799634687903 38.798135872540925 corner1 12.692799634687903 38.798135872540925 corner2 17.200560937451133 35.201864127459075 corner3 12.799439062548865 35.201864127459075 corner4
GEOSEARCH Sicily fromlonlat 15 37 bybox 400 400 km asc
GEOSEARCH Sicily fromlonlat 15 37 bybox 400 400 km asc withcoord withdist withhash

GEOADD ties 1 1 c 1 1 a 1 1 b 2 2 z 0.5 0.5 y 3 3 x
GEOSEARCH ties FROMLONLAT 0 0 BYRADIUS 1000 km ASC WITHDIST
GEOSEARCH ties FROMLONLAT 0 0 BYRADIUS 1000 km DESC WITHDIST
GEOSEARCH ties FROMLONLAT 0 0 BYRADIUS 1000 km
GEOSEARCH ties FROMLONLAT 0 0 BYRADIUS 1000 km COUNT 2 ANY
GEOSEARCH ties FROMLONLAT 0 0 BYBOX 1000 1000 km COUNT 4 ANY DESC
GEOSEARCH ties FROMLONLAT 0 0 BYRADIUS 1000 km COUNT 50 WITHHASH

COMMAND GETKEYS GEORADIUS k 1 1 1 km STORE d STOREDIST e
COMMAND GETKEYS GEORADIUS k 1 1 1 km STOREDIST d STORE e
COMMAND GETKEYS GEORADIUS k 1 1 1 km STOREDIST d STOREDIST e STORE f
COMMAND GETKEYS GEORADIUS k 1 1 1 km STORE
COMMAND GETKEYS GEORADIUSBYMEMBER k m 1 km STORE d STOREDIST e
COMMAND GETKEYS GEORADIUS k 1 1 1 km
COMMAND GETKEYS GEORADIUSBYMEMBER k m 1 km STOREDIST d
COMMAND GETKEYS GEORADIUS_RO k 1 1 1 km
COMMAND GETKEYS GEOSEARCHSTORE d s FROMMEMBER a BYRADIUS 1 km
COMMAND GETKEYS GEOSEARCH s FROMMEMBER a BYRADIUS 1 km
COMMAND GETKEYS GEOADD k 1 1 a
COMMAND GETKEYS GEOPOS k a b
COMMAND GETKEYS GEODIST k a b
COMMAND GETKEYS GEOHASH k a b

~HELLO 3
GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
GEOPOS Sicily Palermo nope
GEODIST Sicily Palermo Catania
GEODIST Sicily Palermo nope
GEODIST nokey a b
GEOHASH Sicily Palermo nope
GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km WITHCOORD WITHDIST WITHHASH ASC
GEOSEARCH nokey FROMLONLAT 15 37 BYRADIUS 200 km
GEORADIUS Sicily 15 37 200 km COUNT 1 ANY
"#;

/// Which error wins when a command has both a bad argument and a missing or wrong-typed key,
/// and number parsing corner cases (found by random differential runs against redis-server).
const ORDER: &str = r#"
# COPY makes its own object of a shared small integer
SET a 5
COPY a b
COPY a {t}x
OBJECT REFCOUNT b
OBJECT REFCOUNT {t}x
OBJECT REFCOUNT a
OBJECT ENCODING b
INCR b
OBJECT REFCOUNT b
APPEND a 1
COPY a c
OBJECT ENCODING c
OBJECT REFCOUNT c
SET big 123456
COPY big big2
OBJECT REFCOUNT big2

# BLMPOP and BZMPOP read their timeout after numkeys, the side and COUNT
BZMPOP -1 1 z MIN COUNT 0
BZMPOP x 1 z MIN COUNT 0
BZMPOP -1 1 z x
BLMPOP -1 1 l LEFT COUNT 0
BLMPOP x 1 l UP
BLMPOP x 1 l LEFT
# HSCAN, SSCAN, ZSCAN: the cursor, then the key, then the options
HSCAN nokey 0 COUNT 0
SSCAN nokey 0 x
HSCAN nokey x
SET s v
HSCAN s 0 COUNT 0
SSCAN s 0 x
ZSCAN s 0 MATCH
HSET h f v
HSCAN h 0 COUNT 0
HSCAN h 0 NOVALUES
SADD st a
SSCAN st 0 COUNT x
ZADD z 1 m
ZSCAN z 0 x y

LINDEX nolist x
LSET nolist x v
SET s v
LINDEX s x
LSET s x v
RPUSH l a b
LINDEX l x
LSET l x v
LPOS l a COUNT x
LPOS l a MAXLEN x
LPOS l a COUNT -1
GETEX nokey EX -1
GETEX s EX -1
GETEX l EX -1
GETEX s EX x
GETEX s PERSIST EX 10
BITCOUNT nokey 1
BITCOUNT nokey x y
BITCOUNT l 1
BITCOUNT s 1
BITPOS nokey 1 x
BITPOS nokey 0 x y BIT
BITPOS l 1 x
BITPOS nokey 2
BITPOS s 1 x

SET s 1
BITPOS s 0 -1 -100
BITPOS s 0 -1 -100 BIT
BITCOUNT s -1 -100
GETRANGE s -1 -100
SET z -0
INCR z
DECRBY s -0
INCRBY s -0
HSET h f -0
HINCRBY h f 1
HINCRBY h g -0
SETRANGE s 1 "\x000"
INCRBYFLOAT s 1
HSET h n "1\x00"
HINCRBYFLOAT h n 1
INCRBYFLOAT s "1\x001"

SADD set a
SET str v
ZADD z 1 a
ZUNIONSTORE d 2 z set WEIGHTS x 1
ZUNIONSTORE d 2 z str WEIGHTS x 1
ZINTERSTORE d 2 str z AGGREGATE
ZUNION 2 z str WITHSCORES BAD
ZINTERCARD 2 z str LIMIT
ZINTERCARD 2 z
ZINTERCARD 3 z set
ZUNIONSTORE d 3 z set

ZADD mixed 1 b 2 a 3 c
ZRANGEBYLEX mixed [a [c
ZRANGEBYLEX mixed (b [z
ZREVRANGEBYLEX mixed [z (a
ZLEXCOUNT mixed [a [b
ZLEXCOUNT mixed - +
ZREMRANGEBYLEX mixed [c [c
ZRANGE mixed 0 -1

ZADD g 1 s1 2.5 s25 -inf sninf +inf spinf 0 s0 -2 sm2 3 s3
GEOPOS g s1 s25 sninf spinf s0 sm2 s3
GEOHASH g s1 s25 sninf spinf s0 sm2 s3

SET i1 5
SET i2 10000
SET i3 -1
SET i4 9999
INCR i5
APPEND i6 7
SETRANGE i7 0 8
MSET i8 0 i9 12
OBJECT REFCOUNT i1
OBJECT REFCOUNT i2
OBJECT REFCOUNT i3
OBJECT REFCOUNT i4
OBJECT REFCOUNT i5
OBJECT REFCOUNT i6
OBJECT REFCOUNT i7
OBJECT REFCOUNT i8
OBJECT REFCOUNT i9
RPUSH l 1
OBJECT REFCOUNT l
"#;

#[test]
fn argument_order_matches_redis() {
    check("argument order", ORDER);
}

/// Transactions and WATCH where diff-fuzz found codis-server apart from redis-server: MOVE in
/// a transaction whose keys span cores, commands that change nothing (a missing key, a wrong
/// type) counting as modifications of a watched key, UNWATCH queued inside MULTI.
/// WATCH sees exactly the modifications Redis signals: a write command that changes nothing
/// (SADD of a member already there, LREM of an absent element, ZADD of the same score, SETBIT of
/// the bit it holds, a failing command, the source keys of SINTERSTORE or COPY…) must not abort
/// the EXEC, and one that Redis signals though the value stays (SET of the same value, LTRIM
/// keeping everything) must. Each row: setup commands (`;`-separated) | watched key | command;
/// it runs as `setup; WATCH key; command; MULTI; PING; EXEC`, on one core (`{t}` keys) and across
/// both (`k` and `d` live on different cores).
#[test]
fn watch_signals_match_redis() {
    let script: Vec<String> = WATCH_ROWS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|row| {
            let mut parts = row.splitn(3, " | ");
            let (setup, key, cmd) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let mut lines: Vec<String> = setup.split("; ").map(String::from).collect();
            lines.push(format!("WATCH {key}"));
            lines.push(cmd.to_string());
            lines.extend(["MULTI", "PING", "EXEC"].map(String::from));
            lines.join("\n")
        })
        .collect();
    check("watch signals", &script.join("\n\n"));
}

const WATCH_ROWS: &str = r#"
SET z 1 | b | LMPOP 2 b {t}b LEFT
SET z 1 | {t}b | BLMPOP 0.01 2 b {t}b LEFT
SET z 1 | b | BLPOP b {t}b 0.01
SET z 1 | {t}b | BZPOPMAX b {t}b 0.01
SET z 1 | b | SINTERSTORE b {t}b
RPUSH k a b c | k | LINSERT k BEFORE zz x
RPUSH k a b c | k | LREM k 0 zz
RPUSH k a b c | k | LTRIM k 0 -1
RPUSH k a b c | k | LPOP k 0
RPUSH k a b c | k | RPOP k 0
RPUSH k a b c | k | LSET k 0 a
RPUSH k a | k | LMOVE k k LEFT RIGHT
RPUSH k a b | k | LMPOP 1 k LEFT COUNT 0
SADD k a b | k | SADD k a
SADD k a b | k | SREM k zz
SADD k a b | k | SMOVE k k a
SADD k a b | k | SMOVE k d zz
SADD k a b | d | SMOVE k d zz
SADD k a b; SADD d a | d | SMOVE k d a
SADD k a b | k | SPOP k 0
SADD k 1 2 | k | SADD k 1
SADD k 1 2 | k | SREM k 3
HSET k f v | k | HSETNX k f w
HSET k f v | k | HDEL k zz
HSET k f v | k | HSET k f v
HSET k f 1 | k | HINCRBY k f 0
ZADD k 1 a | k | ZADD k 1 a
ZADD k 1 a | k | ZADD k NX 2 a
ZADD k 1 a | k | ZADD k XX 2 b
ZADD k 1 a | k | ZADD k GT 0 a
ZADD k 1 a | k | ZINCRBY k 0 a
ZADD k 1 a | k | ZREM k zz
ZADD k 1 a | k | ZREMRANGEBYSCORE k 5 6
ZADD k 1 a | k | ZREMRANGEBYRANK k 5 6
ZADD k 1 a | k | ZREMRANGEBYLEX k [x [y
ZADD k 1 a | k | ZPOPMIN k 0
ZADD k 1 a | k | ZMPOP 1 k MIN COUNT 0
ZADD k 1 a | k | GEOADD k 13.361389 38.115556 a
GEOADD k 13.361389 38.115556 a | k | GEOADD k 13.361389 38.115556 a
GEOADD k 13.361389 38.115556 a | k | GEOADD k NX 13.361389 38.115556 a
SET k abc | k | SETRANGE k 1 ""
SET k abc | k | SETRANGE k 1 b
SET k abc | k | APPEND k ""
SET k abc | k | SET k abc
SET k abc | k | SET k x NX
SET k abc | k | SETNX k x
SET k abc | k | MSETNX k x z y
SET k abc | k | GETEX k
SET k abc | k | GETEX k PERSIST
SET k abc EX 100 | k | GETEX k PERSIST
SET k abc | k | PERSIST k
SET k 1 | k | INCRBY k 0
SET k abc | k | SETBIT k 1 1
SET k abc | k | BITFIELD k GET u8 0
SET k abc | k | BITFIELD k OVERFLOW FAIL INCRBY u8 0 200
SET k abc | k | RENAME k k
SET k abc | k | RENAMENX k k
SET k abc; SET d x | d | RENAMENX k d
SET k abc; SET d x | d | COPY k d
SET k abc | k | MOVE k 1
PFADD k a | k | PFADD k a
PFADD k a | k | PFADD k
PFADD k a | k | PFCOUNT k
PFADD k a; PFADD d a | k | PFMERGE k d
PFADD k a | k | PFMERGE k
SADD k a | d | SINTERSTORE d k zz
SADD k a; SET d x | d | SINTERSTORE d zz zz2
ZADD k 1 a | d | ZUNIONSTORE d 1 zz
RPUSH k a | d | SORT zz STORE d
SET k abc | k | DEL zz
SET k abc | k | UNLINK k zz
SET k abc | k | TOUCH k
SET k abc | k | GETDEL zz
RPUSH k a b | k | LPUSHX k c
RPUSH k a b | k | RPOPLPUSH zz k
RPUSH k a b | k | BLMOVE zz k LEFT LEFT 0.01
HSET k f v | k | HINCRBYFLOAT k f 0
SET k abc | k | OBJECT FREQ k
ZADD k 1 a | k | ZADD k CH 1 a
ZADD k 1 a | k | ZADD k INCR 0 a
RPUSH k a | k | LTRIM k 5 10
SET k abc | k | SETRANGE k 5 ""
RPUSH k a b c | k | LINSERT k AFTER c x
SET k abc | k | INCR k
SET k abc | k | INCRBYFLOAT k 1
SET k 9223372036854775807 | k | INCR k
SET k 1 | k | INCRBYFLOAT k inf
HSET k f v | k | HINCRBY k f 1
HSET k f 9223372036854775807 | k | HINCRBY k f 1
HSET k f 1 | k | HINCRBYFLOAT k f inf
RPUSH k a | k | LSET k 99 x
SET k abc | k | SETRANGE k 536870912 x
ZADD k inf a | k | ZADD k INCR -inf a
ZADD k inf a | k | ZINCRBY k -inf a
SET k abc | k | GETEX k EX 0
RPUSH k a | k | SET k x GET
RPUSH k a; SET d x | k | LMOVE k d LEFT LEFT
RPUSH k a; SET d x | k | RPOPLPUSH k d
SADD k a; SET d x | k | SMOVE k d a
SET k abc | k | BITFIELD k SET u8 0 97
SET k abc | k | SETRANGE k 0 abc
SET k abc | k | SETBIT k 1 0
HSET k f v | k | HSETNX k g w
SADD k a b | k | SINTERSTORE k k
SET k 1 | k | DECRBY k 0
RPUSH k a b | k | LPOS k zz
RPUSH k a b | k | LMPOP 1 k LEFT COUNT 5
ZADD k 1 a 2 b | k | ZRANGESTORE k k 5 6
ZADD k 1 a 2 b | k | ZADD k LT 5 a
ZADD k 1 a 2 b | k | ZADD k GT CH 5 a
HSET k f v | k | HDEL k f zz
SET k abc | k | SETRANGE k 3 ""
SET k 10 | k | INCRBYFLOAT k 0
RPUSH k a b | k | LREM k 1 a
SADD k a | k | SINTERSTORE d k
SADD {t}k a | {t}k | SINTERSTORE {t}d {t}k
SADD k a | k | SUNIONSTORE d k
SADD {t}k a | {t}k | SUNIONSTORE {t}d {t}k
SADD k a | k | SDIFFSTORE d k
SADD {t}k a | {t}k | SDIFFSTORE {t}d {t}k
SADD k a; SADD d b | d | SMOVE k d zz
SADD {t}k a; SADD {t}d b | {t}d | SMOVE {t}k {t}d zz
SADD k a; SADD d b | k | SMOVE k d zz
SADD {t}k a; SADD {t}d b | {t}k | SMOVE {t}k {t}d zz
ZADD k 1 a | k | ZUNIONSTORE d 1 k
ZADD {t}k 1 a | {t}k | ZUNIONSTORE {t}d 1 {t}k
ZADD k 1 a | k | ZINTERSTORE d 1 k
ZADD {t}k 1 a | {t}k | ZINTERSTORE {t}d 1 {t}k
ZADD k 1 a | k | ZDIFFSTORE d 1 k
ZADD {t}k 1 a | {t}k | ZDIFFSTORE {t}d 1 {t}k
ZADD k 1 a | k | ZRANGESTORE d k 0 -1
ZADD {t}k 1 a | {t}k | ZRANGESTORE {t}d {t}k 0 -1
RPUSH k 3 1 2 | k | SORT k STORE d
RPUSH {t}k 3 1 2 | {t}k | SORT {t}k STORE {t}d
SET k abc | k | COPY k d
SET {t}k abc | {t}k | COPY {t}k {t}d
SET k abc | k | BITOP AND d k
SET {t}k abc | {t}k | BITOP AND {t}d {t}k
PFADD k a | k | PFMERGE d k
PFADD {t}k a | {t}k | PFMERGE {t}d {t}k
PFADD {t}k a; PFADD {t}d a | {t}k | PFMERGE {t}k {t}d
PFADD k a; PFADD d a | k | PFMERGE k
PFADD {t}k a; PFADD {t}d a | {t}k | PFMERGE {t}k
PFADD k a; PFADD d b | k | PFCOUNT k d
PFADD {t}k a; PFADD {t}d b | {t}k | PFCOUNT {t}k {t}d
GEOADD k 0 0 a | k | GEOSEARCHSTORE d k FROMLONLAT 0 0 BYRADIUS 1 km
GEOADD {t}k 0 0 a | {t}k | GEOSEARCHSTORE {t}d {t}k FROMLONLAT 0 0 BYRADIUS 1 km
RPUSH k a; RPUSH d b | d | LMOVE k d LEFT LEFT
RPUSH {t}k a; RPUSH {t}d b | {t}d | LMOVE {t}k {t}d LEFT LEFT
RPUSH k a | k | LMPOP 2 d k LEFT
RPUSH {t}k a | {t}k | LMPOP 2 {t}d {t}k LEFT
SET k abc | k | MSETNX d x k y
SET {t}k abc | {t}k | MSETNX {t}d x {t}k y
SET k abc | k | RENAMENX k d
SET {t}k abc | {t}k | RENAMENX {t}k {t}d
SET {t}k abc; SET {t}d x | {t}d | RENAMENX {t}k {t}d
SET k abc; SET d x | k | RENAMENX k d
SET {t}k abc; SET {t}d x | {t}k | RENAMENX {t}k {t}d
SET k abc; SET d x | k | COPY k d
SET {t}k abc; SET {t}d x | {t}k | COPY {t}k {t}d
SET k abc | k | SETBIT k 100 0
SET {t}k abc | {t}k | SETBIT {t}k 100 0
SET k abc | k | BITFIELD k SET u8 100 0
SET {t}k abc | {t}k | BITFIELD {t}k SET u8 100 0
SET k abc | k | BITFIELD k INCRBY u8 0 0
SET {t}k abc | {t}k | BITFIELD {t}k INCRBY u8 0 0
SET k abc | k | BITFIELD k INCRBY u8 0 256
SET {t}k abc | {t}k | BITFIELD {t}k INCRBY u8 0 256
SET k 123 | k | SETBIT k 2 1
SET {t}k 123 | {t}k | SETBIT {t}k 2 1
SET {t}k abc | {t}k | GETEX {t}k PERSIST
RPUSH k a | k | RPOPLPUSH k k
RPUSH {t}k a | {t}k | RPOPLPUSH {t}k {t}k
SADD k a b; SADD d a | k | SINTERCARD 2 k d
SADD {t}k a b; SADD {t}d a | {t}k | SINTERCARD 2 {t}k {t}d
SADD k a b; SET d x | k | SMOVE k d a
SADD {t}k a b; SET {t}d x | {t}k | SMOVE {t}k {t}d a
ZADD k 1 a; SET d x | k | ZUNIONSTORE k 2 k d
ZADD {t}k 1 a; SET {t}d x | {t}k | ZUNIONSTORE {t}k 2 {t}k {t}d
HSET k a 1 | k | HSET k a 1
HSET {t}k a 1 | {t}k | HSET {t}k a 1
RPUSH k a | k | LTRIM k 0 -1
RPUSH {t}k a | {t}k | LTRIM {t}k 0 -1
SET k abc | k | EVAL "return redis.call('SETBIT', KEYS[1], 1, 1)" 1 k
SET {t}k abc | {t}k | EVAL "return redis.call('SETBIT', KEYS[1], 1, 1)" 1 {t}k
SET k abc | k | EVAL "return redis.call('SET', KEYS[1], 'x')" 1 k
SET {t}k abc | {t}k | EVAL "return redis.call('SET', KEYS[1], 'x')" 1 {t}k
SET k abc | k | EVAL "redis.call('SET', KEYS[1], 'x'); return redis.call('INCR', KEYS[1])" 1 k
SET {t}k abc | {t}k | EVAL "redis.call('SET', KEYS[1], 'x'); return redis.call('INCR', KEYS[1])" 1 {t}k
SET k abc | k | EVAL "redis.call('SADD', KEYS[1], 'x')" 1 k
SET {t}k abc | {t}k | EVAL "redis.call('SADD', KEYS[1], 'x')" 1 {t}k
SADD k abc | k | EVAL "return redis.call('SADD', KEYS[1], 'abc')" 1 k
SADD {t}k abc | {t}k | EVAL "return redis.call('SADD', KEYS[1], 'abc')" 1 {t}k
SET k 5 | k | EVAL "return redis.call('SET', KEYS[1], '5')" 1 k
SET {t}k 5 | {t}k | EVAL "return redis.call('SET', KEYS[1], '5')" 1 {t}k
"#;

#[test]
fn transactions_match_redis() {
    check("transactions", TX);
}

const TX: &str = r#"
# MOVE inside a transaction that spans both cores
HSET {t}b f 1
MULTI
MOVE {t}b 1
MSETNX b x {t}c y {t}b z
EXEC
TYPE {t}b
SELECT 1
TYPE {t}b
HGET {t}b f

# the same with COPY ... DB and a key back
SET {t}a 1
MULTI
COPY {t}a {t}a DB 1
MOVE {t}a 2
SET b 2
EXEC
SELECT 2
GET {t}a
SELECT 1
GET {t}a

# no-ops on watched keys are not modifications
HSET {t}a f 1
WATCH {t}a {t}c
LTRIM {t}c 0 1
BLMPOP 0.01 2 {t}c {t}c LEFT
DEL {t}c
LPOP {t}c
ZADD {t}a NX 1 m
SADD {t}a m
HSET {t}a f 1
MULTI
HSETNX {t}a g 2
EXEC
HLEN {t}a

# a real change still aborts
WATCH k
SET k 1
MULTI
SET k 2
EXEC
GET k

# an empty transaction too
WATCH k
INCR k
MULTI
EXEC

# SWAPDB and FLUSHDB signal only the watched keys that exist in either database
WATCH k
SWAPDB 0 1
FLUSHALL
MULTI
PING
EXEC

SELECT 1
SET k 1
SELECT 0
WATCH k
SWAPDB 0 1
MULTI
PING
EXEC

SET x 1
WATCH k
SWAPDB 1 0
SWAPDB 0 1
GET x
MULTI
PING
EXEC

SET k 1
WATCH k
SELECT 1
FLUSHDB
SELECT 0
MULTI
PING
EXEC

SET k 1
WATCH k
FLUSHDB
MULTI
PING
EXEC

# and one that starts with a whole-keyspace command
SET k 1
WATCH k
DEL k
MULTI
DBSIZE
EXEC
DBSIZE

# UNWATCH queued inside MULTI
WATCH a
MULTI
UNWATCH
SET a 1
EXEC
GET a

# an unknown subcommand or a subcommand's wrong arity is refused when queued
MULTI
SCRIPT x
PUBSUB x
SCRIPT EXISTS
PUBSUB NUMPAT y
SET a 1
EXEC
GET a

# PUBSUB and SCRIPT subcommands
PUBSUB SHARDCHANNELS
PUBSUB SHARDNUMSUB a b
PUBSUB NUMSUB a
SCRIPT LOAD
SCRIPT EXISTS
SCRIPT FLUSH x
SCRIPT FLUSH ASYNC
SCRIPT LOAD "return 1"
SCRIPT EXISTS e0e1f9fabfc9d4800c877a703b823ac0578ff8db ffffffffffffffffffffffffffffffffffffffff
!HELLO 3
PUBSUB NUMSUB a b
PUBSUB SHARDNUMSUB a
"#;

/// The Lua libraries and helpers Redis gives scripts: `cjson`, `bit`, `redis.sha1hex`,
/// `redis.setresp` and the RESP3 reply tables ({map=}, {set=}, {double=}).
#[test]
fn scripting_libraries_match_redis() {
    check("scripting libraries", LUA_LIBS);
}

/// Redis 7.0's Lua sandbox: what a script can reach, and that it cannot change what the next
/// script sees.
#[test]
fn script_sandbox_matches_redis() {
    check("script sandbox", LUA_SANDBOX);
}

const LUA_SANDBOX: &str = r#"
EVAL "local n = {} for k in pairs(_G) do n[#n + 1] = k end table.sort(n) return n" 0
EVAL "return type(__redis__err__handler)" 0
EVAL "return foo" 0
EVAL "foo = 1 return 1" 0
EVAL "return foo" 0
EVAL "return type(print)" 0
EVAL "return type(dofile)" 0
EVAL "return type(loadfile)" 0
EVAL "return type(os)" 0
EVAL "return type(io)" 0
EVAL "return type(package)" 0
EVAL "return type(require)" 0
EVAL "return type(debug)" 0
EVAL "return type(setfenv)" 0
EVAL "return type(getfenv)" 0
EVAL "return type(newproxy)" 0
EVAL "return {type(loadstring), type(load), type(coroutine), type(gcinfo), type(unpack), type(_G), type(rawget)}" 0
EVAL "string.foo = 1 return 1" 0
EVAL "redis.call = nil return 1" 0
EVAL "cjson.encode = nil return 1" 0
EVAL "return rawset({}, 'x', 1).x" 0
EVAL "return loadstring('return 7')()" 0
~EVAL "return loadstring('y = 7')()" 0
~EVAL "return loadstring('return zz')()" 0
EVAL "local function f() return undefinedthing end return f()" 0
EVAL "return _G.foo" 0
EVAL "_G.foo = 1 return 1" 0
EVAL "return rawget(_G, 'tostring') ~= nil" 0
EVAL "return rawget(string, 'rep') ~= nil" 0
EVAL "local n = 0 for k in pairs(string) do n = n + 1 end return n > 10" 0
EVAL "return next(math) ~= nil" 0
EVAL "local ok, e = pcall(function() bar = 1 end) return e" 0
EVAL "local ok, e = pcall(function() return nosuch end) return e" 0
EVAL "return select('#', pcall(function() bar = 1 end))" 0
EVAL "return ('x'):rep(3)" 0
EVAL "return {type(getmetatable('')), type(getmetatable('').__index), getmetatable('').__index == string}" 0
EVAL "return pcall(function() getmetatable('').__index.upper = nil end)" 0
EVAL "return pcall(function() getmetatable('').__index = nil end)" 0
EVAL "return ('a'):upper()" 0
EVAL "return {tostring(getmetatable(string)), type(getmetatable(_G)), getmetatable({}) == nil}" 0
EVAL "return pcall(function() getmetatable(_G).x = 1 end)" 0
EVAL "local f, e = loadstring(string.dump(function() return 1 end)) return {type(f), e}" 0
EVAL "local f, e = loadstring(string.dump(function() return 1 end), 'named') return {type(f), e}" 0
EVAL "local s = string.dump(function() return 1 end) local f, e = load(function() local p = s s = nil return p end) return {type(f), e}" 0
EVAL "local n = 0 local f = load(function() n = n + 1 if n == 1 then return 'return ' elseif n == 2 then return '42' end end) return f()" 0
EVAL "\x1bLuaQ\x00\x01\x04\x08\x04\x08\x00" 0
SCRIPT LOAD "\x1bLuaQ\x00"
EVAL "local t = setmetatable({}, {__index = function() return 5 end}) return t.a" 0
EVAL "return coroutine.resume(coroutine.create(function() return 1 end))" 0
EVAL "return redis.call('SET', KEYS[1], 'v')" 1 k
EVAL "return redis.call('GET', KEYS[1])" 1 k
~EVAL "rawset(redis, 'call', 1) return 1" 0
~EVAL "return setmetatable(_G, nil)" 0
EVAL "return redis.call('GET', KEYS[1])" 1 k
EVAL "return redis.call('PING')" 0
EVAL "return redis.call('PING', 'x')" 0
EVAL "return redis.pcall('PING', 'x', 'y')" 0
EVAL "return redis.call('ECHO', 'e')" 0
EVAL "return #redis.call('TIME')" 0
EVAL "return redis.call('PUBLISH', 'nobody', 'm')" 0
EVAL "return {redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL}" 0
EVAL "return redis.set_repl()" 0
EVAL "return redis.set_repl(1, 2)" 0
EVAL "return redis.set_repl(7)" 0
EVAL "return redis.set_repl(-1)" 0
EVAL "return redis.set_repl('x')" 0
EVAL "redis.set_repl(redis.REPL_NONE) return redis.call('SET', KEYS[1], 'n')" 1 k
EVAL "redis.set_repl(redis.REPL_ALL) return redis.call('GET', KEYS[1])" 1 k
"#;

const LUA_LIBS: &str = r#"
EVAL "return cjson.encode({1, 2.5, 'a', true, false, {x=1}, {}, {{}}})" 0
EVAL "return cjson.encode({s='a/b\"c\\\\d\\n\\1'})" 0
EVAL "return cjson.encode({[1]=1, [3]=3})" 0
EVAL "return cjson.encode({[1]=1, [30]=3})" 0
EVAL "return cjson.encode({1e20, 0.1, -0.5, 123456789012345678, 1/3})" 0
EVAL "return cjson.encode(cjson.null)" 0
EVAL "return cjson.encode({[2.5]='x'})" 0
EVAL "return cjson.decode('[1,2,{\"a\":3}]')[3].a" 0
EVAL "return cjson.decode('{\"a\":[1,null,3]}').a[3]" 0
EVAL "return cjson.decode('\"\\u00e9\\ud83d\\ude00\\/\"')" 0
EVAL "return type(cjson.decode('null'))" 0
EVAL "return cjson.decode('  [ ]  ')" 0
EVAL "return cjson.decode('{\"x\":-1.5e3}').x" 0
EVAL "local t = cjson.decode('[true,false]') return {t[1], t[2]}" 0
EVAL "return cjson.encode(cjson.decode('{\"k\":[1,\"two\",{\"n\":null}]}'))" 0
EVAL "return cjson.encode(1/0)" 0
EVAL "return cjson.decode('[1,2')" 0
EVAL "return cjson.decode('[1,2] x')" 0
EVAL "return cjson.decode('{\"a\" 1}')" 0
~EVAL "return cjson.decode('[1,')" 0
~EVAL "return cjson.encode(print)" 0
EVAL "return bit.band(0xff, 0x0f, 0x3c)" 0
EVAL "return bit.band('x')" 0
EVAL "return bit.band()" 0
EVAL "return bit.bor('12', 1)" 0
EVAL "return bit.bor(1, 2, 4)" 0
EVAL "return bit.bxor(0xf0, 0xff)" 0
EVAL "return bit.tohex(255)" 0
EVAL "return bit.tohex(-1, -4)" 0
EVAL "return bit.tohex(0x1234, 2)" 0
EVAL "return bit.lshift(1, 31)" 0
EVAL "return bit.rshift(-1, 28)" 0
EVAL "return bit.arshift(-256, 4)" 0
EVAL "return bit.bnot(0)" 0
EVAL "return bit.tobit(2^32 + 5)" 0
EVAL "return bit.bswap(0x12345678)" 0
EVAL "return bit.rol(0x12345678, 12)" 0
EVAL "return bit.ror(0x12345678, 12)" 0
EVAL "return redis.sha1hex(nil)" 0
EVAL "return redis.sha1hex(12)" 0
EVAL "return redis.sha1hex('abc')" 0
EVAL "return {double=3.5}" 0
EVAL "return {map={a=1}}" 0
EVAL "return {set={a=true}}" 0
EVAL "return {big_number='123'}" 0
EVAL "return {ok='fine'}" 0
EVAL "return redis.replicate_commands()" 0
EVAL "return tonumber(ARGV[1])" 0 9223372036854775807
EVAL "return 0/0" 0
EVAL "return -1e300" 0
EVAL "return cmsgpack.pack(0, 1, -1, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 2^62)" 0
EVAL "return cmsgpack.pack(-32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -2^62)" 0
EVAL "return cmsgpack.pack(0.5, 1.1, 1/0, -1/0, 0/0, -0.0, 2^63, 2^64, 2^53 + 1, 1e300, 3.4e38, -1.5)" 0
EVAL "return cmsgpack.pack('', 'abc', string.rep('x', 31), string.rep('x', 32), string.rep('y', 255), string.rep('z', 256))" 0
EVAL "return cmsgpack.pack(string.rep('w', 65535), string.rep('v', 65536))" 0
EVAL "return cmsgpack.pack({}, {1, 2, 3}, {a = 1}, {1, nil, 3}, {[1] = 1, [2] = 2, [4] = 4}, {[0] = 1}, {[1.5] = 1}, {x = {y = {z = {}}}})" 0
EVAL "return cmsgpack.pack({a = 1, b = 2, c = 3, d = {1, 2}, [5] = 'x', [true] = false, [2.5] = 'f', long_key_name = {}})" 0
EVAL "local t = {} for i = 1, 20 do t[i] = i * 1000 end return cmsgpack.pack(t)" 0
EVAL "local t = {} for i = 1, 70000 do t[i] = i % 3 end return cmsgpack.pack(t)" 0
EVAL "local t = {} for i = 1, 20 do t['k' .. i] = i end return cmsgpack.pack(t)" 0
EVAL "local t = {} local c = t for i = 1, 20 do c[1] = {} c = c[1] end return cmsgpack.pack(t)" 0
EVAL "local t = {} local c = t for i = 1, 20 do c.k = {i} c = c.k end return cmsgpack.pack(t)" 0
EVAL "return cmsgpack.pack(true, false, nil, tostring, 'end')" 0
EVAL "return cmsgpack.pack(tonumber(ARGV[1]), ARGV[1])" 0 123
EVAL "return cmsgpack.pack()" 0
EVAL "return cjson.encode({cmsgpack.unpack(cmsgpack.pack(1, -200, 'a', {1, 2, {3}}, {k = 'v'}, true, 70000, -70000))})" 0
EVAL "return tostring(cmsgpack.unpack(cmsgpack.pack(1.1)))" 0
EVAL "return tostring(cmsgpack.unpack(cmsgpack.pack(0.5)))" 0
EVAL "return {cmsgpack.unpack('\\217\\3abc\\218\\0\\1z\\219\\0\\0\\0\\0')}" 0
EVAL "return tostring(cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255'))" 0
EVAL "return tostring(cmsgpack.unpack('\\211\\128\\0\\0\\0\\0\\0\\0\\0'))" 0
EVAL "return {cmsgpack.unpack('\\204\\200\\208\\200\\205\\1\\2\\209\\255\\0\\206\\0\\1\\0\\0\\210\\255\\255\\255\\0')}" 0
EVAL "return cjson.encode({cmsgpack.unpack('\\192\\194\\195\\224\\255\\127\\145\\1\\129\\161a\\2\\220\\0\\1\\7\\222\\0\\1\\1\\2\\221\\0\\0\\0\\0\\223\\0\\0\\0\\0')})" 0
EVAL "return select('#', cmsgpack.unpack(''))" 0
EVAL "return {cmsgpack.unpack(12)}" 0
EVAL "return cmsgpack.unpack('\\196\\1a')" 0
EVAL "return cmsgpack.unpack('\\193')" 0
EVAL "return cmsgpack.unpack('\\205\\1')" 0
EVAL "return cmsgpack.unpack('\\147\\1\\2')" 0
EVAL "return cmsgpack.unpack('\\165abc')" 0
EVAL "return cmsgpack.unpack()" 0
EVAL "return cmsgpack.unpack({})" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, 1)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, 2)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, 3)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, 4)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, -1)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, 2)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, 0)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, 5, 1)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, '2', '1.9')}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, -1)}" 0
EVAL "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, 'x')}" 0
EVAL "return {cmsgpack._NAME, cmsgpack._VERSION, cmsgpack._COPYRIGHT, cmsgpack._DESCRIPTION}" 0
~EVAL "return cmsgpack.unpack('\\129\\192\\1')" 0
EVAL "return struct.pack('bBhHlLTiI', -1, 255, -2, 65535, -3, 7, 9, -4, 5)" 0
EVAL "return struct.pack('>bBhHlLTiI', -1, 255, -2, 65535, -3, 7, 9, -4, 5)" 0
EVAL "return struct.pack('<i2>i2i3I5i8i16', 258, 258, -1, 1099511627775, -2, -3)" 0
EVAL "return struct.pack('!bi!2bd!4bhbf', 1, 2, 3, 4.5, 5, 6, 7, 1.5)" 0
EVAL "return struct.pack('xbxx c3 c0 s', 1, 'abcdef', 'zz', 'str')" 0
EVAL "return struct.pack('dfd', 0.1, 0.1, -1/0)" 0
EVAL "return struct.pack('i', 2^40)" 0
EVAL "return struct.pack('I8', 2^63)" 0
EVAL "return struct.pack('l', -2^63)" 0
EVAL "return struct.pack('B', 256)" 0
EVAL "return struct.pack('i', '12')" 0
EVAL "return struct.pack('i', 'x')" 0
EVAL "return struct.pack('i')" 0
EVAL "return struct.pack('s')" 0
EVAL "return struct.pack('c2', {})" 0
EVAL "return struct.pack('c5', 'ab')" 0
EVAL "return struct.pack('y', 1)" 0
EVAL "return struct.pack('i33', 1)" 0
EVAL "return struct.pack('!3i', 1)" 0
EVAL "return struct.pack('i99999999999', 1)" 0
EVAL "return struct.pack()" 0
EVAL "return {struct.unpack('bBhHlLiI', struct.pack('bBhHlLiI', -1, 255, -2, 65535, -3, 7, -4, 5))}" 0
EVAL "return {struct.unpack('>i3<i3', struct.pack('>i3<i3', -5, 70000))}" 0
EVAL "return {struct.unpack('c3c0s', 'abc' .. string.char(2) .. 'xyhello' .. string.char(0) .. 'rest')}" 0
EVAL "return {struct.unpack('b c0', string.char(3) .. 'abcd')}" 0
EVAL "return {struct.unpack('i', 'abcdefgh', 5)}" 0
EVAL "return tostring(struct.unpack('d', struct.pack('d', 0.1)))" 0
EVAL "return tostring(struct.unpack('f', struct.pack('f', 0.1)))" 0
EVAL "return tostring(struct.unpack('I8', string.rep(string.char(255), 8)))" 0
EVAL "return tostring(struct.unpack('i16', string.rep(string.char(255), 16)))" 0
EVAL "return {struct.unpack('!4 b i', struct.pack('!4 b i', 1, 2))}" 0
EVAL "return struct.unpack('i', 'abc')" 0
EVAL "return struct.unpack('i', 'abcd', 0)" 0
EVAL "return struct.unpack('i', 'abcd', 2)" 0
EVAL "return struct.unpack('s', 'abc')" 0
EVAL "return struct.unpack('c0', 'abc')" 0
EVAL "return struct.unpack('bc0', string.char(9) .. 'abc')" 0
EVAL "return struct.unpack('i')" 0
EVAL "return struct.unpack('q', 'abcd')" 0
EVAL "return struct.size('bhilfdx!8d c5 i3')" 0
EVAL "return struct.size('>!4 b i')" 0
EVAL "return struct.size('s')" 0
EVAL "return struct.size('c0')" 0
EVAL "return struct.size('z')" 0
EVAL "return struct.size('!5')" 0
EVAL "struct.pack = nil return 1" 0

HSET h a 1
ZADD z 1.5 m
EVAL "redis.setresp(3); return redis.call('HGETALL', KEYS[1])" 1 h
EVAL "redis.setresp(3); return redis.call('ZSCORE', KEYS[1], 'm')" 1 z
EVAL "redis.setresp(3); return redis.call('ZSCORE', KEYS[1], 'nosuch')" 1 z
EVAL "redis.setresp(3); return redis.call('EXISTS', KEYS[1]) == 1" 1 z
EVAL "redis.setresp(3); return false" 0
EVAL "redis.setresp(3); local r = redis.call('HGETALL', KEYS[1]) return r['map']['a']" 1 h
EVAL "redis.setresp(2); return redis.call('ZSCORE', KEYS[1], 'm')" 1 z
!HELLO 3
EVAL "redis.setresp(3); return redis.call('HGETALL', KEYS[1])" 1 h
EVAL "redis.setresp(3); return redis.call('ZSCORE', KEYS[1], 'm')" 1 z
EVAL "redis.setresp(3); return false" 0
EVAL "return {double=3.5}" 0
EVAL "return {map={a=1}}" 0
EVAL "return {set={a=true}}" 0
EVAL "return false" 0
"#;

/// HyperLogLog strings byte for byte: sparse while small (opcode splits and merges), dense past
/// 3,000 bytes or a register above 32, PFMERGE keeping or leaving the sparse encoding, and the
/// cardinality PFCOUNT caches in the header.
#[test]
fn hyperloglog_bytes_match_redis() {
    let words = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| format!("e{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let script = format!(
        "PFADD h\nGET h\nPFADD h a b c\nGET h\nPFADD h a\nGET h\nPFADD h {w1}\nGET h\n\
         PFADD h {w2}\nGET h\nPFADD s {w3}\nPFADD t {w4}\nPFMERGE m s t\nGET m\n\
         PFMERGE d h s\nGET d\nPFMERGE s t\nGET s\nPFCOUNT h s t m d\nPFCOUNT m\nGET m\n\
         PFCOUNT m\nPFCOUNT h\nGET h\nPFADD h e1\nGET h\nPFADD h zzz\nGET h\nPFCOUNT nokey\n\
         OBJECT ENCODING s\nPFADD new\nOBJECT ENCODING new\nPFCOUNT new\nGET new\n\
         SET x notanhll\nPFADD x a\nPFMERGE m x\nPFCOUNT x",
        w1 = words(0, 60),
        w2 = words(60, 3000),
        w3 = words(5000, 40),
        w4 = words(7000, 30),
    );
    check("hyperloglog", &script);
    // hll-sparse-max-bytes decides when a sparse HyperLogLog turns dense.
    let limit = format!(
        "CONFIG SET hll-sparse-max-bytes 40\nPFADD h {w}\nGET h\nPFADD h2 a\nGET h2\n\
         CONFIG SET hll-sparse-max-bytes 3000\nPFADD g {w}\nGET g\nPFADD h2 {w}\nGET h2\n\
         CONFIG SET hll-sparse-max-bytes 1kb\nCONFIG GET hll-sparse-max-bytes\n\
         CONFIG SET hll-sparse-max-bytes -1\nCONFIG SET hll-sparse-max-bytes 1.5\n\
         CONFIG SET hll-sparse-max-bytes 99999999999999999999\n\
         CONFIG SET hash-max-listpack-value -1\nCONFIG SET hll-sparse-max-bytes 3000",
        w = words(100, 30),
    );
    check("hyperloglog sparse limit", &limit);
}

#[test]
fn strings_match_redis() {
    check("strings", STRINGS);
}

#[test]
fn geo_matches_redis() {
    // A big set (a tree, not a listpack): a pseudo-random grid over the globe, searched
    // around several centres and radii.
    let mut add = String::from("GEOADD world");
    for i in 0..600u64 {
        let lon = ((i * 7919) % 3600) as f64 / 10.0 - 180.0;
        let lat = ((i * 104729) % 1700) as f64 / 10.0 - 85.0;
        add.push_str(&format!(" {lon} {lat} p{i}"));
    }
    let mut big = vec![
        add,
        "ZCARD world".to_string(),
        "OBJECT ENCODING world".to_string(),
        "GEOSEARCHSTORE all world FROMLONLAT 0 0 BYRADIUS 30000 km".to_string(),
        "OBJECT ENCODING all".to_string(),
    ];
    for (lon, lat, r) in [
        (0, 0, 500),
        (120, 45, 2000),
        (-179, -60, 3000),
        (10, 84, 800),
    ] {
        big.push(format!("GEORADIUS world {lon} {lat} {r} km WITHDIST ASC"));
        big.push(format!(
            "GEOSEARCH world FROMLONLAT {lon} {lat} BYBOX {r} {r} km WITHCOORD ASC"
        ));
        big.push(format!(
            "GEOSEARCH world FROMLONLAT {lon} {lat} BYRADIUS {r} km COUNT 5"
        ));
        big.push(format!(
            "GEOSEARCH world FROMLONLAT {lon} {lat} BYRADIUS {r} km"
        ));
        big.push(format!(
            "GEOSEARCHSTORE out world FROMLONLAT {lon} {lat} BYRADIUS {r} km STOREDIST"
        ));
        big.push("ZRANGE out 0 -1 WITHSCORES".to_string());
        big.push("OBJECT ENCODING out".to_string());
    }
    big.push("GEOHASH world p1 p2 p3 p100 p599".to_string());
    big.push("GEOPOS world p1 p2 p3 p100 p599".to_string());
    check("geo", &format!("{}\n\n{GEO}", big.join("\n")));
}

#[test]
fn bits_match_redis() {
    check("bits", BITS);
}

#[test]
fn keys_match_redis() {
    check("keys", KEYS);
}

#[test]
fn sort_matches_redis() {
    // Quicklists (more than 128 elements) and a hash table set, unsorted ranges included.
    let n: Vec<String> = (0..300).map(|i| ((i * 7919) % 1000).to_string()).collect();
    let big = format!(
        "RPUSH big {all}\nSADD bigs {all} x y\nSORT big\nSORT big DESC LIMIT 17 40\n\
         SORT big BY nosort LIMIT 250 10\nSORT big BY nosort DESC LIMIT 133 5\n\
         SORT big ALPHA LIMIT 100 20 STORE d\nLRANGE d 0 -1\nSORT bigs ALPHA LIMIT 290 30\n\
         SORT bigs LIMIT 0 5\nSORT bigs BY nosort STORE d\nLRANGE d 0 -1\nOBJECT ENCODING d",
        all = n.join(" ")
    );
    check("sort", &format!("{big}\n\n{SORT}"));
}

#[test]
fn wrongtype_matches_redis() {
    check("wrongtype", WRONGTYPE);
}

#[test]
fn connection_commands_match_redis() {
    check("connection", CONN);
}

/// With `requirepass`: what an unauthenticated client gets, then AUTH/HELLO AUTH.
#[test]
fn auth_matches_redis() {
    let Some(p) = pair(&["--requirepass", "sekret"], &["--requirepass", "sekret"]) else {
        return;
    };
    let script = r#"
GET a
PING
ECHO x
FOO
GET
HELLO
HELLO 3
HELLO 2 AUTH default wrong
AUTH wrong
AUTH default wrong
AUTH nouser sekret
AUTH sekret
GET a
AUTH default sekret
FLUSHALL

HELLO 2 AUTH default sekret SETNAME me
CLIENT GETNAME
DBSIZE
"#;
    // Groups start with FLUSHALL, which needs AUTH: run the unauthenticated part by hand first.
    let mut diffs = Vec::new();
    for group in script.split("\n\n") {
        let mut r = Raw::connect(p.redis.port);
        let mut c = Raw::connect(p.codis.port);
        for line in group.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (a, b) = (r.line(line), c.line(line));
            let (a, b) = if line.starts_with("HELLO 2 AUTH default sekret") {
                // id and version differ; the shape must not
                (a[..4].to_vec(), b[..4].to_vec())
            } else {
                (a, b)
            };
            if a != b {
                diffs.push(format!(
                    "{line}\n  redis: {}\n  codis: {}",
                    show(&a),
                    show(&b)
                ));
            }
        }
    }
    // Unauthenticated clients have tight framing limits.
    for (req, name) in [
        (b"*11\r\n".to_vec(), "multibulk > 10"),
        (b"*1\r\n$16385\r\n".to_vec(), "bulk > 16384"),
    ] {
        let mut r = Raw::connect(p.redis.port);
        let mut c = Raw::connect(p.codis.port);
        r.send(&req);
        c.send(&req);
        let (a, b) = (r.read(), c.read());
        if a != b {
            diffs.push(format!(
                "{name}\n  redis: {}\n  codis: {}",
                a.show(),
                b.show()
            ));
        }
    }
    assert!(diffs.is_empty(), "auth differs:\n{}", diffs.join("\n"));
}

/// Protocol framing (redis `tests/unit/protocol.tcl` and reference §4.1/4.2): raw bytes in, the
/// exact replies out, and whether the connection is closed afterwards.
/// (name, request bytes, expected replies, closes?)
type FramingCase = (&'static str, &'static [u8], &'static [&'static [u8]], bool);

const FRAMING: &[FramingCase] = &[
    ("inline ping", b"PING\r\n", &[b"+PONG\r\n"], false),
    ("inline bare lf", b"PING\n", &[b"+PONG\r\n"], false),
    (
        "empty lines ignored",
        b"\r\n\n\r\nPING\r\n",
        &[b"+PONG\r\n"],
        false,
    ),
    (
        "inline args",
        b"ECHO   hello  \r\n",
        &[b"$5\r\nhello\r\n"],
        false,
    ),
    (
        "inline double quotes",
        b"ECHO \"a b\\x41\\n\"\r\n",
        &[b"$5\r\na bA\n\r\n"],
        false,
    ),
    (
        "inline single quotes",
        b"ECHO 'v\\x41\\''\r\n",
        &[b"$6\r\nv\\x41'\r\n"],
        false,
    ),
    (
        "unbalanced quotes",
        b"ECHO \"abc\r\n",
        &[b"-ERR Protocol error: unbalanced quotes in request\r\n"],
        true,
    ),
    (
        "closing quote followed by text",
        b"ECHO \"a\"b\r\n",
        &[b"-ERR Protocol error: unbalanced quotes in request\r\n"],
        true,
    ),
    (
        "*-1 ignored",
        b"*-1\r\n*1\r\n$4\r\nPING\r\n",
        &[b"+PONG\r\n"],
        false,
    ),
    (
        "*0 ignored",
        b"*0\r\n*1\r\n$4\r\nPING\r\n",
        &[b"+PONG\r\n"],
        false,
    ),
    (
        "bulk trailer unchecked",
        b"*1\r\n$4\r\nPINGxx",
        &[b"+PONG\r\n"],
        false,
    ),
    (
        "multibulk not a number",
        b"*abc\r\n",
        &[b"-ERR Protocol error: invalid multibulk length\r\n"],
        true,
    ),
    (
        "multibulk above INT_MAX",
        b"*2147483648\r\n",
        &[b"-ERR Protocol error: invalid multibulk length\r\n"],
        true,
    ),
    (
        "bulk not a number",
        b"*1\r\n$abc\r\n",
        &[b"-ERR Protocol error: invalid bulk length\r\n"],
        true,
    ),
    (
        "negative bulk",
        b"*1\r\n$-1\r\n",
        &[b"-ERR Protocol error: invalid bulk length\r\n"],
        true,
    ),
    (
        "bulk above proto-max-bulk-len",
        b"*1\r\n$536870913\r\n",
        &[b"-ERR Protocol error: invalid bulk length\r\n"],
        true,
    ),
    (
        "4 GB bulk",
        b"*1\r\n$4294967296\r\n",
        &[b"-ERR Protocol error: invalid bulk length\r\n"],
        true,
    ),
    (
        "expected $",
        b"*1\r\n:12\r\n",
        &[b"-ERR Protocol error: expected '$', got ':'\r\n"],
        true,
    ),
    (
        "replies before the error",
        b"PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n",
        &[
            b"+PONG\r\n",
            b"+PONG\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ],
        true,
    ),
    (
        "unknown command with args",
        b"FOO bar 'x y'\r\n",
        &[b"-ERR unknown command 'FOO', with args beginning with: 'bar' 'x y' \r\n"],
        false,
    ),
    (
        "unknown command no args",
        b"foo\r\n",
        &[b"-ERR unknown command 'foo', with args beginning with: \r\n"],
        false,
    ),
    (
        "unknown command with CRLF in its name",
        b"*1\r\n$5\r\nF\r\nOO\r\n",
        &[b"-ERR unknown command 'F  OO', with args beginning with: \r\n"],
        false,
    ),
    (
        "empty command name",
        b"*1\r\n$0\r\n\r\n",
        &[b"-ERR unknown command '', with args beginning with: \r\n"],
        false,
    ),
    (
        "wrong arity is lower case",
        b"GeT\r\n",
        &[b"-ERR wrong number of arguments for 'get' command\r\n"],
        false,
    ),
    (
        "pipeline of mixed inline and multibulk",
        b"SET pk 1\r\n*2\r\n$4\r\nINCR\r\n$2\r\npk\r\nGET pk\r\n",
        &[b"+OK\r\n", b":2\r\n", b"$1\r\n2\r\n"],
        false,
    ),
    (
        "quit closes after OK",
        b"QUIT\r\nPING\r\n",
        &[b"+OK\r\n"],
        true,
    ),
];

/// Run one framing case on a fresh connection: the replies, then whether the server closed (if no
/// close is expected, a PING must still be answered).
fn framing_transcript(port: u16, req: &[u8], n: usize) -> (Vec<Reply>, bool) {
    let mut c = Raw::connect(port);
    c.send(req);
    let replies: Vec<Reply> = (0..n).map(|_| c.read()).collect();
    c.send(b"*1\r\n$4\r\nPING\r\n");
    let after = c.read();
    let closed = match after {
        Reply::Closed(_) => true,
        Reply::Frame(f) if f == b"+PONG\r\n" => false,
        other => panic!("after the case: {}", other.show()),
    };
    (replies, closed)
}

#[test]
fn framing_matches_redis_and_the_table() {
    let redis = testkit::redis_server(&[]);
    let codis = testkit::codis_server(&["--cores", "2"]);
    let mut bad = Vec::new();
    for (name, req, want, closes) in FRAMING {
        let want: Vec<Reply> = want.iter().map(|w| Reply::Frame(w.to_vec())).collect();
        let mut servers = vec![("codis", codis.port)];
        if let Some((r, _)) = &redis {
            servers.push(("redis", r.port));
        }
        for (who, port) in servers {
            let (got, closed) = framing_transcript(port, req, want.len());
            if got != want || closed != *closes {
                bad.push(format!(
                    "{who}: {name}: {} -> {:?} closed={closed}, want {:?} closed={closes}",
                    show(req),
                    got.iter().map(Reply::show).collect::<Vec<_>>(),
                    want.iter().map(Reply::show).collect::<Vec<_>>(),
                ));
            }
        }
    }
    assert!(bad.is_empty(), "framing cases failed:\n{}", bad.join("\n"));
}

/// Limits whose exact size matters: long inline lines, long count lines, long arguments in the
/// unknown-command error.
#[test]
fn limits_match_redis() {
    let Some(p) = pair(&[], &[]) else { return };
    let long_inline = vec![b'a'; 70 * 1024];
    let mut long_count = b"*".to_vec();
    long_count.extend(std::iter::repeat_n(b'1', 70 * 1024));
    let mut long_bulk_count = b"*1\r\n$".to_vec();
    long_bulk_count.extend(std::iter::repeat_n(b'1', 70 * 1024));
    let a100 = "a".repeat(100);
    let b100 = "b".repeat(100);
    let unknown = format!("FOO {a100} {b100} c\r\n").into_bytes();
    let name200 = format!("{}\r\n", "x".repeat(200)).into_bytes();
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        ("inline over 64 KiB", long_inline, 1),
        ("mbulk count line over 64 KiB", long_count, 1),
        ("bulk count line over 64 KiB", long_bulk_count, 1),
        ("unknown command, long args", unknown, 1),
        ("unknown command, long name", name200, 1),
    ];
    let mut diffs = Vec::new();
    for (name, req, n) in cases {
        let a = framing_transcript(p.redis.port, &req, n);
        let b = framing_transcript(p.codis.port, &req, n);
        if a != b {
            diffs.push(format!(
                "{name}\n  redis: {:?} closed={}\n  codis: {:?} closed={}",
                a.0.iter().map(Reply::show).collect::<Vec<_>>(),
                a.1,
                b.0.iter().map(Reply::show).collect::<Vec<_>>(),
                b.1
            ));
        }
    }
    assert!(diffs.is_empty(), "limits differ:\n{}", diffs.join("\n"));
}

/// LATENCY and CLIENT PAUSE/UNPAUSE: errors, arity and replies with no data.
const LATENCY_PAUSE: &str = r#"
CONFIG GET latency-monitor-threshold
LATENCY LATEST
LATENCY HISTORY command
LATENCY RESET
LATENCY RESET command fast-command
LATENCY GRAPH command
LATENCY HISTOGRAM nosuchcommand
LATENCY HELP
LATENCY
LATENCY foo
LATENCY HISTORY
LATENCY HISTORY a b
LATENCY LATEST x
LATENCY GRAPH
LATENCY DOCTOR x
LATENCY HELP x
CONFIG SET latency-monitor-threshold -1
CONFIG SET latency-monitor-threshold abc
CONFIG SET latency-monitor-threshold 99999999999999999999
CONFIG SET latency-monitor-threshold 0
CONFIG GET latency-monitor-threshold

CLIENT PAUSE
CLIENT PAUSE abc
CLIENT PAUSE 1.5
CLIENT PAUSE -1
CLIENT PAUSE -1 foo
CLIENT PAUSE 10 foo
CLIENT PAUSE 10 WRITE x
CLIENT PAUSE 99999999999999999999
CLIENT UNPAUSE x
CLIENT PAUSE 0
CLIENT PAUSE 0 write
CLIENT PAUSE 0 ALL
CLIENT UNPAUSE
CLIENT UNPAUSE
SET k v
"#;

#[test]
fn latency_and_client_pause_match_redis() {
    check("latency/pause", LATENCY_PAUSE);
}

/// Redis 7 Functions: FUNCTION LOAD/LIST/DELETE/FLUSH/STATS/DUMP/RESTORE and FCALL/FCALL_RO,
/// their errors, the load-time environment and the flags.
#[test]
fn functions_match_redis() {
    check("functions", FUNCTIONS);
}

const FUNCTIONS: &str = r##"
FUNCTION FLUSH
FUNCTION LOAD "#!lua name=lib1\nredis.register_function('f1', function(keys, args) return {keys[1], args[1], #keys, #args} end)\nredis.register_function{function_name='f2', callback=function(k, a) return redis.call('set', k[1], a[1]) end, description='sets', flags={'allow-oom', 'no-writes'}}\nredis.register_function{function_name='f3', callback=function(k, a) return redis.call('set', k[1], a[1]) end}"
FCALL f1 1 a b
FCALL f1 0
FCALL f1 2 a b c d
FCALL f2 1 k v
FCALL_RO f1 1 a
FCALL_RO f3 1 k v
FCALL f3 1 k v
GET k
# the order of a library's functions is a hash table's in Redis: only the shape is compared
~FUNCTION LIST
~FUNCTION LIST WITHCODE
~FUNCTION LIST LIBRARYNAME lib*
FUNCTION LIST LIBRARYNAME nope
FUNCTION LIST LIBRARYNAME
FUNCTION LIST foo
FUNCTION STATS
FCALL nosuch 0
FCALL f1 x
FCALL f1 5 a
FCALL f1 -1
FCALL f1
FCALL_RO nosuch 0
FUNCTION LOAD "#!lua name=lib1\nredis.register_function('f9', function() return 1 end)"
FUNCTION LOAD REPLACE "#!lua name=lib1\nredis.register_function('f9', function() return 9 end)"
FCALL f9 0
FCALL f1 0
FCALL F9 0
FUNCTION LOAD "#!lua name=upper\nredis.register_function('F9', function() return 1 end)"
FUNCTION LOAD FOO "#!lua name=lib1\n"
FUNCTION LOAD REPLACE
FUNCTION LOAD
FUNCTION DELETE lib1
FUNCTION DELETE lib1
FCALL f9 0
FUNCTION STATS
FUNCTION LIST
FUNCTION DELETE
FUNCTION DELETE a b
FUNCTION FLUSH x
FUNCTION FLUSH SYNC extra
FUNCTION FLUSH ASYNC
FUNCTION NOSUCH
FUNCTION KILL
FUNCTION STATS x
FUNCTION HELP
!HELLO 3
FUNCTION LOAD "#!lua name=lib3\nredis.register_function{function_name='g', callback=function() return 1 end, flags={'no-writes'}, description='d'}"
FUNCTION LIST
FUNCTION LIST WITHCODE
FUNCTION STATS
FUNCTION LOAD "#!lua name=lib4\nredis.register_function{function_name='h', callback=function() return 1 end, flags={'no-writes', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys', 'allow-oom'}}"
FUNCTION LIST LIBRARYNAME lib4
FUNCTION STATS

# library metadata and registration errors
FUNCTION FLUSH
FUNCTION LOAD "#!lua"
FUNCTION LOAD "#!lua name=a b"
FUNCTION LOAD "#!lua name=a\n"
FUNCTION LOAD "#!lua name=a name=b\n"
FUNCTION LOAD "#!lua foo=a\n"
FUNCTION LOAD "#!js name=a\n"
FUNCTION LOAD "x"
FUNCTION LOAD ""
FUNCTION LOAD "#!lua name=a-b\n"
FUNCTION LOAD "#!LUA NAME=up\nredis.register_function('up', function() return 1 end)"
FUNCTION LOAD "#!lua name=nf\n"
FUNCTION LOAD "#!lua name=nf\nlocal x = 1"
FUNCTION LOAD "#!lua name=ab\nredis.register_function('a-b', function() end)"
FUNCTION LOAD "#!lua name=ab\nredis.register_function('', function() end)"
FUNCTION LOAD "#!lua name=ab\nredis.register_function('x', function() end)\nredis.register_function('x', function() end)"
FUNCTION LOAD "#!lua name=ab\nredis.register_function{function_name='x', callback=function() end, flags={'bad'}}"
FUNCTION LOAD "#!lua name=ab\nredis.register_function{function_name='x', callback=function() end, flags='no-writes'}"
FUNCTION LOAD "#!lua name=ab\nredis.register_function{function_name='x', callback=function() end, foo=1}"
FUNCTION LOAD "#!lua name=ab\nredis.register_function{function_name='x'}"
FUNCTION LOAD "#!lua name=ab\nredis.register_function{callback=function() end}"
FUNCTION LOAD "#!lua name=ab\nredis.register_function{function_name={}, callback=function() end}"
FUNCTION LOAD "#!lua name=ab\nredis.register_function{function_name='x', callback=1}"
FUNCTION LOAD "#!lua name=ab\nredis.register_function{function_name='x', callback=function() end, description={}}"
FUNCTION LOAD "#!lua name=ab\nredis.register_function{[1]=2}"
FUNCTION LOAD "#!lua name=ab\nredis.register_function('x')"
FUNCTION LOAD "#!lua name=ab\nredis.register_function()"
FUNCTION LOAD "#!lua name=ab\nredis.register_function(1, 2)"
FUNCTION LOAD "#!lua name=ab\nredis.register_function({}, function() end)"
FUNCTION LOAD "#!lua name=ab\nredis.register_function('x', function() end, 3)"
FUNCTION LOAD "#!lua name=ab\nredis.register_function(5)"
FUNCTION LOAD "#!lua name=ab\nx +"
FUNCTION LOAD "#!lua name=ab\nlocal x = string.len('a')"
FUNCTION LOAD "#!lua name=ab\nerror('boom')"
FUNCTION LOAD "#!lua name=ab\nredis.call('ping')"
FUNCTION LOAD "#!lua name=ab\nredis.foo = 1"
FUNCTION LOAD "#!lua name=ab\nx = 1"
FUNCTION LOAD "#!lua name=ab\nredis.log(redis.LOG_WARNING, 'loading')\nlocal v = redis.REDIS_VERSION_NUM\nredis.register_function('v', function() return v end)"
FCALL v 0
FUNCTION LOAD "#!lua name=cd\nredis.register_function('v', function() return 1 end)"
FUNCTION LOAD "#!lua name=ef\nredis.register_function(12, function() return 12 end)"
FCALL 12 0
FUNCTION STATS

# what functions see at run time
FUNCTION FLUSH
FUNCTION LOAD "#!lua name=rt\nlocal function k(keys) return keys end\nredis.register_function('boom', function() error('boom') end)\nredis.register_function('boom2', function() error({err='MY custom'}) end)\nredis.register_function('unknown', function() return redis.call('nosuch') end)\nredis.register_function('glob', function() return foo end)\nredis.register_function('str', function() return string.upper('a') end)\nredis.register_function('reg', function() return type(redis.register_function) end)\nredis.register_function('setg', function() x = 1 end)\nredis.register_function('kv', function() return type(KEYS) end)\nredis.register_function('keys', k)\nredis.register_function('pcall', function(k) return redis.pcall('incr', k[1]) end)\nredis.register_function('resp3', function(k) redis.setresp(3) return redis.call('hgetall', k[1]) end)\nredis.register_function('status', function() return redis.status_reply('FINE') end)\nredis.register_function('incr', function(k) return redis.call('incr', k[1]) end)"
FCALL boom 0
FCALL boom2 0
EVAL "error({err='MY custom'})" 0
EVAL "\n\nerror(redis.error_reply('x y'))" 0
EVAL "return pcall(error, {err='caught'})" 0
FCALL unknown 0
FCALL glob 0
FCALL str 0
FCALL reg 0
FCALL setg 0
EVAL "return 1" 1 somekey
FCALL kv 0
FCALL keys 3 a b c
SET str abc
FCALL pcall 1 str
HSET h f v
FCALL resp3 1 h
FCALL status 0
FCALL incr 1 n
FCALL incr 1 n
FCALL_RO incr 1 n
FCALL incr 1 str
MULTI
FCALL incr 1 n
FCALL f 0
EXEC
GET n

# DUMP and RESTORE
FUNCTION FLUSH
FUNCTION LOAD "#!lua name=d1\nredis.register_function('d1', function() return 1 end)"
FUNCTION RESTORE "bad payload"
FUNCTION RESTORE "\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00" FOO
FUNCTION RESTORE "\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00" FLUSH extra
FUNCTION LIST

# EVAL with a shebang line: flags as functions have them
EVAL "#!lua\nreturn redis.call('set', KEYS[1], 'v')" 1 k
EVAL "#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 'v')" 1 k
EVAL "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])" 1 k
EVAL "#!lua flags=no-writes,allow-oom\nreturn 1" 0
EVAL "#!lua flags=\nreturn 1" 0
EVAL_RO "#!lua\nreturn 1" 0
EVAL_RO "#!lua flags=no-writes\nreturn 1" 0
EVAL "#!lua flags=bad\nreturn 1" 0
EVAL "#!lua foo=bar\nreturn 1" 0
EVAL "#!lua" 0
EVAL "#!js\nreturn 1" 0
EVAL "#!LUA\nreturn 1" 0
EVAL "#!lua flags=No-Writes\nreturn 1" 0
EVAL "#!lua\n\nerror('line')" 0
EVAL "#! lua\nreturn 1" 0
SCRIPT LOAD "#!lua flags=bad\nreturn 1"
SCRIPT LOAD "#!lua flags=no-writes\nreturn 1"
EVALSHA_RO 77f21361171213377cb083e2ffc2ae24ffdff8fb 0
"##;
