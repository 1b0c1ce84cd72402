//! The tests (redis-benchmark's suite plus a GET/SET mix): their names, their pre-encoded request
//! templates with `__rand_int__` slots, and what each reply must look like.

use bytes::BytesMut;

use crate::error::BenchError;
use crate::keys::{KeySampler, Rng};

/// The placeholder redis-benchmark replaces with a 12-digit key number when `-r` is given.
pub const RAND_INT: &[u8] = b"__rand_int__";

/// One benchmark test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKind {
    PingInline,
    PingMbulk,
    Set,
    Get,
    Incr,
    Lpush,
    Rpush,
    Lpop,
    Rpop,
    Sadd,
    Hset,
    Spop,
    Zadd,
    Zpopmin,
    /// `LPUSH mylist` run before the LRANGE tests so the list has elements.
    LpushFill,
    Lrange100,
    Lrange300,
    Lrange500,
    Lrange600,
    /// `LRANGE mylist 0 N-1` for an `N` other than redis-benchmark's 100, 300, 500, 600
    /// (`-t lrange_N`).
    LrangeN(u32),
    Mset,
    Mget,
    /// GETs and SETs interleaved in the `--ratio` proportion.
    Mixed,
}

/// redis-benchmark's order (MGET and MIXED are ours, appended).
const ORDER: [TestKind; 22] = [
    TestKind::PingInline,
    TestKind::PingMbulk,
    TestKind::Set,
    TestKind::Get,
    TestKind::Incr,
    TestKind::Lpush,
    TestKind::Rpush,
    TestKind::Lpop,
    TestKind::Rpop,
    TestKind::Sadd,
    TestKind::Hset,
    TestKind::Spop,
    TestKind::Zadd,
    TestKind::Zpopmin,
    TestKind::LpushFill,
    TestKind::Lrange100,
    TestKind::Lrange300,
    TestKind::Lrange500,
    TestKind::Lrange600,
    TestKind::Mset,
    TestKind::Mget,
    TestKind::Mixed,
];

/// Test names accepted by `-t` (besides the group names `ping` and `lrange`).
pub const TEST_NAMES: &str =
    "ping_inline, ping_mbulk, ping, set, get, incr, lpush, rpush, lpop, rpop, \
     sadd, hset, spop, zadd, zpopmin, lrange, lrange_100, lrange_300, lrange_500, lrange_600, \
     lrange_N (any N from 1), mset, mget, mixed";

impl TestKind {
    /// The test's name as redis-benchmark prints it (CSV, JSON and text output).
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        let name: &'static str = match self {
            TestKind::PingInline => "PING_INLINE",
            TestKind::PingMbulk => "PING_MBULK",
            TestKind::Set => "SET",
            TestKind::Get => "GET",
            TestKind::Incr => "INCR",
            TestKind::Lpush => "LPUSH",
            TestKind::Rpush => "RPUSH",
            TestKind::Lpop => "LPOP",
            TestKind::Rpop => "RPOP",
            TestKind::Sadd => "SADD",
            TestKind::Hset => "HSET",
            TestKind::Spop => "SPOP",
            TestKind::Zadd => "ZADD",
            TestKind::Zpopmin => "ZPOPMIN",
            TestKind::LpushFill => "LPUSH (needed to benchmark LRANGE)",
            TestKind::Lrange100 => "LRANGE_100 (first 100 elements)",
            TestKind::Lrange300 => "LRANGE_300 (first 300 elements)",
            TestKind::Lrange500 => "LRANGE_500 (first 500 elements)",
            TestKind::Lrange600 => "LRANGE_600 (first 600 elements)",
            TestKind::LrangeN(n) => return format!("LRANGE_{n} (first {n} elements)").into(),
            TestKind::Mset => "MSET (10 keys)",
            TestKind::Mget => "MGET (10 keys)",
            TestKind::Mixed => "MIXED",
        };
        name.into()
    }
}

