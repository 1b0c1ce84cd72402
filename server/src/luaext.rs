//! The libraries Redis loads into its Lua interpreter besides Lua's own: `cjson` (lua-cjson
//! 2.1's `encode`, `decode` and `null`, with its default settings), `bit` (LuaBitOp),
//! `cmsgpack` (in `cmsgpack.rs`) and `struct` (in `luastruct.rs`), so that scripts written for
//! Redis run unchanged.

use mlua::{LightUserData, Lua, MultiValue, Table, Value as LuaValue};

/// Install `cjson`, `bit`, `cmsgpack` and `struct` as globals of `lua`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let cjson = lua.create_table()?;
    cjson.set(
        "null",
        LuaValue::LightUserData(LightUserData(std::ptr::null_mut())),
    )?;
    cjson.set(
        "encode",
        lua.create_function(|lua, a: MultiValue| {
            if a.len() != 1 {
                return Err(raise(
                    lua,
                    "bad argument #1 to 'encode' (expected 1 argument)",
                ));
            }
            let mut out = Vec::new();
            encode(&a[0], 0, &mut out).map_err(|m| raise(lua, m))?;
            Ok(mlua::BString::from(out))
        })?,
    )?;
    cjson.set(
        "decode",
        lua.create_function(|lua, a: MultiValue| {
            let s = match a.len() {
                1 => match &a[0] {
                    LuaValue::String(s) => s.as_bytes().to_vec(),
                    LuaValue::Integer(n) => n.to_string().into_bytes(),
                    LuaValue::Number(n) => resp::encode::format_g(*n, 14).into_bytes(),
                    _ => return Err(raise(lua, "bad argument #1 to 'decode' (string expected)")),
                },
                _ => {
                    return Err(raise(
                        lua,
                        "bad argument #1 to 'decode' (expected 1 argument)",
                    ))
                }
            };
            let mut p = Parser {
                s: &s,
                i: 0,
                depth: 0,
            };
            let v = p.value(lua).map_err(|m| raise(lua, m))?;
            p.ws();
            if p.i < s.len() {
                return Err(raise(lua, p.fail("the end")));
            }
            Ok(v)
        })?,
    )?;
    lua.globals().set("cjson", cjson)?;
    install_bit(lua)?;
    crate::cmsgpack::install(lua)?;
    crate::luastruct::install(lua)
}

/// An error as C's `luaL_error` raises it from a library function: prefixed with the calling
/// script's position ("user_script:3: "), which Redis's replies show.
pub(crate) fn raise(lua: &Lua, msg: impl std::fmt::Display) -> mlua::Error {
    let line = lua
        .inspect_stack(1)
        .map(|d| d.curr_line())
        .filter(|l| *l > 0);
    match line {
        Some(l) => mlua::Error::RuntimeError(format!("user_script:{l}: {msg}")),
        None => mlua::Error::RuntimeError(msg.to_string()),
    }
}

/// Lua's name for a value's type in argument errors ("no value" when absent).
pub(crate) fn type_name(v: Option<&LuaValue>) -> &'static str {
    match v {
        None => "no value",
        Some(LuaValue::Nil) => "nil",
        Some(LuaValue::Boolean(_)) => "boolean",
        Some(LuaValue::Integer(_) | LuaValue::Number(_)) => "number",
        Some(LuaValue::String(_)) => "string",
        Some(LuaValue::Table(_)) => "table",
        Some(LuaValue::Function(_)) => "function",
        Some(LuaValue::Thread(_)) => "thread",
        Some(_) => "userdata",
    }
}

/// `lua_tonumber`: a number, or text that reads as one.
pub(crate) fn to_number(v: &LuaValue) -> Option<f64> {
    match v {
        LuaValue::Integer(n) => Some(*n as f64),
        LuaValue::Number(n) => Some(*n),
        LuaValue::String(s) => std::str::from_utf8(&s.as_bytes())
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok()),
        _ => None,
    }
}

