//! EventBridge on the local stack delivers to the targets moto cannot: a rule whose target is a
//! Step Functions state machine or a Lambda function gets the event (scripts/moto_stack.py, 5.),
//! PutEvents answering at once as EventBridge does. Runs against the stack's moto and its real
//! function binaries (`AWS_ENDPOINT_URL`; these tests fail without it). Each test uses a bus of
//! its own, so nothing else on the stack matches its rules.

use std::future::Future;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use healthimport_tests::local_stack;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);
const SOURCE: &str = "healthimport.test";

/// Polls `probe` until it yields a value; panics naming `what` at the deadline.
async fn wait_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bus of the test's own with one rule matching `detail_type` from [`SOURCE`].
struct Bus {
    eventbridge: aws_sdk_eventbridge::Client,
    name: String,
    rule: String,
    target_ids: Vec<String>,
}

impl Bus {
    async fn create(sdk: &SdkConfig, detail_type: &str) -> Self {
        let eventbridge = aws_sdk_eventbridge::Client::new(sdk);
        let name = local_stack::unique_name("delivery");
        eventbridge
            .create_event_bus()
            .name(&name)
            .send()
            .await
            .unwrap();
        let rule = format!("{name}-rule");
        eventbridge
            .put_rule()
            .name(&rule)
            .event_bus_name(&name)
            .event_pattern(json!({"source": [SOURCE], "detail-type": [detail_type]}).to_string())
            .send()
            .await
            .unwrap();
        Self {
            eventbridge,
            name,
            rule,
            target_ids: Vec::new(),
        }
    }

    async fn target(&mut self, target: Target) {
        self.target_ids.push(target.id().to_owned());
        self.eventbridge
            .put_targets()
            .rule(&self.rule)
            .event_bus_name(&self.name)
            .targets(target)
            .send()
            .await
            .unwrap();
    }

    /// Puts one event on the bus and returns its EventId; PutEvents must report no failure.
    async fn put(&self, detail_type: &str, detail: &Value) -> String {
        let answer = self
            .eventbridge
            .put_events()
            .entries(
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.name)
                    .source(SOURCE)
                    .detail_type(detail_type)
                    .resources("arn:aws:s3:::healthimport-test")
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .expect("PutEvents answers (moto used to answer HTTP 500 for these targets)");
        assert_eq!(answer.failed_entry_count(), 0, "{answer:?}");
        answer.entries()[0]
            .event_id()
            .expect("an EventId")
            .to_owned()
    }

    async fn delete(self) {
        let _ = self
            .eventbridge
            .remove_targets()
            .rule(&self.rule)
            .event_bus_name(&self.name)
            .set_ids(Some(self.target_ids.clone()))
            .send()
            .await;
        let _ = self
            .eventbridge
            .delete_rule()
            .name(&self.rule)
            .event_bus_name(&self.name)
            .send()
            .await;
        let _ = self
            .eventbridge
            .delete_event_bus()
            .name(&self.name)
            .send()
            .await;
    }
}

/// Registers `name` in moto's Lambda (the code that runs is the stack's real binary, so the
/// package is an empty zip; a function registered before is kept) and returns its ARN.
async fn register_function(sdk: &SdkConfig, name: &str) -> String {
    let iam = aws_sdk_iam::Client::new(sdk);
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let role_name = format!("{name}-delivery-test");
    let role_arn = match iam
        .create_role()
        .role_name(&role_name)
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
    {
        Ok(created) => created.role().unwrap().arn().to_owned(),
        Err(_) => iam
            .get_role()
            .role_name(&role_name)
            .send()
            .await
            .unwrap()
            .role()
            .unwrap()
            .arn()
            .to_owned(),
    };
    const EMPTY_ZIP: [u8; 22] = [
        0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let created = lambda
        .create_function()
        .function_name(name)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role_arn)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(EMPTY_ZIP.to_vec()))
                .build(),
        )
        .send()
        .await;
    match created {
        Ok(created) => created.function_arn().unwrap().to_owned(),
        Err(_) => lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .unwrap()
            .configuration()
            .and_then(|configuration| configuration.function_arn())
            .unwrap()
            .to_owned(),
    }
}

/// A queue of the test's own: its URL and ARN.
async fn queue(sqs: &aws_sdk_sqs::Client) -> (String, String) {
    let url = sqs
        .create_queue()
        .queue_name(local_stack::unique_name("delivery"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn).cloned())
        .expect("the queue's ARN");
    (url, arn)
}

