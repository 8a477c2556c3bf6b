//! `memcmp` for the wasm build, eight bytes per step. wasi-libc's compares
//! one byte per step, and a large sync compares short strings (map keys,
//! column and field names) tens of millions of times: it was the
//! component's most expensive function (3.4% of a 100,000-customer run's
//! CPU, every thread counted; 0.05% after).

/// Compares `n` bytes at `a` and `b` as unsigned bytes: negative, zero or
/// positive, as C's `memcmp`.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, and both are readable for n bytes.
        let (x, y) = unsafe { (a.add(i).cast::<u64>().read_unaligned(), b.add(i).cast::<u64>().read_unaligned()) };
        if x != y {
            // Read little-endian: the first differing byte in memory is
            // the lowest differing byte of the words.
            let (x, y) = (u64::from_le(x), u64::from_le(y));
            let shift = (x ^ y).trailing_zeros() & !7;
            return i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8);
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// The C contract: `a` and `b` are valid for reads of `n` bytes.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's promise.
    unsafe { compare(a, b, n) }
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering;

    fn sign(a: &[u8], b: &[u8]) -> Ordering {
        assert_eq!(a.len(), b.len());
        // SAFETY: both slices hold len bytes.
        unsafe { compare(a.as_ptr(), b.as_ptr(), a.len()) }.cmp(&0)
    }

    #[test]
    fn orders_as_unsigned_bytes_wherever_the_first_difference_is() {
        for len in 0..40 {
            let base: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            assert_eq!(sign(&base, &base), Ordering::Equal, "len {len}");
            for at in 0..len {
                for (x, y) in [(0u8, 1u8), (1, 0), (0x7f, 0x80), (0x80, 0x7f), (0, 255), (255, 0)] {
                    let (mut a, mut b) = (base.clone(), base.clone());
                    a[at] = x;
                    b[at] = y;
                    // A later difference the other way round must not matter.
                    if at + 1 < len {
                        a[len - 1] = 0;
                        b[len - 1] = 255;
                        if x == y {
                            continue;
                        }
                    }
                    assert_eq!(sign(&a, &b), x.cmp(&y), "len {len}, differing at {at}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn reads_unaligned_starts() {
        let bytes: Vec<u8> = (0..64).collect();
        let mut other = bytes.clone();
        other[37] = 200;
        for start in 0..8 {
            let n = 40;
            // SAFETY: start + n <= 64.
            let got = unsafe { compare(bytes.as_ptr().add(start), other.as_ptr().add(start), n) };
            assert!(got < 0, "start {start}");
        }
    }
}
