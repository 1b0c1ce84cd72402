//! Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO (shard handlers) and SCRIPT (connection).
//!
//! EVAL is an ordinary keyed shard command (its keys are the declared ones), so routing does the
//! rest: declared keys on one core run the script there in one step; declared keys spanning cores
//! run it on a scratch copy of those keys with the shards held (`multi.rs`) — atomic either way.
//! Each core has its own Lua 5.1 state (thread-local). `redis.call` runs the command's normal
//! handler against the same databases and converts the RESP2 reply to Lua values as Redis does.
//! A script may touch only its declared keys or keys of the core it runs on (never a key of another
//! core, which this shard does not hold).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mlua::{Lua, MultiValue, Value as LuaValue};
use resp::command::{self, NOSCRIPT, WRITE};
use resp::{encode, Proto};

use crate::cmd::{self, types::WOULD_BLOCK, Ctx, Handler};
use crate::db::Db;

/// Scripts by SHA1 (lower-case hex), shared by every core (SCRIPT LOAD on one core, EVALSHA on
/// another).
static SCRIPTS: LazyLock<Mutex<HashMap<String, Bytes>>> = LazyLock::new(Default::default);

/// `lua-time-limit` in ms. A script still running after it is stopped with an error: a core runs
/// one script at a time, so an endless script must not hold the core (and every client of it)
/// forever. Redis instead keeps running and answers BUSY until SCRIPT KILL; see
/// docs/scripting-and-notifications.md.
pub static LUA_TIME_LIMIT_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(5000);

/// Most cores whose running scripts SCRIPT KILL can see.
const MAX_CORES: usize = 256;

/// Per core (Lua state): a script runs (bit 0), it called a write command (bit 1), SCRIPT KILL
/// asked it to stop (bit 2). Set by the core running the script, read/set by SCRIPT KILL on any.
static RUNNING: [AtomicU8; MAX_CORES] = [const { AtomicU8::new(0) }; MAX_CORES];
const RUN: u8 = 1;
const WROTE: u8 = 2;
const KILL: u8 = 4;
/// The running script is a function (FCALL): FUNCTION KILL stops it, SCRIPT KILL does not.
const FUNC: u8 = 8;

thread_local! {
    /// This thread's entry in [`RUNNING`].
    static RUN_SLOT: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % MAX_CORES
    };
}

/// Whether a script runs on this thread (a handler called through `redis.call` sees true).
pub fn running() -> bool {
    !CURRENT.with(Cell::get).is_null()
}

/// Bytes each core's Lua state uses, by [`RUN_SLOT`] (noted after every script, function and
/// FUNCTION command; INFO memory `used_memory_lua`).
static LUA_MEMORY: [AtomicUsize; MAX_CORES] = [const { AtomicUsize::new(0) }; MAX_CORES];

fn note_memory(lua: &Lua) {
    LUA_MEMORY[RUN_SLOT.with(|s| *s)].store(lua.used_memory(), Ordering::Relaxed);
}

/// For INFO memory: the Lua states' bytes (every core's), the number of cached scripts and the
/// bytes of their bodies.
pub fn memory_stats() -> (usize, usize, usize) {
    let lua = LUA_MEMORY.iter().map(|m| m.load(Ordering::Relaxed)).sum();
    let (n, bytes) = SCRIPTS
        .lock()
        .map(|m| (m.len(), m.iter().map(|(k, v)| k.len() + v.len()).sum()))
        .unwrap_or((0, 0));
    (lua, n, bytes)
}

fn run_slot() -> &'static AtomicU8 {
    &RUNNING[RUN_SLOT.with(|s| *s)]
}

/// SCRIPT KILL (`function` false) or FUNCTION KILL: stop a running read-only script or function
/// (on whichever core runs it). As in Redis, SCRIPT KILL does not stop a function nor FUNCTION
/// KILL a script: they answer BUSY.
pub(crate) fn kill_running(out: &mut BytesMut, function: bool) {
    let (mut wrote, mut other) = (false, false);
    for r in &RUNNING {
        let s = r.load(Ordering::Acquire);
        if s & RUN == 0 {
            continue;
        }
        if s & WROTE != 0 {
            wrote = true;
            continue;
        }
        if (s & FUNC != 0) != function {
            other = true;
            continue;
        }
        if r.compare_exchange(s, s | KILL, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return encode::ok(out);
        }
    }
    if wrote {
        encode::error(out, "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.")
    } else if other && function {
        encode::error(
            out,
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        )
    } else if other {
        encode::error(
            out,
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.",
        )
    } else {
        encode::error(out, "NOTBUSY No scripts in execution right now.")
    }
}

/// Shard handlers.
pub static HANDLERS: &[(&str, Handler)] = &[
    ("eval", eval),
    ("evalsha", eval),
    ("eval_ro", eval),
    ("evalsha_ro", eval),
    ("fcall", fcall),
    ("fcall_ro", fcall),
];

thread_local! {
    static LUA: Lua = new_lua();
    /// The running script's [`CallState`] (null when no script runs on this thread); set by
    /// [`eval`] for the script's run only (see [`StateGuard`]).
    static CURRENT: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
    /// When the running script's time-limit clock started (`None`: not yet). The clock starts at
    /// the first hook check (at most 10 000 instructions into the script), so a short script
    /// never reads the time.
    static STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The running script asked for RESP3 replies from `redis.call` (`redis.setresp(3)`); read
    /// after the run too, for the conversion of its result. Cleared when a script starts.
    static RESP3: Cell<bool> = const { Cell::new(false) };
}

fn new_lua() -> Lua {
    // Lua's base library (with `coroutine`), `table`, `string` and `math`, as Redis loads; never
    // `io`, `os`, `package` or `debug` (a script could read files or run programs).
    let libs = mlua::StdLib::TABLE | mlua::StdLib::STRING | mlua::StdLib::MATH;
    let lua = Lua::new_with(libs, mlua::LuaOptions::default()).unwrap_or_else(|_| Lua::new());
    let _ = setup(&lua);
    // `redis.call` and `redis.pcall` go in before the library tables become read-only.
    if let Ok((callf, pcall)) = call_fns(&lua) {
        if let Ok(redis) = lua.globals().get::<mlua::Table>("redis") {
            let _ = redis.raw_set("call", callf);
            let _ = redis.raw_set("pcall", pcall);
        }
    }
    if let Err(e) = sandbox(&lua) {
        tracing::error!("cannot set up the Lua sandbox: {e}");
    }
    if let Err(e) = install_runner(&lua) {
        tracing::error!("cannot set up the script runner: {e}");
    }
    match lua.named_registry_value::<mlua::Table>(ENV) {
        Ok(env) => {
            if let Err(e) = crate::function::install(&lua, &env) {
                tracing::error!("cannot set up the functions' environment: {e}");
            }
        }
        Err(e) => tracing::error!("no script environment: {e}"),
    }
    // The time-limit / SCRIPT KILL check runs every 10 000 instructions; installed once (as Redis
    // checks every N instructions) rather than on every EVAL.
    lua.set_hook(
        mlua::HookTriggers::new().every_nth_instruction(10_000),
        |_, _| {
            if crate::function::load_timed_out() {
                return Err(mlua::Error::RuntimeError("FUNCTION LOAD timeout".into()));
            }
            let slot = run_slot().load(Ordering::Acquire);
            if slot & RUN == 0 {
                return Ok(mlua::VmState::Continue);
            }
            if slot & KILL != 0 {
                return Err(mlua::Error::RuntimeError(
                    "Script killed by user with SCRIPT KILL...".into(),
                ));
            }
            let started = started_at();
            show_running_function();
            let limit = LUA_TIME_LIMIT_MS.load(Ordering::Relaxed);
            if limit > 0 && started.elapsed().as_millis() as u64 > limit {
                return Err(mlua::Error::RuntimeError(format!(
                    "Script killed: it ran longer than lua-time-limit ({limit} ms)"
                )));
            }
            Ok(mlua::VmState::Continue)
        },
    );
    lua
}

