//! Redis 7 Functions: libraries of Lua functions loaded with `FUNCTION LOAD` and called with
//! `FCALL` / `FCALL_RO` (`script.rs` runs them; this module keeps the libraries).
//!
//! # Where libraries live
//! One process-wide registry holds every library's code and the metadata its load registered
//! (function names, descriptions, flags); every change bumps a generation counter. Each core has
//! its own Lua state (`script.rs`), so each core compiles the libraries itself: the first `FCALL`
//! on a core after a change runs every library's code again on that core and keeps the
//! functions it registers. `FUNCTION LOAD` runs the code once on the core that received it
//! first, so errors are reported before anything changes.
//!
//! # The load environment
//! As in Redis 7.0, a library's top-level code sees one global, `redis`, with only
//! `register_function`, `log`, the `LOG_*` levels and the version fields; any other name is
//! "Script attempted to access nonexistent global variable". The functions it registers run
//! with the full script API (the same read-only globals as EVAL), and get their keys and
//! arguments as their two parameters instead of `KEYS` and `ARGV`.
//!
//! # Persistence and replication
//! `FUNCTION LOAD`, `DELETE`, `FLUSH` and `RESTORE` are propagated as they are (the AOF and the
//! replicas replay them); RDB files and full syncs carry the libraries' code (see `persist.rs`).
//! `FCALL` propagates the effects of the function's writes, as EVAL does.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mlua::{Lua, MultiValue, Value as LuaValue};
use resp::{encode, Proto};

/// Script flags (`redis.register_function{flags = {...}}`), in Redis's order.
pub const NO_WRITES: u8 = 1;
pub const ALLOW_OOM: u8 = 2;
pub const ALLOW_STALE: u8 = 4;
pub const NO_CLUSTER: u8 = 8;
pub const ALLOW_CROSS_SLOT: u8 = 16;

const FLAG_NAMES: [(u8, &str); 5] = [
    (NO_WRITES, "no-writes"),
    (ALLOW_OOM, "allow-oom"),
    (ALLOW_STALE, "allow-stale"),
    (NO_CLUSTER, "no-cluster"),
    (ALLOW_CROSS_SLOT, "allow-cross-slot-keys"),
];

/// The bit of a flag's name (exact, as EVAL's shebang wants it).
pub(crate) fn flag_bit(name: &[u8]) -> Option<u8> {
    FLAG_NAMES
        .iter()
        .find(|(_, n)| n.as_bytes() == name)
        .map(|(bit, _)| *bit)
}

/// How long a library's top-level code may run (Redis's `LOAD_TIMEOUT_MS`).
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

/// The RDB version FUNCTION DUMP writes (Redis 7.0's: the function opcodes need it).
const DUMP_RDB_VERSION: u16 = 10;

/// A function as registered by its library.
#[derive(Clone, Debug)]
pub struct FnInfo {
    pub name: String,
    pub desc: Option<Bytes>,
    pub flags: u8,
}

/// A loaded library: its whole code (the `#!lua name=…` line included) and its functions.
#[derive(Debug)]
pub struct Library {
    pub name: String,
    pub code: Bytes,
    pub functions: Vec<FnInfo>,
}

#[derive(Default)]
struct Registry {
    libs: BTreeMap<String, Arc<Library>>,
}

impl Registry {
    /// The library that registered function `name`, if any.
    fn owner_of(&self, name: &str) -> Option<&str> {
        self.libs
            .values()
            .find(|l| {
                l.functions
                    .iter()
                    .any(|f| f.name.eq_ignore_ascii_case(name))
            })
            .map(|l| l.name.as_str())
    }

    fn function_count(&self) -> usize {
        self.libs.values().map(|l| l.functions.len()).sum()
    }
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);
/// Bumped by every change to [`REGISTRY`]; cores recompile when they see a new value.
static GENERATION: AtomicU64 = AtomicU64::new(1);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every library, in name order (RDB saves, AOF rewrites).
pub fn libraries() -> Vec<Arc<Library>> {
    registry().libs.values().cloned().collect()
}

/// For INFO memory: the number of functions and the bytes of the libraries' code.
pub fn memory_stats() -> (usize, usize) {
    let reg = registry();
    (
        reg.function_count(),
        reg.libs.values().map(|l| l.code.len()).sum(),
    )
}

