//! How long the workflow waits before each poll: short at first (most jobs that fail, fail fast;
//! small jobs end in minutes), growing geometrically to a cap (long jobs are polled at the cap).
//! The poller computes the wait and the workflow's `Wait` state reads it (`SecondsPath`), so the
//! schedule is one pure function with a test, not arithmetic in ASL.
//!
//! Cost: a poll is three state transitions (Wait, Poll, Choice). Defaults 15 s × 4 up to 300 s:
//! waits 15, 60, 240, 300, 300, …, so a one-hour job costs 14 polls (45 transitions with the
//! Start, first Choice and Finish), where doubling from 15 s would cost 16 and fixed 60-second
//! polling 60. A finished job is noticed at most one wait (≤ the cap) after it ends.

use healthimport::config::{self, ConfigError, Env};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSchedule {
    pub initial_wait_seconds: u64,
    /// Each wait is this many times the previous one, up to the cap.
    pub backoff_rate: f64,
    pub max_wait_seconds: u64,
}

impl Default for PollSchedule {
    fn default() -> Self {
        PollSchedule {
            initial_wait_seconds: 15,
            backoff_rate: 4.0,
            max_wait_seconds: 300,
        }
    }
}

impl PollSchedule {
    /// `POLL_INITIAL_WAIT_SECONDS`, `POLL_BACKOFF_RATE`, `POLL_MAX_WAIT_SECONDS`, each optional.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let defaults = PollSchedule::default();
        let schedule = PollSchedule {
            initial_wait_seconds: config::parsed_or(
                env,
                "POLL_INITIAL_WAIT_SECONDS",
                defaults.initial_wait_seconds,
            )?,
            backoff_rate: config::parsed_or(env, "POLL_BACKOFF_RATE", defaults.backoff_rate)?,
            max_wait_seconds: config::parsed_or(
                env,
                "POLL_MAX_WAIT_SECONDS",
                defaults.max_wait_seconds,
            )?,
        };
        let invalid = |name: &str, reason: &str| ConfigError::Invalid {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        if schedule.initial_wait_seconds == 0 {
            return Err(invalid("POLL_INITIAL_WAIT_SECONDS", "must be at least 1"));
        }
        if !(1.0..=10.0).contains(&schedule.backoff_rate) {
            return Err(invalid("POLL_BACKOFF_RATE", "must be between 1 and 10"));
        }
        // A Wait state accepts up to a year; a day is far beyond any useful poll interval.
        if !(schedule.initial_wait_seconds..=86_400).contains(&schedule.max_wait_seconds) {
            return Err(invalid(
                "POLL_MAX_WAIT_SECONDS",
                "must be between POLL_INITIAL_WAIT_SECONDS and 86400",
            ));
        }
        Ok(schedule)
    }

    /// The wait before the next poll, once `polls` polls have been made.
    pub fn wait_after(&self, polls: u32) -> u64 {
        let cap = self.max_wait_seconds as f64;
        let grown = self.initial_wait_seconds as f64 * self.backoff_rate.powi(polls.min(64) as i32);
        // `min` first: a large exponent gives infinity, which the cap absorbs.
        grown.min(cap).max(1.0) as u64
    }
}

/// What following one job costs with a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub polls: u32,
    /// State transitions of the execution (what Step Functions Standard bills).
    pub transitions: u32,
    /// How long after the job's end the workflow noticed it, in seconds.
    pub noticed_after_end: u64,
}