/// The tests selected by `-t a,b,c` (case-insensitive), in redis-benchmark's order. `None`: the
/// default suite, redis-benchmark's (everything but `mget` and `mixed`).
pub fn select_tests(spec: Option<&str>) -> Result<Vec<TestKind>, BenchError> {
    let mut on = [false; ORDER.len()];
    // lrange_N for other N: run after LRANGE_600, in ascending N, each once.
    let mut extra: Vec<u32> = Vec::new();
    let mut set = |k: TestKind| {
        if let Some(i) = ORDER.iter().position(|&o| o == k) {
            on[i] = true;
        }
    };
    match spec {
        None => ORDER
            .iter()
            .filter(|k| !matches!(k, TestKind::Mget | TestKind::Mixed))
            .for_each(|&k| set(k)),
        Some(spec) => {
            for name in spec.split(',').map(|s| s.trim().to_ascii_lowercase()) {
                let kinds: &[TestKind] = match name.as_str() {
                    "" => &[],
                    "ping" => &[TestKind::PingInline, TestKind::PingMbulk],
                    "ping_inline" => &[TestKind::PingInline],
                    "ping_mbulk" => &[TestKind::PingMbulk],
                    "set" => &[TestKind::Set],
                    "get" => &[TestKind::Get],
                    "incr" => &[TestKind::Incr],
                    "lpush" => &[TestKind::Lpush],
                    "rpush" => &[TestKind::Rpush],
                    "lpop" => &[TestKind::Lpop],
                    "rpop" => &[TestKind::Rpop],
                    "sadd" => &[TestKind::Sadd],
                    "hset" => &[TestKind::Hset],
                    "spop" => &[TestKind::Spop],
                    "zadd" => &[TestKind::Zadd],
                    "zpopmin" => &[TestKind::Zpopmin],
                    "lrange" => &[
                        TestKind::LpushFill,
                        TestKind::Lrange100,
                        TestKind::Lrange300,
                        TestKind::Lrange500,
                        TestKind::Lrange600,
                    ],
                    "lrange_100" => &[TestKind::LpushFill, TestKind::Lrange100],
                    "lrange_300" => &[TestKind::LpushFill, TestKind::Lrange300],
                    "lrange_500" => &[TestKind::LpushFill, TestKind::Lrange500],
                    "lrange_600" => &[TestKind::LpushFill, TestKind::Lrange600],
                    "mset" => &[TestKind::Mset],
                    "mget" => &[TestKind::Mget],
                    "mixed" => &[TestKind::Mixed],
                    other => match other.strip_prefix("lrange_").map(str::parse::<u32>) {
                        Some(Ok(n)) if n > 0 => {
                            if !extra.contains(&n) {
                                extra.push(n);
                            }
                            &[TestKind::LpushFill]
                        }
                        _ => return Err(BenchError::UnknownTest(other.to_string())),
                    },
                };
                kinds.iter().for_each(|&k| set(k));
            }
        }
    }
    extra.sort_unstable();
    let mut tests = Vec::new();
    for (&k, on) in ORDER.iter().zip(on) {
        if on {
            tests.push(k);
        }
        if k == TestKind::Lrange600 {
            tests.extend(extra.iter().map(|&n| TestKind::LrangeN(n)));
        }
    }
    if tests.is_empty() {
        return Err(BenchError::UnknownTest(String::new()));
    }
    Ok(tests)
}

/// What a reply must be for the request to count as a success (error replies never are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Exactly `+OK`.
    Ok,
    /// Exactly `+PONG`.
    Pong,
    /// A bulk string or the nil bulk.
    BulkOrNil,
    /// An integer.
    Integer,
    /// An array of at most this many elements (LRANGE).
    ArrayUpTo(i64),
    /// An array of exactly this many elements (MGET).
    ArrayOf(i64),
    /// An empty array or one member/score pair (ZPOPMIN).
    PopPair,
}

impl Expect {
    /// Whether `reply` (one complete RESP reply, as delimited by `frame_len`) is acceptable.
    #[inline]
    pub fn check(self, reply: &[u8]) -> bool {
        match self {
            Expect::Ok => reply == b"+OK\r\n",
            Expect::Pong => reply == b"+PONG\r\n",
            Expect::BulkOrNil => reply.first() == Some(&b'$'),
            Expect::Integer => reply.first() == Some(&b':'),
            Expect::ArrayUpTo(max) => matches!(array_len(reply), Some(n) if (0..=max).contains(&n)),
            Expect::ArrayOf(want) => array_len(reply) == Some(want),
            Expect::PopPair => matches!(array_len(reply), Some(0 | 2)),
        }
    }
}

/// The element count in an array reply's header (`*3\r\n…` → 3).
fn array_len(reply: &[u8]) -> Option<i64> {
    if reply.first() != Some(&b'*') {
        return None;
    }
    let end = memchr::memchr(b'\r', reply)?;
    resp::parse_i64(&reply[1..end])
}

/// One request shape: its wire bytes, where its `__rand_int__` slots are, the reply it expects.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    slots: Vec<usize>,
    /// The reply check for this request.
    pub expect: Expect,
}

impl Template {
    /// A multibulk request; with `randomize`, each `__rand_int__` becomes a 12-digit slot.
    fn command(args: &[&[u8]], expect: Expect, randomize: bool) -> Template {
        let mut buf = BytesMut::new();
        resp::Frame::command(args.iter().map(|a| bytes::Bytes::copy_from_slice(a)))
            .encode(&mut buf);
        Template::from_wire(buf.to_vec(), expect, randomize)
    }

