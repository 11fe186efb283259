//! Gives memory freed after a burst back to the system.
//!
//! A burst (many users joining a big room at once: thousands of occupant
//! presences built and queued within a second) raises the heap by several
//! megabytes that are freed a moment later. glibc's malloc keeps such
//! freed memory mapped in its arenas (it only returns the top of a heap),
//! so the process would stay at its peak for good. A background task reads
//! the process's private resident memory once a second (`/proc/self/statm`:
//! one small read, no allocator lock) and, after it grew by more than
//! [`THRESHOLD`], asks malloc to return unused pages (`malloc_trim`), at
//! most once every [`MIN_GAP`] ticks and a few more times after the growth
//! stopped (the burst's memory is freed while its queues drain, after the
//! growth). In steady state it trims once every [`STEADY_GAP`] ticks (a
//! minute), so that memory freed without a growth just before is given
//! back too; nothing at all is done with other C libraries.
//!
//! The reclaimer does not ask malloc for its statistics (`mallinfo2`):
//! that walks every free chunk of every arena under the arena locks, which
//! cost 12 % of the gateway's CPU under load when it was done every second.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the private memory is looked at.
const EVERY: Duration = Duration::from_secs(1);
/// Growth of the private memory (bytes) that calls for trims.
const THRESHOLD: usize = 4 << 20;
/// Ticks between two trims at least (a trim walks every arena).
const MIN_GAP: u32 = 10;
/// Trims after a growth, while they give back less than [`THRESHOLD`].
const FOLLOW_UPS: u8 = 3;

/// Ticks after which one trim is done anyway: memory freed without a
/// growth just before (a Matrix session closing its idle stores, sessions
/// ending, a hundred idle Matrix accounts dropping their clients: tens
/// of megabytes) is given back within a minute too (a trim runs on a
/// blocking thread, off the async workers).
const STEADY_GAP: u32 = 60;

/// Starts the background task (until `shutdown`).
pub fn start_reclaimer(shutdown: CancellationToken) {
    if !imp::SUPPORTED {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let Some(first) = imp::private_bytes() else {
            return;
        };
        let mut policy = Policy::new(first);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(now) = imp::private_bytes() else {
                return;
            };
            if !policy.tick(now) {
                continue;
            }
            // Trimming walks every arena: keep it off the async workers.
            let after = tokio::task::spawn_blocking(|| {
                imp::trim();
                imp::private_bytes()
            })
            .await
            .ok()
            .flatten()
            .unwrap_or(now);
            policy.trimmed(now, after);
        }
    });
}

/// When to trim, from the private memory seen at each tick.
#[derive(Debug)]
struct Policy {
    /// The private memory after the last trim (or the lowest seen since).
    floor: usize,
    /// Ticks since the last trim.
    since_trim: u32,
    /// Trims still to do.
    pending: u8,
}

impl Policy {
    fn new(now: usize) -> Policy {
        Policy {
            floor: now,
            since_trim: MIN_GAP,
            pending: 0,
        }
    }

    /// One tick with `now` bytes of private memory: whether to trim now.
    fn tick(&mut self, now: usize) -> bool {
        self.since_trim = self.since_trim.saturating_add(1);
        if now < self.floor {
            self.floor = now;
        } else if now - self.floor > THRESHOLD {
            self.pending = FOLLOW_UPS;
        }
        if self.since_trim >= STEADY_GAP {
            self.pending = self.pending.max(1);
        }
        self.pending > 0 && self.since_trim >= MIN_GAP
    }

    /// A trim took the private memory from `before` to `after`.
    fn trimmed(&mut self, before: usize, after: usize) {
        self.since_trim = 0;
        self.floor = after;
        if before.saturating_sub(after) < THRESHOLD {
            self.pending = self.pending.saturating_sub(1);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    pub const SUPPORTED: bool = true;

    /// Resident memory not backed by files (heap, stacks), in bytes:
    /// `/proc/self/statm`'s resident minus shared pages.
    pub fn private_bytes() -> Option<usize> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let mut fields = statm.split_ascii_whitespace().skip(1);
        let resident: usize = fields.next()?.parse().ok()?;
        let shared: usize = fields.next()?.parse().ok()?;
        // SAFETY: sysconf only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page).ok().filter(|p| *p > 0)?;
        Some(resident.saturating_sub(shared).saturating_mul(page))
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

    pub fn private_bytes() -> Option<usize> {
        None
    }

    pub fn trim() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn steady_memory_is_trimmed_only_every_steady_gap() {
        let mut p = Policy::new(50 * MIB);
        p.trimmed(50 * MIB, 50 * MIB);
        let mut trims = Vec::new();
        for i in 1..=(3 * STEADY_GAP) {
            if p.tick(50 * MIB + (i as usize % 3) * MIB) {
                trims.push(i);
                p.trimmed(50 * MIB, 50 * MIB);
            }
        }
        assert_eq!(trims, [STEADY_GAP, 2 * STEADY_GAP, 3 * STEADY_GAP]);
    }

    #[test]
    fn growth_trims_at_most_every_gap_then_a_few_follow_ups() {
        let mut p = Policy::new(10 * MIB);
        // A burst: the first tick past the threshold trims (the gap since
        // start has passed), the next ones wait for the gap.
        assert!(p.tick(20 * MIB));
        p.trimmed(20 * MIB, 19 * MIB);
        for _ in 1..MIN_GAP {
            assert!(!p.tick(30 * MIB));
        }
        assert!(p.tick(30 * MIB));
        p.trimmed(30 * MIB, 30 * MIB);
        // The growth stopped: FOLLOW_UPS - 1 more trims, MIN_GAP apart,
        // as long as they give back little; then nothing until the steady
        // gap (the window ends before it).
        let mut trims = 0;
        for _ in 0..STEADY_GAP {
            if p.tick(30 * MIB) {
                trims += 1;
                p.trimmed(30 * MIB, 30 * MIB);
            }
        }
        assert_eq!(trims, usize::from(FOLLOW_UPS) - 1);
    }

    #[test]
    fn a_trim_that_gives_back_much_is_followed_by_another() {
        let mut p = Policy::new(10 * MIB);
        assert!(p.tick(40 * MIB));
        p.trimmed(40 * MIB, 40 * MIB);
        let mut trims = 0;
        let mut now = 40 * MIB;
        // The queues drain: each trim gives back 8 MiB, then nothing more
        // (the window ends before a steady gap after the last trim).
        for _ in 0..STEADY_GAP {
            if p.tick(now) {
                trims += 1;
                let after = if now > 16 * MIB { now - 8 * MIB } else { now };
                p.trimmed(now, after);
                now = after;
            }
        }
        assert_eq!(now, 16 * MIB);
        // Three trims gave back 8 MiB each (no follow-up used), then the
        // follow-ups left ran out on trims that gave nothing back.
        assert_eq!(trims, 3 + usize::from(FOLLOW_UPS) - 1);
    }
}
