//! Gives memory freed after a burst back to the system.
//!
//! A burst (many users joining a big room at once: thousands of occupant
//! presences built and queued within a second) raises the heap by several
//! megabytes that are freed a moment later. glibc's malloc keeps such
//! freed memory mapped in its arenas (it only returns the top of a heap),
//! so the process would stay at its peak for good. A background task looks
//! every second at how much freed memory malloc holds and, when that grew
//! by more than [`THRESHOLD`] since it last looked, asks malloc to return
//! the unused pages (`malloc_trim`). Nothing is done in steady state, and
//! nothing at all with other C libraries.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the freed memory held by malloc is looked at.
const EVERY: Duration = Duration::from_secs(1);
/// Growth of the freed memory held by malloc that triggers a trim.
const THRESHOLD: usize = 2 << 20;

/// Starts the background task (until `shutdown`).
pub fn start_reclaimer(shutdown: CancellationToken) {
    if !imp::SUPPORTED {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut baseline = imp::free_bytes();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let free = imp::free_bytes();
            if let Some(next) = next_baseline(baseline, free) {
                baseline = next;
                continue;
            }
            // Trimming walks every arena: keep it off the async workers.
            baseline = tokio::task::spawn_blocking(|| {
                imp::trim();
                imp::free_bytes()
            })
            .await
            .unwrap_or(free);
        }
    });
}

/// The new baseline when no trim is needed (`None`: trim now). Freed memory
/// that is reused lowers the baseline; growth below the threshold is left.
fn next_baseline(baseline: usize, free: usize) -> Option<usize> {
    if free < baseline {
        Some(free)
    } else if free - baseline <= THRESHOLD {
        Some(baseline)
    } else {
        None
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    pub const SUPPORTED: bool = true;

    /// Bytes in free chunks held by malloc (all arenas).
    pub fn free_bytes() -> usize {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        info.fordblks
    }

    /// Returns whole free pages of every arena to the system.
    pub fn trim() {
        // SAFETY: malloc_trim is safe to call at any time from any thread.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub const SUPPORTED: bool = false;

    pub fn free_bytes() -> usize {
        0
    }

    pub fn trim() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_growth_beyond_the_threshold() {
        assert_eq!(next_baseline(10 << 20, 11 << 20), Some(10 << 20));
        assert_eq!(next_baseline(10 << 20, 4 << 20), Some(4 << 20));
        assert_eq!(next_baseline(10 << 20, (12 << 20) + 1), None);
        assert_eq!(next_baseline(0, THRESHOLD), Some(0));
    }
}
