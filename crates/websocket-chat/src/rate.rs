//! A token bucket: how the server says "no faster than this" to one sender.
//!
//! Picture a bucket that holds at most `burst` tokens and is topped up at
//! `per_second` tokens a second. Every message costs one token; a message
//! that finds the bucket empty is refused. So a sender may do `burst` things
//! at once (a pasted paragraph, a reconnect that sends its name and room),
//! and after that no more than `per_second` a second, however long it tries.
//!
//! The bucket is just two numbers and the time it was last looked at: it is
//! refilled lazily, by the time that passed, when a message asks for a
//! token. Nothing ticks in the background.
//!
//! Lesson 8 gives one to every connection; lesson 9 gives one to the whole
//! server's `POST /notify`.

use std::time::{Duration, Instant};

/// See the module docs.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket: a new sender may spend its whole burst at once.
    /// Panics if either number is 0 (a bucket that refuses everything is a
    /// configuration bug, not a limit).
    pub fn new(per_second: u32, burst: u32) -> Self {
        assert!(per_second > 0 && burst > 0, "a token bucket needs a rate and a burst above 0");
        let burst = f64::from(burst);
        Self { per_second: f64::from(per_second), burst, tokens: burst, last: Instant::now() }
    }

    /// Takes a token now, or says how long until there will be one.
    pub fn take(&mut self) -> Result<(), Duration> {
        self.take_at(Instant::now())
    }

    /// [`TokenBucket::take`] at a given instant (the tests step the clock by
    /// hand).
    pub fn take_at(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3);
        bucket.last = start;
        for _ in 0..3 {
            assert_eq!(bucket.take_at(start), Ok(()));
        }
        // Empty: the next token is 100 ms away.
        let wait = bucket.take_at(start).expect_err("the burst is spent");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        let later = start + Duration::from_millis(100);
        assert_eq!(bucket.take_at(later), Ok(()));
        assert!(bucket.take_at(later).is_err());
        // A long silence refills it to the burst, not beyond.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take_at(much_later), Ok(()));
        }
        assert!(bucket.take_at(much_later).is_err());
    }

    #[test]
    fn refused_attempts_cost_nothing() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1, 1);
        bucket.last = start;
        assert_eq!(bucket.take_at(start), Ok(()));
        // Hammering an empty bucket does not push the next token further away.
        for ms in 0..10 {
            assert!(bucket.take_at(start + Duration::from_millis(ms * 50)).is_err());
        }
        assert_eq!(bucket.take_at(start + Duration::from_secs(1)), Ok(()));
    }
}
