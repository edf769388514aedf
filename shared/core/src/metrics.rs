//! The pipeline's metrics, in CloudWatch Embedded Metric Format (EMF): each observation is one
//! JSON line on stdout, which Lambda ships to CloudWatch Logs, which extracts the metrics from it.
//! No `PutMetricData` call, no extra IAM, no latency on the request path.
//!
//! Every metric is a variant of [`Metric`], with its name, unit and dimension sets, so a name
//! exists once and the dashboard's test (tests/tests/dashboard.rs) can check the template against
//! [`Metric::ALL`]. What a function observed is an [`Observation`], whose dimension values are
//! `&'static str` drawn from closed sets (services, statuses, close and deny reasons): no upload
//! key, patient, token or id of a single upload can become a dimension, and CloudWatch's cost per
//! metric stays bounded.
//!
//! Handlers emit through the [`MetricsSink`] port; [`EmfLines`] writes the lines, a recording
//! fake (feature `fakes`) keeps them for tests.

use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::domain::batch::CloseReason;
use crate::domain::job::{JobStatus, Service, Timestamp};

/// The variable that names the namespace (the template sets it per stack).
pub const NAMESPACE_VARIABLE: &str = "METRICS_NAMESPACE";

/// One metric of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// An upload joined a batch (a redelivered event counts once).
    UploadsAdmitted,
    /// A batch closed and was staged, by its close reason.
    BatchesClosed,
    /// A job was accepted by its service.
    JobsStarted,
    /// A job ended and its Finished event was put, by service and final status.
    JobsFinished,
    /// Uploads of a finished batch the service imported.
    FilesImported,
    /// Uploads of a finished batch that were not imported (a failed file, or a failed job).
    FilesFailed,
    /// How long a closed batch has waited for its start, at each start attempt; its Maximum is
    /// the age of the oldest batch waiting to start.
    StartBacklogAge,
    /// From the service's end of a job (its event's time) to the end on our record.
    CompletionLatency,
    /// One token decision, by verdict and reason.
    TokenDecisions,
    /// How long one token decision took.
    TokenDecisionLatency,
}

/// A CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Milliseconds,
    Microseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Milliseconds => "Milliseconds",
            Unit::Microseconds => "Microseconds",
        }
    }
}

/// A dimension of ours. Its values are closed sets (see [`Observation::dimension`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// `HEALTHLAKE` or `HEALTHIMAGING`, as on the records and the Finished event.
    Service,
    /// A terminal job status (`COMPLETED`, `FAILED`, `START_FAILED`, ...).
    Status,
    /// A batch's close reason (`MARKER`, `QUIET`, ...) or a token's deny reason (`expired`, ...;
    /// `none` when allowed).
    Reason,
    /// `allow` or `deny`.
    Decision,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [
        Dimension::Service,
        Dimension::Status,
        Dimension::Reason,
        Dimension::Decision,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Service => "Service",
            Dimension::Status => "Status",
            Dimension::Reason => "Reason",
            Dimension::Decision => "Decision",
        }
    }
}

use Dimension::{Decision, Reason, Service as ServiceDim, Status};

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::UploadsAdmitted,
        Metric::BatchesClosed,
        Metric::JobsStarted,
        Metric::JobsFinished,
        Metric::FilesImported,
        Metric::FilesFailed,
        Metric::StartBacklogAge,
        Metric::CompletionLatency,
        Metric::TokenDecisions,
        Metric::TokenDecisionLatency,
    ];

    /// Its name in CloudWatch.
    pub fn name(self) -> &'static str {
        match self {
            Metric::UploadsAdmitted => "UploadsAdmitted",
            Metric::BatchesClosed => "BatchesClosed",
            Metric::JobsStarted => "JobsStarted",
            Metric::JobsFinished => "JobsFinished",
            Metric::FilesImported => "FilesImported",
            Metric::FilesFailed => "FilesFailed",
            Metric::StartBacklogAge => "StartBacklogAge",
            Metric::CompletionLatency => "CompletionLatency",
            Metric::TokenDecisions => "TokenDecisions",
            Metric::TokenDecisionLatency => "TokenDecisionLatency",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::StartBacklogAge => Unit::Seconds,
            Metric::CompletionLatency => Unit::Milliseconds,
            Metric::TokenDecisionLatency => Unit::Microseconds,
            _ => Unit::Count,
        }
    }

    /// The dimension sets CloudWatch publishes it under: its full breakdown first, then coarser
    /// ones. The empty set is the all-up total, which alarms need (an alarm cannot SEARCH).
    pub fn dimension_sets(self) -> &'static [&'static [Dimension]] {
        match self {
            Metric::UploadsAdmitted
            | Metric::JobsStarted
            | Metric::FilesImported
            | Metric::FilesFailed
            | Metric::StartBacklogAge
            | Metric::CompletionLatency => &[&[ServiceDim], &[]],
            Metric::BatchesClosed => &[&[ServiceDim, Reason], &[Reason], &[]],
            Metric::JobsFinished => &[&[ServiceDim, Status], &[Status], &[]],
            Metric::TokenDecisions => &[&[Decision, Reason], &[Decision]],
            Metric::TokenDecisionLatency => &[&[Decision], &[]],
        }
    }

    /// Every dimension of its sets, once each, in their order.
    pub fn dimensions(self) -> Vec<Dimension> {
        let mut all = Vec::new();
        for dimension in self.dimension_sets().iter().flat_map(|set| set.iter()) {
            if !all.contains(dimension) {
                all.push(*dimension);
            }
        }
        all
    }
}