thread_local! {
    /// The function scripts are run through on this thread (see [`install_runner`]), kept at
    /// hand rather than looked up in the Lua registry by name on every EVAL and FCALL.
    static RUNNER: RefCell<Option<mlua::Function>> = const { RefCell::new(None) };
}

/// Marks an error raised as a table (`error({err = …})`, `error(redis.error_reply(…))`) on its
/// way out of the script: the marker, the line it was raised on, the marker, its `err` text.
const TABLE_ERROR: char = '\u{1}';

/// Scripts run through a runner that calls them under `xpcall`, as Redis runs them under its
/// error handler: an error raised as a table with an `err` field becomes Redis's error reply
/// (its text as it is, no "ERR " added) with the line it was raised on. Other errors pass
/// through unchanged.
fn install_runner(lua: &Lua) -> mlua::Result<()> {
    let handler: mlua::Function = lua.globals().raw_get("__redis__err__handler")?;
    let runner: mlua::Function = lua
        .load(
            r#"
local xpcall, error, handler = xpcall, error, ...
-- A function's callback and parameters, for `call` (one closure for every FCALL: functions do
-- not run inside functions, FCALL being refused in scripts).
local cf, ck, ca
local function call() return cf(ck, ca) end
return function(f, keys, args)
    local ok, r
    if keys == nil then
        ok, r = xpcall(f, handler)
    else
        cf, ck, ca = f, keys, args
        ok, r = xpcall(call, handler)
        cf, ck, ca = nil, nil, nil
    end
    if ok then return r end
    error(r, 0)
end
"#,
        )
        .set_name("=runner")
        .call(handler)?;
    RUNNER.with(|r| *r.borrow_mut() = Some(runner));
    Ok(())
}

/// The error handler scripts run under, also the global `__redis__err__handler` as in Redis.
fn error_handler(lua: &Lua) -> mlua::Result<mlua::Function> {
    lua.create_function(|lua, v: LuaValue| -> mlua::Result<LuaValue> {
        if let LuaValue::Table(t) = &v {
            if let Ok(LuaValue::String(e)) = t.raw_get::<LuaValue>("err") {
                // Level 0 is this handler and 1 the `error` function: the first frame with a
                // current line is the script's.
                let line = (1..8)
                    .filter_map(|l| lua.inspect_stack(l).map(|d| d.curr_line()))
                    .find(|&n| n > 0)
                    .unwrap_or(0);
                let text = format!(
                    "{TABLE_ERROR}{line}{TABLE_ERROR}{}",
                    String::from_utf8_lossy(&e.as_bytes())
                );
                return Ok(LuaValue::String(lua.create_string(text)?));
            }
        }
        Ok(v)
    })
}

fn call_fns(lua: &Lua) -> mlua::Result<(mlua::Function, mlua::Function)> {
    let callf =
        lua.create_function(|lua, a: MultiValue| with_state(|st| call(lua, st, a, true)))?;
    let pcall =
        lua.create_function(|lua, a: MultiValue| with_state(|st| call(lua, st, a, false)))?;
    Ok((callf, pcall))
}