/// Receives (and deletes) messages until one satisfies `wanted`; returns the bodies received.
async fn receive_until(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut received: Vec<Value> = Vec::new();
    while !received.iter().any(&wanted) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}; received {received:#?}"
        );
        let answer = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in answer.messages() {
            received.push(serde_json::from_str(message.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    received
}

/// The envelope every target gets, as EventBridge sets it for the local account and Region.
fn assert_envelope(event: &Value, event_id: &str, detail_type: &str, detail: &Value) {
    assert_eq!(event["version"], "0", "{event}");
    assert_eq!(event["id"], event_id, "{event}");
    assert_eq!(event["detail-type"], detail_type, "{event}");
    assert_eq!(event["source"], SOURCE, "{event}");
    assert_eq!(event["account"], "123456789012", "{event}");
    assert_eq!(event["region"], "us-east-1", "{event}");
    assert_eq!(
        event["resources"],
        json!(["arn:aws:s3:::healthimport-test"]),
        "{event}"
    );
    assert_eq!(&event["detail"], detail, "{event}");
    let time = event["time"].as_str().expect("time");
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
}

#[tokio::test]
async fn a_rule_starts_its_state_machine_with_the_event_and_still_feeds_its_queue() {
    let sdk = local_stack::sdk_config().await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let state_machine_arn = sfn
        .create_state_machine()
        .name(local_stack::unique_name("delivery"))
        .definition(r#"{"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}}"#)
        .role_arn("arn:aws:iam::123456789012:role/healthimport-local-tracking")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_owned();
    let (queue_url, queue_arn) = queue(&sqs).await;
    let mut bus = Bus::create(&sdk, "Delivery Check").await;
    bus.target(
        Target::builder()
            .id("workflow")
            .arn(&state_machine_arn)
            .role_arn("arn:aws:iam::123456789012:role/healthimport-local-events")
            .build()
            .unwrap(),
    )
    .await;
    bus.target(
        Target::builder()
            .id("queue")
            .arn(&queue_arn)
            .build()
            .unwrap(),
    )
    .await;

    // An event the rule does not match goes nowhere.
    bus.put("Something Else", &json!({"check": "unmatched"}))
        .await;
    let detail = json!({"check": local_stack::unique_name("matched")});
    let event_id = bus.put("Delivery Check", &detail).await;

    let execution_arn = wait_until("the rule starts an execution", || async {
        let listed = sfn
            .list_executions()
            .state_machine_arn(&state_machine_arn)
            .send()
            .await
            .unwrap();
        listed
            .executions()
            .first()
            .map(|execution| execution.execution_arn().to_owned())
    })
    .await;
    let execution = sfn
        .describe_execution()
        .execution_arn(&execution_arn)
        .send()
        .await
        .unwrap();
    let input: Value = serde_json::from_str(execution.input().expect("input")).unwrap();
    assert_envelope(&input, &event_id, "Delivery Check", &detail);
    assert!(input.get("ingestion-time").is_none(), "{input}");

    // moto's own SQS delivery, on the same rule, is untouched (and now carries `account`).
    let received = receive_until(&sqs, &queue_url, "the queue gets the event", |event| {
        event["id"] == event_id.as_str()
    })
    .await;
    assert_eq!(received.len(), 1, "only the matching event: {received:#?}");
    assert_envelope(&received[0], &event_id, "Delivery Check", &detail);
    let listed = sfn
        .list_executions()
        .state_machine_arn(&state_machine_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.executions().len(),
        1,
        "one execution per matching event"
    );

    bus.delete().await;
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
}

#[tokio::test]
async fn a_rule_invokes_its_lambda_function_asynchronously_with_its_input_path() {
    let sdk = local_stack::sdk_config().await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // The token decoder runs on the stack behind `cargo lambda watch`; registered in moto so that
    // it can have an asynchronous invocation configuration whose destination shows the result.
    let function_arn = register_function(&sdk, "token-decoder").await;
    let (queue_url, queue_arn) = queue(&sqs).await;
    lambda
        .put_function_event_invoke_config()
        .function_name("token-decoder")
        .maximum_retry_attempts(0)
        .destination_config(
            aws_sdk_lambda::types::DestinationConfig::builder()
                .on_success(
                    aws_sdk_lambda::types::OnSuccess::builder()
                        .destination(&queue_arn)
                        .build(),
                )
                .on_failure(
                    aws_sdk_lambda::types::OnFailure::builder()
                        .destination(&queue_arn)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut bus = Bus::create(&sdk, "Token Check").await;
    bus.target(
        Target::builder()
            .id("decoder")
            .arn(&function_arn)
            .input_path("$.detail")
            .build()
            .unwrap(),
    )
    .await;

    // The decoder's own input shape, with an endpoint no other test uses.
    let endpoint = format!(
        "https://healthlake.us-east-1.amazonaws.com/datastore/{:032x}/r4/",
        fastrand::u128(..)
    );
    let detail = json!({
        "datastoreEndpoint": endpoint,
        "bearerToken": "not-a-jwt",
        "operationName": "SearchWithGet",
    });
    bus.put("Token Check", &detail).await;

    let received = receive_until(
        &sqs,
        &queue_url,
        "the invocation record reaches the destination",
        |record| record["requestPayload"]["datastoreEndpoint"] == endpoint.as_str(),
    )
    .await;
    let record = received
        .iter()
        .find(|record| record["requestPayload"]["datastoreEndpoint"] == endpoint.as_str())
        .unwrap();
    assert_eq!(record["version"], "1.0", "{record}");
    assert_eq!(record["requestContext"]["condition"], "Success", "{record}");
    assert_eq!(
        record["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:token-decoder:$LATEST"
    );
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(
        record["requestPayload"], detail,
        "InputPath $.detail: the function gets the detail alone"
    );
    assert_eq!(record["responseContext"]["statusCode"], 200);
    assert!(record["responseContext"].get("functionError").is_none());
    assert_eq!(
        record["responsePayload"]["authPayload"]["isAuthorized"],
        json!(false),
        "the real decoder answered: {record}"
    );

    let _ = lambda
        .delete_function_event_invoke_config()
        .function_name("token-decoder")
        .send()
        .await;
    bus.delete().await;
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
}
