//! `cmsgpack`, the MessagePack library Redis loads into its Lua interpreter (lua-cmsgpack 0.4.0,
//! as Redis 7.0 vendors it): `pack`, `unpack`, `unpack_one`, `unpack_limit`, byte for byte.
//! Job queues such as BullMQ pass their options to their scripts this way.
//!
//! Its rules, which the bytes depend on:
//! - A number that is a whole 64-bit integer packs as the smallest MessagePack integer that
//!   holds it; any other number as a 32-bit float if that is exact, else a 64-bit double.
//! - A string packs as fixstr, str8, str16 or str32 by its length.
//! - A table whose keys are exactly 1..n packs as an array (the empty table too), read with
//!   `t[i]` for i up to its length; any other as a map, in `next` order. Tables nested deeper
//!   than 16 levels pack as nil, as do functions and other values.
//! - Unpacking turns every number into a Lua number, accepts str8/16/32 but not the bin and ext
//!   types ("Bad data format in input."), and a truncated input is "Missing bytes in input.".
//!   A uint64 above 2^63 unpacks negative, as lua-cmsgpack pushes it as a 64-bit signed integer.

use mlua::{Lua, MultiValue, Table, Value as LuaValue};

use crate::luaext::{check_number, check_string, raise, type_name};

/// lua-cmsgpack's `LUACMSGPACK_MAX_NESTING`: deeper tables pack as nil.
const MAX_NESTING: usize = 16;
/// Nesting at which unpacking stops. Redis's Lua runs out of stack near 4,000 levels (each
/// level holds two stack slots of at most 8,000); this stops before the thread's own stack could.
const MAX_UNPACK_DEPTH: usize = 3900;

/// Install `cmsgpack` as a global of `lua`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let m = lua.create_table()?;
    m.set("_NAME", "cmsgpack")?;
    m.set("_VERSION", "lua-cmsgpack 0.4.0")?;
    m.set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    m.set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    m.set(
        "pack",
        lua.create_function(|lua, a: MultiValue| {
            if a.is_empty() {
                return Err(raise(
                    lua,
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)",
                ));
            }
            let mut out = Vec::new();
            for v in a.iter() {
                encode(v, 0, &mut out)?;
            }
            Ok(mlua::BString::from(out))
        })?,
    )?;
    m.set(
        "unpack",
        lua.create_function(|lua, a: MultiValue| {
            let s = string_arg(lua, &a, "unpack")?;
            unpack_full(lua, &s, 0, 0)
        })?,
    )?;
    m.set(
        "unpack_one",
        lua.create_function(|lua, a: MultiValue| {
            let s = string_arg(lua, &a, "unpack_one")?;
            let offset = opt_int(lua, &a, 1, "unpack_one")?.unwrap_or(0);
            unpack_full(lua, &s, 1, offset)
        })?,
    )?;
    m.set(
        "unpack_limit",
        lua.create_function(|lua, a: MultiValue| {
            let s = string_arg(lua, &a, "unpack_limit")?;
            let Some(limit) = opt_int(lua, &a, 1, "unpack_limit")? else {
                let got = type_name(a.get(1));
                let msg = format!("bad argument #2 to 'unpack_limit' (number expected, got {got})");
                return Err(raise(lua, msg));
            };
            let offset = opt_int(lua, &a, 2, "unpack_limit")?.unwrap_or(0);
            unpack_full(lua, &s, limit, offset)
        })?,
    )?;
    lua.globals().set("cmsgpack", m)
}

/// `luaL_checklstring(L, 1)` of `f`.
fn string_arg(lua: &Lua, a: &MultiValue, f: &str) -> mlua::Result<Vec<u8>> {
    check_string(lua, a.front(), 1, f)
}

/// `luaL_optinteger(L, i + 1, …)` read into a C `int`, as lua-cmsgpack does: `None` when absent
/// or nil, a number truncated, numeric text converted.
fn opt_int(lua: &Lua, a: &MultiValue, i: usize, f: &str) -> mlua::Result<Option<i32>> {
    match a.get(i) {
        None | Some(LuaValue::Nil) => Ok(None),
        // (lua_Integer)d, then the int it is stored in.
        v => Ok(Some(check_number(lua, v, i + 1, f)? as i64 as i32)),
    }
}