    fn from_wire(mut bytes: Vec<u8>, expect: Expect, randomize: bool) -> Template {
        let mut slots = Vec::new();
        if randomize {
            let mut from = 0;
            while let Some(i) = memchr::memmem::find(&bytes[from..], RAND_INT) {
                let at = from + i;
                bytes[at..at + RAND_INT.len()].copy_from_slice(b"000000000000");
                slots.push(at);
                from = at + RAND_INT.len();
            }
        }
        Template {
            bytes,
            slots,
            expect,
        }
    }

    /// The request's bytes with every slot at zero (or the literal placeholder without `-r`).
    pub fn wire(&self) -> &[u8] {
        &self.bytes
    }

    /// Append one request to `out`, filling every slot with a fresh key number.
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>, keys: &KeySampler, rng: &mut Rng) {
        let base = out.len();
        out.extend_from_slice(&self.bytes);
        for &slot in &self.slots {
            let mut n = keys.sample(rng);
            let digits = &mut out[base + slot..base + slot + RAND_INT.len()];
            for d in digits.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
    }
}

/// Everything a connection needs to generate one test's requests and check its replies.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Which test.
    pub kind: TestKind,
    /// Its printed name.
    pub name: String,
    /// One template, or GET then SET for the mixed test.
    pub templates: Vec<Template>,
    /// GETs then SETs per cycle for the mixed test (`[1, 0]` otherwise: always template 0).
    pub mix: [u32; 2],
}

impl Plan {
    /// The plan of `kind` with `-d data_size` bytes of `x` as values, `-r` when `randomize`,
    /// `ratio` the GET:SET mix (used by the mixed test only).
    pub fn new(kind: TestKind, data_size: usize, randomize: bool, ratio: [u32; 2]) -> Plan {
        let data = vec![b'x'; data_size];
        let d: &[u8] = &data;
        let cmd = |args: &[&[u8]], e| Template::command(args, e, randomize);
        let key: &[u8] = b"key:__rand_int__";
        let el: &[u8] = b"element:__rand_int__";
        let templates = match kind {
            TestKind::PingInline => vec![Template::from_wire(
                b"PING\r\n".to_vec(),
                Expect::Pong,
                false,
            )],
            TestKind::PingMbulk => vec![cmd(&[b"PING"], Expect::Pong)],
            TestKind::Set => vec![cmd(&[b"SET", key, d], Expect::Ok)],
            TestKind::Get => vec![cmd(&[b"GET", key], Expect::BulkOrNil)],
            TestKind::Incr => vec![cmd(&[b"INCR", b"counter:__rand_int__"], Expect::Integer)],
            TestKind::Lpush | TestKind::LpushFill => {
                vec![cmd(&[b"LPUSH", b"mylist", d], Expect::Integer)]
            }
            TestKind::Rpush => vec![cmd(&[b"RPUSH", b"mylist", d], Expect::Integer)],
            TestKind::Lpop => vec![cmd(&[b"LPOP", b"mylist"], Expect::BulkOrNil)],
            TestKind::Rpop => vec![cmd(&[b"RPOP", b"mylist"], Expect::BulkOrNil)],
            TestKind::Sadd => vec![cmd(&[b"SADD", b"myset", el], Expect::Integer)],
            TestKind::Hset => vec![cmd(&[b"HSET", b"myhash", el, d], Expect::Integer)],
            TestKind::Spop => vec![cmd(&[b"SPOP", b"myset"], Expect::BulkOrNil)],
            TestKind::Zadd => {
                let score: &[u8] = if randomize { RAND_INT } else { b"0" };
                vec![cmd(&[b"ZADD", b"myzset", score, el], Expect::Integer)]
            }
            TestKind::Zpopmin => vec![cmd(&[b"ZPOPMIN", b"myzset"], Expect::PopPair)],
            TestKind::Lrange100 => vec![lrange(99, randomize)],
            TestKind::Lrange300 => vec![lrange(299, randomize)],
            TestKind::Lrange500 => vec![lrange(499, randomize)],
            TestKind::Lrange600 => vec![lrange(599, randomize)],
            TestKind::LrangeN(n) => vec![lrange(i64::from(n) - 1, randomize)],
            TestKind::Mset => {
                let mut args: Vec<&[u8]> = vec![b"MSET"];
                for _ in 0..10 {
                    args.push(key);
                    args.push(d);
                }
                vec![cmd(&args, Expect::Ok)]
            }
            TestKind::Mget => {
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(std::iter::repeat_n(key, 10));
                vec![cmd(&args, Expect::ArrayOf(10))]
            }
            TestKind::Mixed => vec![
                cmd(&[b"GET", key], Expect::BulkOrNil),
                cmd(&[b"SET", key, d], Expect::Ok),
            ],
        };
        let (name, mix) = match kind {
            TestKind::Mixed => (format!("MIXED (GET:SET {}:{})", ratio[0], ratio[1]), ratio),
            _ => (kind.name().into_owned(), [1, 0]),
        };
        Plan {
            kind,
            name,
            templates,
            mix,
        }
    }

