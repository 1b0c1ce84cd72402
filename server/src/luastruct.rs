//! `struct`, the binary packing library Redis loads into its Lua interpreter (Roberto
//! Ierusalimschy's struct 0.2, as Redis 7.0 vendors it): `struct.pack`, `struct.unpack` and
//! `struct.size`, with its format language and error messages.
//!
//! Format options: `>` big endian, `<` little endian (the default, as on x86-64), `![n]`
//! alignment (power of 2, default 8), `x` a zero byte, `b`/`B` signed/unsigned char, `h`/`H`
//! short, `l`/`L` long (8 bytes), `T` size_t, `i[n]`/`I[n]` integer of n bytes (default 4, at
//! most 32), `c[n]` n characters (`c0`: the whole string when packing, the previous number as
//! the length when unpacking), `s` a zero-terminated string, `f` float, `d` double, spaces
//! ignored. Numbers convert as C does on x86-64 (a negative number packs as its two's
//! complement, an integer wider than 8 bytes gets zero bytes above the eighth).

use mlua::{Lua, MultiValue, Value as LuaValue};

use crate::luaext::{check_number, check_string, raise};
use crate::script::c_long_long;

const MAXINTSIZE: usize = 32;
/// `MAXALIGN` on x86-64: the padding of a double after a char.
const MAXALIGN: usize = 8;

#[derive(Clone, Copy)]
struct Header {
    big: bool,
    align: usize,
}

const DEFAULT: Header = Header {
    big: false,
    align: 1,
};

/// Parse state over a format string.
struct Fmt<'a> {
    f: &'a [u8],
    i: usize,
}

impl Fmt<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = self.f.get(self.i).copied()?;
        self.i += 1;
        Some(c)
    }

    /// `getnum`: the digits at the cursor, or `df`.
    fn num(&mut self, lua: &Lua, df: usize) -> mlua::Result<usize> {
        if !self.f.get(self.i).is_some_and(u8::is_ascii_digit) {
            return Ok(df);
        }
        let mut a: i32 = 0;
        while let Some(d) = self.f.get(self.i).filter(|c| c.is_ascii_digit()) {
            let d = (d - b'0') as i32;
            if a > i32::MAX / 10 || a * 10 > i32::MAX - d {
                return Err(raise(lua, "integral size overflow"));
            }
            a = a * 10 + d;
            self.i += 1;
        }
        Ok(a as usize)
    }

    /// `optsize`: the size of option `opt` (0 for those without one).
    fn size(&mut self, lua: &Lua, opt: u8) -> mlua::Result<usize> {
        Ok(match opt {
            b'B' | b'b' | b'x' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'c' => self.num(lua, 1)?,
            b'i' | b'I' => {
                let sz = self.num(lua, 4)?;
                if sz > MAXINTSIZE {
                    let msg = format!(
                        "integral size {} is larger than limit of {MAXINTSIZE}",
                        sz as i32
                    );
                    return Err(raise(lua, msg));
                }
                sz
            }
            _ => 0,
        })
    }

    /// `controloptions`: endianness, alignment, spaces; anything else is an error.
    fn control(&mut self, lua: &Lua, opt: u8, h: &mut Header, f: &str) -> mlua::Result<()> {
        match opt {
            b' ' => {}
            b'>' => h.big = true,
            b'<' => h.big = false,
            b'!' => {
                let a = self.num(lua, MAXALIGN)?;
                if a & a.wrapping_sub(1) != 0 {
                    let msg = format!("alignment {} is not a power of 2", a as i32);
                    return Err(raise(lua, msg));
                }
                h.align = a;
            }
            _ => {
                let msg = format!(
                    "bad argument #1 to '{f}' (invalid format option '{}')",
                    opt as char
                );
                return Err(raise(lua, msg));
            }
        }
        Ok(())
    }
}