fn encode(v: &LuaValue, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        LuaValue::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        LuaValue::String(s) => encode_bytes(&s.as_bytes(), out),
        LuaValue::Integer(n) => encode_number(*n as f64, out),
        LuaValue::Number(n) => encode_number(*n, out),
        LuaValue::Table(t) if level < MAX_NESTING => encode_table(t, level, out)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

fn encode_bytes(s: &[u8], out: &mut Vec<u8>) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

fn encode_number(n: f64, out: &mut Vec<u8>) {
    // IS_INT64_EQUIVALENT: finite and equal to its int64_t conversion (2^63 is not).
    if n.is_finite() && crate::script::c_long_long(n) as f64 == n {
        encode_int(n as i64, out);
    } else if (n as f32) as f64 == n {
        // C's `(double)(float)d == d`: false for a NaN, which packs as a double.
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn header(n: usize, fix: u8, b16: u8, b32: u8, out: &mut Vec<u8>) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// lua-cmsgpack's `table_is_an_array`: every key a number above 0 that fits a C `int`, and as
/// many keys as the largest.
fn is_array(t: &Table) -> mlua::Result<bool> {
    let (mut count, mut max) = (0i64, 0i64);
    for pair in t.clone().pairs::<LuaValue, LuaValue>() {
        let (k, _) = pair?;
        let n = match k {
            LuaValue::Integer(n) => n as f64,
            LuaValue::Number(n) => n,
            _ => return Ok(false),
        };
        if n <= 0.0 || n.is_infinite() || (n as i32) as f64 != n {
            return Ok(false);
        }
        max = max.max(n as i64);
        count += 1;
    }
    Ok(max == count)
}

fn encode_table(t: &Table, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    if is_array(t)? {
        let len = t.raw_len();
        header(len, 0x90, 0xdc, 0xdd, out);
        for i in 1..=len {
            let v: LuaValue = t.get(i)?;
            encode(&v, level + 1, out)?;
        }
    } else {
        let pairs: Vec<(LuaValue, LuaValue)> = t
            .clone()
            .pairs::<LuaValue, LuaValue>()
            .collect::<mlua::Result<_>>()?;
        header(pairs.len(), 0x80, 0xde, 0xdf, out);
        for (k, v) in &pairs {
            encode(k, level + 1, out)?;
            encode(v, level + 1, out)?;
        }
    }
    Ok(())
}

/// Why decoding stopped.
enum Stop {
    /// `MP_CUR_ERROR_EOF`.
    Eof,
    /// `MP_CUR_ERROR_BADFMT`.
    BadFormat,
    /// Nested past [`MAX_UNPACK_DEPTH`].
    Deep,
    /// A Lua error (e.g. a map key that is nil).
    Lua(mlua::Error),
}

impl From<mlua::Error> for Stop {
    fn from(e: mlua::Error) -> Stop {
        Stop::Lua(e)
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn need(&self, n: usize) -> Result<(), Stop> {
        if self.s.len() - self.i < n {
            Err(Stop::Eof)
        } else {
            Ok(())
        }
    }

    fn be(&self, at: usize, n: usize) -> u64 {
        self.s[self.i + at..self.i + at + n]
            .iter()
            .fold(0, |acc, &b| (acc << 8) | b as u64)
    }

    /// A value of `n` payload bytes after a `head`-byte header.
    fn take(&mut self, head: usize, n: usize) -> Result<&[u8], Stop> {
        self.need(head + n)?;
        let s = &self.s[self.i + head..self.i + head + n];
        self.i += head + n;
        Ok(s)
    }

    fn decode(&mut self, lua: &Lua, depth: usize) -> Result<LuaValue, Stop> {
        self.need(1)?;
        let b = self.s[self.i];
        let num = |n: f64| LuaValue::Number(n);
        // (header bytes, payload bytes) of the fixed-size numbers.
        let fixed = |n: usize| -> Result<u64, Stop> {
            self.need(1 + n)?;
            Ok(self.be(1, n))
        };
        let v = match b {
            0xcc | 0xd0 | 0xcd | 0xd1 | 0xce | 0xd2 | 0xcf | 0xd3 | 0xca | 0xcb => {
                let n = match b {
                    0xcc | 0xd0 => 1,
                    0xcd | 0xd1 => 2,
                    0xce | 0xd2 | 0xca => 4,
                    _ => 8,
                };
                let raw = fixed(n)?;
                self.i += 1 + n;
                // lua-cmsgpack pushes unsigned values as a lua_Integer (int64): a uint64
                // above 2^63 comes out negative.
                num(match b {
                    0xcc | 0xcd | 0xce => raw as f64,
                    0xcf => raw as i64 as f64,
                    0xd0 => raw as u8 as i8 as f64,
                    0xd1 => raw as u16 as i16 as f64,
                    0xd2 => raw as u32 as i32 as f64,
                    0xd3 => raw as i64 as f64,
                    0xca => f32::from_bits(raw as u32) as f64,
                    _ => f64::from_bits(raw),
                })
            }
            0xc0 => {
                self.i += 1;
                LuaValue::Nil
            }
            0xc2 | 0xc3 => {
                self.i += 1;
                LuaValue::Boolean(b == 0xc3)
            }
            0xd9 | 0xda | 0xdb => {
                let n = match b {
                    0xd9 => 1,
                    0xda => 2,
                    _ => 4,
                };
                let len = fixed(n)? as usize;
                let s = self.take(1 + n, len)?;
                LuaValue::String(lua.create_string(s)?)
            }
            0xdc | 0xdd | 0xde | 0xdf => {
                let n = if b == 0xdc || b == 0xde { 2 } else { 4 };
                let len = fixed(n)? as usize;
                self.i += 1 + n;
                self.collection(lua, b >= 0xde, len, depth)?
            }
            _ if b & 0x80 == 0 => {
                self.i += 1;
                num(b as f64)
            }
            _ if b & 0xe0 == 0xe0 => {
                self.i += 1;
                num(b as i8 as f64)
            }
            _ if b & 0xe0 == 0xa0 => {
                let s = self.take(1, (b & 0x1f) as usize)?;
                LuaValue::String(lua.create_string(s)?)
            }
            _ if b & 0xf0 == 0x90 || b & 0xf0 == 0x80 => {
                self.i += 1;
                self.collection(lua, b & 0xf0 == 0x80, (b & 0x0f) as usize, depth)?
            }
            _ => return Err(Stop::BadFormat),
        };
        Ok(v)
    }

    fn collection(
        &mut self,
        lua: &Lua,
        map: bool,
        len: usize,
        depth: usize,
    ) -> Result<LuaValue, Stop> {
        if depth >= MAX_UNPACK_DEPTH {
            return Err(Stop::Deep);
        }
        let t = lua.create_table()?;
        for i in 1..=len {
            if map {
                let k = self.decode(lua, depth + 1)?;
                let v = self.decode(lua, depth + 1)?;
                t.set(k, v)?;
            } else {
                let v = self.decode(lua, depth + 1)?;
                t.set(i, v)?;
            }
        }
        Ok(LuaValue::Table(t))
    }
}

/// lua-cmsgpack's `mp_unpack_full`: up to `limit` values from `offset` (both 0: every value and
/// no offset in the reply); with a limit or an offset, the first value returned is the offset
/// of the rest (-1 at the end).
fn unpack_full(lua: &Lua, s: &[u8], limit: i32, offset: i32) -> mlua::Result<MultiValue> {
    let len = s.len();
    let decode_all = limit == 0 && offset == 0;
    if offset < 0 || limit < 0 {
        let msg = format!(
            "Invalid request to unpack with offset of {offset} and limit of {}.",
            len as i32
        );
        return Err(raise(lua, msg));
    }
    if offset as usize > len {
        let msg = format!(
            "Start offset {offset} greater than input length {}.",
            len as i32
        );
        return Err(raise(lua, msg));
    }
    let limit = if decode_all { i32::MAX } else { limit };
    let mut c = Cursor {
        s,
        i: offset as usize,
    };
    let mut out = Vec::new();
    let mut n = 0;
    while c.i < len && n < limit {
        match c.decode(lua, 0) {
            Ok(v) => out.push(v),
            Err(Stop::Eof) => return Err(raise(lua, "Missing bytes in input.")),
            Err(Stop::BadFormat) => return Err(raise(lua, "Bad data format in input.")),
            Err(Stop::Deep) => {
                let msg = "stack overflow (in function mp_decode_to_lua_array)";
                return Err(raise(lua, msg));
            }
            Err(Stop::Lua(e)) => return Err(e),
        }
        n += 1;
    }
    if !decode_all {
        let next = if c.i == len { -1 } else { c.i as i64 };
        out.insert(0, LuaValue::Number(next as f64));
    }
    Ok(MultiValue::from_iter(out))
}
