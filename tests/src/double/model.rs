//! The double's own throughput arithmetic, for benchmarks: how long a workload takes to drain
//! through the double when it is packed perfectly, under the same rules the double enforces
//! (job size limits, HealthLake's one lane per account, HealthImaging's start rate and running
//! cap, the "per-job overhead plus per-file time" run model). A measured drain time divided by
//! this one says how far a pipeline is from the best the double allows.
//!
//! Pure functions of a [`DoubleConfig`]: nothing runs and nothing waits.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::config::DoubleConfig;
use super::state::Service;

/// The fewest jobs that can carry `files` files totalling `bytes` bytes: enough for the
/// files-per-job limit and, for HealthImaging, the bytes-per-job limit (as if the bytes spread
/// evenly over the jobs; never more jobs than files). `None` when no number of jobs can (a limit
/// of zero).
pub fn jobs_needed(config: &DoubleConfig, service: Service, files: u64, bytes: u64) -> Option<u64> {
    if files == 0 {
        return Some(0);
    }
    let (max_files, max_bytes) = match service {
        Service::HealthLake => (config.healthlake_max_files_per_job, None),
        Service::Imaging => (
            config.imaging_max_files_per_job,
            Some(config.imaging_max_bytes_per_job),
        ),
    };
    let max_files = u64::try_from(max_files).unwrap_or(u64::MAX);
    if max_files == 0 {
        return None;
    }
    let by_files = files.div_ceil(max_files);
    let by_bytes = match max_bytes {
        Some(0) if bytes > 0 => return None,
        Some(max_bytes) if max_bytes > 0 => bytes.div_ceil(max_bytes).min(files),
        _ => 0,
    };
    Some(by_files.max(by_bytes))
}

/// The ideal drain time of `files` files through `service` (sizes not counted): see
/// [`ideal_drain_with_bytes`].
pub fn ideal_drain(config: &DoubleConfig, service: Service, files: u64) -> Duration {
    ideal_drain_with_bytes(config, service, files, 0)
}

/// The double's own time, from the first start call to the last job's end, to import `files`
/// files totalling `bytes` bytes into one data store, perfectly packed: the fewest jobs
/// ([`jobs_needed`]), the files spread evenly over them, each started at the earliest moment the
/// double would accept it. `Duration::MAX` when the double can never finish (a limit, a running
/// cap or, beyond the burst, a start rate of zero).
///
/// - HealthLake: one job runs at a time per account, the rest wait in the queue. A queued job
///   whose submit delay has already passed goes IN_PROGRESS the moment the lane frees, so only
///   the first job's submit delay is on the critical path:
///   `submit_delay + Σ (run_overhead + per_file * files_in_job)`
///   `= submit_delay + jobs * run_overhead + per_file * files`. (Submitting each job only when
///   the previous one ends would pay `submit_delay` once per job.) This assumes the queue is
///   kept topped up, which the queue limit allows.
/// - HealthImaging: jobs start as fast as the StartDICOMImportJob token bucket allows (full at
///   the start), at most `imaging_max_running_jobs_per_datastore` unfinished at once (a job holds
///   its slot from its start, SUBMITTED included, to its end); each takes
///   `submit_delay + run_overhead + per_file * files_in_job`. The drain ends when the last one
///   does.
///
/// The manifest delay is not counted: the job has ended when its status says so.
pub fn ideal_drain_with_bytes(
    config: &DoubleConfig,
    service: Service,
    files: u64,
    bytes: u64,
) -> Duration {
    let Some(jobs) = jobs_needed(config, service, files, bytes) else {
        return Duration::MAX;
    };
    if jobs == 0 {
        return Duration::ZERO;
    }
    let timings = config.timings(service);
    match service {
        Service::HealthLake => {
            let overheads = u32::try_from(jobs)
                .ok()
                .and_then(|jobs| timings.run_overhead.checked_mul(jobs));
            let Some(overheads) = overheads else {
                return Duration::MAX;
            };
            // run_time(files) is run_overhead + per_file * files: one overhead is in it.
            let all_files = timings.run_time(files).saturating_sub(timings.run_overhead);
            timings
                .submit_delay
                .saturating_add(overheads)
                .saturating_add(all_files)
        }
        Service::Imaging => imaging_drain(config, jobs, files),
    }
}