/// Run `f` on the running script's [`CallState`].
fn with_state<R>(f: impl FnOnce(&RefCell<CallState<'_>>) -> mlua::Result<R>) -> mlua::Result<R> {
    let p = CURRENT.with(Cell::get);
    if p.is_null() {
        return Err(mlua::Error::RuntimeError(
            "ERR redis.call can only be used from a running script".into(),
        ));
    }
    // SAFETY: `eval` stores a pointer to a `RefCell<CallState>` on its stack that lives for the
    // whole script run, and its `StateGuard` clears the pointer before that state goes away; the
    // pointer is thread-local and only used on this thread, while the script runs.
    let st = unsafe { &*(p as *const RefCell<CallState<'static>>) };
    f(st)
}

/// Publishes a script's [`CallState`] and start time for its run; clears both when dropped.
struct StateGuard;

impl StateGuard {
    fn new(state: &RefCell<CallState<'_>>, function: bool) -> StateGuard {
        CURRENT.with(|c| c.set(state as *const RefCell<CallState<'_>> as *const ()));
        STARTED.with(|s| s.set(None));
        RESP3.with(|r| r.set(false));
        run_slot().store(if function { RUN | FUNC } else { RUN }, Ordering::Release);
        StateGuard
    }
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        run_slot().store(0, Ordering::Release);
        STARTED.with(|s| s.set(None));
        CURRENT.with(|c| c.set(std::ptr::null()));
    }
}

fn setup(lua: &Lua) -> mlua::Result<()> {
    crate::luaext::install(lua)?;
    let redis = lua.create_table()?;
    redis.set(
        "sha1hex",
        lua.create_function(|_, a: MultiValue| {
            if a.len() != 1 {
                return Err(mlua::Error::RuntimeError(
                    "wrong number of arguments".into(),
                ));
            }
            // As Redis: a number hashes its text; anything else but a string hashes as "".
            Ok(match &a[0] {
                LuaValue::String(s) => sha1_hex(&s.as_bytes()),
                LuaValue::Integer(n) => sha1_hex(n.to_string().as_bytes()),
                LuaValue::Number(n) => sha1_hex(encode::format_g(*n, 14).as_bytes()),
                _ => sha1_hex(b""),
            })
        })?,
    )?;
    redis.set(
        "setresp",
        lua.create_function(|_, a: MultiValue| {
            if !running() {
                return Err(mlua::Error::RuntimeError(
                    "redis.setresp can only be called inside a script invocation".into(),
                ));
            }
            if a.len() != 1 {
                return Err(mlua::Error::RuntimeError(
                    "redis.setresp() requires one argument.".into(),
                ));
            }
            let v = match &a[0] {
                LuaValue::Integer(n) => *n,
                LuaValue::Number(n) => *n as i64,
                _ => 0,
            };
            if v != 2 && v != 3 {
                return Err(mlua::Error::RuntimeError(
                    "RESP version must be 2 or 3.".into(),
                ));
            }
            RESP3.with(|r| r.set(v == 3));
            Ok(())
        })?,
    )?;
    // Redis 7 always replicates a script by its effects; the call stays for old scripts.
    redis.set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    for (name, v) in [
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.set(name, v)?;
    }
    redis.set("set_repl", lua.create_function(set_repl)?)?;
    redis.set("REDIS_VERSION", crate::info::REDIS_VERSION)?;
    redis.set("REDIS_VERSION_NUM", redis_version_num())?;
    redis.set(
        "error_reply",
        lua.create_function(|lua, s: String| {
            let t = lua.create_table()?;
            let s = if s.contains(' ') {
                s
            } else {
                format!("ERR {s}")
            };
            t.set("err", s)?;
            Ok(t)
        })?,
    )?;
    redis.set(
        "status_reply",
        lua.create_function(|lua, s: String| {
            let t = lua.create_table()?;
            t.set("ok", s)?;
            Ok(t)
        })?,
    )?;
    redis.set(
        "log",
        lua.create_function(|_, (level, msg): (i64, String)| {
            tracing::info!(level, "lua: {msg}");
            Ok(())
        })?,
    )?;
    for (name, v) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
    ] {
        redis.set(name, v)?;
    }
    lua.globals().set("redis", redis)?;
    lua.globals()
        .set("__redis__err__handler", error_handler(lua)?)?;
    Ok(())
}

/// `redis.set_repl(flags)`: whether the script's later writes are propagated. The AOF and the
/// replicas read one stream here (`repl::prop`), so `REPL_ALL` and `REPL_NONE` are honoured and
/// `REPL_AOF` or `REPL_REPLICA` alone are refused rather than half done.
fn set_repl(_: &Lua, a: MultiValue) -> mlua::Result<()> {
    let fail = |m: &str| Err(mlua::Error::RuntimeError(m.into()));
    if !running() {
        return fail("redis.set_repl can only be called inside a script invocation");
    }
    // Redis's own text, "two" included.
    if a.len() != 1 {
        return fail("redis.set_repl() requires two arguments.");
    }
    // lua_tonumber (0 for anything but a number or numeric text), stored in a C int.
    let n = crate::luaext::to_number(&a[0]).unwrap_or(0.0);
    let flags = c_long_long(n) as i32;
    if flags & !3 != 0 {
        return fail(
            "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
        );
    }
    if flags == 1 || flags == 2 {
        return fail(
            "codis-server sends a script's writes to the AOF and the replicas together: use \
             redis.REPL_ALL or redis.REPL_NONE",
        );
    }
    with_state(|st| {
        st.borrow_mut().propagate = flags == 3;
        Ok(())
    })
}

/// Registry name of the environment scripts run in (see [`sandbox`]).
const ENV: &str = "codis_script_env";

/// Redis 7.0's sandbox, once the libraries are in place:
/// - only the globals Redis offers: no `dofile`, `loadfile`, `print`, `getfenv`, `setfenv`,
///   `newproxy`, `module`, `require`, `package`, `io`, `os` or `debug`;
/// - reading a global that does not exist is an error ("Script attempted to access nonexistent
///   global variable 'x'"), and so is writing any global or changing a library's table
///   ("Attempt to modify a readonly table"), so one script cannot change what the next sees.
///
/// Redis patches its Lua to mark tables read-only; here a script runs in an empty environment
/// table whose reads fall through to the globals and whose writes fail, each library table is
/// replaced by such a read-only view, `rawset` and `setmetatable` refuse them, and `rawget`,
/// `next` and `pairs` see through them. `loadstring` and `load` give the functions they compile
/// that environment too.
fn sandbox(lua: &Lua) -> mlua::Result<()> {
    let env: mlua::Table = lua
        .load(
            r#"
local G = _G
local setfenv, setmetatable, error, tostring, ipairs = setfenv, setmetatable, error, tostring, ipairs
for _, name in ipairs({'dofile', 'loadfile', 'print', 'getfenv', 'setfenv', 'newproxy', 'module',
                       'require', 'package', 'io', 'os', 'debug'}) do
    G[name] = nil
end
local protected = setmetatable({}, {__mode = 'k'})
local real = setmetatable({}, {__mode = 'k'})
local function readonly() error('Attempt to modify a readonly table', 2) end
local function view(t)
    local v = setmetatable({}, {__index = t, __newindex = readonly, __metatable = false})
    protected[v] = true
    real[v] = t
    return v
end
for _, name in ipairs({'string', 'table', 'math', 'coroutine', 'cjson', 'bit', 'cmsgpack',
                       'struct', 'redis'}) do
    if G[name] then G[name] = view(G[name]) end
end
-- Strings' methods: their metatable's __index becomes the read-only string library, and the
-- metatable itself is seen only through a read-only view (getmetatable('') returns it).
local smt = getmetatable('')
if smt then
    smt.__index = G.string
    smt.__metatable = view(smt)
end
local env = view(G)
protected[G] = true
real[env] = G
-- Raised where Redis's patched Lua raises it: inside the C function, without a position.
local rawset, rawget, next, pairs = rawset, rawget, next, pairs
G.rawset = function(t, k, v)
    if protected[t] then error('Attempt to modify a readonly table', 0) end
    return rawset(t, k, v)
end
G.setmetatable = function(t, m)
    if protected[t] then error('Attempt to modify a readonly table', 0) end
    return setmetatable(t, m)
end
-- A library's view has no metatable to show (Redis: nil), _G one (Redis: its table).
local getmetatable = getmetatable
local gview = view({})
G.getmetatable = function(t)
    if t == env then return gview end
    if protected[t] then return nil end
    return getmetatable(t)
end
-- A view reads (and lists) as the table behind it.
G.rawget = function(t, k) return rawget(real[t] or t, k) end
G.next = function(t, k) return next(real[t] or t, k) end
G.pairs = function(t) return pairs(real[t] or t) end
-- Never bytecode: Redis's Lua parses every chunk as text (crafted bytecode can corrupt memory).
-- A chunk starting with bytecode's ESC byte gets a space in front, so it fails to parse as it
-- does on Redis, under the same chunk name.
local loadstring, load, type = loadstring, load, type
G.loadstring = function(s, name)
    if type(s) == 'string' and s:byte(1) == 27 then
        s, name = ' ' .. s, name or s
    end
    local f, e = loadstring(s, name)
    if f then setfenv(f, env) end
    return f, e
end
G.load = function(fn, name)
    local reader, first = fn, true
    if type(fn) == 'function' then
        reader = function()
            local piece = fn()
            if first then
                first = false
                if type(piece) == 'string' and piece:byte(1) == 27 then piece = ' ' .. piece end
            end
            return piece
        end
    end
    local f, e = load(reader, name or '=(load)')
    if f then setfenv(f, env) end
    return f, e
end
G._G = env
setmetatable(G, {
    __index = function(_, k)
        error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
    end,
    __newindex = readonly,
    __metatable = false,
})
return env
"#,
        )
        .set_name("=sandbox")
        .eval()?;
    lua.set_named_registry_value(ENV, env)
}

/// `REDIS_VERSION` as Redis's `REDIS_VERSION_NUM`: 0x00MMmmpp (7.0.15 is 0x00070f).
fn redis_version_num() -> i64 {
    crate::info::REDIS_VERSION
        .split('.')
        .map(|p| p.parse::<i64>().unwrap_or(0))
        .fold(0, |acc, p| (acc << 8) | (p & 0xff))
}

/// SHA1 of `data` as 40 lower-case hex digits.
pub fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// SCRIPT LOAD: remember a script, return its SHA1.
pub fn load(body: &Bytes) -> String {
    let sha = sha1_hex(body);
    if let Ok(mut m) = SCRIPTS.lock() {
        m.insert(sha.clone(), body.clone());
    }
    sha
}

/// Bumped by SCRIPT FLUSH: every core drops its compiled scripts when it sees a new value.
static FLUSH_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Most EVAL bodies whose SHA1 a core remembers (the table is cleared when full).
const MAX_REMEMBERED_BODIES: usize = 4096;

/// One core's compiled scripts. Redis compiles a script once (as `f_<sha>`) and calls that
/// function on every EVAL/EVALSHA; compiling each time cost a fifth of the core's time in EVAL.
#[derive(Default)]
struct Compiled {
    generation: u64,
    /// SHA1 and function of recently seen EVAL bodies, so a repeated EVAL skips hashing and
    /// finds its function in one lookup.
    by_body: HashMap<Bytes, (Rc<str>, Script)>,
    functions: HashMap<String, Script>,
}

thread_local! {
    static COMPILED: RefCell<Compiled> = RefCell::new(Compiled::default());
}

impl Compiled {
    /// Forget everything if SCRIPT FLUSH ran (on any core) since the last call.
    fn refresh(&mut self) {
        let g = FLUSH_GENERATION.load(Ordering::Acquire);
        if g != self.generation {
            self.generation = g;
            self.by_body.clear();
            self.functions.clear();
        }
    }

    /// The compiled function of `body` (known by `sha`), compiling it on first use.
    fn function(&mut self, sha: &str, body: &[u8]) -> Result<Script, String> {
        if let Some(f) = self.functions.get(sha) {
            return Ok(f.clone());
        }
        let (flags, skip) = shebang(body)?;
        let f = LUA.with(|lua| {
            // The shebang line is skipped but its line feed kept, so line numbers stay the user's.
            let text = as_text(&body[skip..]);
            let mut chunk = lua.load(text.as_ref()).set_name("@user_script");
            if let Ok(env) = lua.named_registry_value::<mlua::Table>(ENV) {
                chunk = chunk.set_environment(env);
            }
            chunk.into_function().map_err(|e| compile_error(&e))
        })?;
        let script = Script { f, flags };
        self.functions.insert(sha.to_string(), script.clone());
        Ok(script)
    }
}

/// A compiled EVAL script and the flags of its shebang line (`None`: no shebang, Redis's
/// compatibility mode).
#[derive(Clone)]
struct Script {
    f: mlua::Function,
    flags: Option<u8>,
}

/// The flags of a script's `#!lua flags=…` line and the line's length (0 when there is none),
/// as Redis 7.0's `evalExtractShebangFlags`.
fn shebang(body: &[u8]) -> Result<(Option<u8>, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((None, 0));
    }
    let Some(end) = memchr::memchr(b'\n', body) else {
        return Err("ERR Invalid script shebang".into());
    };
    let parts = match resp::request::split_args(&body[..end]) {
        Ok(p) if !p.is_empty() => p,
        _ => return Err("ERR Invalid engine in script shebang".into()),
    };
    if parts[0] != b"#!lua" {
        return Err(format!(
            "ERR Unexpected engine in script shebang: {}",
            String::from_utf8_lossy(&parts[0])
        ));
    }
    let mut flags = 0;
    for p in &parts[1..] {
        let Some(list) = p.strip_prefix(b"flags=") else {
            return Err(format!(
                "ERR Unknown lua shebang option: {}",
                String::from_utf8_lossy(p)
            ));
        };
        if list.is_empty() {
            continue;
        }
        for f in list.split(|c| *c == b',') {
            match crate::function::flag_bit(f) {
                Some(bit) => flags |= bit,
                None => {
                    return Err(format!(
                        "ERR Unexpected flag in script shebang: {}",
                        String::from_utf8_lossy(f)
                    ))
                }
            }
        }
    }
    Ok((Some(flags), end))
}

/// Redis's checks before a script with flags runs (a function, or EVAL with a shebang):
/// one that may write is refused on a read-only replica, by the `_RO` commands and, without
/// `allow-oom`, over `maxmemory`.
fn check_flags(flags: u8, ro: bool) -> Result<(), &'static str> {
    use crate::function::{ALLOW_OOM, NO_WRITES};
    if flags & NO_WRITES == 0 {
        if crate::repl::readonly() {
            return Err("READONLY Can not run script with write flag on readonly replica");
        }
        if ro {
            return Err("ERR Can not execute a script with write flag using *_ro command.");
        }
    }
    if flags & (ALLOW_OOM | NO_WRITES) == 0 && crate::evict::over_limit() {
        return Err(
            "OOM allow-oom flag is not set on the script, can not run it when used memory > 'maxmemory'",
        );
    }
    Ok(())
}

/// EVALSHA: the script stored under `sha`, compiled.
fn compiled_by_sha(sha: String) -> Result<(Rc<str>, Script), String> {
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        c.refresh();
        if let Some(f) = c.functions.get(&sha) {
            return Ok((sha.into(), f.clone()));
        }
        let body = SCRIPTS
            .lock()
            .ok()
            .and_then(|m| m.get(&sha).cloned())
            .ok_or_else(|| "NOSCRIPT No matching script. Please use EVAL.".to_string())?;
        let f = c.function(&sha, &body)?;
        Ok((sha.into(), f))
    })
}