/// `luaL_checknumber` of argument `arg` (1-based) of library function `f`.
pub(crate) fn check_number(
    lua: &Lua,
    v: Option<&LuaValue>,
    arg: usize,
    f: &str,
) -> mlua::Result<f64> {
    v.and_then(to_number).ok_or_else(|| {
        let got = type_name(v);
        raise(
            lua,
            format!("bad argument #{arg} to '{f}' (number expected, got {got})"),
        )
    })
}

/// `luaL_checklstring` of argument `arg` (1-based) of `f`: a string, or a number as its text.
pub(crate) fn check_string(
    lua: &Lua,
    v: Option<&LuaValue>,
    arg: usize,
    f: &str,
) -> mlua::Result<Vec<u8>> {
    match v {
        Some(LuaValue::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(LuaValue::Integer(n)) => Ok(n.to_string().into_bytes()),
        Some(LuaValue::Number(n)) => Ok(resp::encode::format_g(*n, 14).into_bytes()),
        v => {
            let got = type_name(v);
            let msg = format!("bad argument #{arg} to '{f}' (string expected, got {got})");
            Err(raise(lua, msg))
        }
    }
}

/// lua-cjson's default `encode_max_depth` and `decode_max_depth`.
const MAX_DEPTH: usize = 1000;

fn number(n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    out.extend_from_slice(resp::encode::format_g(n, 14).as_bytes());
    Ok(())
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            8 => out.extend_from_slice(b"\\b"),
            9 => out.extend_from_slice(b"\\t"),
            10 => out.extend_from_slice(b"\\n"),
            12 => out.extend_from_slice(b"\\f"),
            13 => out.extend_from_slice(b"\\r"),
            0..=31 | 127 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

/// The length of `t` as a JSON array, or `None` for an object (lua-cjson's
/// `lua_array_length`, with its default sparse-array limits: ratio 2, safe 10).
fn array_len(t: &Table) -> Result<Option<usize>, String> {
    let (mut max, mut items) = (0f64, 0usize);
    for pair in t.pairs::<LuaValue, LuaValue>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let k = match k {
            LuaValue::Integer(n) => n as f64,
            LuaValue::Number(n) => n,
            _ => return Ok(None),
        };
        if k.floor() != k || k < 1.0 {
            return Ok(None);
        }
        max = max.max(k);
        items += 1;
    }
    if max > (items * 2) as f64 && max > 10.0 {
        return Err("Cannot serialise table: excessively sparse array".into());
    }
    Ok(Some(max as usize))
}

fn encode(v: &LuaValue, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        LuaValue::String(s) => string(&s.as_bytes(), out),
        LuaValue::Integer(n) => number(*n as f64, out)?,
        LuaValue::Number(n) => number(*n, out)?,
        LuaValue::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        LuaValue::Nil => out.extend_from_slice(b"null"),
        LuaValue::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        LuaValue::Table(t) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            match array_len(t)? {
                Some(n) if n > 0 => {
                    out.push(b'[');
                    for i in 1..=n {
                        if i > 1 {
                            out.push(b',');
                        }
                        let x: LuaValue = t.raw_get(i).map_err(|e| e.to_string())?;
                        encode(&x, depth, out)?;
                    }
                    out.push(b']');
                }
                _ => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.pairs::<LuaValue, LuaValue>() {
                        let (k, x) = pair.map_err(|e| e.to_string())?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            LuaValue::Integer(n) => {
                                out.push(b'"');
                                number(*n as f64, out)?;
                                out.extend_from_slice(b"\":");
                            }
                            LuaValue::Number(n) => {
                                out.push(b'"');
                                number(*n, out)?;
                                out.extend_from_slice(b"\":");
                            }
                            LuaValue::String(s) => {
                                string(&s.as_bytes(), out);
                                out.push(b':');
                            }
                            other => {
                                return Err(format!(
                                    "Cannot serialise {}: table key must be a number or string",
                                    other.type_name()
                                ))
                            }
                        }
                        encode(&x, depth, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            ))
        }
    }
    Ok(())
}