/// Simulates HealthImaging's start path for `jobs` jobs sharing `files` files.
fn imaging_drain(config: &DoubleConfig, jobs: u64, files: u64) -> Duration {
    let timings = &config.imaging;
    let cap = config.imaging_max_running_jobs_per_datastore;
    let rate = config.imaging_start_rate_per_second;
    let burst = f64::from(config.imaging_start_burst);
    if cap == 0 || burst < 1.0 {
        return Duration::MAX;
    }
    let (base, extra) = (files / jobs, files % jobs);
    let mut tokens = burst;
    let mut refilled_at = Duration::ZERO;
    let mut next_start = Duration::ZERO;
    // End times of the jobs that still hold a running slot, earliest first.
    let mut running: BinaryHeap<Reverse<Duration>> = BinaryHeap::new();
    let mut drained = Duration::ZERO;
    for job in 0..jobs {
        // The running cap: wait for the earliest end when every slot is taken.
        while running
            .peek()
            .is_some_and(|Reverse(end)| *end <= next_start)
        {
            running.pop();
        }
        if running.len() >= cap {
            if let Some(Reverse(end)) = running.pop() {
                next_start = next_start.max(end);
            }
        }
        // The token bucket.
        let earned = next_start.saturating_sub(refilled_at).as_secs_f64() * rate;
        tokens = (tokens + earned).min(burst);
        refilled_at = next_start;
        if tokens < 1.0 {
            if rate <= 0.0 {
                return Duration::MAX;
            }
            let Ok(wait) = Duration::try_from_secs_f64((1.0 - tokens) / rate) else {
                return Duration::MAX;
            };
            next_start = next_start.saturating_add(wait);
            refilled_at = next_start;
            tokens = 1.0;
        }
        tokens -= 1.0;
        let files_in_job = base + u64::from(job < extra);
        let end = next_start
            .saturating_add(timings.submit_delay)
            .saturating_add(timings.run_time(files_in_job));
        running.push(Reverse(end));
        drained = drained.max(end);
    }
    drained
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::double::JobTimings;

    fn timings(per_file_ms: u64) -> JobTimings {
        JobTimings {
            submit_delay: Duration::from_millis(50),
            run_overhead: Duration::from_millis(300),
            per_file: Duration::from_millis(per_file_ms),
            manifest_delay: Duration::from_secs(7),
        }
    }

    fn config() -> DoubleConfig {
        DoubleConfig {
            healthlake: timings(1),
            imaging: timings(0),
            ..DoubleConfig::default()
        }
    }

    #[test]
    fn nothing_drains_at_once() {
        for service in [Service::HealthLake, Service::Imaging] {
            assert_eq!(ideal_drain(&config(), service, 0), Duration::ZERO);
        }
    }

    #[test]
    fn healthlake_runs_its_jobs_one_after_another_paying_one_submit_delay() {
        let config = config();
        let ms = Duration::from_millis;
        assert_eq!(
            ideal_drain(&config, Service::HealthLake, 1),
            ms(50 + 300 + 1)
        );
        assert_eq!(
            ideal_drain(&config, Service::HealthLake, 10_000),
            ms(50 + 300 + 10_000),
            "10,000 files fit in one job"
        );
        assert_eq!(
            ideal_drain(&config, Service::HealthLake, 25_000),
            ms(50 + 3 * 300 + 25_000),
            "three jobs, one overhead each"
        );
        // Bytes do not limit a HealthLake job in the double.
        assert_eq!(
            ideal_drain_with_bytes(&config, Service::HealthLake, 1, u64::MAX),
            ms(351)
        );
    }

    #[test]
    fn healthlake_drain_grows_with_the_jobs_overhead() {
        let mut config = config();
        config.healthlake_max_files_per_job = 1;
        assert_eq!(
            ideal_drain(&config, Service::HealthLake, 4),
            Duration::from_millis(50 + 4 * (300 + 1)),
            "one file a job: every job pays the overhead"
        );
    }

    #[test]
    fn imaging_starts_at_the_start_rate_and_runs_in_parallel() {
        let config = config();
        // 5 jobs of 5,000 files; burst 2 at t=0, then 1 a second: starts at 0, 0, 1, 2, 3 s.
        assert_eq!(jobs_needed(&config, Service::Imaging, 25_000, 0), Some(5));
        assert_eq!(
            ideal_drain(&config, Service::Imaging, 25_000),
            Duration::from_millis(3_000 + 50 + 300)
        );
        // A quarter of the start rate (one translation of the throttling page).
        let slow = DoubleConfig {
            imaging_start_rate_per_second: 0.25,
            ..config.clone()
        };
        assert_eq!(
            ideal_drain(&slow, Service::Imaging, 25_000),
            Duration::from_millis(12_000 + 50 + 300)
        );
    }

    #[test]
    fn imaging_waits_for_a_running_slot_at_the_cap() {
        let config = DoubleConfig {
            imaging_start_rate_per_second: 1000.0,
            imaging_start_burst: 100,
            imaging_max_running_jobs_per_datastore: 2,
            imaging_max_files_per_job: 1,
            ..config()
        };
        // Four one-file jobs, two at a time: 350 ms each.
        assert_eq!(
            ideal_drain(&config, Service::Imaging, 4),
            Duration::from_millis(700)
        );
    }

    #[test]
    fn imaging_jobs_are_bounded_by_bytes_as_well_as_files() {
        let config = config();
        let gb = 1_000_000_000;
        assert_eq!(
            jobs_needed(&config, Service::Imaging, 100, 25 * gb),
            Some(3)
        );
        assert_eq!(
            jobs_needed(&config, Service::Imaging, 2, 25 * gb),
            Some(2),
            "never more jobs than files"
        );
        assert_eq!(
            jobs_needed(&config, Service::Imaging, 6_000, 5 * gb),
            Some(2)
        );
        // Three jobs by bytes: starts at 0, 0, 1 s.
        assert_eq!(
            ideal_drain_with_bytes(&config, Service::Imaging, 100, 25 * gb),
            Duration::from_millis(1_000 + 50 + 300)
        );
    }

    #[test]
    fn impossible_workloads_never_drain() {
        let no_rate = DoubleConfig {
            imaging_start_rate_per_second: 0.0,
            imaging_max_files_per_job: 1,
            ..config()
        };
        assert_eq!(
            ideal_drain(&no_rate, Service::Imaging, 2),
            Duration::from_millis(350),
            "the burst alone"
        );
        assert_eq!(ideal_drain(&no_rate, Service::Imaging, 3), Duration::MAX);
        let no_files = DoubleConfig {
            healthlake_max_files_per_job: 0,
            ..config()
        };
        assert_eq!(
            ideal_drain(&no_files, Service::HealthLake, 1),
            Duration::MAX
        );
        let no_bytes = DoubleConfig {
            imaging_max_bytes_per_job: 0,
            ..config()
        };
        assert_eq!(
            ideal_drain_with_bytes(&no_bytes, Service::Imaging, 1, 1),
            Duration::MAX
        );
    }

    #[test]
    fn run_time_is_overhead_plus_per_file() {
        let timings = timings(2);
        assert_eq!(timings.run_time(0), Duration::from_millis(300));
        assert_eq!(timings.run_time(10), Duration::from_millis(320));
        let huge = JobTimings {
            per_file: Duration::from_secs(u64::MAX / 2),
            ..timings
        };
        assert_eq!(huge.run_time(u64::MAX), Duration::MAX, "saturates");
    }
}
