//! The statuses a job can be in, the services and kinds of job, and which way a status may move.
//! Pure. The DynamoDB adapter turns the transition rules into conditional writes, so the rules
//! here are the ones the table enforces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The AWS service a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    /// Amazon HealthLake (FHIR R4 NDJSON).
    #[serde(rename = "HEALTHLAKE")]
    HealthLake,
    /// AWS HealthImaging (DICOM P10).
    #[serde(rename = "HEALTHIMAGING")]
    HealthImaging,
}

/// `as_str`, the name a fieldless enum is stored and sent under (the same as its serde name), and
/// `Display` as that name.
macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_names!(Service {
    HealthLake => "HEALTHLAKE",
    HealthImaging => "HEALTHIMAGING",
});

/// What a job does at its service. Both kinds share the record, statuses, workflow and event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobKind {
    /// An upload imported into a data store (HealthLake or HealthImaging).
    #[default]
    Import,
    /// A HealthLake data store exported to S3 (`StartFHIRExportJob`).
    Export,
}

wire_names!(JobKind {
    Import => "IMPORT",
    Export => "EXPORT",
});

/// Every status a job record can hold: the union of both services' documented job statuses, plus
/// our own `Open` (a batch still taking files), `Batched` (an upload waiting for its batch's job to
/// end; the batch record holds the job), `Pending` (recorded, not started yet), `StartFailed` (the service refused the start for
/// good), `Skipped` (the upload is not importable; the record says why) and `TrackingStopped`
/// (nothing follows the job any more; the record says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// A batch that still takes files; it closes on its marker, when quiet, at its maximum wait
    /// or at a per-job limit, and then becomes `Pending`.
    Open,
    /// An upload in a batch whose job has not ended; it then gets its own result.
    Batched,
    Pending,
    Submitted,
    /// HealthLake only: waiting behind the data store's one running import.
    Queued,
    InProgress,
    /// HealthLake only.
    CancelSubmitted,
    /// HealthLake only.
    CancelInProgress,
    Completed,
    /// HealthLake only. HealthImaging reports per-file failures only in its output manifest.
    CompletedWithErrors,
    Failed,
    /// HealthLake only.
    CancelCompleted,
    /// HealthLake only.
    CancelFailed,
    StartFailed,
    Skipped,
    /// Nothing follows the job any more: its tracking gave up (its deadline passed, the service
    /// no longer knows the job, or the workflow failed). Terminal, so that no record looks alive
    /// when nothing is tracking it; the message says why.
    TrackingStopped,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {service} job status {status:?}")]
pub struct UnknownStatus {
    pub service: &'static str,
    pub status: String,
}

impl JobStatus {
    pub const ALL: [JobStatus; 16] = [
        JobStatus::Open,
        JobStatus::Batched,
        JobStatus::Pending,
        JobStatus::Submitted,
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::CancelSubmitted,
        JobStatus::CancelInProgress,
        JobStatus::Completed,
        JobStatus::CompletedWithErrors,
        JobStatus::Failed,
        JobStatus::CancelCompleted,
        JobStatus::CancelFailed,
        JobStatus::StartFailed,
        JobStatus::Skipped,
        JobStatus::TrackingStopped,
    ];

    /// Maps a status string reported by `service` (`DescribeFHIRImportJob` /
    /// `GetDICOMImportJob`). Only the statuses that service documents are accepted: a HealthImaging
    /// job reported as `QUEUED` is an unknown status, not a silent guess.
    pub fn from_service(service: Service, status: &str) -> Result<JobStatus, UnknownStatus> {
        use JobStatus::*;
        let documented: &[JobStatus] = match service {
            Service::HealthLake => &[
                Submitted,
                Queued,
                InProgress,
                CompletedWithErrors,
                Completed,
                Failed,
                CancelSubmitted,
                CancelInProgress,
                CancelCompleted,
                CancelFailed,
            ],
            Service::HealthImaging => &[Submitted, InProgress, Completed, Failed],
        };
        documented
            .iter()
            .copied()
            .find(|s| s.as_str() == status)
            .ok_or_else(|| UnknownStatus {
                service: service.as_str(),
                status: status.to_owned(),
            })
    }

