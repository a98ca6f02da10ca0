//! Large voxel buffers on 2 MiB pages: buffers of 8 MB and more ask the kernel for huge
//! pages, so an oblique plane's reads across hundreds of voxel rows do not miss the TLB (why,
//! and what it measured: docs/PERFORMANCE.md).
//!
//! One of render's places with unsafe code (the list is in `tests/tests/tidy.rs`): `madvise`
//! is a system call on memory this process owns. Both advices only change how the memory is
//! backed, never its contents, and are hints: an older kernel, or huge pages turned off,
//! leaves the buffer as it was.
#![allow(unsafe_code)]

/// Buffers smaller than this stay as they are: few pages, and a collapse costs a copy.
pub(crate) const MIN_BYTES: usize = 8 << 20;

/// Asks for `buf` (its whole 2 MiB-aligned pages) to be backed by 2 MiB pages: pages written
/// from now on, and those already there (collapsed now, a copy of about 0.6 ms per MB).
/// Buffers under [`MIN_BYTES`] are left alone.
pub(crate) fn prefer_huge_pages<T>(buf: &[T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        // MADV_COLLAPSE (Linux 6.1), not yet named by the libc crate version in use.
        const MADV_COLLAPSE: libc::c_int = 25;
        let bytes = size_of_val(buf);
        if bytes < MIN_BYTES {
            return;
        }
        let start = buf.as_ptr() as usize;
        let first = start.next_multiple_of(HUGE);
        let end = (start + bytes) / HUGE * HUGE;
        if first >= end {
            return;
        }
        for advice in [libc::MADV_HUGEPAGE, MADV_COLLAPSE] {
            // SAFETY: [first, end) lies inside `buf`, which this process owns and which stays
            // mapped while the borrow lasts. Neither advice changes what the memory holds or
            // who may read it; a refusal (an error return) leaves the mapping as it was.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, advice);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_keeps_contents() {
        // Large enough to be advised, with values that a lost or zeroed page would change.
        let buf: Vec<i16> = (0..(MIN_BYTES / 2 + 4096))
            .map(|i| (i % 30011) as i16)
            .collect();
        let before = buf.clone();
        prefer_huge_pages(&buf);
        assert_eq!(buf, before);
        // Small and empty buffers are left alone.
        prefer_huge_pages::<i16>(&[]);
        prefer_huge_pages(&[1u8; 16]);
    }
}