/// Whether any library is loaded.
pub fn any() -> bool {
    !registry().libs.is_empty()
}

/// A function compiled on this core.
pub(crate) struct Compiled {
    pub f: mlua::Function,
    pub flags: u8,
    pub name: Arc<str>,
}

#[derive(Default)]
struct CoreFns {
    generation: u64,
    fns: HashMap<Vec<u8>, Rc<Compiled>>,
}

/// What a library's load registered on this core.
struct Registered {
    info: FnInfo,
    f: mlua::Function,
}

thread_local! {
    static CORE_FNS: RefCell<CoreFns> = RefCell::new(CoreFns::default());
    /// Functions registered by the library whose code runs now (`None`: no load runs).
    static LOADING: RefCell<Option<Vec<Registered>>> = const { RefCell::new(None) };
    /// When the running load must stop.
    static LOAD_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Whether a library load on this thread ran past its time (checked by the instruction hook).
pub(crate) fn load_timed_out() -> bool {
    LOAD_DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() > t))
}

/// The function `name`, compiled on this core (compiling every library first if they changed
/// since this core last looked).
pub(crate) fn find(lua: &Lua, name: &[u8]) -> Option<Rc<Compiled>> {
    let g = GENERATION.load(Ordering::Acquire);
    CORE_FNS.with(|c| {
        if c.borrow().generation != g {
            let libs = libraries();
            let mut fns = HashMap::new();
            for lib in libs {
                match compile_library(lua, &lib.code) {
                    Ok((_, regs)) => {
                        for r in regs {
                            let name: Arc<str> = r.info.name.as_str().into();
                            // FCALL finds a function whatever the case of its name (as
                            // Redis's function table compares).
                            fns.insert(
                                r.info.name.to_ascii_lowercase().into_bytes(),
                                Rc::new(Compiled {
                                    f: r.f,
                                    flags: r.info.flags,
                                    name,
                                }),
                            );
                        }
                    }
                    Err(e) => tracing::error!(library = %lib.name, "cannot load a library on this core: {e}"),
                }
            }
            *c.borrow_mut() = CoreFns { generation: g, fns };
        }
        let fns = &c.borrow().fns;
        // Names are kept in lower case; most callers use it already.
        fns.get(name)
            .or_else(|| fns.get(&name.to_ascii_lowercase()))
            .cloned()
    })
}

/// Registry names of the functions environment and of its mode switch (see [`install`]).
const FENV: &str = "codis_function_env";
const FMODE: &str = "codis_function_mode";

/// Set up the functions' environment in a core's Lua state, after the sandbox: `env` is the
/// read-only view of the globals EVAL scripts run in.
pub(crate) fn install(lua: &Lua, env: &mlua::Table) -> mlua::Result<()> {
    let api = lua.create_table()?;
    api.raw_set("register_function", lua.create_function(register_function)?)?;
    let redis: mlua::Table = env.get("redis")?;
    for k in [
        "log",
        "LOG_DEBUG",
        "LOG_VERBOSE",
        "LOG_NOTICE",
        "LOG_WARNING",
        "REDIS_VERSION",
        "REDIS_VERSION_NUM",
    ] {
        api.raw_set(k, redis.get::<LuaValue>(k)?)?;
    }
    let (fenv, mode): (mlua::Table, mlua::Function) = lua
        .load(
            r#"
local env, api = ...
local setmetatable, error, tostring = setmetatable, error, tostring
local function readonly() error('Attempt to modify a readonly table', 2) end
-- A read-only table whose missing names are errors, as Redis's load-time globals.
local function strict(t)
    return setmetatable({}, {
        __index = function(_, k)
            local v = t[k]
            if v == nil then
                error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
            end
            return v
        end,
        __newindex = readonly,
        __metatable = false,
    })
end
local libenv = strict({redis = strict(api)})
local meta = {__index = env, __newindex = readonly, __metatable = false}
local fenv = setmetatable({}, meta)
return fenv, function(loading)
    if loading then meta.__index = libenv else meta.__index = env end
end
"#,
        )
        .set_name("=functions")
        .call((env.clone(), api))?;
    lua.set_named_registry_value(FENV, fenv)?;
    lua.set_named_registry_value(FMODE, mode)
}