/// A JSON text being decoded into Lua values.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    /// lua-cjson's name for the token at the current position.
    fn token(&self) -> &'static str {
        let rest = &self.s[self.i.min(self.s.len())..];
        match rest.first() {
            None => "T_END",
            Some(b'{') => "T_OBJ_BEGIN",
            Some(b'}') => "T_OBJ_END",
            Some(b'[') => "T_ARR_BEGIN",
            Some(b']') => "T_ARR_END",
            Some(b'"') => "T_STRING",
            Some(b'-' | b'0'..=b'9') => "T_NUMBER",
            Some(b':') => "T_COLON",
            Some(b',') => "T_COMMA",
            _ if rest.starts_with(b"true") || rest.starts_with(b"false") => "T_BOOLEAN",
            _ if rest.starts_with(b"null") => "T_NULL",
            _ => "invalid token",
        }
    }

    /// lua-cjson's message: "Expected <what> but found <token> at character <n>".
    fn fail(&self, what: &str) -> String {
        self.fail_with(what, self.token())
    }

    fn fail_with(&self, what: &str, found: &str) -> String {
        format!(
            "Expected {what} but found {found} at character {}",
            self.i + 1
        )
    }

    fn value(&mut self, lua: &Lua) -> Result<LuaValue, String> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return Err(self.fail("value"));
        };
        match c {
            b'{' => self.object(lua),
            b'[' => self.array(lua),
            b'"' => {
                let s = self.string()?;
                lua.create_string(&s)
                    .map(LuaValue::String)
                    .map_err(|e| e.to_string())
            }
            b't' if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(LuaValue::Boolean(true))
            }
            b'f' if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(LuaValue::Boolean(false))
            }
            b'n' if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(LuaValue::LightUserData(LightUserData(std::ptr::null_mut())))
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.fail("value")),
        }
    }

    fn number(&mut self) -> Result<LuaValue, String> {
        let start = self.i;
        while self.i < self.s.len()
            && matches!(
                self.s[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        match text.parse::<f64>() {
            Ok(n) => Ok(LuaValue::Number(n)),
            Err(_) => {
                self.i = start;
                Err(self.fail_with("value", "invalid number"))
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        let v = u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
        self.i += 4;
        Some(v)
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        let start = self.i;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                self.i = start;
                return Err(self.fail_with("value", "unexpected end of string"));
            };
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        self.i = start;
                        return Err(self.fail_with("value", "unexpected end of string"));
                    };
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let bad = |p: &mut Self| {
                                p.i = start;
                                p.fail_with("value", "invalid unicode escape code")
                            };
                            let Some(mut cp) = self.hex4() else {
                                return Err(bad(self));
                            };
                            if (0xD800..0xDC00).contains(&cp) {
                                if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err(bad(self));
                                }
                                self.i += 2;
                                match self.hex4() {
                                    Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                    }
                                    _ => return Err(bad(self)),
                                }
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Err(bad(self));
                            }
                            let ch = char::from_u32(cp).ok_or_else(|| bad(self))?;
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                        }
                        _ => {
                            self.i = start;
                            return Err(self.fail_with("value", "invalid escape code"));
                        }
                    }
                }
                0..=31 => {
                    self.i = start;
                    return Err(self.fail_with("value", "invalid token"));
                }
                _ => out.push(c),
            }
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth,
                self.i + 1
            ));
        }
        Ok(())
    }

    fn array(&mut self, lua: &Lua) -> Result<LuaValue, String> {
        self.enter()?;
        self.i += 1;
        let t = lua.create_table().map_err(|e| e.to_string())?;
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(LuaValue::Table(t));
        }
        let mut n = 1;
        loop {
            let v = self.value(lua)?;
            t.raw_set(n, v).map_err(|e| e.to_string())?;
            n += 1;
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(LuaValue::Table(t));
                }
                _ => return Err(self.fail("comma or array end")),
            }
        }
    }

    fn object(&mut self, lua: &Lua) -> Result<LuaValue, String> {
        self.enter()?;
        self.i += 1;
        let t = lua.create_table().map_err(|e| e.to_string())?;
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(LuaValue::Table(t));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return Err(self.fail("object key string"));
            }
            let k = self.string()?;
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return Err(self.fail("colon"));
            }
            self.i += 1;
            let v = self.value(lua)?;
            let k = lua.create_string(&k).map_err(|e| e.to_string())?;
            t.raw_set(k, v).map_err(|e| e.to_string())?;
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(LuaValue::Table(t));
                }
                _ => return Err(self.fail("comma or object end")),
            }
        }
    }
}