/// `gettoalign`: padding before an item of `size` at `len`.
fn to_align(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    if size == 0 {
        // `!0`: C would compute a padding of nearly 2^64 bytes.
        return 0;
    }
    (size - (len & (size - 1))) & (size - 1)
}

/// Argument `arg` (1-based) of `f`. `pack` pushes a nil right after its arguments before it
/// reads them, so a missing one is "nil" there, "no value" elsewhere.
fn argument<'a>(a: &'a MultiValue, arg: usize, f: &str) -> Option<&'a LuaValue> {
    const NIL: &LuaValue = &LuaValue::Nil;
    match a.get(arg - 1) {
        None if f == "pack" && arg > 1 => Some(NIL),
        v => v,
    }
}

fn number_arg(lua: &Lua, a: &MultiValue, arg: usize, f: &str) -> mlua::Result<f64> {
    check_number(lua, argument(a, arg, f), arg, f)
}

fn string_arg(lua: &Lua, a: &MultiValue, arg: usize, f: &str) -> mlua::Result<Vec<u8>> {
    check_string(lua, argument(a, arg, f), arg, f)
}

/// C's `(unsigned long)d` on x86-64 as gcc compiles it.
fn c_ulong(n: f64) -> u64 {
    const TWO63: f64 = 9.223_372_036_854_776e18;
    if n < TWO63 {
        c_long_long(n) as u64
    } else {
        (c_long_long(n - TWO63) as u64) ^ (1 << 63)
    }
}

fn put_integer(n: f64, big: bool, size: usize, out: &mut Vec<u8>) {
    let mut value = if n < 0.0 {
        c_long_long(n) as u64
    } else {
        c_ulong(n)
    };
    let mut buf = [0u8; MAXINTSIZE];
    for b in buf.iter_mut().take(size) {
        *b = value as u8;
        value = value.checked_shr(8).unwrap_or(0);
    }
    if big {
        buf[..size].reverse();
    }
    out.extend_from_slice(&buf[..size]);
}

