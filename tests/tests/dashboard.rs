//! The operations dashboard and the alarms in `template.yaml` read the metrics the functions write.
//!
//! The dashboard body is rendered as CloudFormation would (its `!Sub` resolved with fixed pseudo
//! parameters, the parameters' defaults and placeholder resource names) and parsed as JSON; every
//! metric it names in the functions' namespace must be one of `healthimport::metrics::Metric`,
//! under one of that metric's dimension sets, with dimension values the functions write. The
//! alarms on our namespace are held to the same rule. A renamed metric, a dimension dropped from
//! a set, or a typo in the template fails here rather than as an empty graph in production.

use std::collections::{BTreeSet, HashMap};

use healthimport::domain::batch::CloseReason;
use healthimport::domain::job::{JobStatus, Service};
use healthimport::metrics::{Dimension, Metric, NAMESPACE_VARIABLE};
use healthimport_tests::cfn::{self, Deployment, ResourceReferences};
use healthimport_tests::local_stack::template_path;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const STACK: &str = "ops-stack";
const REGION: &str = "eu-west-1";

struct Template {
    template: cfn::Template,
}

impl Template {
    fn load() -> Template {
        let deployment = Deployment {
            stack_name: STACK.to_owned(),
            region: REGION.to_owned(),
            account: "123456789012".to_owned(),
            resources: ResourceReferences::Placeholders,
        };
        Template {
            template: cfn::Template::read(&template_path(), deployment).expect("template.yaml"),
        }
    }

    fn root(&self) -> &Yaml {
        self.template.document()
    }

    fn resources(&self) -> &serde_yaml::Mapping {
        self.root()["Resources"].as_mapping().expect("Resources")
    }

    fn resources_of_type<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Yaml)> + 'a {
        self.resources()
            .iter()
            .filter(move |(_, resource)| resource["Type"].as_str() == Some(kind))
            .map(|(id, resource)| (id.as_str().expect("a logical id"), resource))
    }

    /// A string property: plain, or `!Sub` resolved as CloudFormation would (pseudo parameters
    /// fixed, parameters at their defaults, `${Resource}` and `${Resource.Attribute}` as
    /// placeholders, `${!Literal}` as `${Literal}`). A name the template does not define fails
    /// the test.
    fn string(&self, value: &Yaml) -> String {
        assert!(
            matches!(value, Yaml::String(_))
                || matches!(value, Yaml::Tagged(tagged) if tagged.tag == "!Sub"),
            "not a string or !Sub: {value:?}"
        );
        match self.template.evaluate(value) {
            Ok(Some(Json::String(text))) => text,
            other => panic!("{value:?} does not evaluate to a string: {other:?}"),
        }
    }

    /// The namespace the functions write to: the one `METRICS_NAMESPACE` the template sets.
    fn metrics_namespace(&self) -> String {
        let globals = &self.root()["Globals"]["Function"]["Environment"]["Variables"];
        let namespace = self.string(&globals[NAMESPACE_VARIABLE]);
        for (id, function) in self.resources_of_type("AWS::Serverless::Function") {
            let own = &function["Properties"]["Environment"]["Variables"];
            assert!(
                own.get(NAMESPACE_VARIABLE).is_none(),
                "{id} sets its own {NAMESPACE_VARIABLE}: the dashboard would not see it"
            );
        }
        namespace
    }

    /// Metrics the template's own log metric filters make, by namespace.
    fn filter_metrics(&self) -> BTreeSet<(String, String)> {
        let mut made = BTreeSet::new();
        for (_, filter) in self.resources_of_type("AWS::Logs::MetricFilter") {
            for transformation in filter["Properties"]["MetricTransformations"]
                .as_sequence()
                .expect("MetricTransformations")
            {
                made.insert((
                    self.string(&transformation["MetricNamespace"]),
                    self.string(&transformation["MetricName"]),
                ));
            }
        }
        made
    }

    fn dashboard_body(&self) -> Json {
        let (_, dashboard) = self
            .resources_of_type("AWS::CloudWatch::Dashboard")
            .next()
            .expect("a dashboard");
        let body = self.string(&dashboard["Properties"]["DashboardBody"]);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("the body is not JSON: {e}\n{body}"))
    }
}