/// EVAL: remember `body` (as SCRIPT LOAD does) and return its SHA1 and compiled function.
fn compiled_body(body: &Bytes) -> Result<(Rc<str>, Script), String> {
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        c.refresh();
        if let Some((sha, f)) = c.by_body.get(body) {
            return Ok((sha.clone(), f.clone()));
        }
        // Only a script that compiles is remembered (Redis does not store a broken one).
        let sha = sha1_hex(body);
        let f = c.function(&sha, body)?;
        if let Ok(mut m) = SCRIPTS.lock() {
            m.insert(sha.clone(), body.clone());
        }
        if c.by_body.len() >= MAX_REMEMBERED_BODIES {
            c.by_body.clear();
        }
        let sha: Rc<str> = sha.into();
        c.by_body.insert(body.clone(), (sha.clone(), f.clone()));
        Ok((sha, f))
    })
}

/// SCRIPT EXISTS for one SHA1.
pub fn exists(sha: &[u8]) -> bool {
    let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
    SCRIPTS
        .lock()
        .map(|m| m.contains_key(&sha))
        .unwrap_or(false)
}

/// SCRIPT FLUSH.
pub fn flush() {
    if let Ok(mut m) = SCRIPTS.lock() {
        m.clear();
    }
    FLUSH_GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Run SCRIPT's subcommands (LOAD, EXISTS, FLUSH, KILL, HELP); appends the reply.
pub fn script_cmd(args: &[Bytes], out: &mut BytesMut) {
    let sub = args[1].to_ascii_lowercase();
    match (sub.as_slice(), args.len()) {
        (b"load", 3) => match compile_check(&args[2]) {
            Ok(()) => encode::bulk(out, load(&args[2]).as_bytes()),
            Err(e) => encode::error(out, &e),
        },
        (b"exists", n) if n >= 3 => {
            encode::array(out, n - 2);
            for a in &args[2..] {
                encode::int(out, exists(a) as i64);
            }
        }
        (b"flush", 2) => {
            flush();
            encode::ok(out);
        }
        (b"flush", 3)
            if args[2].eq_ignore_ascii_case(b"sync") || args[2].eq_ignore_ascii_case(b"async") =>
        {
            flush();
            encode::ok(out);
        }
        (b"flush", _) => encode::error(out, "ERR SCRIPT FLUSH only support SYNC|ASYNC option"),
        (b"kill", 2) => kill_running(out, false),
        (b"help", 2) => {
            // Redis 7.0's text, without SCRIPT DEBUG (there is no Lua debugger here).
            let lines = [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache. Very dangerous on replicas.",
                "    When called without the optional mode argument, the behavior is determined by the",
                "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
                "    * ASYNC: Asynchronously flush the scripts cache.",
                "    * SYNC: Synchronously flush the scripts cache.",
                "KILL",
                "    Kill the currently executing Lua script.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Prints this help.",
            ];
            encode::help(out, &lines);
        }
        _ => encode::error(
            out,
            &format!(
                "ERR unknown subcommand '{}'. Try SCRIPT HELP.",
                String::from_utf8_lossy(&args[1])
            ),
        ),
    }
}

/// A script body as Lua text: Redis's Lua never loads precompiled bytecode (crafted bytecode
/// can corrupt the interpreter's memory), it parses every body as source. A body starting with
/// bytecode's ESC byte gets a space in front, so the parser reads it as text and fails on it as
/// Redis's does ("unexpected symbol near 'char(27)'").
pub(crate) fn as_text(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if body.first() == Some(&27) {
        std::borrow::Cow::Owned([b" ", body].concat())
    } else {
        std::borrow::Cow::Borrowed(body)
    }
}

fn compile_check(body: &[u8]) -> Result<(), String> {
    let (_, skip) = shebang(body)?;
    LUA.with(|lua| {
        lua.load(as_text(&body[skip..]).as_ref())
            .set_name("@user_script")
            .into_function()
            .map(|_| ())
            .map_err(|e| compile_error(&e))
    })
}

fn compile_error(e: &mlua::Error) -> String {
    let msg = match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let msg = msg.lines().next().unwrap_or("").to_string();
    format!("ERR Error compiling script (new function): {msg}")
}

/// State `redis.call` works on while a script runs.
struct CallState<'a> {
    dbs: &'a mut [Db],
    db: usize,
    now: u64,
    declared: &'a [Bytes],
    readonly: bool,
    /// The last error `redis.call` raised, with the script line it was called from.
    raised: Option<(String, usize)>,
    /// Effects of the writes run so far (propagated as MULTI … EXEC instead of the script).
    effects: Vec<Vec<Bytes>>,
    /// Whether later writes join `effects` (`redis.set_repl`).
    propagate: bool,
    /// Reply buffer `redis.call` reuses for every command the script runs.
    buf: BytesMut,
}