/// What a function observed: the metrics' values and the dimensions they are published under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    UploadAdmitted {
        service: Service,
    },
    BatchClosed {
        service: Service,
        reason: CloseReason,
    },
    JobStarted {
        service: Service,
    },
    JobFinished {
        service: Service,
        status: JobStatus,
    },
    /// The uploads of a finished batch, each with its own result now.
    FilesSettled {
        service: Service,
        imported: u64,
        failed: u64,
    },
    /// A start attempt of a batch (or export) closed `waited_seconds` ago.
    StartWaiting {
        service: Service,
        waited_seconds: u64,
    },
    /// A job's end recorded `latency_ms` after its service ended it.
    CompletionRecorded {
        service: Service,
        latency_ms: u64,
    },
    /// A token decision: `reason` is the deny reason's code (`none` when allowed).
    TokenDecision {
        allowed: bool,
        reason: &'static str,
        latency_us: u64,
    },
}

impl Observation {
    /// The metrics it reports and their values.
    pub fn values(&self) -> Vec<(Metric, u64)> {
        match *self {
            Observation::UploadAdmitted { .. } => vec![(Metric::UploadsAdmitted, 1)],
            Observation::BatchClosed { .. } => vec![(Metric::BatchesClosed, 1)],
            Observation::JobStarted { .. } => vec![(Metric::JobsStarted, 1)],
            Observation::JobFinished { .. } => vec![(Metric::JobsFinished, 1)],
            Observation::FilesSettled {
                imported, failed, ..
            } => vec![
                (Metric::FilesImported, imported),
                (Metric::FilesFailed, failed),
            ],
            Observation::StartWaiting { waited_seconds, .. } => {
                vec![(Metric::StartBacklogAge, waited_seconds)]
            }
            Observation::CompletionRecorded { latency_ms, .. } => {
                vec![(Metric::CompletionLatency, latency_ms)]
            }
            Observation::TokenDecision { latency_us, .. } => vec![
                (Metric::TokenDecisions, 1),
                (Metric::TokenDecisionLatency, latency_us),
            ],
        }
    }

    /// The value of `dimension` for this observation, if it has one.
    pub fn dimension(&self, dimension: Dimension) -> Option<&'static str> {
        match (self, dimension) {
            (
                Observation::UploadAdmitted { service }
                | Observation::BatchClosed { service, .. }
                | Observation::JobStarted { service }
                | Observation::JobFinished { service, .. }
                | Observation::FilesSettled { service, .. }
                | Observation::StartWaiting { service, .. }
                | Observation::CompletionRecorded { service, .. },
                Dimension::Service,
            ) => Some(service.as_str()),
            (Observation::BatchClosed { reason, .. }, Dimension::Reason) => Some(reason.as_str()),
            (Observation::JobFinished { status, .. }, Dimension::Status) => Some(status.as_str()),
            (Observation::TokenDecision { reason, .. }, Dimension::Reason) => Some(reason),
            (Observation::TokenDecision { allowed, .. }, Dimension::Decision) => {
                Some(if *allowed { "allow" } else { "deny" })
            }
            _ => None,
        }
    }
}

/// The CloudWatch namespace of our metrics (1 to 255 characters, not `AWS/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);

impl Default for Namespace {
    fn default() -> Self {
        Namespace("healthimport".to_owned())
    }
}

