//! Gives memory the allocator holds free back to the system: after start-up, then once a minute.

use std::time::Duration;

/// How often freed memory is given back while serving: a burst of requests or streams otherwise leaves the
/// process at its high-water mark for as long as it runs.
const RELEASE_EVERY: Duration = Duration::from_secs(60);

/// Releases what start-up freed (building the token counter's table frees over 10 MB of tiktoken's maps),
/// then, on the calling runtime, what each minute freed. The walk locks each allocator arena in turn and
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

/// glibc keeps freed memory in its arenas and gives back only the free end of each: what is free in the
/// middle (here, most of what start-up allocated and dropped) stays resident until `malloc_trim` returns it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "the one foreign call of the workspace, to glibc's malloc_trim")]
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

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// This process's resident set, in KiB.
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn memory_freed_in_the_middle_of_the_heap_is_given_back() {
        const MIB: usize = 1 << 20;
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
}