fn eval(ctx: &mut Ctx) {
    let name = command::lookup(&ctx.args[0]).map_or("eval", |s| s.name);
    let by_sha = name.starts_with("evalsha");
    let readonly = name.ends_with("_ro");
    let Some(numkeys) = resp::parse_i64(&ctx.args[2]) else {
        return ctx.err(cmd::err::NOT_INT);
    };
    if numkeys < 0 {
        return ctx.err("ERR Number of keys can't be negative");
    }
    if numkeys as usize > ctx.args.len() - 3 {
        return ctx.err("ERR Number of keys can't be greater than number of args");
    }
    let nk = numkeys as usize;
    let compiled = if by_sha {
        let sha = String::from_utf8_lossy(&ctx.args[1]).to_ascii_lowercase();
        compiled_by_sha(sha)
    } else {
        compiled_body(&ctx.args[1])
    };
    let (sha, script) = match compiled {
        Ok(c) => c,
        Err(e) => return ctx.err(&e),
    };
    let readonly = match script.flags {
        None => readonly,
        Some(flags) => {
            if let Err(e) = check_flags(flags, readonly) {
                return ctx.err(e);
            }
            readonly || flags & crate::function::NO_WRITES != 0
        }
    };
    run(ctx, &script.f, &sha, Source::Eval, nk, readonly);
}

/// FCALL and FCALL_RO: a function of a library loaded with FUNCTION LOAD (`function.rs`).
fn fcall(ctx: &mut Ctx) {
    let ro = ctx.args[0].eq_ignore_ascii_case(b"fcall_ro");
    let Some(c) = LUA.with(|lua| crate::function::find(lua, &ctx.args[1])) else {
        return ctx.err("ERR Function not found");
    };
    let Some(numkeys) = resp::parse_i64(&ctx.args[2]) else {
        return ctx.err("ERR Bad number of keys provided");
    };
    if numkeys > ctx.args.len() as i64 - 3 {
        return ctx.err("ERR Number of keys can't be greater than number of args");
    }
    if numkeys < 0 {
        return ctx.err("ERR Number of keys can't be negative");
    }
    if let Err(e) = check_flags(c.flags, ro) {
        return ctx.err(e);
    }
    let _running = RunningFunction::new(&c.name, ctx.args);
    run(
        ctx,
        &c.f,
        &c.name,
        Source::Function,
        numkeys as usize,
        ro || c.flags & crate::function::NO_WRITES != 0,
    );
}

/// Where a script's code came from: its chunk name in error positions.
#[derive(Clone, Copy)]
enum Source {
    /// EVAL / EVALSHA: `@user_script`, keys and arguments in the globals `KEYS` and `ARGV`.
    Eval,
    /// FCALL: `@user_function`, keys and arguments as the function's two parameters.
    Function,
}

impl Source {
    fn chunk(self) -> &'static str {
        match self {
            Source::Eval => "user_script",
            Source::Function => "user_function",
        }
    }
}

/// Run a compiled script or function with the command's keys (`nk` of them after argument 2)
/// and arguments; replies its result or its error (named after `name`).
fn run(ctx: &mut Ctx, f: &mlua::Function, name: &str, source: Source, nk: usize, readonly: bool) {
    let args = ctx.args;
    let keys = &args[3..3 + nk];
    let argv = &args[3 + nk..];
    let proto = ctx.proto;
    let state = RefCell::new(CallState {
        dbs: &mut *ctx.dbs,
        db: ctx.db,
        now: ctx.now,
        declared: keys,
        readonly,
        raised: None,
        effects: Vec::new(),
        propagate: true,
        buf: BytesMut::new(),
    });
    let out = &mut *ctx.out;
    let out_len = out.len();
    let result: Result<(), String> = LUA.with(|lua| {
        let mut run = || -> mlua::Result<()> {
            let g = lua.globals();
            let runner = RUNNER
                .with(|r| r.borrow().clone())
                .ok_or_else(|| mlua::Error::RuntimeError("no script runner".into()))?;
            let v = match source {
                Source::Eval => {
                    g.raw_set("KEYS", to_lua_list(lua, keys)?)?;
                    g.raw_set("ARGV", to_lua_list(lua, argv)?)?;
                    let _guard = StateGuard::new(&state, false);
                    runner.call::<LuaValue>(f)
                }
                Source::Function => {
                    // A function sees no `KEYS`/`ARGV` (an earlier EVAL's stay in the globals).
                    g.raw_set("KEYS", LuaValue::Nil)?;
                    g.raw_set("ARGV", LuaValue::Nil)?;
                    let (k, a) = (to_lua_list(lua, keys)?, to_lua_list(lua, argv)?);
                    let _guard = StateGuard::new(&state, true);
                    runner.call::<LuaValue>((f, k, a))
                }
            }?;
            lua_to_resp(&v, proto, out);
            Ok(())
        };
        let r = run().map_err(|e| {
            out.truncate(out_len);
            runtime_error(&e, &state.borrow().raised, name, source.chunk())
        });
        note_memory(lua);
        r
    });
    let mut effects = std::mem::take(&mut state.borrow_mut().effects);
    if !effects.is_empty() {
        effects.insert(0, vec![Bytes::from_static(b"MULTI")]);
        effects.push(vec![Bytes::from_static(b"EXEC")]);
    }
    // Even a script that failed half-way propagates what it wrote (Redis does the same).
    ctx.propagate_as(effects);
    if let Err(e) = result {
        ctx.err(&e);
    }
}

