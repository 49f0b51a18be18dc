//! A client-side rate limit for paid detector calls, shared by every image
//! being tagged at once, so that a bulk run stays under the account's
//! quota (Rekognition DetectLabels: a few to 50 calls a second, by region)
//! instead of leaning on throttling errors and retries.
//!
//! A token bucket in its "virtual scheduling" form: each call reserves the
//! next free slot under the lock, then sleeps until it outside the lock.
//! Reservations are first come, first served; a caller cancelled while it
//! waits only leaves its slot unused (the rate can only come out lower).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Calls a second when nothing is configured: the lowest default quota
/// Rekognition DetectLabels has in any region, so a run never exceeds
/// an account's quota out of the box. Raise it with `--rekognition-tps`.
pub const DEFAULT_REKOGNITION_TPS: f64 = 5.0;

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    /// Calls allowed at once after an idle spell.
    burst: u32,
    /// The earliest instant the next reservation may start at.
    next: Mutex<Option<Instant>>,
    granted: AtomicU64,
}

impl RateLimiter {
    /// At most `per_second` calls a second on average, and at most `burst`
    /// at once after an idle spell. `per_second` must be positive and finite.
    pub fn new(per_second: f64, burst: u32) -> Self {
        assert!(
            per_second.is_finite() && per_second > 0.0,
            "rate must be positive"
        );
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second),
            burst: burst.max(1),
            next: Mutex::new(None),
            granted: AtomicU64::new(0),
        }
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
        self.granted.fetch_add(1, Ordering::SeqCst);
    }

    /// Reserves the next slot as of `now` and returns when it starts.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        // After an idle spell, up to `burst` slots lie in the past: taken
        // at once.
        let credit = self.interval * (self.burst - 1);
        let earliest = now.checked_sub(credit).unwrap_or(now);
        let slot = next.map_or(earliest, |n| n.max(earliest));
        *next = Some(slot + self.interval);
        slot.max(now)
    }

    /// Calls let through so far.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::SeqCst)
    }

    /// The most calls this limiter lets through in `elapsed`: the burst,
    /// plus one per interval.
    pub fn allowance(&self, elapsed: Duration) -> u64 {
        u64::from(self.burst) + (elapsed.as_nanos() / self.interval.as_nanos().max(1)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_the_interval_after_the_burst() {
        let r = RateLimiter::new(10.0, 3);
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..8).map(|_| r.reserve(t0) - t0).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            slots,
            [
                ms(0),
                ms(0),
                ms(0),
                ms(100),
                ms(200),
                ms(300),
                ms(400),
                ms(500)
            ]
        );
        // Idle for a long time: the burst is available again, no more.
        let later = t0 + Duration::from_secs(60);
        let slots: Vec<Duration> = (0..4).map(|_| r.reserve(later) - later).collect();
        assert_eq!(slots, [ms(0), ms(0), ms(0), ms(100)]);
    }
}
