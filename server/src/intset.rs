//! A small sorted set of integers in one compact buffer (the `intset` encoding of sets).
//!
//! Redis's intset stores every member in the width of the widest one (2, 4 or 8 bytes). We store
//! members as offsets from the smallest one ("frame of reference"): the buffer is
//!
//! ```text
//! [width: 1 byte (1, 2, 4 or 8)] [base: the smallest member, zigzag varint] [n offsets, width bytes each, LE]
//! ```
//!
//! so members that sit close together cost one or two bytes each whatever their magnitude (the
//! five members `N..N+4` of a set near a million take 1 + 3 + 5 = 9 bytes; Redis: 8 + 5 × 4 = 28).
//! Offsets are unsigned and ascending, so lookups stay a binary search with O(1) access. An empty
//! set owns no allocation, and neither does a buffer of up to 15 bytes: it is kept inside the
//! 16-byte `IntSet` itself (see [`SmallBytes`]), so the five members `N..N+4` cost no block of their own
//! (a 9-byte buffer was a 16-byte mimalloc block). Inserting or removing rebuilds the buffer (sets
//! stay small: past `set-max-intset-entries` they become a hash table).

use crate::smallbytes::SmallBytes;

/// A sorted set of distinct `i64`s, compactly encoded.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IntSet {
    buf: SmallBytes<0>,
}

impl std::fmt::Debug for IntSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

impl IntSet {
    /// Encode members that are already sorted ascending and distinct.
    pub fn from_sorted(members: &[i64]) -> IntSet {
        debug_assert!(members.windows(2).all(|w| w[0] < w[1]));
        let (Some(&first), Some(&last)) = (members.first(), members.last()) else {
            return IntSet::default();
        };
        let span = last.wrapping_sub(first) as u64;
        let width: usize = if span <= 0xFF {
            1
        } else if span <= 0xFFFF {
            2
        } else if span <= 0xFFFF_FFFF {
            4
        } else {
            8
        };
        let mut buf = Vec::with_capacity(1 + 10 + members.len() * width);
        buf.push(width as u8);
        let mut z = zigzag(first);
        loop {
            if z < 0x80 {
                buf.push(z as u8);
                break;
            }
            buf.push((z as u8 & 0x7F) | 0x80);
            z >>= 7;
        }
        for &m in members {
            let off = m.wrapping_sub(first) as u64;
            buf.extend_from_slice(&off.to_le_bytes()[..width]);
        }
        IntSet {
            buf: SmallBytes::new(&buf),
        }
    }

