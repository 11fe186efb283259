//! Flood control: the token bucket of biboumi's `throttle_limit` — a
//! connection may send `limit` commands at once, then one more per second
//! as tokens come back. A negative limit disables it.

use std::time::{Duration, Instant};

/// A token bucket refilled with one token per second.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: Option<u32>,
    tokens: u32,
    last_refill: Instant,
}

impl TokenBucket {
    /// A full bucket of `limit` tokens (negative: no limit; 0 counts as 1,
    /// one command per second).
    pub fn new(limit: i64, now: Instant) -> Self {
        let capacity = if limit < 0 {
            None
        } else {
            Some(limit.clamp(1, u32::MAX as i64) as u32)
        };
        Self {
            capacity,
            tokens: capacity.unwrap_or(0),
            last_refill: now,
        }
    }

    /// Changes the limit, keeping what has been used.
    pub fn set_limit(&mut self, limit: i64, now: Instant) {
        let used = self
            .capacity
            .map(|c| c.saturating_sub(self.tokens))
            .unwrap_or(0);
        *self = TokenBucket::new(limit, now);
        if let Some(c) = self.capacity {
            self.tokens = c.saturating_sub(used);
        }
    }

    fn refill(&mut self, now: Instant) {
        let Some(cap) = self.capacity else { return };
        let secs = now.saturating_duration_since(self.last_refill).as_secs();
        if secs > 0 {
            self.tokens = (self.tokens as u64 + secs).min(cap as u64) as u32;
            self.last_refill += Duration::from_secs(secs);
            if self.tokens == cap {
                self.last_refill = now;
            }
        }
    }

    /// Takes a token, or says when the next one is due.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        if self.capacity.is_none() {
            return Ok(());
        }
        self.refill(now);
        if self.tokens > 0 {
            self.tokens -= 1;
            Ok(())
        } else {
            Err(self.last_refill + Duration::from_secs(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        let next = b.take(t0).unwrap_err();
        assert_eq!(next, t0 + Duration::from_secs(1));
        assert!(b.take(t0 + Duration::from_millis(999)).is_err());
        assert!(b.take(t0 + Duration::from_secs(1)).is_ok());
        assert!(b.take(t0 + Duration::from_secs(1)).is_err());
        // A long pause refills up to the limit, not beyond.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn negative_disables_and_zero_is_one_per_second() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(-1, t0);
        for _ in 0..10_000 {
            assert!(b.take(t0).is_ok());
        }
        let mut b = TokenBucket::new(0, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_err());
    }

    #[test]
    fn changing_the_limit_keeps_usage() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5, t0);
        b.take(t0).unwrap();
        b.take(t0).unwrap();
        b.set_limit(3, t0);
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_err());
        b.set_limit(-1, t0);
        assert!(b.take(t0).is_ok());
    }
}
