//! A metrics sink that keeps what it was given, for handler tests. Each handler owns its own, so
//! tests in parallel threads never see each other's observations.

use std::sync::Mutex;

use crate::metrics::{Metric, MetricsSink, Observation};

#[derive(Debug, Default)]
pub struct RecordingMetrics {
    observed: Mutex<Vec<Observation>>,
}

impl RecordingMetrics {
    /// Everything emitted so far, in order.
    pub fn observed(&self) -> Vec<Observation> {
        super::lock(&self.observed).clone()
    }

    /// The sum of `metric`'s values emitted so far.
    pub fn total(&self, metric: Metric) -> u64 {
        super::lock(&self.observed)
            .iter()
            .flat_map(Observation::values)
            .filter(|(m, _)| *m == metric)
            .map(|(_, value)| value)
            .sum()
    }
}

impl MetricsSink for RecordingMetrics {
    fn emit(&self, observation: Observation) {
        super::lock(&self.observed).push(observation);
    }
}
