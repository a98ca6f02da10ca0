//! The C allocator's housekeeping in a long-running daemon (glibc on Linux; elsewhere nothing
//! happens). glibc gives each thread that allocates an arena of its own, up to eight per core,
//! and keeps what is freed in them for reuse. A daemon whose threads take turns with short-lived
//! work (the SFU's media drivers and Tokio's workers open and close connections) then grows by
//! the free space its arenas hold, not by anything it keeps: the SFU's soak grew 13.8% in RSS
//! over 3,000 join/leave cycles with the default arenas and 3.5% with two. So a daemon:
//! - holds glibc to one arena per core ([`limit_arenas`], before its runtime starts threads);
//! - hands the arenas' free pages back to the system every [`TRIM_EVERY`] ([`trim_task`]).
//!
//! This is the crate's only unsafe code: two calls into glibc that take plain integers and
//! touch nothing of ours.
#![allow(unsafe_code)]

use std::time::Duration;

/// How often free memory goes back to the system.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Holds glibc to one malloc arena per core (at least two). Call before any thread starts:
/// arenas already made stay. Returns whether the allocator took the setting.
pub fn limit_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes two integers and only changes the allocator's settings; glibc
        // serialises it against allocations.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Hands the free memory of every malloc arena back to the system (pages no allocation uses).
/// Returns whether any was released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes an integer (the bytes to keep at the top of the heap) and
        // only releases pages that no allocation holds; glibc locks each arena while it walks it.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Trims every [`TRIM_EVERY`] until the process ends, on a blocking thread so that no async
/// task waits behind the arena locks. Counts the trims that released memory in
/// `process_malloc_trims_released_total`.
pub async fn trim_task() {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Ok(true) = tokio::task::spawn_blocking(trim).await {
            metrics::counter!("process_malloc_trims_released_total").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trim_releases_freed_memory() {
        // Many small blocks (below the mmap threshold, so they come from an arena), then most
        // of them freed: their pages sit free in the arena until a trim.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 2000]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 500 == 0)
            .map(|(_, b)| b)
            .collect();
        assert!(trim(), "40 MB were freed; a trim must release some of it");
        // What is still held is untouched.
        for (n, b) in kept.iter().enumerate() {
            assert!(b.iter().all(|&v| v == (n * 500) as u8));
        }
        assert!(limit_arenas());
    }
}