/// `redis.register_function(name, callback)` or `redis.register_function{function_name=…,
/// callback=…, description=…, flags={…}}`, during a library's load.
fn register_function(_: &Lua, a: MultiValue) -> mlua::Result<()> {
    let fail = |m: &str| Err(mlua::Error::RuntimeError(format!("ERR {m}")));
    if LOADING.with(|l| l.borrow().is_none()) {
        return fail("redis.register_function can only be called on FUNCTION LOAD command");
    }
    let text = |v: &LuaValue| -> Option<Bytes> {
        match v {
            LuaValue::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
            LuaValue::Integer(_) | LuaValue::Number(_) => {
                crate::luaext::to_number(v).map(|n| Bytes::from(crate::script::number_text(n)))
            }
            _ => None,
        }
    };
    let (name, desc, f, flags) = match a.len() {
        1 => {
            let LuaValue::Table(t) = &a[0] else {
                return fail("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).");
            };
            let (mut name, mut desc, mut f, mut flags) = (None, None, None, 0u8);
            for pair in t.clone().pairs::<LuaValue, LuaValue>() {
                let (k, v) = pair?;
                let Some(key) = text(&k) else {
                    return fail(
                        "named argument key given to redis.register_function is not a string",
                    );
                };
                match key.to_ascii_lowercase().as_slice() {
                    b"function_name" => match text(&v) {
                        Some(n) => name = Some(n),
                        None => return fail("function_name argument given to redis.register_function must be a string"),
                    },
                    b"description" => match text(&v) {
                        Some(d) => desc = Some(d),
                        None => return fail("description argument given to redis.register_function must be a string"),
                    },
                    b"callback" => match v {
                        LuaValue::Function(cb) => f = Some(cb),
                        _ => return fail("callback argument given to redis.register_function must be a function"),
                    },
                    b"flags" => {
                        let LuaValue::Table(ft) = v else {
                            return fail("flags argument to redis.register_function must be a table representing function flags");
                        };
                        for i in 1.. {
                            let fv: LuaValue = ft.get(i)?;
                            if fv.is_nil() {
                                break;
                            }
                            let known = text(&fv).and_then(|s| {
                                FLAG_NAMES
                                    .iter()
                                    .find(|(_, n)| s.eq_ignore_ascii_case(n.as_bytes()))
                            });
                            match known {
                                Some((bit, _)) => flags |= bit,
                                None => return fail("unknown flag given"),
                            }
                        }
                    }
                    _ => return fail("unknown argument given to redis.register_function"),
                }
            }
            let Some(name) = name else {
                return fail("redis.register_function must get a function name argument");
            };
            let Some(f) = f else {
                return fail("redis.register_function must get a callback argument");
            };
            (name, desc, f, flags)
        }
        2 => {
            let Some(name) = text(&a[0]) else {
                return fail("first argument to redis.register_function must be a string");
            };
            let LuaValue::Function(f) = &a[1] else {
                return fail("second argument to redis.register_function must be a function");
            };
            (name, None, f.clone(), 0)
        }
        _ => return fail("wrong number of arguments to redis.register_function"),
    };
    if !valid_name(&name) {
        return fail("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long");
    }
    let name = String::from_utf8_lossy(&name).into_owned();
    LOADING.with(|l| {
        let mut l = l.borrow_mut();
        let regs = l.as_mut().expect("checked above");
        if regs.iter().any(|r| r.info.name == name) {
            return fail("Function already exists in the library");
        }
        regs.push(Registered {
            info: FnInfo { name, desc, flags },
            f,
        });
        Ok(())
    })
}