fn get_integer(data: &[u8], big: bool, signed: bool, size: usize) -> f64 {
    let mut l: u64 = 0;
    let mut add = |b: u8| l = (l << 8) | b as u64;
    if big {
        data[..size].iter().for_each(|&b| add(b));
    } else {
        data[..size].iter().rev().for_each(|&b| add(b));
    }
    if !signed {
        return l as f64;
    }
    // C shifts by (size*8 - 1) masked to 6 bits on x86-64, as `wrapping_shl` does.
    let mask = u64::MAX.wrapping_shl((size * 8).wrapping_sub(1) as u32);
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

fn pack(lua: &Lua, a: MultiValue) -> mlua::Result<mlua::BString> {
    let fmt = string_arg(lua, &a, 1, "pack")?;
    let mut f = Fmt { f: &fmt, i: 0 };
    let mut h = DEFAULT;
    let mut arg = 2;
    let mut out = Vec::new();
    while let Some(opt) = f.next() {
        let mut size = f.size(lua, opt)?;
        let pad = to_align(out.len(), &h, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = number_arg(lua, &a, arg, "pack")?;
                arg += 1;
                put_integer(n, h.big, size, &mut out);
            }
            b'x' => out.push(0),
            b'f' | b'd' => {
                let v = number_arg(lua, &a, arg, "pack")?;
                arg += 1;
                // A float is the double's value rounded to single precision.
                let mut b = if opt == b'f' {
                    (v as f32).to_le_bytes().to_vec()
                } else {
                    v.to_le_bytes().to_vec()
                };
                if h.big {
                    b.reverse();
                }
                out.extend_from_slice(&b);
            }
            b'c' | b's' => {
                let s = string_arg(lua, &a, arg, "pack")?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // struct.c checks after moving to the next argument.
                    let msg = format!("bad argument #{arg} to 'pack' (string too short)");
                    return Err(raise(lua, msg));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => f.control(lua, opt, &mut h, "pack")?,
        }
    }
    Ok(mlua::BString::from(out))
}

fn unpack(lua: &Lua, a: MultiValue) -> mlua::Result<MultiValue> {
    let fmt = string_arg(lua, &a, 1, "unpack")?;
    let data = string_arg(lua, &a, 2, "unpack")?;
    let ld = data.len();
    let start = match a.get(2) {
        None | Some(LuaValue::Nil) => 1,
        _ => c_long_long(number_arg(lua, &a, 3, "unpack")?),
    };
    if start <= 0 {
        return Err(raise(
            lua,
            "bad argument #3 to 'unpack' (offset must be 1 or greater)",
        ));
    }
    let mut pos = (start - 1) as usize;
    let mut f = Fmt { f: &fmt, i: 0 };
    let mut h = DEFAULT;
    let mut out: Vec<LuaValue> = Vec::new();
    let short = || raise(lua, "bad argument #2 to 'unpack' (data string too short)");
    while let Some(opt) = f.next() {
        let mut size = f.size(lua, opt)?;
        pos += to_align(pos, &h, opt, size);
        if size > ld || pos > ld - size {
            return Err(short());
        }
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let signed = opt.is_ascii_lowercase();
                out.push(LuaValue::Number(get_integer(
                    &data[pos..],
                    h.big,
                    signed,
                    size,
                )));
            }
            b'x' => {}
            b'f' => {
                let b: [u8; 4] = data[pos..pos + 4].try_into().unwrap_or_default();
                let v = if h.big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                };
                out.push(LuaValue::Number(v as f64));
            }
            b'd' => {
                let b: [u8; 8] = data[pos..pos + 8].try_into().unwrap_or_default();
                let v = if h.big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                };
                out.push(LuaValue::Number(v));
            }
            b'c' => {
                if size == 0 {
                    let n = match out.last() {
                        Some(LuaValue::Number(n)) => *n,
                        Some(LuaValue::Integer(n)) => *n as f64,
                        _ => return Err(raise(lua, "format 'c0' needs a previous size")),
                    };
                    out.pop();
                    size = c_ulong(n) as usize;
                    if size > ld || pos > ld - size {
                        return Err(short());
                    }
                }
                out.push(LuaValue::String(lua.create_string(&data[pos..pos + size])?));
            }
            b's' => {
                let Some(e) = memchr::memchr(0, &data[pos..]) else {
                    return Err(raise(lua, "unfinished string in data"));
                };
                size = e + 1;
                out.push(LuaValue::String(lua.create_string(&data[pos..pos + e])?));
            }
            _ => f.control(lua, opt, &mut h, "unpack")?,
        }
        pos += size;
    }
    out.push(LuaValue::Number((pos + 1) as f64));
    Ok(MultiValue::from_iter(out))
}

fn size(lua: &Lua, a: MultiValue) -> mlua::Result<f64> {
    let fmt = string_arg(lua, &a, 1, "size")?;
    let mut f = Fmt { f: &fmt, i: 0 };
    let mut h = DEFAULT;
    let mut pos = 0usize;
    while let Some(opt) = f.next() {
        let size = f.size(lua, opt)?;
        pos += to_align(pos, &h, opt, size);
        if opt == b's' {
            return Err(raise(
                lua,
                "bad argument #1 to 'size' (option 's' has no fixed size)",
            ));
        }
        if opt == b'c' && size == 0 {
            return Err(raise(
                lua,
                "bad argument #1 to 'size' (option 'c0' has no fixed size)",
            ));
        }
        if !opt.is_ascii_alphanumeric() {
            f.control(lua, opt, &mut h, "size")?;
        }
        pos += size;
    }
    Ok(pos as f64)
}

/// Install `struct` as a global of `lua`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.set("pack", lua.create_function(pack)?)?;
    t.set("unpack", lua.create_function(unpack)?)?;
    t.set("size", lua.create_function(size)?)?;
    lua.globals().set("struct", t)
}