/// When the running script's time-limit clock started, starting it now if it has not.
fn started_at() -> Instant {
    match STARTED.with(Cell::get) {
        Some(t) => t,
        None => {
            let t = Instant::now();
            STARTED.with(|s| s.set(Some(t)));
            t
        }
    }
}

/// A running function: its name, its FCALL command, when it started.
type Running = (Arc<str>, Vec<Bytes>, Instant);

/// Functions running now, by core slot (FUNCTION STATS on any core reports them). A function
/// is entered here by the instruction hook, once it has run 10 000 instructions: a shorter one
/// is over before another connection could ask, and FCALL's fast path stays free of it.
static RUNNING_FUNCTIONS: [Mutex<Option<Running>>; MAX_CORES] =
    [const { Mutex::new(None) }; MAX_CORES];

thread_local! {
    /// The function running on this thread (name and FCALL command, valid while it runs) and
    /// whether the hook entered it in [`RUNNING_FUNCTIONS`].
    static CURRENT_FUNCTION: Cell<Option<(*const Arc<str>, *const [Bytes])>> =
        const { Cell::new(None) };
    static FUNCTION_SHOWN: Cell<bool> = const { Cell::new(false) };
}

/// Marks a function as running on this thread until dropped.
struct RunningFunction;

impl RunningFunction {
    fn new(name: &Arc<str>, args: &[Bytes]) -> RunningFunction {
        CURRENT_FUNCTION.with(|c| c.set(Some((name as *const Arc<str>, args as *const [Bytes]))));
        RunningFunction
    }
}

impl Drop for RunningFunction {
    fn drop(&mut self) {
        CURRENT_FUNCTION.with(|c| c.set(None));
        if FUNCTION_SHOWN.with(|s| s.replace(false)) {
            if let Ok(mut m) = RUNNING_FUNCTIONS[RUN_SLOT.with(|s| *s)].lock() {
                *m = None;
            }
        }
    }
}

/// From the instruction hook: enter the function running on this thread (if any, and not yet)
/// in [`RUNNING_FUNCTIONS`].
fn show_running_function() {
    if FUNCTION_SHOWN.with(Cell::get) {
        return;
    }
    let Some((name, args)) = CURRENT_FUNCTION.with(Cell::get) else {
        return;
    };
    // SAFETY: `fcall` sets these pointers to its own name and arguments for the run only, and
    // its `RunningFunction` clears them before either goes away; the hook runs during the run,
    // on this thread.
    let (name, args) = unsafe { ((*name).clone(), (*args).to_vec()) };
    if let Ok(mut m) = RUNNING_FUNCTIONS[RUN_SLOT.with(|s| *s)].lock() {
        *m = Some((name, args, started_at()));
        FUNCTION_SHOWN.with(|s| s.set(true));
    }
}

/// A function running now (on any core): its name, its FCALL command and how long it has run
/// in ms.
pub(crate) fn running_function() -> Option<(String, Vec<Bytes>, u64)> {
    RUNNING_FUNCTIONS.iter().find_map(|m| {
        let m = m.lock().ok()?;
        m.as_ref()
            .map(|(n, a, t)| (n.to_string(), a.clone(), t.elapsed().as_millis() as u64))
    })
}

/// Run FUNCTION's subcommands on this core's Lua state (`function::command`).
pub fn function_cmd(args: &[Bytes], proto: Proto, out: &mut BytesMut) -> bool {
    LUA.with(|lua| {
        let changed = crate::function::command(lua, args, proto, out);
        note_memory(lua);
        changed
    })
}

/// Load libraries (an RDB file's or a full sync's) on this core's Lua state.
pub fn load_functions(codes: &[Bytes]) -> Result<(), String> {
    LUA.with(|lua| crate::function::replace_all(lua, codes))
}

fn runtime_error(
    e: &mlua::Error,
    raised: &Option<(String, usize)>,
    sha: &str,
    chunk: &str,
) -> String {
    let mut msg = e.to_string();
    // An error raised by a library function (cjson, bit, redis.*): Redis reports the line of
    // the script that called it, the first script frame of the traceback.
    let mut caller = None;
    if let mlua::Error::CallbackError { cause, traceback } = e {
        msg = cause.to_string();
        caller = traceback
            .split(&format!("{chunk}:"))
            .nth(1)
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse::<usize>().ok());
    }
    let first = msg.lines().next().unwrap_or("");
    let first = first
        .strip_prefix("runtime error: ")
        .unwrap_or(first)
        .to_string();
    if let Some((line, text)) = first
        .strip_prefix(TABLE_ERROR)
        .and_then(|r| r.split_once(TABLE_ERROR))
    {
        return format!("{text} script: {sha}, on @{chunk}:{line}.");
    }
    if let Some((m, line)) = raised {
        if first.contains(m.as_str()) {
            return format!("{m} script: {sha}, on @{chunk}:{line}.");
        }
    }
    // "user_script:3: boom": the line is the number after the chunk name.
    let line = first
        .strip_prefix(&format!("{chunk}:"))
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse::<usize>().ok())
        .or(caller)
        .unwrap_or(0);
    format!("ERR {first} script: {sha}, on @{chunk}:{line}.")
}

fn to_lua_list(lua: &Lua, items: &[Bytes]) -> mlua::Result<mlua::Table> {
    // Text items are pushed straight onto the Lua stack (mlua makes no handle for a `&str`).
    if items.iter().all(|b| std::str::from_utf8(b).is_ok()) {
        return lua.create_sequence_from(
            items
                .iter()
                .map(|b| std::str::from_utf8(b).unwrap_or_default()),
        );
    }
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, b) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(&b[..])?)?;
    }
    Ok(t)
}

fn caller_line(lua: &Lua) -> usize {
    lua.inspect_stack(1)
        .map(|d| d.curr_line().max(0) as usize)
        .unwrap_or(0)
}