/// `[a-zA-Z0-9_]+`, for library and function names.
fn valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// The `#!<engine> name=<lib>` line of a library's code: its name and the code after the line
/// (from its newline, so line numbers count the shebang line).
fn metadata(code: &[u8]) -> Result<(String, &[u8]), String> {
    if !code.starts_with(b"#!") {
        return Err("ERR Missing library metadata".into());
    }
    let Some(nl) = memchr::memchr(b'\n', code) else {
        return Err("ERR Invalid library metadata".into());
    };
    let Some(parts) = resp::request::split_args(&code[..nl])
        .ok()
        .filter(|p| !p.is_empty())
    else {
        return Err("ERR Invalid library metadata".into());
    };
    let engine = &parts[0][2..];
    let mut name: Option<&[u8]> = None;
    for p in &parts[1..] {
        if p.len() >= 5 && p[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err(
                    "ERR Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(&p[5..]);
            continue;
        }
        return Err(format!(
            "ERR Invalid metadata value given: {}",
            String::from_utf8_lossy(p)
        ));
    }
    let Some(name) = name else {
        return Err("ERR Library name was not given".into());
    };
    if !valid_name(name) {
        return Err("ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    if !engine.eq_ignore_ascii_case(b"lua") {
        return Err(format!(
            "ERR Engine '{}' not found",
            String::from_utf8_lossy(engine)
        ));
    }
    Ok((String::from_utf8_lossy(name).into_owned(), &code[nl..]))
}

/// Run a library's code on this core's Lua state in the load environment; its name and the
/// functions it registered.
fn compile_library(lua: &Lua, code: &[u8]) -> Result<(String, Vec<Registered>), String> {
    let (name, body) = metadata(code)?;
    let fenv: mlua::Table = lua
        .named_registry_value(FENV)
        .map_err(|e| format!("ERR {e}"))?;
    let mode: mlua::Function = lua
        .named_registry_value(FMODE)
        .map_err(|e| format!("ERR {e}"))?;
    let chunk = lua
        .load(crate::script::as_text(body).as_ref())
        .set_name("@user_function")
        .set_environment(fenv)
        .into_function()
        .map_err(|e| {
            let msg = match &e {
                mlua::Error::SyntaxError { message, .. } => message.clone(),
                other => other.to_string(),
            };
            format!(
                "ERR Error compiling function: {}",
                msg.lines().next().unwrap_or("")
            )
        })?;
    let _ = mode.call::<()>(true);
    LOADING.with(|l| *l.borrow_mut() = Some(Vec::new()));
    LOAD_DEADLINE.with(|d| d.set(Some(Instant::now() + LOAD_TIMEOUT)));
    let res = chunk.call::<()>(());
    LOAD_DEADLINE.with(|d| d.set(None));
    let regs = LOADING.with(|l| l.borrow_mut().take()).unwrap_or_default();
    let _ = mode.call::<()>(false);
    if let Err(e) = res {
        return Err(format!(
            "ERR Error registering functions: {}",
            load_error_text(&e)
        ));
    }
    if regs.is_empty() {
        return Err("ERR No functions registered".into());
    }
    Ok((name, regs))
}

/// A load error as Redis words it: "ERR " and the message (a Lua error keeps its position).
fn load_error_text(e: &mlua::Error) -> String {
    let msg = match e {
        mlua::Error::CallbackError { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    let first = msg.lines().next().unwrap_or("");
    let first = first.strip_prefix("runtime error: ").unwrap_or(first);
    if first.starts_with("ERR ") {
        first.to_string()
    } else {
        format!("ERR {first}")
    }
}

/// Validate `code` on this core and describe the library it defines.
fn prepare(lua: &Lua, code: &Bytes) -> Result<Library, String> {
    let (name, regs) = compile_library(lua, code)?;
    let mut functions: Vec<FnInfo> = regs.into_iter().map(|r| r.info).collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Library {
        name,
        code: code.clone(),
        functions,
    })
}

/// Add `new` libraries to the registry. `replace`: a library of the same name is replaced
/// (else it is an error); a function name another library owns is always an error. Nothing
/// changes on error.
fn join(reg: &mut Registry, new: Vec<Library>, replace: bool, load: bool) -> Result<(), String> {
    let mut next = reg.libs.clone();
    for lib in &new {
        if next.contains_key(&lib.name) {
            if !replace {
                return Err(if load {
                    format!("ERR Library '{}' already exists", lib.name)
                } else {
                    format!("ERR Library {} already exists", lib.name)
                });
            }
            next.remove(&lib.name);
        }
    }
    let probe = Registry { libs: next };
    for lib in &new {
        for f in &lib.functions {
            if probe.owner_of(&f.name).is_some() {
                return Err(format!("ERR Function {} already exists", f.name));
            }
        }
    }
    let mut next = probe.libs;
    for lib in new {
        next.insert(lib.name.clone(), Arc::new(lib));
    }
    reg.libs = next;
    GENERATION.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

/// FUNCTION LOAD [REPLACE] code: the library's name.
pub fn load(lua: &Lua, code: &Bytes, replace: bool) -> Result<String, String> {
    let lib = prepare(lua, code)?;
    let name = lib.name.clone();
    join(&mut registry(), vec![lib], replace, true)?;
    Ok(name)
}

/// Forget every library (FUNCTION FLUSH).
pub fn flush() {
    let mut reg = registry();
    reg.libs.clear();
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Replace every library by `codes` (a loaded RDB file or full sync); errors name the first
/// library that fails to load.
pub fn replace_all(lua: &Lua, codes: &[Bytes]) -> Result<(), String> {
    let mut libs = Vec::with_capacity(codes.len());
    for c in codes {
        libs.push(prepare(lua, c)?);
    }
    let mut reg = Registry::default();
    join(&mut reg, libs, false, false)?;
    let mut cur = registry();
    cur.libs = reg.libs;
    GENERATION.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

/// The payload of FUNCTION DUMP: each library's code after the `FUNCTION2` opcode, then the RDB
/// version and the CRC-64, as Redis 7.0 writes it.
pub fn dump() -> Vec<u8> {
    let mut out = Vec::new();
    for lib in libraries() {
        rdb::file::write_function(&mut out, &lib.code);
    }
    out.extend_from_slice(&DUMP_RDB_VERSION.to_le_bytes());
    let crc = rdb::crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The library codes of a FUNCTION DUMP payload (or of RDB function records: `body` without
/// the footer).
pub fn parse_records(body: &[u8]) -> Result<Vec<Bytes>, String> {
    let mut r = rdb::reader::Reader::new(body);
    let mut codes = Vec::new();
    while !r.is_empty() {
        let ty = r
            .u8()
            .map_err(|_| "ERR can not read data type".to_string())?;
        if ty != rdb::file::OP_FUNCTION2 {
            return Err(if ty == rdb::file::OP_FUNCTION {
                "ERR Pre-GA function format not supported".to_string()
            } else {
                "ERR given type is not a function".to_string()
            });
        }
        let code = rdb::string::read_string(&mut r)
            .map_err(|_| "ERR Failed loading library payload".to_string())?;
        codes.push(code);
    }
    Ok(codes)
}

/// Run FUNCTION's subcommands that read or change the registry (LOAD, DELETE, FLUSH, LIST, STATS,
/// DUMP, RESTORE, KILL, HELP); appends the reply. Returns whether the command changed the
/// libraries (and must be propagated).
pub fn command(lua: &Lua, args: &[Bytes], proto: Proto, out: &mut BytesMut) -> bool {
    let sub = args[1].to_ascii_lowercase();
    let reply = |out: &mut BytesMut, r: Result<(), String>| match r {
        Ok(()) => {
            encode::ok(out);
            true
        }
        Err(e) => {
            encode::error(out, &e);
            false
        }
    };
    match sub.as_slice() {
        b"load" => {
            let mut replace = false;
            let mut i = 2;
            while i < args.len() - 1 {
                if args[i].eq_ignore_ascii_case(b"replace") {
                    replace = true;
                    i += 1;
                    continue;
                }
                encode::error(
                    out,
                    &format!(
                        "ERR Unknown option given: {}",
                        String::from_utf8_lossy(&args[i])
                    ),
                );
                return false;
            }
            if i >= args.len() {
                encode::error(out, "ERR Function code is missing");
                return false;
            }
            match load(lua, &args[i], replace) {
                Ok(name) => {
                    encode::bulk(out, name.as_bytes());
                    true
                }
                Err(e) => {
                    encode::error(out, &e);
                    false
                }
            }
        }
        b"delete" => {
            let name = String::from_utf8_lossy(&args[2]);
            let mut reg = registry();
            let r = match reg.libs.remove(name.as_ref()) {
                Some(_) => {
                    GENERATION.fetch_add(1, Ordering::AcqRel);
                    Ok(())
                }
                None => Err("ERR Library not found".to_string()),
            };
            drop(reg);
            reply(out, r)
        }
        b"flush" => {
            if args.len() > 3 {
                encode::error(out, &syntax_error(&args[1]));
                return false;
            }
            if args.len() == 3
                && !args[2].eq_ignore_ascii_case(b"sync")
                && !args[2].eq_ignore_ascii_case(b"async")
            {
                encode::error(out, "ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
                return false;
            }
            flush();
            encode::ok(out);
            true
        }
        b"list" => {
            list(args, proto, out);
            false
        }
        b"stats" => {
            stats(proto, out);
            false
        }
        b"dump" => {
            encode::bulk(out, &dump());
            false
        }
        b"restore" => reply(out, restore(lua, args)),
        b"kill" => {
            crate::script::kill_running(out, true);
            false
        }
        b"help" => {
            encode::help(out, HELP);
            false
        }
        _ => {
            encode::error(
                out,
                &format!(
                    "ERR unknown subcommand '{}'. Try FUNCTION HELP.",
                    String::from_utf8_lossy(&args[1])
                ),
            );
            false
        }
    }
}

/// Whether FUNCTION `sub` changes the libraries (refused on a read-only replica).
pub fn writes(sub: &[u8]) -> bool {
    ["load", "delete", "flush", "restore"]
        .iter()
        .any(|s| sub.eq_ignore_ascii_case(s.as_bytes()))
}

fn syntax_error(sub: &[u8]) -> String {
    format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
        String::from_utf8_lossy(sub)
    )
}

fn restore(lua: &Lua, args: &[Bytes]) -> Result<(), String> {
    if args.len() > 4 {
        return Err(syntax_error(&args[1]));
    }
    #[derive(PartialEq)]
    enum Policy {
        Append,
        Replace,
        Flush,
    }
    let policy =
        match args.get(3) {
            None => Policy::Append,
            Some(p) if p.eq_ignore_ascii_case(b"append") => Policy::Append,
            Some(p) if p.eq_ignore_ascii_case(b"replace") => Policy::Replace,
            Some(p) if p.eq_ignore_ascii_case(b"flush") => Policy::Flush,
            Some(_) => return Err(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."
                    .into(),
            ),
        };
    let (_, body) = rdb::dump::verify(&args[2])
        .map_err(|_| "ERR DUMP payload version or checksum are wrong".to_string())?;
    let codes = parse_records(body)?;
    let mut libs: Vec<Library> = Vec::with_capacity(codes.len());
    for c in &codes {
        let lib = prepare(lua, c)?;
        // Within one payload, as within one RDB file: no two libraries of one name or one
        // function name twice.
        if libs.iter().any(|l| l.name == lib.name) {
            return Err(format!("ERR Library {} already exists", lib.name));
        }
        if let Some(f) = lib.functions.iter().find(|f| {
            libs.iter().any(|l| {
                l.functions
                    .iter()
                    .any(|g| g.name.eq_ignore_ascii_case(&f.name))
            })
        }) {
            return Err(format!("ERR Function {} already exists", f.name));
        }
        libs.push(lib);
    }
    let mut reg = registry();
    if policy == Policy::Flush {
        let mut fresh = Registry::default();
        join(&mut fresh, libs, false, false)?;
        reg.libs = fresh.libs;
        return Ok(());
    }
    join(&mut reg, libs, policy == Policy::Replace, false)
}

fn list(args: &[Bytes], proto: Proto, out: &mut BytesMut) {
    let mut with_code = false;
    let mut pattern: Option<&[u8]> = None;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if !with_code && a.eq_ignore_ascii_case(b"withcode") {
            with_code = true;
        } else if pattern.is_none() && a.eq_ignore_ascii_case(b"libraryname") {
            if i >= args.len() - 1 {
                return encode::error(out, "ERR library name argument was not given");
            }
            i += 1;
            pattern = Some(&args[i]);
        } else {
            return encode::error(
                out,
                &format!("ERR Unknown argument {}", String::from_utf8_lossy(a)),
            );
        }
        i += 1;
    }
    let libs: Vec<Arc<Library>> = libraries()
        .into_iter()
        .filter(|l| pattern.is_none_or(|p| crate::glob::matches(p, l.name.as_bytes(), true)))
        .collect();
    encode::array(out, libs.len());
    for lib in libs {
        encode::map(out, if with_code { 4 } else { 3 }, proto);
        encode::bulk(out, b"library_name");
        encode::bulk(out, lib.name.as_bytes());
        encode::bulk(out, b"engine");
        encode::bulk(out, b"LUA");
        encode::bulk(out, b"functions");
        encode::array(out, lib.functions.len());
        for f in &lib.functions {
            encode::map(out, 3, proto);
            encode::bulk(out, b"name");
            encode::bulk(out, f.name.as_bytes());
            encode::bulk(out, b"description");
            match &f.desc {
                Some(d) => encode::bulk(out, d),
                None => encode::null(out, proto),
            }
            encode::bulk(out, b"flags");
            let names: Vec<&str> = FLAG_NAMES
                .iter()
                .filter(|(bit, _)| f.flags & bit != 0)
                .map(|(_, n)| *n)
                .collect();
            encode::set(out, names.len(), proto);
            for n in names {
                encode::simple(out, n);
            }
        }
        if with_code {
            encode::bulk(out, b"library_code");
            encode::bulk(out, &lib.code);
        }
    }
}

fn stats(proto: Proto, out: &mut BytesMut) {
    let reg = registry();
    let (nlibs, nfns) = (reg.libs.len(), reg.function_count());
    drop(reg);
    encode::map(out, 2, proto);
    encode::bulk(out, b"running_script");
    match crate::script::running_function() {
        None => encode::null(out, proto),
        Some((name, cmd, ms)) => {
            encode::map(out, 3, proto);
            encode::bulk(out, b"name");
            encode::bulk(out, name.as_bytes());
            encode::bulk(out, b"command");
            encode::array(out, cmd.len());
            for a in &cmd {
                encode::bulk(out, a);
            }
            encode::bulk(out, b"duration_ms");
            encode::int(out, ms as i64);
        }
    }
    encode::bulk(out, b"engines");
    encode::map(out, 1, proto);
    encode::bulk(out, b"LUA");
    encode::map(out, 2, proto);
    encode::bulk(out, b"libraries_count");
    encode::int(out, nlibs as i64);
    encode::bulk(out, b"functions_count");
    encode::int(out, nfns as i64);
}

const HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_parsed_as_redis_does() {
        assert_eq!(
            metadata(b"#!lua name=lib\nreturn 1").unwrap(),
            ("lib".to_string(), &b"\nreturn 1"[..])
        );
        assert_eq!(metadata(b"#!LUA NAME=x_1\n").unwrap().0, "x_1".to_string());
        assert_eq!(metadata(b"x").unwrap_err(), "ERR Missing library metadata");
        assert_eq!(
            metadata(b"#!lua name=a").unwrap_err(),
            "ERR Invalid library metadata"
        );
        assert_eq!(
            metadata(b"#!lua\n").unwrap_err(),
            "ERR Library name was not given"
        );
        assert_eq!(
            metadata(b"#!lua name=a foo=b\n").unwrap_err(),
            "ERR Invalid metadata value given: foo=b"
        );
        assert_eq!(
            metadata(b"#!lua name=a name=b\n").unwrap_err(),
            "ERR Invalid metadata value, name argument was given multiple times"
        );
        assert_eq!(
            metadata(b"#!js name=a\n").unwrap_err(),
            "ERR Engine 'js' not found"
        );
        assert!(metadata(b"#!lua name=a-b\n")
            .unwrap_err()
            .starts_with("ERR Library names can only"));
    }

    #[test]
    fn dump_payload_round_trips() {
        let body = {
            let mut v = vec![rdb::file::OP_FUNCTION2];
            rdb::string::write_string(
                &mut v,
                b"#!lua name=a\nredis.register_function('f', function() end)",
                true,
            );
            v
        };
        assert_eq!(
            parse_records(&body).unwrap(),
            vec![Bytes::from_static(
                b"#!lua name=a\nredis.register_function('f', function() end)"
            )]
        );
        assert_eq!(
            parse_records(&[0]).unwrap_err(),
            "ERR given type is not a function"
        );
    }
}