    /// (width, base, start of the offsets); `None` when empty.
    #[inline]
    fn header(&self) -> Option<(usize, i64, usize)> {
        let (&width, rest) = self.buf.split_first()?;
        let mut z = 0u64;
        let mut shift = 0;
        let mut i = 0;
        while let Some(&b) = rest.get(i) {
            z |= u64::from(b & 0x7F) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Some((usize::from(width), unzigzag(z), 1 + i))
    }

    #[inline]
    fn offset(&self, width: usize, start: usize, i: usize) -> u64 {
        let p = start + i * width;
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(&self.buf[p..p + width]);
        u64::from_le_bytes(b)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        match self.header() {
            Some((w, _, start)) => (self.buf.len() - start) / w,
            None => 0,
        }
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes of the encoded buffer (what the set costs besides its key).
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// The `i`th smallest member.
    pub fn get(&self, i: usize) -> Option<i64> {
        let (w, base, start) = self.header()?;
        (i < (self.buf.len() - start) / w)
            .then(|| base.wrapping_add(self.offset(w, start, i) as i64))
    }

    /// Like `slice::binary_search`: `Ok(index)` of `v`, or `Err(index)` where it would go.
    pub fn binary_search(&self, v: i64) -> Result<usize, usize> {
        let Some((w, base, start)) = self.header() else {
            return Err(0);
        };
        if v < base {
            return Err(0);
        }
        let target = v.wrapping_sub(base) as u64;
        let (mut lo, mut hi) = (0, (self.buf.len() - start) / w);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.offset(w, start, mid).cmp(&target) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// Whether `v` is a member.
    pub fn contains(&self, v: i64) -> bool {
        self.binary_search(v).is_ok()
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let (w, base, start) = self.header().unwrap_or((1, 0, self.buf.len()));
        let n = (self.buf.len() - start) / w;
        (0..n).map(move |i| base.wrapping_add(self.offset(w, start, i) as i64))
    }

    /// Members in ascending order, decoded.
    pub fn to_vec(&self) -> Vec<i64> {
        self.iter().collect()
    }

    /// Add `v`; false if it was already a member.
    pub fn insert(&mut self, v: i64) -> bool {
        match self.binary_search(v) {
            Ok(_) => false,
            Err(pos) => {
                let mut all = Vec::with_capacity(self.len() + 1);
                all.extend(self.iter().take(pos));
                all.push(v);
                all.extend(self.iter().skip(pos));
                *self = IntSet::from_sorted(&all);
                true
            }
        }
    }

    /// Remove `v`; false if it was not a member.
    pub fn remove(&mut self, v: i64) -> bool {
        match self.binary_search(v) {
            Ok(pos) => {
                let all: Vec<i64> = self
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| (i != pos).then_some(m))
                    .collect();
                *self = IntSet::from_sorted(&all);
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IntSet;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn compact_for_close_members() {
        let s = IntSet::from_sorted(&[1_000_000, 1_000_001, 1_000_002, 1_000_003, 1_000_004]);
        assert_eq!(s.encoded_len(), 1 + 3 + 5);
        assert_eq!(s.len(), 5);
        assert_eq!(s.get(4), Some(1_000_004));
        assert_eq!(s.get(5), None);
        assert!(IntSet::default().is_empty());
        assert_eq!(IntSet::default().len(), 0);
        assert_eq!(IntSet::default().binary_search(3), Err(0));
    }

    #[test]
    fn inline_up_to_15_bytes_then_heap() {
        let mut s = IntSet::default();
        let mut want = Vec::new();
        for v in 0..40i64 {
            assert!(s.insert(v));
            want.push(v);
            // width 1, base 0 in one byte: 2 + n bytes (inline up to n = 13)
            assert_eq!(s.encoded_len(), 2 + want.len());
            assert_eq!(s.to_vec(), want);
            let c = s.clone();
            assert_eq!(c, s);
            assert_eq!(c.to_vec(), want);
        }
        for v in (0..40i64).rev() {
            assert!(s.remove(v));
            want.pop();
            assert_eq!(s.to_vec(), want);
        }
        assert!(s.is_empty());
        assert_eq!(s, IntSet::default());
    }

    #[test]
    fn extremes() {
        let mut s = IntSet::default();
        for v in [i64::MAX, i64::MIN, 0, -1, 1] {
            assert!(s.insert(v));
        }
        assert!(!s.insert(0));
        assert_eq!(s.to_vec(), vec![i64::MIN, -1, 0, 1, i64::MAX]);
        assert!(s.contains(i64::MIN) && s.contains(i64::MAX) && !s.contains(2));
        assert!(s.remove(i64::MIN));
        assert_eq!(s.to_vec(), vec![-1, 0, 1, i64::MAX]);
    }

    proptest! {
        /// Same answers as a BTreeSet model for any sequence of inserts and removes.
        #[test]
        fn model(ops in proptest::collection::vec((any::<bool>(), prop_oneof![
            any::<i64>(),
            -300i64..300,
            (0i64..70_000).prop_map(|v| v * 1_000),
        ]), 0..80)) {
            let mut s = IntSet::default();
            let mut m = BTreeSet::new();
            for (add, v) in ops {
                if add {
                    prop_assert_eq!(s.insert(v), m.insert(v));
                } else {
                    prop_assert_eq!(s.remove(v), m.remove(&v));
                }
                prop_assert_eq!(s.len(), m.len());
                let want: Vec<i64> = m.iter().copied().collect();
                prop_assert_eq!(s.to_vec(), want.clone());
                for (i, w) in want.iter().enumerate() {
                    prop_assert_eq!(s.binary_search(*w), Ok(i));
                    prop_assert_eq!(s.get(i), Some(*w));
                }
                prop_assert_eq!(s.binary_search(v), want.binary_search(&v));
            }
        }
    }
}
