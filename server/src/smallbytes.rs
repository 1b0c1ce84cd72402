//! Owned byte strings that keep short contents inside themselves: [`SmallBytes<X>`] is
//! `2 + X` words; up to `8 * (2 + X) - 1` bytes live inline, longer ones in a heap block.
//!
//! Members of a set's table and fields of a hash's table are [`Member`]s (24 bytes, up to 23
//! bytes inline): a lookup compares a short member in the table's own bucket instead of following
//! a pointer to a separate block (one cache miss fewer per probe in a big set), and a short member
//! costs no block of its own. The intset buffer is a `SmallBytes<0>` (16 bytes, 15 inline).
//!
//! Layout (little-endian only, checked at compile time): the first word is either the heap
//! pointer (the block is 2-aligned, so its low bit is clear; the second word is then the length)
//! or, inline, `1 | len << 1` in its lowest byte (memory byte 0) with the bytes in memory bytes
//! `1..1 + len`. The first word is never zero, which leaves a niche: an enum of a `SmallBytes` and
//! a box is no larger than the `SmallBytes`.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::mem::MaybeUninit;
use std::num::NonZeroUsize;

const _: () = assert!(cfg!(target_endian = "little"));

/// An owned byte string of `2 + X` words (see the module docs).
#[repr(C)]
pub struct SmallBytes<const X: usize> {
    a: NonZeroUsize,
    b: usize,
    x: [usize; X],
}

/// A member of a set's table or a field of a hash's table: 24 bytes, up to 23 of them inline.
pub type Member = SmallBytes<1>;

const _: () = assert!(std::mem::size_of::<Member>() == 24);
const _: () = assert!(std::mem::size_of::<Option<SmallBytes<0>>>() == 16);

// SAFETY: a SmallBytes owns its heap block exclusively, like a Box<[u8]>.
unsafe impl<const X: usize> Send for SmallBytes<X> {}
unsafe impl<const X: usize> Sync for SmallBytes<X> {}

impl<const X: usize> SmallBytes<X> {
    /// The most bytes kept inline.
    pub const INLINE: usize = std::mem::size_of::<Self>() - 1;

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len, 2).unwrap_or_else(|_| handle_alloc_error(Layout::new::<u16>()))
    }

    /// A copy of `bytes`.
    #[inline]
    pub fn new(bytes: &[u8]) -> Self {
        let len = bytes.len();
        if len <= Self::INLINE {
            let mut m = MaybeUninit::<Self>::zeroed();
            let p = m.as_mut_ptr().cast::<u8>();
            // SAFETY: all-zero words are valid usizes except the first, which gets a non-zero
            // tag byte; the bytes go to 1..1 + len, inside the struct (len <= size - 1).
            unsafe {
                p.write(1 | (len as u8) << 1);
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.add(1), len);
                return m.assume_init();
            }
        }
        let layout = Self::layout(len);
        // SAFETY: the layout's size is non-zero (more than INLINE bytes); the copy stays in it.
        unsafe {
            let p = alloc(layout);
            if p.is_null() {
                handle_alloc_error(layout)
            }
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, len);
            SmallBytes {
                a: NonZeroUsize::new_unchecked(p as usize),
                b: len,
                x: [0; X],
            }
        }
    }

    #[inline]
    fn is_inline(&self) -> bool {
        self.a.get() & 1 != 0
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        if self.is_inline() {
            let len = ((self.a.get() as u8) >> 1) as usize;
            // SAFETY: every byte of the struct is initialized (written as words or zeroed in
            // `new`); the inline bytes are 1..1 + len of them, len <= INLINE.
            unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>().add(1), len) }
        } else {
            // SAFETY: a heap SmallBytes's pointer and length describe its live block.
            unsafe { std::slice::from_raw_parts(self.a.get() as *const u8, self.b) }
        }
    }

    /// The bytes, writable (the length stays).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.is_inline() {
            let len = ((self.a.get() as u8) >> 1) as usize;
            // SAFETY: as in `as_slice`, borrowed mutably with self.
            unsafe { std::slice::from_raw_parts_mut((self as *mut Self).cast::<u8>().add(1), len) }
        } else {
            // SAFETY: as in `as_slice`; the block is owned by self.
            unsafe { std::slice::from_raw_parts_mut(self.a.get() as *mut u8, self.b) }
        }
    }

    /// The bytes as a boxed slice (a copy).
    pub fn to_boxed(&self) -> Box<[u8]> {
        self.as_slice().into()
    }
}

impl<const X: usize> Default for SmallBytes<X> {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl<const X: usize> Drop for SmallBytes<X> {
    fn drop(&mut self) {
        if !self.is_inline() {
            // SAFETY: allocated in `new` with this layout, freed once.
            unsafe { dealloc(self.a.get() as *mut u8, Self::layout(self.b)) }
        }
    }
}

impl<const X: usize> Clone for SmallBytes<X> {
    fn clone(&self) -> Self {
        Self::new(self.as_slice())
    }
}

impl<const X: usize> PartialEq for SmallBytes<X> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const X: usize> Eq for SmallBytes<X> {}

/// Hashes as the `[u8]` it holds, so tables keyed by it are looked up by `&[u8]`.
impl<const X: usize> std::hash::Hash for SmallBytes<X> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl<const X: usize> std::borrow::Borrow<[u8]> for SmallBytes<X> {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const X: usize> std::ops::Deref for SmallBytes<X> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const X: usize> AsRef<[u8]> for SmallBytes<X> {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const X: usize> From<&[u8]> for SmallBytes<X> {
    fn from(b: &[u8]) -> Self {
        Self::new(b)
    }
}

impl<const X: usize> std::fmt::Debug for SmallBytes<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", bytes::Bytes::copy_from_slice(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::{Member, SmallBytes};
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    fn h<T: Hash + ?Sized>(v: &T) -> u64 {
        let mut s = DefaultHasher::new();
        v.hash(&mut s);
        s.finish()
    }

    #[test]
    fn inline_and_heap_round_trip() {
        for len in 0..64usize {
            let bytes: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let m = Member::new(&bytes);
            assert_eq!(&*m, &bytes[..]);
            assert_eq!(m.is_inline(), len <= 23);
            let c = m.clone();
            assert_eq!(c, m);
            assert_eq!(h(&c), h(&bytes[..]));
            let s = SmallBytes::<0>::new(&bytes);
            assert_eq!(s.is_inline(), len <= 15);
            assert_eq!(&*s, &bytes[..]);
            let mut w = m.clone();
            w.as_mut_slice().fill(7);
            assert!(w.iter().all(|&b| b == 7) && w.len() == len);
        }
        assert_eq!(Member::default().len(), 0);
    }

    #[test]
    fn table_lookups_by_slice() {
        let mut t: hashbrown::HashMap<Member, u32> = hashbrown::HashMap::new();
        for i in 0..1000u32 {
            let k = format!("element:{:012}-{}", i, "x".repeat((i % 20) as usize));
            t.insert(Member::new(k.as_bytes()), i);
        }
        for i in 0..1000u32 {
            let k = format!("element:{:012}-{}", i, "x".repeat((i % 20) as usize));
            assert_eq!(t.get(k.as_bytes()), Some(&i));
        }
        assert!(t.get(&b"element:"[..]).is_none());
    }
}