/// LuaBitOp's `tobit`: a number to a signed 32-bit integer (modulo 2^32, rounded to nearest).
fn tobit(lua: &Lua, v: &LuaValue, name: &str, pos: usize) -> mlua::Result<i32> {
    let n = match v {
        LuaValue::Integer(n) => *n as f64,
        LuaValue::Number(n) => *n,
        LuaValue::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or_else(|| bad_number(lua, v, name, pos))?,
        _ => return Err(bad_number(lua, v, name, pos)),
    };
    if !n.is_finite() {
        return Ok(0);
    }
    let r = n.round_ties_even().rem_euclid(4294967296.0);
    Ok(r as u64 as u32 as i32)
}

fn bad_number(lua: &Lua, v: &LuaValue, name: &str, pos: usize) -> mlua::Error {
    let got = match v {
        LuaValue::Nil => "no value",
        other => other.type_name(),
    };
    raise(
        lua,
        format!("bad argument #{pos} to '{name}' (number expected, got {got})"),
    )
}

fn install_bit(lua: &Lua) -> mlua::Result<()> {
    let bit = lua.create_table()?;
    type Fold = fn(i32, i32) -> i32;
    let folds: [(&str, Fold); 3] = [
        ("band", |a, b| a & b),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ];
    for (name, f) in folds {
        bit.set(
            name,
            lua.create_function(move |lua, a: MultiValue| {
                let mut acc = tobit(lua, a.front().unwrap_or(&LuaValue::Nil), name, 1)?;
                for (i, x) in a.iter().enumerate().skip(1) {
                    acc = f(acc, tobit(lua, x, name, i + 1)?);
                }
                Ok(acc as f64)
            })?,
        )?;
    }
    type Shift = fn(i32, u32) -> i32;
    let shifts: [(&str, Shift); 5] = [
        ("lshift", |a, n| ((a as u32) << n) as i32),
        ("rshift", |a, n| ((a as u32) >> n) as i32),
        ("arshift", |a, n| a >> n),
        ("rol", |a, n| (a as u32).rotate_left(n) as i32),
        ("ror", |a, n| (a as u32).rotate_right(n) as i32),
    ];
    for (name, f) in shifts {
        bit.set(
            name,
            lua.create_function(move |lua, (x, n): (LuaValue, LuaValue)| {
                let x = tobit(lua, &x, name, 1)?;
                let n = tobit(lua, &n, name, 2)? as u32 & 31;
                Ok(f(x, n) as f64)
            })?,
        )?;
    }
    bit.set(
        "tobit",
        lua.create_function(|lua, x: LuaValue| Ok(tobit(lua, &x, "tobit", 1)? as f64))?,
    )?;
    bit.set(
        "bnot",
        lua.create_function(|lua, x: LuaValue| Ok(!tobit(lua, &x, "bnot", 1)? as f64))?,
    )?;
    bit.set(
        "bswap",
        lua.create_function(
            |lua, x: LuaValue| Ok(tobit(lua, &x, "bswap", 1)?.swap_bytes() as f64),
        )?,
    )?;
    bit.set(
        "tohex",
        lua.create_function(|lua, (x, n): (LuaValue, Option<LuaValue>)| {
            let x = tobit(lua, &x, "tohex", 1)? as u32;
            let n = match n {
                None | Some(LuaValue::Nil) => 8,
                Some(v) => tobit(lua, &v, "tohex", 2)?,
            };
            let upper = n < 0;
            let digits = (n.unsigned_abs() as usize).min(8);
            let s = if upper {
                format!("{x:08X}")
            } else {
                format!("{x:08x}")
            };
            Ok(s[8 - digits..].to_string())
        })?,
    )?;
    lua.globals().set("bit", bit)
}