impl FromStr for Namespace {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 255 {
            return Err("a namespace has 1 to 255 characters".to_owned());
        }
        if s.starts_with("AWS/") {
            return Err("the AWS/ namespaces are AWS's own".to_owned());
        }
        Ok(Namespace(s.to_owned()))
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Namespace {
    /// `METRICS_NAMESPACE`, else `healthimport`.
    pub fn from_env(
        env: &impl crate::config::Env,
    ) -> Result<Namespace, crate::config::ConfigError> {
        crate::config::parsed_or(env, NAMESPACE_VARIABLE, Namespace::default())
    }
}

/// One EMF document for `observation` at `at_millis` (Unix milliseconds): `_aws` with one
/// directive per metric, then the dimensions' values, then the metrics' values.
pub fn render(namespace: &Namespace, at_millis: i64, observation: &Observation) -> String {
    let values = observation.values();
    let mut document = Map::new();
    let directives: Vec<Value> = values
        .iter()
        .map(|(metric, _)| {
            let sets: Vec<Vec<&str>> = metric
                .dimension_sets()
                .iter()
                .map(|set| set.iter().map(|d| d.name()).collect())
                .collect();
            json!({
                "Namespace": namespace.0,
                "Dimensions": sets,
                "Metrics": [{"Name": metric.name(), "Unit": metric.unit().as_str()}],
            })
        })
        .collect();
    document.insert(
        "_aws".to_owned(),
        json!({"Timestamp": at_millis, "CloudWatchMetrics": directives}),
    );
    for (metric, _) in &values {
        for dimension in metric.dimensions() {
            if let Some(value) = observation.dimension(dimension) {
                document.insert(dimension.name().to_owned(), Value::from(value));
            }
        }
    }
    for (metric, value) in values {
        document.insert(metric.name().to_owned(), Value::from(value));
    }
    Value::Object(document).to_string()
}

/// Where a handler reports what it observed. Emitting never fails the work it reports on.
pub trait MetricsSink: Send + Sync {
    fn emit(&self, observation: Observation);
}

impl<T: MetricsSink + ?Sized> MetricsSink for &T {
    fn emit(&self, observation: Observation) {
        (**self).emit(observation)
    }
}

/// Writes each observation as one EMF line: to stdout in a function, to a buffer in tests.
pub struct EmfLines<W> {
    namespace: Namespace,
    out: Mutex<W>,
}

impl EmfLines<std::io::Stdout> {
    /// The functions' sink: Lambda sends stdout to the function's log group.
    pub fn stdout(namespace: Namespace) -> Self {
        EmfLines::new(namespace, std::io::stdout())
    }
}

impl<W: Write> EmfLines<W> {
    pub fn new(namespace: Namespace, out: W) -> Self {
        EmfLines {
            namespace,
            out: Mutex::new(out),
        }
    }

    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl<W: Write + Send> MetricsSink for EmfLines<W> {
    fn emit(&self, observation: Observation) {
        let mut line = render(
            &self.namespace,
            Timestamp::now().unix_millis(),
            &observation,
        );
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // One write of the whole line, so a log line cannot land inside it. A lost metric must
        // not fail the work it counts.
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            tracing::warn!(error = %e, "metric line not written");
        }
    }
}

/// Whole seconds from `from` to `to`, 0 when `to` is earlier.
pub fn seconds_between(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from((to.datetime() - from.datetime()).whole_seconds()).unwrap_or(0)
}

/// Milliseconds from `from` to `to`, 0 when `to` is earlier (a clock ahead of ours).
pub fn millis_between(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from(to.unix_millis() - from.unix_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One observation of each kind: together they report every metric.
    fn one_of_each() -> Vec<Observation> {
        vec![
            Observation::UploadAdmitted {
                service: Service::HealthLake,
            },
            Observation::BatchClosed {
                service: Service::HealthImaging,
                reason: CloseReason::Quiet,
            },
            Observation::JobStarted {
                service: Service::HealthImaging,
            },
            Observation::JobFinished {
                service: Service::HealthLake,
                status: JobStatus::CompletedWithErrors,
            },
            Observation::FilesSettled {
                service: Service::HealthImaging,
                imported: 9,
                failed: 1,
            },
            Observation::StartWaiting {
                service: Service::HealthLake,
                waited_seconds: 42,
            },
            Observation::CompletionRecorded {
                service: Service::HealthImaging,
                latency_ms: 1500,
            },
            Observation::TokenDecision {
                allowed: false,
                reason: "expired",
                latency_us: 87,
            },
        ]
    }

    #[test]
    fn every_metric_is_reported_by_some_observation_with_all_its_dimensions() {
        let mut reported = Vec::new();
        for observation in one_of_each() {
            for (metric, _) in observation.values() {
                for dimension in metric.dimensions() {
                    assert!(
                        observation.dimension(dimension).is_some(),
                        "{observation:?} lacks {dimension:?} of {metric:?}"
                    );
                }
                reported.push(metric);
            }
        }
        for metric in Metric::ALL {
            assert!(reported.contains(&metric), "{metric:?} is never reported");
        }
    }

    #[test]
    fn names_are_unique_and_found_by_name() {
        for metric in Metric::ALL {
            assert_eq!(Metric::from_name(metric.name()), Some(metric));
        }
        assert_eq!(Metric::from_name("UploadKey"), None);
    }

    #[test]
    fn a_document_is_valid_emf_with_every_metric_value_and_dimension() {
        let namespace: Namespace = "healthimport/prod".parse().unwrap();
        for observation in one_of_each() {
            let line = render(&namespace, 1_764_000_000_123, &observation);
            assert!(!line.contains('\n'), "one line: {line}");
            let document: Value = serde_json::from_str(&line).unwrap();
            let aws = &document["_aws"];
            assert_eq!(aws["Timestamp"], 1_764_000_000_123_i64);
            let directives = aws["CloudWatchMetrics"].as_array().unwrap();
            let values = observation.values();
            assert_eq!(directives.len(), values.len(), "{line}");
            for (directive, (metric, value)) in directives.iter().zip(&values) {
                assert_eq!(directive["Namespace"], "healthimport/prod");
                assert_eq!(
                    directive["Metrics"],
                    json!([{"Name": metric.name(), "Unit": metric.unit().as_str()}])
                );
                let sets = directive["Dimensions"].as_array().unwrap();
                assert!(!sets.is_empty() && sets.len() <= 30);
                for set in sets {
                    for name in set.as_array().unwrap() {
                        let name = name.as_str().unwrap();
                        assert!(document[name].is_string(), "{name} has no value in {line}");
                    }
                }
                assert_eq!(document[metric.name()], json!(value), "{line}");
            }
        }
    }

    #[test]
    fn a_token_decision_is_counted_with_its_verdict_and_reason_and_timed() {
        let line = render(
            &Namespace::default(),
            0,
            &Observation::TokenDecision {
                allowed: true,
                reason: "none",
                latency_us: 250,
            },
        );
        let document: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(document["Decision"], "allow");
        assert_eq!(document["Reason"], "none");
        assert_eq!(document["TokenDecisions"], 1);
        assert_eq!(document["TokenDecisionLatency"], 250);
        assert_eq!(
            document["_aws"]["CloudWatchMetrics"][1]["Metrics"][0]["Unit"],
            "Microseconds"
        );
    }

    #[test]
    fn dimension_values_are_the_closed_sets_wire_names() {
        let finished = Observation::JobFinished {
            service: Service::HealthImaging,
            status: JobStatus::StartFailed,
        };
        assert_eq!(
            finished.dimension(Dimension::Service),
            Some("HEALTHIMAGING")
        );
        assert_eq!(finished.dimension(Dimension::Status), Some("START_FAILED"));
        assert_eq!(finished.dimension(Dimension::Reason), None);
        let closed = Observation::BatchClosed {
            service: Service::HealthLake,
            reason: CloseReason::MaxWait,
        };
        assert_eq!(
            closed.dimension(Dimension::Reason),
            Some(CloseReason::MaxWait.as_str())
        );
    }

    #[test]
    fn lines_are_written_whole_to_the_sink_s_writer() {
        let sink = EmfLines::new(Namespace::default(), Vec::new());
        sink.emit(Observation::JobStarted {
            service: Service::HealthLake,
        });
        sink.emit(Observation::UploadAdmitted {
            service: Service::HealthImaging,
        });
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["JobsStarted"], 1);
        assert_eq!(lines[1]["UploadsAdmitted"], 1);
        assert_eq!(lines[1]["Service"], "HEALTHIMAGING");
        assert_eq!(
            lines[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "healthimport"
        );
    }

    #[test]
    fn a_namespace_is_checked_and_defaults_to_healthimport() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            Namespace::from_env(&none).unwrap().to_string(),
            "healthimport"
        );
        let set = [(NAMESPACE_VARIABLE, "healthimport/stack-1")];
        assert_eq!(
            Namespace::from_env(&set).unwrap().to_string(),
            "healthimport/stack-1"
        );
        assert!(Namespace::from_env(&[(NAMESPACE_VARIABLE, "AWS/Lambda")]).is_err());
        assert!("".parse::<Namespace>().is_err());
    }

    #[test]
    fn a_wait_in_the_future_is_no_wait() {
        let now = Timestamp::now();
        assert_eq!(
            seconds_between(now, now.plus(time::Duration::seconds(90))),
            90
        );
        assert_eq!(
            seconds_between(now.plus(time::Duration::seconds(5)), now),
            0
        );
        assert_eq!(
            millis_between(now, now.plus(time::Duration::milliseconds(1500))),
            1500
        );
        assert_eq!(millis_between(now.plus(time::Duration::seconds(1)), now), 0);
    }
}