impl PollSchedule {
    /// What following a job of `duration` seconds costs: the workflow starts with the job
    /// (Start, Choice), then Wait → Poll → Choice until a poll sees it finished, then Finish.
    pub fn follow(&self, duration: u64) -> Run {
        let mut elapsed = 0;
        let mut polls = 0;
        loop {
            elapsed += self.wait_after(polls);
            polls += 1;
            if elapsed >= duration {
                return Run {
                    polls,
                    transitions: 2 + 3 * polls + 1,
                    noticed_after_end: elapsed - duration,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(schedule: &PollSchedule, duration: u64) -> Run {
        schedule.follow(duration)
    }

    #[test]
    fn waits_start_short_and_grow_to_the_cap() {
        let s = PollSchedule::default();
        let waits: Vec<_> = (0..6).map(|n| s.wait_after(n)).collect();
        assert_eq!(waits, vec![15, 60, 240, 300, 300, 300]);
        assert_eq!(
            s.wait_after(u32::MAX),
            300,
            "no overflow on a very long job"
        );
        let doubling = PollSchedule {
            backoff_rate: 2.0,
            ..s
        };
        let waits: Vec<_> = (0..7).map(|n| doubling.wait_after(n)).collect();
        assert_eq!(waits, vec![15, 30, 60, 120, 240, 300, 300]);
    }

    #[test]
    fn polls_and_transitions_for_five_minutes_one_hour_and_six_hours() {
        let s = PollSchedule::default();
        let runs: Vec<_> = [300, 3_600, 21_600].map(|d| follow(&s, d)).into();
        assert_eq!(
            runs,
            vec![
                Run {
                    polls: 3,
                    transitions: 12,
                    noticed_after_end: 15
                },
                Run {
                    polls: 14,
                    transitions: 45,
                    noticed_after_end: 15
                },
                Run {
                    polls: 74,
                    transitions: 225,
                    noticed_after_end: 15
                },
            ]
        );
        // The target: a one-hour job costs at most 15 polls and 45 transitions, where fixed
        // 60-second polling costs 60 polls (180 transitions in the loop alone).
        assert!(runs[1].polls <= 15 && runs[1].transitions <= 45);
        let fixed = PollSchedule {
            initial_wait_seconds: 60,
            backoff_rate: 1.0,
            max_wait_seconds: 60,
        };
        assert_eq!(follow(&fixed, 3_600).polls, 60);
        // Doubling from 15 s, the example, misses the target by one poll.
        let doubling = PollSchedule {
            backoff_rate: 2.0,
            ..s
        };
        assert_eq!(follow(&doubling, 3_600).polls, 16);
    }

    #[test]
    fn every_job_is_noticed_within_ten_percent_of_its_run_time_or_the_cap() {
        let s = PollSchedule::default();
        for duration in 1..=21_600u64 {
            let run = follow(&s, duration);
            let allowed = (duration / 10).max(s.max_wait_seconds);
            assert!(
                run.noticed_after_end <= allowed,
                "a {duration} s job was noticed {} s late",
                run.noticed_after_end
            );
        }
        // Around the hour mark the budget holds for jobs a little longer than an hour too.
        assert!(follow(&s, 3_615).polls <= 14);
        assert!(follow(&s, 3_700).polls <= 15);
    }

    #[test]
    fn schedule_comes_from_the_environment_and_is_checked() {
        assert_eq!(
            PollSchedule::from_env(&[("X", "")]).unwrap(),
            PollSchedule::default()
        );
        let env = [
            ("POLL_INITIAL_WAIT_SECONDS", "10"),
            ("POLL_BACKOFF_RATE", "2.5"),
            ("POLL_MAX_WAIT_SECONDS", "600"),
        ];
        let s = PollSchedule::from_env(&env).unwrap();
        assert_eq!(
            (s.wait_after(0), s.wait_after(1), s.wait_after(9)),
            (10, 25, 600)
        );
        for (name, value) in [
            ("POLL_INITIAL_WAIT_SECONDS", "0"),
            ("POLL_BACKOFF_RATE", "0.5"),
            ("POLL_BACKOFF_RATE", "NaN"),
            ("POLL_MAX_WAIT_SECONDS", "5"),
            ("POLL_MAX_WAIT_SECONDS", "soon"),
        ] {
            let err = PollSchedule::from_env(&[(name, value)]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name: n, .. } if n == name),
                "{name}={value}: {err}"
            );
        }
    }
}