    /// A terminal status is final: no write may move a job out of it.
    pub fn is_terminal(self) -> bool {
        self.stage() == Stage::Terminal
    }

    /// Whether a record in `self` may be moved to `next`.
    ///
    /// Status only moves forward through the stages Pending → Submitted → Queued → InProgress →
    /// Cancel* → terminal; a stage may be skipped (a first poll can already see a finished job).
    /// A non-terminal status may be re-written with itself so that a poll can store fresh progress
    /// counters; a terminal status cannot, so a repeated or late poll changes nothing.
    /// `StartFailed` is reachable only before the service accepted a job (`Open`, `Batched`,
    /// `Pending`), and `Skipped` only at creation.
    pub fn can_transition_to(self, next: JobStatus) -> bool {
        if self.is_terminal() {
            return false;
        }
        match next {
            JobStatus::Skipped => false,
            JobStatus::StartFailed => self.stage() <= Stage::Recorded,
            _ if next == self => true,
            _ => next.stage() > self.stage(),
        }
    }

    /// The statuses from which `next` may be reached: the condition of the store's conditional
    /// write. Empty when nothing may move to `next`.
    pub fn allowed_predecessors(next: JobStatus) -> Vec<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .filter(|from| from.can_transition_to(next))
            .collect()
    }

    /// Whether the job ended with everything imported. `Completed` of a job whose manifest lists
    /// failed files is still recorded as `Completed`; callers check [`Job::has_failures`].
    pub fn is_success(self) -> bool {
        self == JobStatus::Completed
    }

    fn stage(self) -> Stage {
        match self {
            JobStatus::Open | JobStatus::Batched => Stage::Collecting,
            JobStatus::Pending => Stage::Recorded,
            JobStatus::Submitted => Stage::Submitted,
            JobStatus::Queued => Stage::Queued,
            JobStatus::InProgress => Stage::Running,
            JobStatus::CancelSubmitted => Stage::CancelRequested,
            JobStatus::CancelInProgress => Stage::Cancelling,
            JobStatus::Completed
            | JobStatus::CompletedWithErrors
            | JobStatus::Failed
            | JobStatus::CancelCompleted
            | JobStatus::CancelFailed
            | JobStatus::StartFailed
            | JobStatus::Skipped
            | JobStatus::TrackingStopped => Stage::Terminal,
        }
    }
}

/// The order in which statuses may follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Collecting,
    Recorded,
    Submitted,
    Queued,
    Running,
    CancelRequested,
    Cancelling,
    Terminal,
}