/// One metric a dashboard line or an alarm reads.
#[derive(Debug)]
struct Reference {
    namespace: String,
    name: String,
    /// Dimension names and values (a SEARCH has names only).
    dimensions: Vec<(String, Option<String>)>,
}

/// Checks the metrics of our namespace; returns those it found.
struct Checker {
    namespace: String,
    filter_metrics: BTreeSet<(String, String)>,
}

impl Checker {
    fn check(&self, reference: &Reference, place: &str) -> Option<Metric> {
        if reference.namespace != self.namespace {
            assert!(
                reference.namespace.starts_with("AWS/"),
                "{place}: {reference:?} reads a namespace that is neither ours nor AWS's"
            );
            return None;
        }
        let Some(metric) = Metric::from_name(&reference.name) else {
            assert!(
                self.filter_metrics
                    .contains(&(reference.namespace.clone(), reference.name.clone())),
                "{place}: {} is not a metric the functions emit (shared/core/src/metrics.rs) \
                 nor one of the template's metric filters",
                reference.name
            );
            return None;
        };
        let names: BTreeSet<&str> = reference
            .dimensions
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(
            metric.dimension_sets().iter().any(|set| set
                .iter()
                .map(|d| d.name())
                .collect::<BTreeSet<_>>()
                == names),
            "{place}: {metric:?} is not published with the dimensions {names:?}"
        );
        for (name, value) in &reference.dimensions {
            if let Some(value) = value {
                assert!(
                    is_written(metric, name, value),
                    "{place}: {metric:?} is never written with {name}={value}"
                );
            }
        }
        Some(metric)
    }
}

/// Whether the functions write `metric` with dimension `name` = `value`.
fn is_written(metric: Metric, name: &str, value: &str) -> bool {
    let dimension = Dimension::ALL
        .into_iter()
        .find(|d| d.name() == name)
        .expect("a dimension of ours");
    match (dimension, metric) {
        (Dimension::Service, _) => [Service::HealthLake, Service::HealthImaging]
            .iter()
            .any(|s| s.as_str() == value),
        (Dimension::Status, _) => JobStatus::ALL
            .iter()
            .any(|s| s.is_terminal() && s.as_str() == value),
        (Dimension::Reason, Metric::BatchesClosed) => {
            CloseReason::ALL.iter().any(|r| r.as_str() == value)
        }
        // The deny reasons are the auth crate's codes: snake case, or `none` when allowed.
        (Dimension::Reason, _) => value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        (Dimension::Decision, _) => value == "allow" || value == "deny",
    }
}

/// The metrics a dashboard line reads: `[namespace, name, dim, value, ..., {options}]`, or an
/// expression (a SEARCH names its namespace, dimensions and metric name; metric math names ids).
fn line_references(line: &Json) -> Vec<Reference> {
    let items = line.as_array().expect("a metrics line is an array");
    if let Some(expression) = items.first().and_then(|i| i.get("expression")) {
        return search_references(expression.as_str().expect("expression text"));
    }
    let strings: Vec<&str> = items.iter().map_while(Json::as_str).collect();
    assert!(
        strings.len() >= 2 && strings.len().is_multiple_of(2),
        "a metric line is namespace, name and dimension pairs: {line}"
    );
    assert!(
        !strings.contains(&"."),
        "the '.' shorthand is not checked here; spell the line out: {line}"
    );
    vec![Reference {
        namespace: strings[0].to_owned(),
        name: strings[1].to_owned(),
        dimensions: strings[2..]
            .chunks(2)
            .map(|pair| (pair[0].to_owned(), Some(pair[1].to_owned())))
            .collect(),
    }]
}

