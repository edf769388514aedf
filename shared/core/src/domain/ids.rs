//! Identities: a job's id (derived from what it was made from, so every delivery maps to the same
//! one) and the one timestamp format records and events use.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{Duration, OffsetDateTime};

/// A job's id: derived from what was uploaded, so every delivery of the same upload event maps to
/// the same id. 32 lowercase hex characters, which is valid as a HealthLake ClientToken
/// (`[a-zA-Z0-9-]{1,64}`), a HealthImaging clientToken (`[A-Za-z0-9._-]{1,64}`) and a Step
/// Functions execution name (≤ 80 characters of `[A-Za-z0-9_-]`) alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// The id of the upload of `key` in `bucket` with content identity `content` (the object's
    /// versionId when the bucket is versioned, else its eTag). Fields are length-prefixed so that
    /// no two different triples hash the same input.
    pub fn for_upload(bucket: &str, key: &str, content: &str) -> JobId {
        let mut hasher = Sha256::new();
        for part in [bucket, key, content] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        JobId(hex::encode(&digest[..16]))
    }

    /// The id of attempt `number` at the upload whose first attempt is `first`: a retry is a
    /// record of its own, and the same retry asked twice is the same record.
    pub fn for_attempt(first: &JobId, number: u32) -> JobId {
        let mut hasher = Sha256::new();
        for part in ["attempt", first.as_str(), &number.to_string()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        JobId(hex::encode(&hasher.finalize()[..16]))
    }

    /// Wraps an id read back from the store or an event; the caller vouches for its origin.
    pub fn from_stored(id: impl Into<String>) -> JobId {
        JobId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The idempotency token passed to the service's Start call.
    pub fn client_token(&self) -> &str {
        &self.0
    }

    /// The name of the job's Step Functions execution.
    pub fn execution_name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A UTC instant with millisecond precision, written in one fixed-width format
/// (`2026-11-23T23:05:01.123Z`) so that stored timestamps sort as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

const TIMESTAMP_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }

    pub fn from_datetime(at: OffsetDateTime) -> Timestamp {
        let at = at.to_offset(time::UtcOffset::UTC);
        // Truncate to what the text form keeps, so a value survives a store round trip unchanged.
        let millis = at.millisecond();
        Timestamp(at.replace_millisecond(millis).unwrap_or(at))
    }

    pub fn from_unix_seconds(secs: i64) -> Option<Timestamp> {
        OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .map(Timestamp)
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn unix_millis(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    pub fn plus(self, by: Duration) -> Timestamp {
        Timestamp(self.0 + by)
    }

    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(TIMESTAMP_FORMAT) {
            Ok(text) => f.write_str(&text),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl FromStr for Timestamp {
    type Err = time::error::Parse;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(Timestamp::from_datetime)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_790_000_000 + secs).unwrap()
    }

    #[test]
    fn job_id_is_deterministic_and_valid_as_every_token() {
        let a = JobId::for_upload("ingest", "fhir/a.ndjson", "\"etag1\"");
        assert_eq!(a, JobId::for_upload("ingest", "fhir/a.ndjson", "\"etag1\""));
        assert_ne!(a, JobId::for_upload("ingest", "fhir/a.ndjson", "\"etag2\""));
        assert_ne!(a, JobId::for_upload("ingest", "fhir/b.ndjson", "\"etag1\""));
        // Length-prefixing keeps field boundaries: ("ab","c") and ("a","bc") differ.
        assert_ne!(
            JobId::for_upload("ingest", "ab", "c"),
            JobId::for_upload("ingest", "a", "bc")
        );
        let id = a.as_str();
        assert_eq!(id.len(), 32);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(a.client_token(), id);
        assert_eq!(a.execution_name(), id);
    }

    #[test]
    fn timestamps_have_one_sortable_text_form() {
        let t: Timestamp = "2026-11-23T23:05:01.123456+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-23T22:05:01.123Z");
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        assert!(at(1).to_string() > at(0).to_string());
        assert!(at(100_000).to_string() > at(99_999).to_string());
    }
}
