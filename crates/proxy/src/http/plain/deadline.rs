//! A connection's deadline (for the next request head, or for the
//! upstream's answer: only one is running at a time) on one tokio timer
//! that is moved only when it fires or must fire earlier. Moving a timer
//! for every request cost more than the rest of the bookkeeping around it.

use std::pin::Pin;
use tokio::time::{Instant, Sleep};

/// One deadline at a time on one timer.
pub struct Deadline<'a> {
    sleep: Pin<&'a mut Sleep>,
    /// When the timer fires now; never later than `due`.
    armed: Instant,
    /// The deadline being enforced.
    due: Instant,
}

impl<'a> Deadline<'a> {
    /// A deadline on `sleep`, which is set to fire at `at`.
    pub fn new(sleep: Pin<&'a mut Sleep>, at: Instant) -> Self {
        Deadline {
            sleep,
            armed: at,
            due: at,
        }
    }

    /// Enforces `due` from now on.
    pub fn set(&mut self, due: Instant) {
        self.due = due;
        if due < self.armed {
            self.armed = due;
            self.sleep.as_mut().reset(due);
        }
    }

    /// Completes once the deadline has passed.
    pub async fn passed(&mut self) {
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= self.due {
                return;
            }
            self.armed = self.due;
            self.sleep.as_mut().reset(self.due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_latest_deadline_set() {
        let start = Instant::now();
        let sleep = tokio::time::sleep_until(start + Duration::from_secs(1));
        tokio::pin!(sleep);
        let mut d = Deadline::new(sleep, start + Duration::from_secs(1));
        d.set(start + Duration::from_secs(5));
        d.passed().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(5),
            "moved later: fires then"
        );
        d.set(Instant::now() + Duration::from_secs(2));
        d.passed().await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
        let now = Instant::now();
        d.set(now + Duration::from_secs(60));
        d.set(now + Duration::from_secs(1));
        d.passed().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(8),
            "moved earlier: fires earlier"
        );
    }
}
