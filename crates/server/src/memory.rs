//! Keeps glibc's heap (SQLite's allocations; the server's own go to jemalloc) from fragmenting, gives back the memory
//! it holds free (after start-up, then once a minute), and reads the process's memory for `/metrics`.

use std::time::Duration;

/// How often freed memory is given back while serving: a burst of requests or streams otherwise leaves the
/// process at its high-water mark for as long as it runs.
const RELEASE_EVERY: Duration = Duration::from_secs(60);

/// Releases what start-up freed in glibc's heap, then, on the calling runtime, what each minute freed. The walk locks each allocator arena in turn and
/// takes about a millisecond on a small heap, so it runs on the blocking pool.
pub fn release_after_start_up_and_periodically() {
    release_freed();
    actix_rt::spawn(async {
        let mut every = tokio::time::interval(RELEASE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(err) = tokio::task::spawn_blocking(release_freed).await {
                tracing::warn!(%err, "giving freed memory back did not complete");
            }
        }
    });
}

/// Blocks at least this large get their own mapping, returned to the system when freed, instead of a place in an
/// arena's heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Fixes glibc's mmap threshold at its documented default. Left dynamic, glibc raises it to the size of each large
/// block freed (up to 32 MiB), after which every block below that size comes from the arenas, between long-lived
/// ones, and the heap fragments. When glibc served the server's own allocations too, a ten-minute soak of mixed load
/// (`chat-bench --scenarios soak`) grew 1.0-1.6 MB a minute after the resume window had filled (five runs) while
/// the heap in use stayed flat (glibc's `malloc_info`); with the threshold fixed, 0.2-1.3 (five runs). Those
/// allocations now go to jemalloc (`main.rs`); this keeps SQLite's share of the heap, and any other C library's,
/// as compact. An operator's own `MALLOC_MMAP_THRESHOLD_` (read by glibc at start-up) is left as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "one of the workspace's two foreign calls, to glibc's mallopt")]
pub fn fix_mmap_threshold() {
    /// glibc, `<malloc.h>`.
    const M_MMAP_THRESHOLD: i32 = -3;
    unsafe extern "C" {
        /// glibc, `<malloc.h>`: `int mallopt(int param, int value)`.
        fn mallopt(param: i32, value: i32) -> i32;
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    // SAFETY: mallopt takes two plain integers and locks the allocator while it sets the parameter; it has no
    // precondition a caller could break, and M_MMAP_THRESHOLD with a value below its 32 MiB maximum is valid.
    unsafe { mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
}

/// Other allocators have no such threshold to fix.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn fix_mmap_threshold() {}

/// glibc keeps freed memory in its arenas and gives back only the free end of each: what is free in the
/// middle (SQLite's caches of connections the pool closed, say) stays resident until `malloc_trim` returns it.
/// jemalloc returns what the server itself freed on its own, within a second (`dirty_decay_ms` in
/// `.cargo/config.toml`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "one of the workspace's two foreign calls, to glibc's malloc_trim")]
pub fn release_freed() {
    unsafe extern "C" {
        /// glibc, `<malloc.h>`: `int malloc_trim(size_t pad)`.
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim takes a plain integer, touches only memory that is free, and is thread-safe (it
    // locks each arena while it walks it); it has no precondition a caller could break.
    let released = unsafe { malloc_trim(0) } != 0;
    tracing::debug!(released, "freed memory given back to the system");
}

/// Other allocators (musl's, the system allocators of other platforms) give memory back themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() {}

/// The server's own heap as jemalloc, the `chat-server` binary's allocator, counts it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Allocated and not freed.
    pub allocated: u64,
    /// jemalloc's memory that is resident: the allocated, what it keeps free and has not given back yet, and its
    /// own metadata.
    pub resident: u64,
}

/// The heap's figures now; `None` where the server is not built with jemalloc.
#[cfg(not(target_env = "msvc"))]
pub fn heap_stats() -> Option<HeapStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    // jemalloc's statistics are a snapshot, taken anew when the epoch advances.
    epoch::advance().ok()?;
    let allocated = u64::try_from(stats::allocated::read().ok()?).ok()?;
    let resident = u64::try_from(stats::resident::read().ok()?).ok()?;
    Some(HeapStats { allocated, resident })
}

#[cfg(target_env = "msvc")]
pub fn heap_stats() -> Option<HeapStats> {
    None
}

/// The process's resident memory (`VmRSS`), in bytes; `None` where `/proc` does not tell it.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// This process's resident set, in KiB.
    fn rss_kib() -> u64 {
        resident_bytes().unwrap_or(0) / 1024
    }

    #[test]
    fn memory_freed_in_the_middle_of_the_heap_is_given_back() {
        const MIB: usize = 1 << 20;
        // As in the server: with a dynamic threshold, another test's large block freed could put this one's
        // 4 MiB vector in the heap as well.
        fix_mmap_threshold();
        // 32 MiB in small blocks (as tiktoken's maps are), then one block after them that stays: freeing the
        // small ones leaves them in the middle of the heap, where glibc keeps them resident.
        let small: Vec<Box<[u8; 64]>> = (0..32 * MIB / 64).map(|i| Box::new([i as u8; 64])).collect();
        let pinned = Box::new([1u8; 64]);
        let with_small = rss_kib();
        drop(small);
        let freed = rss_kib();
        release_freed();
        let released = rss_kib();
        assert!(with_small.saturating_sub(released) > 24 * 1024, "{with_small} KiB, then {freed}, then {released}");
        assert_eq!(pinned[0], 1);
    }

    #[test]
    #[allow(unsafe_code, reason = "glibc's malloc_usable_size, to tell a mapped block from a heap chunk")]
    fn a_large_block_is_mapped_even_after_a_larger_one_was_freed() {
        unsafe extern "C" {
            /// glibc, `<malloc.h>`: `size_t malloc_usable_size(void *ptr)`.
            fn malloc_usable_size(ptr: *mut std::ffi::c_void) -> usize;
        }
        const MIB: usize = 1 << 20;
        fix_mmap_threshold();
        // Freeing a mapped 4 MiB block would raise a dynamic threshold to 4 MiB.
        drop(std::hint::black_box(vec![1u8; 4 * MIB]));
        let block = std::hint::black_box(vec![1u8; MIB]);
        // SAFETY: the pointer is a live allocation of the global allocator, which is glibc's malloc here.
        let usable = unsafe { malloc_usable_size(block.as_ptr().cast_mut().cast()) };
        // A mapped block takes whole pages (1 MiB and one page, less its header); a heap chunk, 1 MiB and 8 bytes.
        assert!(usable > MIB + 1024, "{usable} bytes usable: the 1 MiB block came from the heap");
    }
}

#[cfg(all(test, not(target_env = "msvc")))]
mod built_in_options {
    /// jemalloc's options come from `.cargo/config.toml`, compiled into the library: built without them, the server
    /// would run with jemalloc's defaults and nothing would say so.
    #[test]
    fn jemalloc_runs_with_the_workspace_options() {
        use tikv_jemalloc_ctl::opt;
        assert!(opt::background_thread::read().unwrap(), "freed pages are given back by a background thread");
        assert!(!opt::tcache::read().unwrap(), "no thread keeps freed blocks in a cache of its own");
    }
}