    /// The template index of a connection's `seq`-th request.
    #[inline]
    pub fn pick(&self, seq: u64) -> usize {
        let cycle = (self.mix[0] + self.mix[1]) as u64;
        if cycle == 0 || seq % cycle < self.mix[0] as u64 {
            0
        } else {
            1
        }
    }
}

fn lrange(last: i64, randomize: bool) -> Template {
    let last = last.to_string();
    Template::command(
        &[b"LRANGE", b"mylist", b"0", last.as_bytes()],
        Expect::ArrayUpTo(last.parse::<i64>().unwrap_or(0) + 1),
        randomize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Dist;

    #[test]
    fn templates_fill_slots_with_twelve_digits() {
        let plan = Plan::new(TestKind::Set, 3, true, [1, 0]);
        let keys = KeySampler::new(Dist::Uniform, 1000);
        let mut rng = Rng::new(9);
        let mut out = Vec::new();
        plan.templates[0].write(&mut out, &keys, &mut rng);
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.starts_with("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000"),
            "{s}"
        );
        assert!(s.ends_with("\r\n$3\r\nxxx\r\n"));
        let mut buf = BytesMut::from(s.as_bytes());
        assert!(resp::Frame::parse(&mut buf).unwrap().is_some());
    }

    #[test]
    fn without_r_the_placeholder_stays_literal() {
        let plan = Plan::new(TestKind::Get, 3, false, [1, 0]);
        assert_eq!(
            plan.templates[0].wire(),
            b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n"
        );
        let ping = Plan::new(TestKind::PingInline, 3, false, [1, 0]);
        assert_eq!(ping.templates[0].wire(), b"PING\r\n");
    }

    #[test]
    fn mset_has_ten_independent_keys() {
        let plan = Plan::new(TestKind::Mset, 1, true, [1, 0]);
        assert_eq!(plan.templates[0].slots.len(), 10);
    }

    #[test]
    fn checks() {
        assert!(Expect::Ok.check(b"+OK\r\n"));
        assert!(!Expect::Ok.check(b"-ERR x\r\n"));
        assert!(Expect::BulkOrNil.check(b"$-1\r\n"));
        assert!(!Expect::BulkOrNil.check(b"-WRONGTYPE Operation\r\n"));
        assert!(Expect::Integer.check(b":5\r\n"));
        assert!(Expect::ArrayUpTo(100).check(b"*0\r\n"));
        assert!(!Expect::ArrayUpTo(1).check(b"*2\r\n$1\r\na\r\n$1\r\na\r\n"));
        assert!(Expect::ArrayOf(2).check(b"*2\r\n$-1\r\n$-1\r\n"));
        assert!(Expect::PopPair.check(b"*0\r\n"));
        assert!(!Expect::PopPair.check(b"*-1\r\n"));
    }

    #[test]
    fn selection_follows_redis_benchmark_order() {
        let t = select_tests(Some("get,SET,lrange_100")).unwrap();
        assert_eq!(
            t,
            vec![
                TestKind::Set,
                TestKind::Get,
                TestKind::LpushFill,
                TestKind::Lrange100
            ]
        );
        assert!(select_tests(Some("nope")).is_err());
        assert!(select_tests(Some("lrange_0")).is_err());
        assert!(select_tests(Some("lrange_x")).is_err());
        let t = select_tests(Some("lrange_1000,mset,lrange_20,lrange_600,lrange_20")).unwrap();
        assert_eq!(
            t,
            vec![
                TestKind::LpushFill,
                TestKind::Lrange600,
                TestKind::LrangeN(20),
                TestKind::LrangeN(1000),
                TestKind::Mset
            ]
        );
        let plan = Plan::new(TestKind::LrangeN(20), 3, false, [1, 0]);
        assert_eq!(plan.name, "LRANGE_20 (first 20 elements)");
        assert_eq!(
            plan.templates[0].wire(),
            b"*4\r\n$6\r\nLRANGE\r\n$6\r\nmylist\r\n$1\r\n0\r\n$2\r\n19\r\n"
        );
        assert_eq!(select_tests(None).unwrap().len(), 20);
    }

    #[test]
    fn mix_pattern() {
        let plan = Plan::new(TestKind::Mixed, 3, false, [1, 3]);
        let picks: Vec<usize> = (0..8).map(|s| plan.pick(s)).collect();
        assert_eq!(picks, vec![0, 1, 1, 1, 0, 1, 1, 1]);
        assert_eq!(plan.name, "MIXED (GET:SET 1:3)");
    }
}