/// `redis.call` (raise = true) and `redis.pcall`.
fn call(
    lua: &Lua,
    state: &RefCell<CallState>,
    a: MultiValue,
    raise: bool,
) -> mlua::Result<LuaValue> {
    let fail = |msg: String| -> mlua::Result<LuaValue> {
        if raise {
            let line = caller_line(lua);
            state.borrow_mut().raised = Some((msg.clone(), line));
            Err(mlua::Error::RuntimeError(msg))
        } else {
            let t = lua.create_table()?;
            t.set("err", msg)?;
            Ok(LuaValue::Table(t))
        }
    };
    let mut args: Vec<Bytes> = Vec::with_capacity(a.len());
    for v in a.iter() {
        match v {
            LuaValue::String(s) => args.push(Bytes::copy_from_slice(&s.as_bytes())),
            LuaValue::Integer(n) => args.push(Bytes::from(n.to_string())),
            LuaValue::Number(n) => args.push(Bytes::from(lua_number_text(*n))),
            _ => {
                return fail(
                    "ERR Lua redis lib command arguments must be strings or integers".into(),
                )
            }
        }
    }
    if args.is_empty() {
        return fail("ERR Please specify at least one argument for this redis lib call".into());
    }
    let Some(spec) = command::lookup(&args[0]) else {
        return fail("ERR Unknown Redis command called from script".into());
    };
    if !spec.arity_ok(args.len()) {
        return fail("ERR Wrong number of args calling Redis command from script".into());
    }
    let idx = cmd::index_of(spec);
    // Not keyspace commands, answered here rather than by a shard's handler.
    let local = matches!(spec.name, "ping" | "echo" | "time" | "publish" | "spublish");
    let handler = match cmd::handler(idx) {
        Some(h) if !spec.has(NOSCRIPT) => Some(h),
        _ if local => None,
        _ => return fail("ERR This Redis command is not allowed from script".into()),
    };
    let mut st = state.borrow_mut();
    if st.readonly && spec.has(WRITE) {
        drop(st);
        return fail("ERR Write commands are not allowed from read-only scripts.".into());
    }
    for p in spec.key_positions(&args) {
        let k = &args[p];
        let db = &st.dbs[st.db];
        let local = !db.is_scratch() && db.owns(resp::slot(k) as usize);
        if !local && !st.declared.contains(k) {
            drop(st);
            return fail(
                "ERR Script attempted to access a key that is neither declared nor on this core"
                    .into(),
            );
        }
    }
    // SORT's BY/GET patterns read keys the command does not name (all in its key's slot): a
    // scratch copy holds only the declared keys, so such a SORT would read missing keys there.
    if st.dbs[st.db].is_scratch() && cmd::sort::pattern_reads(idx, &args, st.db).is_some() {
        drop(st);
        return fail(
            "ERR Script attempted to access a key that is neither declared nor on this core".into(),
        );
    }
    if spec.has(WRITE) {
        run_slot().fetch_or(WROTE, Ordering::AcqRel);
    }
    if crate::monitor::active()
        && !crate::monitor::hidden(spec.name, spec.has(command::ADMIN), &args)
    {
        crate::monitor::feed(st.db, "lua", &args);
    }
    let mut out = std::mem::take(&mut st.buf);
    out.clear();
    if let Some(handler) = handler {
        let st = &mut *st;
        // EVAL runs as a non-WRITE command (its database is "quiet"); the script's writes must
        // count as modifications (WATCH, dirty, keyspace events) all the same.
        let was_quiet = std::mem::replace(&mut st.dbs[st.db].quiet, !spec.has(WRITE));
        let probe = if crate::notify::enabled() {
            crate::notify::Probe::before(spec, &args, st.db, st.dbs, st.now)
        } else {
            None
        };
        let track = crate::repl::prop::active();
        let dirty0: u64 = if track {
            st.dbs.iter().map(|d| d.dirty()).sum()
        } else {
            0
        };
        let mut ctx = Ctx {
            dbs: &mut *st.dbs,
            db: st.db,
            args: &args,
            out: &mut out,
            proto: if RESP3.with(Cell::get) {
                Proto::Resp3
            } else {
                Proto::Resp2
            },
            now: st.now,
            rewrite: None,
        };
        crate::db::begin_command();
        handler(&mut ctx);
        crate::db::end_command(ctx.dbs, spec, &ctx.out[..]);
        if let Some(p) = probe {
            let ev = p.after(spec.name, &args, ctx.dbs, ctx.now, &ctx.out[..]);
            crate::notify::emit_all(ev);
        }
        if track && st.propagate {
            let rewrite = ctx.rewrite.take();
            let changed = ctx.dbs.iter().map(|d| d.dirty()).sum::<u64>() != dirty0;
            let mut fx = Vec::new();
            crate::repl::prop::effects(spec, 0, &args, rewrite, changed, &out, &mut fx);
            st.effects.extend(fx.into_iter().map(|(_, c)| c));
        }
        st.dbs[st.db].quiet = was_quiet;
    } else {
        local_command(spec.name, &args, &mut out);
        // Replicas deliver a script's messages to their own subscribers, in order with its
        // writes (the AOF leaves them out: `Log::append`).
        if matches!(spec.name, "publish" | "spublish")
            && st.propagate
            && crate::repl::prop::active()
            && out.first() == Some(&b':')
        {
            st.effects.push(args[..3].to_vec());
        }
    }
    drop(st);
    if &out[..] == WOULD_BLOCK {
        state.borrow_mut().buf = out;
        return Ok(LuaValue::Boolean(false));
    }
    let mut pos = 0;
    let v = resp_to_lua(lua, &out, &mut pos);
    state.borrow_mut().buf = out;
    let v = v?;
    if let LuaValue::Table(t) = &v {
        if let Ok(Some(e)) = t.get::<Option<String>>("err") {
            if raise {
                return fail(e);
            }
        }
    }
    Ok(v)
}

/// What `redis.call` answers itself: `PING`, `ECHO`, `TIME` and `PUBLISH` (delivered to every
/// core's subscribers right after the script; see `pubsub::publish_from_script`).
fn local_command(name: &str, args: &[Bytes], out: &mut BytesMut) {
    match name {
        "ping" => match args.len() {
            1 => out.extend_from_slice(b"+PONG\r\n"),
            2 => encode::bulk(out, &args[1]),
            _ => encode::error(out, "ERR wrong number of arguments for 'ping' command"),
        },
        "echo" => encode::bulk(out, &args[1]),
        "time" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            encode::array(out, 2);
            encode::bulk(out, now.as_secs().to_string().as_bytes());
            encode::bulk(out, now.subsec_micros().to_string().as_bytes());
        }
        "publish" => {
            let n = crate::pubsub::publish_from_script(&args[1], &args[2]);
            encode::int(out, n as i64);
        }
        "spublish" => {
            let n = crate::pubsub::spublish_from_script(&args[1], &args[2]);
            encode::int(out, n as i64);
        }
        _ => encode::error(out, "ERR This Redis command is not allowed from script"),
    }
}

