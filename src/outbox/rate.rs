//! A pacing rate limiter: at most `per_sec` starts per second, evenly spaced, no bursts, on
//! the monotonic clock. Pacing rather than a bucket keeps a background drain from ever
//! looking like a burst to an upstream that counts per second.

use std::time::Duration;
use tokio::time::Instant;

pub struct Pacer {
    spacing: Option<Duration>,
    next: Instant,
}

impl Pacer {
    /// `None`: unlimited.
    pub fn new(per_sec: Option<u32>) -> Pacer {
        Pacer {
            // 2% slower than the limit: an upstream counting a sliding second must never see
            // one call too many, whatever jitter sits between here and the wire.
            spacing: per_sec
                .filter(|r| *r > 0)
                .map(|r| Duration::from_secs(1) / r * 51 / 50),
            next: Instant::now(),
        }
    }

    /// Waits for the next slot.
    pub async fn ready(&mut self) {
        let Some(spacing) = self.spacing else { return };
        let now = Instant::now();
        let slot = self.next.max(now);
        self.next = slot + spacing;
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn twenty_five_per_second_means_one_every_forty_milliseconds() {
        let mut p = Pacer::new(Some(25));
        let start = Instant::now();
        for _ in 0..26 {
            p.ready().await;
        }
        // 26 slots: the first at once, then 25 more 40 ms apart.
        // 40.8 ms apart: 2% under the limit.
        assert_eq!(start.elapsed(), Duration::from_micros(1_020_000));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_pacer_does_not_save_up_a_burst() {
        let mut p = Pacer::new(Some(10));
        p.ready().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = Instant::now();
        for _ in 0..3 {
            p.ready().await;
        }
        assert_eq!(start.elapsed(), Duration::from_micros(204_000));
    }
}