wire_names!(JobStatus {
    Open => "OPEN",
    Batched => "BATCHED",
    Pending => "PENDING",
    Submitted => "SUBMITTED",
    Queued => "QUEUED",
    InProgress => "IN_PROGRESS",
    CancelSubmitted => "CANCEL_SUBMITTED",
    CancelInProgress => "CANCEL_IN_PROGRESS",
    Completed => "COMPLETED",
    CompletedWithErrors => "COMPLETED_WITH_ERRORS",
    Failed => "FAILED",
    CancelCompleted => "CANCEL_COMPLETED",
    CancelFailed => "CANCEL_FAILED",
    StartFailed => "START_FAILED",
    Skipped => "SKIPPED",
    TrackingStopped => "TRACKING_STOPPED",
});

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    /// Parses our own record's status (any of [`JobStatus::ALL`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus {
                service: "healthimport",
                status: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("RUNNING".parse::<JobStatus>().is_err());
    }

    #[test]
    fn every_documented_healthlake_status_maps() {
        for name in [
            "SUBMITTED",
            "QUEUED",
            "IN_PROGRESS",
            "COMPLETED_WITH_ERRORS",
            "COMPLETED",
            "FAILED",
            "CANCEL_SUBMITTED",
            "CANCEL_IN_PROGRESS",
            "CANCEL_COMPLETED",
            "CANCEL_FAILED",
        ] {
            let status = JobStatus::from_service(Service::HealthLake, name).unwrap();
            assert_eq!(status.as_str(), name);
        }
    }

    #[test]
    fn healthimaging_statuses_map_and_foreign_ones_are_refused() {
        for name in ["SUBMITTED", "IN_PROGRESS", "COMPLETED", "FAILED"] {
            assert_eq!(
                JobStatus::from_service(Service::HealthImaging, name)
                    .unwrap()
                    .as_str(),
                name
            );
        }
        for foreign in ["QUEUED", "COMPLETED_WITH_ERRORS", "PENDING", "SKIPPED", ""] {
            let err = JobStatus::from_service(Service::HealthImaging, foreign).unwrap_err();
            assert_eq!(err.status, foreign);
        }
        // Our own statuses are never something a service reports.
        for ours in [
            "OPEN",
            "BATCHED",
            "PENDING",
            "START_FAILED",
            "SKIPPED",
            "TRACKING_STOPPED",
        ] {
            assert!(JobStatus::from_service(Service::HealthLake, ours).is_err());
        }
    }

    #[test]
    fn terminal_statuses_are_exactly_the_documented_ends_plus_ours() {
        let terminal: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        let documented = [
            Completed,
            CompletedWithErrors,
            Failed,
            CancelCompleted,
            CancelFailed,
        ];
        let ours = [StartFailed, Skipped, TrackingStopped];
        assert_eq!(terminal, [documented.as_slice(), &ours].concat());
    }

    #[test]
    fn status_only_moves_forward() {
        assert!(Pending.can_transition_to(Submitted));
        assert!(Pending.can_transition_to(InProgress));
        assert!(Pending.can_transition_to(Completed));
        assert!(Submitted.can_transition_to(Queued));
        assert!(Queued.can_transition_to(InProgress));
        assert!(InProgress.can_transition_to(CompletedWithErrors));
        assert!(InProgress.can_transition_to(CancelSubmitted));
        assert!(CancelInProgress.can_transition_to(CancelCompleted));

        assert!(!InProgress.can_transition_to(Queued));
        assert!(!Queued.can_transition_to(Submitted));
        assert!(!Submitted.can_transition_to(Pending));
        assert!(!CancelSubmitted.can_transition_to(InProgress));
    }

    #[test]
    fn terminal_is_final_even_for_the_same_status() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn running_statuses_may_be_rewritten_for_progress() {
        for status in [Open, Batched, Pending, Submitted, Queued, InProgress] {
            assert!(status.can_transition_to(status));
        }
    }

    #[test]
    fn start_failed_only_from_pending_and_skipped_never() {
        assert_eq!(
            JobStatus::allowed_predecessors(StartFailed),
            vec![Open, Batched, Pending]
        );
        assert!(JobStatus::allowed_predecessors(Skipped).is_empty());
    }

    #[test]
    fn predecessors_of_completed_are_all_non_terminal_statuses() {
        assert_eq!(
            JobStatus::allowed_predecessors(Completed),
            vec![
                Open,
                Batched,
                Pending,
                Submitted,
                Queued,
                InProgress,
                CancelSubmitted,
                CancelInProgress
            ]
        );
        assert_eq!(
            JobStatus::allowed_predecessors(Queued),
            vec![Open, Batched, Pending, Submitted, Queued]
        );
        // A batch closes forward only; an upload never goes back to waiting.
        assert!(Open.can_transition_to(Pending));
        assert!(!Pending.can_transition_to(Open));
        assert!(!Completed.can_transition_to(Batched));
    }
}
