//! The DynamoDB job store against moto's server, over HTTP with the real SDK client, on a table
//! created from `template.yaml`'s `JobsTable`.

use aws_sdk_dynamodb::types::AttributeValue;
use healthimport::domain::export::{ExportMode, ExportRequest, ExportTrigger};
use healthimport::domain::job::{
    last_completed_until, FailedFile, Job, JobCounts, JobId, JobStatus, Service, SourceObject,
    Target, Timestamp, Transition,
};
use healthimport::ports::store::{CreateOutcome, JobStore, TransitionOutcome};
use healthimport_aws::dynamodb::DynamoJobStore;
use healthimport_tests::local_stack;
use time::Duration;

struct Fixture {
    store: DynamoJobStore,
    dynamo: aws_sdk_dynamodb::Client,
    table: String,
}

async fn fixture() -> Fixture {
    let config = local_stack::sdk_config().await;
    let table = local_stack::unique_name("jobs");
    local_stack::create_jobs_table(&config, &table)
        .await
        .expect("create the jobs table from template.yaml");
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    Fixture {
        store: DynamoJobStore::new(dynamo.clone(), &table, Duration::days(7)),
        dynamo,
        table,
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_seconds(1_790_000_000 + secs).unwrap()
}

fn upload(key: &str, etag: &str) -> Job {
    upload_in("0123456789abcdef0123456789abcdef", key, etag)
}

fn upload_in(datastore: &str, key: &str, etag: &str) -> Job {
    let source = SourceObject {
        bucket: "ingest".into(),
        key: key.into(),
        size: 42,
        e_tag: Some(etag.into()),
        version_id: None,
    };
    let target = Target {
        service: Service::HealthLake,
        datastore_id: datastore.into(),
        output_s3_uri: "s3://out/fhir/".into(),
    };
    let input = source.uri();
    Job::import(source, target, input, at(0))
}

async fn move_to(store: &DynamoJobStore, job: &Job, to: JobStatus, secs: i64) -> TransitionOutcome {
    store
        .transition(&job.job_id, &Transition::to(to, at(secs)))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_second_create_reports_already_exists_and_does_not_overwrite() {
    let f = fixture().await;
    let job = upload("fhir/a.ndjson", "\"1\"");
    assert_eq!(f.store.create(&job).await.unwrap(), CreateOutcome::Created);
    move_to(&f.store, &job, JobStatus::Submitted, 1).await;

    let mut again = job.clone();
    again.message = Some("a redelivered event must not replace the record".into());
    match f.store.create(&again).await.unwrap() {
        CreateOutcome::AlreadyExists(existing) => {
            assert_eq!(existing.status, JobStatus::Submitted);
            assert_eq!(existing.message, None);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let stored = f.store.get(&job.job_id).await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Submitted);
    assert_eq!(stored.message, None);
}

#[tokio::test]
async fn a_record_round_trips_with_every_field() {
    let f = fixture().await;
    let job = upload("fhir/with space + plus/患者.ndjson", "\"2\"");
    f.store.create(&job).await.unwrap();
    assert_eq!(f.store.get(&job.job_id).await.unwrap(), Some(job.clone()));
    assert_eq!(
        f.store
            .get(&JobId::from_stored("0".repeat(32)))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn transitions_move_forward_and_record_their_fields_and_history() {
    let f = fixture().await;
    let job = upload("fhir/b.ndjson", "\"1\"");
    f.store.create(&job).await.unwrap();

    let started = f
        .store
        .transition(
            &job.job_id,
            &Transition::to(JobStatus::Submitted, at(1)).with_service_job_id("svc-1"),
        )
        .await
        .unwrap();
    assert!(
        matches!(started, TransitionOutcome::Applied(ref j) if j.service_job_id.as_deref() == Some("svc-1"))
    );

    let progress = JobCounts {
        scanned: 10,
        imported: 4,
        failed: 0,
    };
    move_to(&f.store, &job, JobStatus::InProgress, 2).await;
    let again = f
        .store
        .transition(
            &job.job_id,
            &Transition::to(JobStatus::InProgress, at(3)).with_counts(progress),
        )
        .await
        .unwrap();
    let TransitionOutcome::Applied(running) = again else {
        panic!("a progress update of a running job applies, got {again:?}")
    };
    assert_eq!(running.counts, Some(progress));
    assert_eq!(
        running.history[&JobStatus::InProgress],
        at(2),
        "first time reached is kept"
    );

    let failed = vec![FailedFile {
        input_file: "s3://ingest/fhir/b.ndjson".into(),
        message: "line 3: no resourceType".into(),
    }];
    let done = f
        .store
        .transition(
            &job.job_id,
            &Transition::to(JobStatus::CompletedWithErrors, at(4))
                .with_counts(JobCounts {
                    scanned: 10,
                    imported: 9,
                    failed: 1,
                })
                .with_failed_files(failed.clone())
                .with_output_location("s3://out/x/")
                .with_message("1 resource failed"),
        )
        .await
        .unwrap();
    let TransitionOutcome::Applied(done) = done else {
        panic!("{done:?}")
    };
    assert_eq!(done.status, JobStatus::CompletedWithErrors);
    assert_eq!(done.failed_files, failed);
    assert_eq!(
        done.service_job_id.as_deref(),
        Some("svc-1"),
        "unset fields keep their value"
    );
    assert_eq!(
        done.history.keys().copied().collect::<Vec<_>>(),
        vec![
            JobStatus::Pending,
            JobStatus::Submitted,
            JobStatus::InProgress,
            JobStatus::CompletedWithErrors
        ]
    );
    assert_eq!(
        f.store.get(&job.job_id).await.unwrap().as_ref(),
        Some(&*done)
    );
}

#[tokio::test]
async fn illegal_and_stale_transitions_are_rejected_and_never_applied() {
    let f = fixture().await;
    let job = upload("fhir/c.ndjson", "\"1\"");
    f.store.create(&job).await.unwrap();
    move_to(&f.store, &job, JobStatus::InProgress, 1).await;

    // A late poll that still saw QUEUED.
    assert_eq!(
        move_to(&f.store, &job, JobStatus::Queued, 2).await,
        TransitionOutcome::Rejected {
            current: JobStatus::InProgress
        }
    );
    // START_FAILED only follows PENDING.
    assert_eq!(
        move_to(&f.store, &job, JobStatus::StartFailed, 3).await,
        TransitionOutcome::Rejected {
            current: JobStatus::InProgress
        }
    );
    // Nothing moves to SKIPPED after creation.
    assert_eq!(
        move_to(&f.store, &job, JobStatus::Skipped, 3).await,
        TransitionOutcome::Rejected {
            current: JobStatus::InProgress
        }
    );

    move_to(&f.store, &job, JobStatus::Completed, 4).await;
    let before = f.store.get(&job.job_id).await.unwrap();
    // Terminal is final, also for a repeat of the same status.
    for late in [
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::InProgress,
    ] {
        assert_eq!(
            move_to(&f.store, &job, late, 9).await,
            TransitionOutcome::Rejected {
                current: JobStatus::Completed
            }
        );
    }
    assert_eq!(
        f.store.get(&job.job_id).await.unwrap(),
        before,
        "rejected writes change nothing"
    );

    assert_eq!(
        move_to(
            &f.store,
            &upload("fhir/never-created.ndjson", "\"1\""),
            JobStatus::Submitted,
            1
        )
        .await,
        TransitionOutcome::NotFound
    );
}

// Two pollers that both read IN_PROGRESS and then race to different terminal statuses. DynamoDB
// applies conditional writes to one item one at a time, so the race always resolves as "one write
// lands first"; moto's server does not serialise concurrent writes to an item, so the test makes that
// order explicit instead of spawning both and testing the emulator's locking.
#[tokio::test]
async fn of_two_racing_terminal_transitions_only_the_first_lands() {
    let f = fixture().await;
    for (first, second) in [
        (JobStatus::Completed, JobStatus::Failed),
        (JobStatus::Failed, JobStatus::Completed),
        (JobStatus::CompletedWithErrors, JobStatus::Completed),
    ] {
        let job = upload(&format!("fhir/race-{first}-{second}.ndjson"), "\"1\"");
        f.store.create(&job).await.unwrap();
        move_to(&f.store, &job, JobStatus::InProgress, 1).await;

        let landed = f
            .store
            .transition(&job.job_id, &Transition::to(first, at(2)))
            .await
            .unwrap();
        assert!(
            matches!(landed, TransitionOutcome::Applied(_)),
            "{landed:?}"
        );
        let late = f
            .store
            .transition(&job.job_id, &Transition::to(second, at(3)))
            .await
            .unwrap();
        match late {
            TransitionOutcome::Rejected { current } => assert_eq!(current, first),
            other => panic!("the late {second} write was not rejected: {other:?}"),
        }

        let stored = f.store.get(&job.job_id).await.unwrap().unwrap();
        assert_eq!(stored.status, first);
        assert_eq!(stored.history.len(), 3, "{:?}", stored.history);
        assert!(stored.history.contains_key(&first));
        assert!(
            !stored.history.contains_key(&second),
            "the loser left a trace"
        );
    }
}

#[tokio::test]
async fn jobs_are_found_by_source_object() {
    let f = fixture().await;
    let first = upload("fhir/same key.ndjson", "\"v1\"");
    let mut second = upload("fhir/same key.ndjson", "\"v2\"");
    second.created_at = at(10);
    let other = upload("fhir/other.ndjson", "\"v1\"");
    for job in [&second, &first, &other] {
        f.store.create(job).await.unwrap();
    }
    let found = f
        .store
        .find_by_source("ingest", "fhir/same key.ndjson")
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(),
        vec![first.job_id.clone(), second.job_id.clone()],
        "both uploads of the key, oldest first"
    );
    assert!(f
        .store
        .find_by_source("ingest", "fhir/none.ndjson")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn jobs_are_listed_by_datastore_and_status() {
    let f = fixture().await;
    let datastore = "0123456789abcdef0123456789abcdef";
    let jobs: Vec<_> = (0..4)
        .map(|i| upload(&format!("fhir/list-{i}.ndjson"), "\"1\""))
        .collect();
    for job in &jobs {
        f.store.create(job).await.unwrap();
    }
    move_to(&f.store, &jobs[0], JobStatus::Completed, 1).await;
    move_to(&f.store, &jobs[1], JobStatus::Completed, 1).await;
    move_to(&f.store, &jobs[2], JobStatus::InProgress, 1).await;
    let elsewhere = upload_in(
        "ffffffffffffffffffffffffffffffff",
        "fhir/list-elsewhere.ndjson",
        "\"1\"",
    );
    f.store.create(&elsewhere).await.unwrap();

    let mut completed: Vec<_> = f
        .store
        .list_by_datastore_status(datastore, JobStatus::Completed)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    completed.sort();
    let mut expected = vec![jobs[0].job_id.clone(), jobs[1].job_id.clone()];
    expected.sort();
    assert_eq!(completed, expected);
    let pending = f
        .store
        .list_by_datastore_status(datastore, JobStatus::Pending)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].job_id, jobs[3].job_id);
}

#[tokio::test]
async fn only_terminal_records_get_an_expiry() {
    let f = fixture().await;
    let job = upload("fhir/ttl.ndjson", "\"1\"");
    f.store.create(&job).await.unwrap();
    let raw = |f: &Fixture, id: JobId| {
        let (client, table) = (f.dynamo.clone(), f.table.clone());
        async move {
            client
                .get_item()
                .table_name(table)
                .key("jobId", AttributeValue::S(id.to_string()))
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    assert!(!raw(&f, job.job_id.clone()).await.contains_key("expiresAt"));
    move_to(&f.store, &job, JobStatus::Failed, 100).await;
    let item = raw(&f, job.job_id.clone()).await;
    let expected = at(100).unix_seconds() + Duration::days(7).whole_seconds();
    assert_eq!(item["expiresAt"], AttributeValue::N(expected.to_string()));
}

#[tokio::test]
async fn an_export_round_trips_and_is_found_among_its_data_stores_exports_only() {
    let f = fixture().await;
    let datastore = "0123456789abcdef0123456789abcdef";
    let export = |id: &str, secs: i64| {
        let request = ExportRequest::new(
            ExportTrigger::OnDemand {
                request_id: id.into(),
            },
            ExportMode::Incremental,
            Some(at(secs - 1)),
            at(secs),
        );
        Job::export(request, datastore, "s3://out/exports/", at(secs))
    };
    let first = export("first", 10);
    let second = export("second", 20);
    let elsewhere = Job::export(
        ExportRequest::new(
            ExportTrigger::OnDemand {
                request_id: "first".into(),
            },
            ExportMode::Full,
            None,
            at(30),
        ),
        "fedcba9876543210fedcba9876543210",
        "s3://out/exports/",
        at(30),
    );
    let import = upload_in(datastore, "fhir/next-to-exports.ndjson", "\"1\"");
    for job in [&first, &second, &elsewhere, &import] {
        f.store.create(job).await.unwrap();
    }
    move_to(&f.store, &first, JobStatus::Submitted, 11).await;
    move_to(&f.store, &first, JobStatus::Completed, 12).await;

    assert_eq!(
        f.store
            .get(&first.job_id)
            .await
            .unwrap()
            .unwrap()
            .export_request()
            .cloned(),
        first.export_request().cloned()
    );
    let mut found = f.store.exports_of(datastore).await.unwrap();
    found.sort_by_key(|j| j.created_at);
    let ids: Vec<_> = found.iter().map(|j| j.job_id.clone()).collect();
    assert_eq!(ids, vec![first.job_id.clone(), second.job_id.clone()]);
    assert_eq!(last_completed_until(&found), Some(at(10)));
    // An export has no source object, so it is not in the bySource index.
    let item = f
        .dynamo
        .get_item()
        .table_name(&f.table)
        .key("jobId", AttributeValue::S(first.job_id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("sourceUri"));
    assert_eq!(
        item.get("exportOf"),
        Some(&AttributeValue::S(datastore.into()))
    );
}
