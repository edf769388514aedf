//! Polls and state transitions per job for a few job durations, with the default schedule and
//! with fixed 60-second polling for comparison: `cargo run -p poller --example tracking-cost`.

use poller::schedule::PollSchedule;

fn main() {
    let default = PollSchedule::default();
    let fixed = PollSchedule {
        initial_wait_seconds: 60,
        backoff_rate: 1.0,
        max_wait_seconds: 60,
    };
    println!(
        "schedule: {} s × {} up to {} s",
        default.initial_wait_seconds, default.backoff_rate, default.max_wait_seconds
    );
    println!(
        "{:>9}  {:>6} {:>12} {:>16}   {:>13} {:>18}",
        "job", "polls", "transitions", "noticed after", "fixed 60 s: polls", "transitions"
    );
    for (name, seconds) in [("5 min", 300), ("1 h", 3_600), ("6 h", 21_600)] {
        let run = default.follow(seconds);
        let baseline = fixed.follow(seconds);
        println!(
            "{name:>9}  {:>6} {:>12} {:>14} s   {:>13} {:>18}",
            run.polls, run.transitions, run.noticed_after_end, baseline.polls, baseline.transitions
        );
    }
}