/// C's `(long long)` cast of a double on x86-64, as Redis converts a script's number: NaN and
/// values out of range give `i64::MIN` (Rust's `as` would saturate).
pub(crate) fn c_long_long(n: f64) -> i64 {
    if n.is_nan() || !(-9.223372036854775808e18..9.223372036854775808e18).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// A Lua number as `redis.call` passes it (Redis's `%.17g`).
pub(crate) fn number_text(n: f64) -> String {
    lua_number_text(n)
}

fn lua_number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e17 {
        format!("{}", n as i64)
    } else {
        format!("{n:.17}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn read_line<'a>(b: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let start = *pos;
    let end = b[start..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(b.len(), |i| start + i);
    *pos = (end + 2).min(b.len());
    &b[start..end]
}

/// Convert one reply to a Lua value (Redis's rules: status → {ok=}, error → {err=},
/// integer → number, nil → false, array → table; RESP3 types below).
fn resp_to_lua(lua: &Lua, b: &[u8], pos: &mut usize) -> mlua::Result<LuaValue> {
    if *pos >= b.len() {
        return Ok(LuaValue::Boolean(false));
    }
    let t = b[*pos];
    *pos += 1;
    let line = read_line(b, pos);
    Ok(match t {
        b'+' => {
            let tb = lua.create_table()?;
            tb.set("ok", lua.create_string(line)?)?;
            LuaValue::Table(tb)
        }
        b'-' => {
            let tb = lua.create_table()?;
            tb.set("err", lua.create_string(line)?)?;
            LuaValue::Table(tb)
        }
        b':' => LuaValue::Integer(resp::parse_i64(line).unwrap_or(0)),
        b'$' => {
            let n: i64 = resp::parse_i64(line).unwrap_or(-1);
            if n < 0 {
                LuaValue::Boolean(false)
            } else {
                let n = n as usize;
                let end = (*pos + n).min(b.len());
                let s = lua.create_string(&b[*pos..end])?;
                *pos = (end + 2).min(b.len());
                LuaValue::String(s)
            }
        }
        b'*' | b'>' => {
            let n: i64 = resp::parse_i64(line).unwrap_or(-1);
            if n < 0 {
                LuaValue::Boolean(false)
            } else {
                let tb = lua.create_table()?;
                for i in 0..n as usize {
                    tb.set(i + 1, resp_to_lua(lua, b, pos)?)?;
                }
                LuaValue::Table(tb)
            }
        }
        // RESP3 (after redis.setresp(3)), as Redis converts it: {map=}, {set=}, {double=},
        // {big_number=}, {verbatim_string={format=, string=}}, booleans, nil.
        b'%' | b'~' => {
            let n = resp::parse_i64(line).unwrap_or(0).max(0) as usize;
            let inner = lua.create_table()?;
            for _ in 0..n {
                let k = resp_to_lua(lua, b, pos)?;
                let v = if t == b'%' {
                    resp_to_lua(lua, b, pos)?
                } else {
                    LuaValue::Boolean(true)
                };
                inner.raw_set(k, v)?;
            }
            let tb = lua.create_table()?;
            tb.set(if t == b'%' { "map" } else { "set" }, inner)?;
            LuaValue::Table(tb)
        }
        b'|' => {
            // An attribute: skipped, the value follows.
            let n = resp::parse_i64(line).unwrap_or(0).max(0) as usize;
            for _ in 0..2 * n {
                resp_to_lua(lua, b, pos)?;
            }
            resp_to_lua(lua, b, pos)?
        }
        b'_' => LuaValue::Nil,
        b'#' => LuaValue::Boolean(line == b"t"),
        b',' => {
            let tb = lua.create_table()?;
            let d = std::str::from_utf8(line)
                .ok()
                .and_then(|s| match s {
                    "inf" => Some(f64::INFINITY),
                    "-inf" => Some(f64::NEG_INFINITY),
                    _ => s.parse::<f64>().ok(),
                })
                .unwrap_or(f64::NAN);
            tb.set("double", d)?;
            LuaValue::Table(tb)
        }
        b'(' => {
            let tb = lua.create_table()?;
            tb.set("big_number", lua.create_string(line)?)?;
            LuaValue::Table(tb)
        }
        b'=' => {
            let n = resp::parse_i64(line).unwrap_or(0).max(0) as usize;
            let end = (*pos + n).min(b.len());
            let body = &b[*pos..end];
            *pos = (end + 2).min(b.len());
            let (format, text) = if body.len() >= 4 && body[3] == b':' {
                (&body[..3], &body[4..])
            } else {
                (&b"txt"[..], body)
            };
            let v = lua.create_table()?;
            v.set("format", lua.create_string(format)?)?;
            v.set("string", lua.create_string(text)?)?;
            let tb = lua.create_table()?;
            tb.set("verbatim_string", v)?;
            LuaValue::Table(tb)
        }
        _ => LuaValue::Boolean(false),
    })
}

/// Convert a script's result to a reply (Redis's rules: number → integer (truncated), string →
/// bulk, true → 1, false/nil → nil, {ok=} → status, {err=} → error, table → array up to the first
/// nil).
fn lua_to_resp(v: &LuaValue, proto: Proto, out: &mut BytesMut) {
    match v {
        LuaValue::Nil => encode::null(out, proto),
        // After redis.setresp(3) a boolean is a boolean (`:1`/`:0` to a RESP2 client).
        LuaValue::Boolean(b) if RESP3.with(Cell::get) => {
            if proto == Proto::Resp3 {
                out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" });
            } else {
                encode::int(out, *b as i64);
            }
        }
        LuaValue::Boolean(true) => encode::int(out, 1),
        LuaValue::Boolean(false) => encode::null(out, proto),
        LuaValue::Integer(n) => encode::int(out, *n),
        LuaValue::Number(n) => encode::int(out, c_long_long(*n)),
        LuaValue::String(s) => encode::bulk(out, &s.as_bytes()),
        LuaValue::Table(t) => {
            if let Ok(LuaValue::String(e)) = t.raw_get::<LuaValue>("err") {
                let e = e.to_string_lossy();
                return encode::error(out, &e);
            }
            if let Ok(LuaValue::String(s)) = t.raw_get::<LuaValue>("ok") {
                return encode::simple(out, &s.to_string_lossy().replace(['\r', '\n'], " "));
            }
            match t.raw_get::<LuaValue>("double") {
                Ok(LuaValue::Number(d)) => return encode::double(out, d, proto),
                Ok(LuaValue::Integer(d)) => return encode::double(out, d as f64, proto),
                _ => {}
            }
            if let Ok(LuaValue::String(s)) = t.raw_get::<LuaValue>("big_number") {
                let s = s.to_string_lossy().replace(['\r', '\n'], " ");
                if proto == Proto::Resp3 {
                    out.extend_from_slice(format!("({s}\r\n").as_bytes());
                } else {
                    encode::bulk(out, s.as_bytes());
                }
                return;
            }
            if let Ok(LuaValue::Table(v)) = t.raw_get::<LuaValue>("verbatim_string") {
                if let (Ok(LuaValue::String(f)), Ok(LuaValue::String(s))) = (
                    v.raw_get::<LuaValue>("format"),
                    v.raw_get::<LuaValue>("string"),
                ) {
                    let (f, s) = (f.as_bytes(), s.as_bytes());
                    if proto == Proto::Resp3 {
                        out.extend_from_slice(format!("={}\r\n", s.len() + 4).as_bytes());
                        out.extend_from_slice(&f[..f.len().min(3)]);
                        out.extend_from_slice(b":");
                        out.extend_from_slice(&s);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        encode::bulk(out, &s);
                    }
                    return;
                }
            }
            for (field, map) in [("map", true), ("set", false)] {
                if let Ok(LuaValue::Table(m)) = t.raw_get::<LuaValue>(field) {
                    let pairs: Vec<(LuaValue, LuaValue)> = m
                        .pairs::<LuaValue, LuaValue>()
                        .filter_map(Result::ok)
                        .collect();
                    if map {
                        encode::map(out, pairs.len(), proto);
                    } else {
                        encode::set(out, pairs.len(), proto);
                    }
                    for (k, x) in &pairs {
                        lua_to_resp(k, proto, out);
                        if map {
                            lua_to_resp(x, proto, out);
                        }
                    }
                    return;
                }
            }
            let mut items = Vec::new();
            for i in 1.. {
                match t.raw_get::<LuaValue>(i) {
                    Ok(LuaValue::Nil) | Err(_) => break,
                    Ok(x) => items.push(x),
                }
            }
            encode::array(out, items.len());
            for x in &items {
                lua_to_resp(x, proto, out);
            }
        }
        _ => encode::null(out, proto),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha1_matches_known_digests() {
        assert_eq!(
            super::sha1_hex(b""),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            super::sha1_hex(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