/// `SEARCH('{Namespace,Dim,...} MetricName="Name" ...', ...)`.
fn search_references(expression: &str) -> Vec<Reference> {
    let Some(search) = expression.find("SEARCH(") else {
        return Vec::new();
    };
    let text = &expression[search..];
    let schema = &text[text.find('{').expect("a schema") + 1..text.find('}').expect("schema end")];
    let mut parts = schema.split(',').map(str::trim);
    let namespace = parts.next().expect("a namespace").trim_matches('"');
    let name_at = text
        .find("MetricName=\"")
        .expect("a SEARCH names its metric")
        + 12;
    let name = &text[name_at..name_at + text[name_at..].find('"').expect("closed name")];
    vec![Reference {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        dimensions: parts
            .map(|d| (d.trim_matches('"').to_owned(), None))
            .collect(),
    }]
}

fn alarm_references(template: &Template, alarm: &Yaml) -> Vec<Reference> {
    let reference = |metric: &Yaml| Reference {
        namespace: template.string(&metric["Namespace"]),
        name: template.string(&metric["MetricName"]),
        dimensions: metric["Dimensions"]
            .as_sequence()
            .map(|dimensions| {
                dimensions
                    .iter()
                    .map(|d| {
                        let value = match &d["Value"] {
                            Yaml::String(text) => Some(text.clone()),
                            // A !Ref or !GetAtt: a resource's name, not ours to check.
                            _ => None,
                        };
                        (template.string(&d["Name"]), value)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    let properties = &alarm["Properties"];
    if properties.get("MetricName").is_some() {
        return vec![reference(properties)];
    }
    properties["Metrics"]
        .as_sequence()
        .expect("an alarm reads a metric or metric math")
        .iter()
        .filter_map(|query| query.get("MetricStat"))
        .map(|stat| reference(&stat["Metric"]))
        .collect()
}

fn checker(template: &Template) -> Checker {
    Checker {
        namespace: template.metrics_namespace(),
        filter_metrics: template.filter_metrics(),
    }
}

#[test]
fn the_functions_write_to_a_namespace_of_the_stack_s_own() {
    let template = Template::load();
    assert_eq!(
        template.metrics_namespace(),
        format!("{STACK}/healthimport")
    );
    assert!(
        template
            .filter_metrics()
            .contains(&(format!("{STACK}/healthimport"), "PollerErrors".to_owned())),
        "the poller's error metric filter shares the namespace"
    );
}

#[test]
fn every_metric_of_ours_on_the_dashboard_is_one_the_functions_emit_and_every_one_is_shown() {
    let template = Template::load();
    let checker = checker(&template);
    let body = template.dashboard_body();
    let mut shown = BTreeSet::new();
    let mut aws_namespaces = BTreeSet::new();
    for (n, widget) in body["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .enumerate()
    {
        if widget["type"] != "metric" {
            continue;
        }
        let title = widget["properties"]["title"].as_str().unwrap_or("untitled");
        assert_eq!(widget["properties"]["region"], REGION, "{title}");
        for line in widget["properties"]["metrics"]
            .as_array()
            .unwrap_or_else(|| panic!("widget {n} ({title}) has metrics"))
        {
            for reference in line_references(line) {
                if reference.namespace.starts_with("AWS/") {
                    aws_namespaces.insert(reference.namespace.clone());
                }
                if let Some(metric) = checker.check(&reference, title) {
                    shown.insert(metric.name());
                }
            }
        }
    }
    let all: BTreeSet<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(shown, all, "every metric the functions emit has a graph");
    assert_eq!(
        aws_namespaces,
        BTreeSet::from(["AWS/Lambda".to_owned(), "AWS/States".to_owned()]),
        "the Step Functions and Lambda built-ins are on it too"
    );
}

#[test]
fn the_built_ins_cover_every_function_and_the_tracking_workflow() {
    let template = Template::load();
    let body = template.dashboard_body();
    let mut read: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        for line in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for reference in line_references(line) {
                for (_, value) in reference.dimensions {
                    read.entry((reference.namespace.clone(), reference.name.clone()))
                        .or_default()
                        .extend(value);
                }
            }
        }
    }
    let functions: BTreeSet<String> = template
        .resources_of_type("AWS::Serverless::Function")
        .map(|(id, _)| format!("{id}-ref"))
        .collect();
    assert_eq!(functions.len(), 5, "{functions:?}");
    for metric in ["Errors", "Throttles", "Duration"] {
        assert_eq!(
            read.get(&("AWS/Lambda".to_owned(), metric.to_owned())),
            Some(&functions),
            "Lambda {metric} of every function"
        );
    }
    for metric in ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionTime"] {
        assert_eq!(
            read.get(&("AWS/States".to_owned(), metric.to_owned())),
            Some(&BTreeSet::from(["ImportJobStateMachine-ref".to_owned()])),
            "Step Functions {metric} of the tracking workflow"
        );
    }
}

#[test]
fn the_alarms_on_our_metrics_read_metrics_the_functions_emit_and_notify_the_alarm_topic() {
    let template = Template::load();
    let checker = checker(&template);
    let mut alarmed = BTreeSet::new();
    for (id, alarm) in template.resources_of_type("AWS::CloudWatch::Alarm") {
        let references = alarm_references(&template, alarm);
        assert!(!references.is_empty(), "{id} reads no metric");
        let mut ours = false;
        for reference in &references {
            if let Some(metric) = checker.check(reference, id) {
                alarmed.insert((id, metric.name()));
                ours = true;
            }
        }
        if ours {
            let properties = &alarm["Properties"];
            for actions in ["AlarmActions", "OKActions"] {
                let topic = &properties[actions][0];
                assert!(
                    matches!(topic, Yaml::Tagged(t) if t.tag == "!Ref" && t.value == "AlarmTopic"),
                    "{id} {actions} notify AlarmTopic"
                );
            }
            assert!(
                properties["TreatMissingData"].is_string(),
                "{id} says what no data means"
            );
        }
    }
    assert_eq!(
        alarmed,
        BTreeSet::from([
            ("FailureRateAlarm", "FilesFailed"),
            ("FailureRateAlarm", "FilesImported"),
            ("StartBacklogAlarm", "StartBacklogAge"),
        ])
    );
}

#[test]
fn a_metric_the_functions_do_not_emit_is_caught() {
    // The checks above must be able to fail: a renamed metric, a dimension outside its sets, and
    // a value no function writes are each refused.
    let template = Template::load();
    let checker = checker(&template);
    let ours = |name: &str, dimensions: &[(&str, &str)]| Reference {
        namespace: checker.namespace.clone(),
        name: name.to_owned(),
        dimensions: dimensions
            .iter()
            .map(|(n, v)| ((*n).to_owned(), Some((*v).to_owned())))
            .collect(),
    };
    let refused = |reference: Reference| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            checker.check(&reference, "test");
        }))
        .is_err()
    };
    assert!(refused(ours("UploadsReceived", &[])));
    assert!(refused(ours("UploadsAdmitted", &[("Status", "COMPLETED")])));
    assert!(refused(ours("JobsFinished", &[("Status", "IN_PROGRESS")])));
    assert!(refused(ours("BatchesClosed", &[("Reason", "expired")])));
    assert!(!refused(ours(
        "JobsFinished",
        &[("Service", "HEALTHLAKE"), ("Status", "FAILED")]
    )));
    assert_eq!(
        search_references(
            "SEARCH('{ns/healthimport,Decision,Reason} MetricName=\"TokenDecisions\"', 'Sum', 300)"
        )[0]
        .dimensions
        .len(),
        2
    );
}
