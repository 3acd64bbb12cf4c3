//! The per-upstream health state machine, pure (no I/O, no clock reads): evidence in,
//! transitions out. Hysteresis keeps one lost packet from flipping the store offline and a
//! flapping link from flapping the registers' banner.
//!
//! Rules:
//! - `Bad` twice in a row takes `online` to `degraded`; three times in a row to `offline`;
//! - `Slow` (answered, but late, or only some targets answered) twice in a row takes `online`
//!   to `degraded`, and takes `offline` to `degraded` at once (it is reachable again);
//! - `Good` twice in a row takes `degraded` or `offline` back to `online`;
//! - alternating good and bad never has two of a kind in a row, so the state does not move;
//! - the first evidence after start decides at once (there is no history to smooth);
//! - a real call's connection failure or success ([`Tracker::passive`]) moves at once.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Online,
    Degraded,
    Offline,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Online => "online",
            Health::Degraded => "degraded",
            Health::Offline => "offline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    Good,
    Slow,
    Bad,
}

pub const BAD_TO_DEGRADE: u32 = 2;
pub const BAD_TO_OFFLINE: u32 = 3;
pub const SLOW_TO_DEGRADE: u32 = 2;
pub const GOOD_TO_RECOVER: u32 = 2;

#[derive(Debug, Clone)]
pub struct Tracker {
    health: Health,
    observed: bool,
    good: u32,
    slow: u32,
    bad: u32,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    /// Starts `offline` and unobserved: until a check answers, nothing is assumed reachable.
    pub fn new() -> Tracker {
        Tracker {
            health: Health::Offline,
            observed: false,
            good: 0,
            slow: 0,
            bad: 0,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Feeds one probe result; returns the new health if it changed.
    pub fn observe(&mut self, e: Evidence) -> Option<Health> {
        let before = self.health;
        match e {
            Evidence::Good => {
                (self.good, self.slow, self.bad) = (self.good + 1, 0, 0);
            }
            Evidence::Slow => {
                (self.good, self.slow, self.bad) = (0, self.slow + 1, 0);
            }
            Evidence::Bad => {
                (self.good, self.slow, self.bad) = (0, 0, self.bad + 1);
            }
        }
        self.health = if !self.observed {
            match e {
                Evidence::Good => Health::Online,
                Evidence::Slow => Health::Degraded,
                Evidence::Bad => Health::Offline,
            }
        } else {
            match (self.health, e) {
                (Health::Online, Evidence::Bad) if self.bad >= BAD_TO_OFFLINE => Health::Offline,
                (Health::Online, Evidence::Bad) if self.bad >= BAD_TO_DEGRADE => Health::Degraded,
                (Health::Online, Evidence::Slow) if self.slow >= SLOW_TO_DEGRADE => {
                    Health::Degraded
                }
                (Health::Degraded, Evidence::Bad) if self.bad >= BAD_TO_OFFLINE => Health::Offline,
                (Health::Offline, Evidence::Slow) => Health::Degraded,
                (Health::Degraded | Health::Offline, Evidence::Good)
                    if self.good >= GOOD_TO_RECOVER =>
                {
                    Health::Online
                }
                (h, _) => h,
            }
        };
        self.observed = true;
        (self.health != before).then_some(self.health)
    }

    /// A real request's outcome: `reachable = false` (could not connect) marks the upstream
    /// offline at once; `true` (it answered) marks it online at once.
    pub fn passive(&mut self, reachable: bool) -> Option<Health> {
        let before = self.health;
        self.observed = true;
        if reachable {
            (self.good, self.slow, self.bad) = (GOOD_TO_RECOVER, 0, 0);
            self.health = Health::Online;
        } else {
            (self.good, self.slow, self.bad) = (0, 0, BAD_TO_OFFLINE);
            self.health = Health::Offline;
        }
        (self.health != before).then_some(self.health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Evidence::*;

    fn run(seq: &[Evidence]) -> Vec<Health> {
        let mut t = Tracker::new();
        seq.iter()
            .map(|e| {
                t.observe(*e);
                t.health()
            })
            .collect()
    }

    #[test]
    fn the_first_answer_decides_at_once() {
        assert_eq!(run(&[Good]), [Health::Online]);
        assert_eq!(run(&[Bad]), [Health::Offline]);
        assert_eq!(run(&[Slow]), [Health::Degraded]);
    }

    #[test]
    fn one_lost_check_does_not_take_the_store_offline() {
        assert_eq!(run(&[Good, Bad, Good]), [Health::Online; 3]);
    }

    #[test]
    fn repeated_failures_degrade_then_take_it_offline() {
        assert_eq!(
            run(&[Good, Bad, Bad, Bad]),
            [
                Health::Online,
                Health::Online,
                Health::Degraded,
                Health::Offline
            ]
        );
    }

    #[test]
    fn a_flapping_link_does_not_flap_the_state() {
        let flapping: Vec<Evidence> = (0..20)
            .map(|i| if i % 2 == 0 { Good } else { Bad })
            .collect();
        assert!(run(&flapping).iter().all(|h| *h == Health::Online));
        let mut from_offline = vec![Bad];
        from_offline.extend((0..20).map(|i| if i % 2 == 0 { Good } else { Bad }));
        assert!(run(&from_offline).iter().all(|h| *h == Health::Offline));
    }

    #[test]
    fn recovery_needs_two_good_checks_in_a_row() {
        assert_eq!(
            run(&[Bad, Good, Good]),
            [Health::Offline, Health::Offline, Health::Online]
        );
    }

    #[test]
    fn slow_answers_degrade_but_do_not_take_it_offline() {
        let seq = [Good, Slow, Slow, Slow, Slow];
        assert_eq!(*run(&seq).last().unwrap(), Health::Degraded);
        assert_eq!(run(&[Bad, Slow]), [Health::Offline, Health::Degraded]);
    }

    #[test]
    fn a_real_call_moves_the_state_at_once_both_ways() {
        let mut t = Tracker::new();
        t.observe(Good);
        assert_eq!(t.passive(false), Some(Health::Offline));
        assert_eq!(t.passive(true), Some(Health::Online));
        assert_eq!(t.passive(true), None);
        // After a passive success, one bad probe alone does not undo it.
        assert_eq!(t.observe(Bad), None);
    }
}
