//! Input validation from AWS's own service models: botocore's `healthlake` (2017-07-01) and
//! `medical-imaging` (2023-07-19) `service-2.json.gz`, read at start-up from the project's pinned
//! Python venv (requirements-dev.txt pins botocore), never copied by hand.
//!
//! For each operation the double serves, its input shape is walked recursively: required
//! members, string length (`min`/`max`), `pattern`, `enum`, integer range, list and map sizes.
//! Violations are answered as AWS answers them: one ValidationException that names every member,
//! "N validation error(s) detected: Value 'x' at 'member' failed to satisfy constraint: ...".
//!
//! Patterns are Java regular expressions matched against the whole value (what AWS's services
//! do, and why a HealthImaging `jobName` with a space is refused although `[A-Za-z0-9._/#-]+`
//! occurs in it). The `regex` crate reads nearly all of them as they are; `translate` bridges
//! the rest (ASCII `\d`, a leading negative lookahead, repetition bounds that only the length
//! constraint needs to enforce). A pattern that still does not compile is kept in
//! `ServiceModel::unsupported_patterns`, which a test requires to be empty.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::{Map, Value};

use super::validate::ApiError;

/// The variable that names botocore's `data` directory (the one holding `healthlake/` and
/// `medical-imaging/`).
pub const MODELS_VARIABLE: &str = "DOUBLE_SERVICE_MODELS";
/// Where each service's model lies under that directory.
pub const HEALTHLAKE_MODEL: &str = "healthlake/2017-07-01/service-2.json.gz";
pub const IMAGING_MODEL: &str = "medical-imaging/2023-07-19/service-2.json.gz";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "no botocore service models at {0} (set {MODELS_VARIABLE} to botocore's data directory, \
         or run `make venv` to install the pinned botocore into .venv)"
    )]
    Missing(PathBuf),
    #[error("cannot read the service model {path} (run `make venv` to reinstall it)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the service model {path} is not the JSON botocore ships")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the service model {path} has no {what}")]
    Shape { path: PathBuf, what: String },
}

/// The botocore `data` directory: `explicit`, else `DOUBLE_SERVICE_MODELS`, else the
/// repository's `.venv/lib/python3.*/site-packages/botocore/data`.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ModelError> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os(MODELS_VARIABLE).filter(|path| !path.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    let found = std::fs::read_dir(&lib)
        .map_err(|_| ModelError::Missing(lib.clone()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("site-packages/botocore/data"))
        .find(|data| data.join(HEALTHLAKE_MODEL).is_file());
    found.ok_or(ModelError::Missing(lib))
}

/// The models of `data_dir` (see [`locate`]), loaded once per process and directory: every
/// in-process double of a test binary shares them.
pub fn cached(explicit: Option<&Path>) -> Result<std::sync::Arc<ServiceModels>, ModelError> {
    use std::sync::{Arc, Mutex, OnceLock, PoisonError};
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<ServiceModels>>>> = OnceLock::new();
    let data_dir = locate(explicit)?;
    let mut loaded = LOADED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(models) = loaded.get(&data_dir) {
        return Ok(Arc::clone(models));
    }
    let models = Arc::new(ServiceModels::load(&data_dir)?);
    loaded.insert(data_dir, Arc::clone(&models));
    Ok(models)
}

/// Both services' models.
#[derive(Debug)]
pub struct ServiceModels {
    pub healthlake: ServiceModel,
    pub imaging: ServiceModel,
}

impl ServiceModels {
    pub fn load(data_dir: &Path) -> Result<Self, ModelError> {
        Ok(Self {
            healthlake: ServiceModel::load(&data_dir.join(HEALTHLAKE_MODEL))?,
            imaging: ServiceModel::load(&data_dir.join(IMAGING_MODEL))?,
        })
    }
}

/// A compiled model pattern: the whole value must match, and (for a leading `(?!x)`) must not
/// start with what the lookahead names.
#[derive(Debug)]
struct Pattern {
    source: String,
    full_match: Regex,
    forbidden_prefix: Option<Regex>,
}

impl Pattern {
    fn matches(&self, value: &str) -> bool {
        self.full_match.is_match(value)
            && !self
                .forbidden_prefix
                .as_ref()
                .is_some_and(|prefix| prefix.is_match(value))
    }
}

/// One service's model: its shapes and operations, with every pattern compiled once.
#[derive(Debug)]
pub struct ServiceModel {
    path: PathBuf,
    shapes: Map<String, Value>,
    operations: Map<String, Value>,
    patterns: HashMap<String, Pattern>,
    /// Shape name → (pattern, why it did not compile).
    unsupported: BTreeMap<String, (String, String)>,
}

impl ServiceModel {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::Missing(path.to_owned()));
        }
        let read_error = |source| ModelError::Read {
            path: path.to_owned(),
            source,
        };
        let compressed = std::fs::read(path).map_err(read_error)?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_string(&mut text)
            .map_err(read_error)?;
        let document: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_owned(),
            source,
        })?;
        let section = |name: &str| {
            document
                .get(name)
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| ModelError::Shape {
                    path: path.to_owned(),
                    what: name.to_owned(),
                })
        };
        let shapes = section("shapes")?;
        let operations = section("operations")?;
        let mut patterns = HashMap::new();
        let mut unsupported = BTreeMap::new();
        for (name, shape) in &shapes {
            let Some(source) = shape.get("pattern").and_then(Value::as_str) else {
                continue;
            };
            match compile(source) {
                Ok(pattern) => {
                    patterns.insert(name.clone(), pattern);
                }
                Err(reason) => {
                    unsupported.insert(name.clone(), (source.to_owned(), reason));
                }
            }
        }
        Ok(Self {
            path: path.to_owned(),
            shapes,
            operations,
            patterns,
            unsupported,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the model has this operation.
    pub fn has_operation(&self, operation: &str) -> bool {
        self.operations.contains_key(operation)
    }

    /// The model's `http` binding of an operation: (method, requestUri).
    pub fn http(&self, operation: &str) -> Option<(&str, &str)> {
        let http = self.operations.get(operation)?.get("http")?;
        Some((
            http.get("method")?.as_str()?,
            http.get("requestUri")?.as_str()?,
        ))
    }

    /// Patterns of shapes reachable from the operations' inputs that could not be compiled.
    pub fn unsupported_patterns(&self, operations: &[&str]) -> Vec<String> {
        let mut reachable = Vec::new();
        for operation in operations {
            if let Some(input) = self.input_shape(operation) {
                self.collect_reachable(input, &mut reachable);
            }
        }
        reachable
            .iter()
            .filter_map(|shape| {
                self.unsupported
                    .get(shape)
                    .map(|(pattern, reason)| format!("{shape}: {pattern:?}: {reason}"))
            })
            .collect()
    }

    fn collect_reachable(&self, shape: &str, seen: &mut Vec<String>) {
        if seen.iter().any(|known| known == shape) {
            return;
        }
        seen.push(shape.to_owned());
        let Some(definition) = self.shapes.get(shape) else {
            return;
        };
        let mut targets: Vec<&str> = Vec::new();
        if let Some(members) = definition.get("members").and_then(Value::as_object) {
            targets.extend(members.values().filter_map(|m| m.get("shape")?.as_str()));
        }
        for key in ["member", "key", "value"] {
            if let Some(target) = definition.get(key).and_then(|m| m.get("shape")?.as_str()) {
                targets.push(target);
            }
        }
        for target in targets {
            self.collect_reachable(target, seen);
        }
    }

    fn input_shape(&self, operation: &str) -> Option<&str> {
        self.operations
            .get(operation)?
            .get("input")?
            .get("shape")?
            .as_str()
    }

    /// A restJson1 request as the operation's input structure: the body's members, then each
    /// member the model binds to the URI (`location: uri`) or the query string
    /// (`location: querystring`), by its `locationName`, typed as its shape says.
    pub fn rest_input(
        &self,
        operation: &str,
        labels: &[(&str, &str)],
        query: &HashMap<String, String>,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut input = match body {
            Value::Object(members) => members,
            Value::Null => Map::new(),
            other => {
                return Err(ApiError::Serialization(format!(
                    "The request body is not a JSON object: {other}"
                )))
            }
        };
        let members = self
            .input_shape(operation)
            .and_then(|shape| self.shapes.get(shape))
            .and_then(|shape| shape.get("members"))
            .and_then(Value::as_object)
            .ok_or_else(|| unmodelled(operation))?;
        for (member, reference) in members {
            let location_name = reference
                .get("locationName")
                .and_then(Value::as_str)
                .unwrap_or(member);
            let raw = match reference.get("location").and_then(Value::as_str) {
                Some("uri") => labels
                    .iter()
                    .find(|(label, _)| *label == location_name)
                    .map(|(_, value)| (*value).to_owned()),
                Some("querystring") => query.get(location_name).cloned(),
                _ => continue,
            };
            let Some(raw) = raw else { continue };
            let target = reference.get("shape").and_then(Value::as_str).unwrap_or("");
            let kind = self
                .shapes
                .get(target)
                .and_then(|shape| shape.get("type"))
                .and_then(Value::as_str);
            let value = match kind {
                Some("integer" | "long") => match raw.parse::<i64>() {
                    Ok(number) => Value::from(number),
                    Err(_) => {
                        return Err(ApiError::Serialization(format!(
                            "Value '{raw}' at '{member}' is not a number"
                        )))
                    }
                },
                Some("boolean") => Value::Bool(raw == "true"),
                _ => Value::String(raw),
            };
            input.insert(member.clone(), value);
        }
        Ok(Value::Object(input))
    }

    /// Checks an operation's input against its model, answering every violation at once.
    pub fn validate(&self, operation: &str, input: &Value) -> Result<(), ApiError> {
        let shape = self
            .input_shape(operation)
            .ok_or_else(|| unmodelled(operation))?;
        let mut violations = Vec::new();
        self.check(shape, input, "", &mut violations);
        match violations.len() {
            0 => Ok(()),
            1 => Err(ApiError::Validation(format!(
                "1 validation error detected: {}",
                violations[0]
            ))),
            n => Err(ApiError::Validation(format!(
                "{n} validation errors detected: {}",
                violations.join("; ")
            ))),
        }
    }

    fn check(&self, shape_name: &str, value: &Value, path: &str, violations: &mut Vec<String>) {
        let Some(shape) = self.shapes.get(shape_name) else {
            return;
        };
        let mut violated = |rule: String| {
            violations.push(format!(
                "Value {} at '{path}' failed to satisfy constraint: {rule}",
                shown(value)
            ));
        };
        let number = |key: &str| shape.get(key).and_then(Value::as_i64);
        match (shape.get("type").and_then(Value::as_str), value) {
            (Some("structure"), Value::Object(members)) => {
                let empty = Map::new();
                let modelled = shape
                    .get("members")
                    .and_then(Value::as_object)
                    .unwrap_or(&empty);
                let required: Vec<&str> = shape
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|names| names.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for (name, reference) in modelled {
                    let member_path = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    match members.get(name) {
                        None | Some(Value::Null) if required.contains(&name.as_str()) => {
                            violations.push(format!(
                                "Value null at '{member_path}' failed to satisfy constraint: Member must not be null"
                            ));
                        }
                        None | Some(Value::Null) => {}
                        Some(member) => {
                            let target = reference.get("shape").and_then(Value::as_str);
                            self.check(target.unwrap_or(""), member, &member_path, violations);
                        }
                    }
                }
                let is_union = shape.get("union").and_then(Value::as_bool) == Some(true);
                let set = members.values().filter(|member| !member.is_null()).count();
                if is_union && set != 1 {
                    violations.push(format!(
                        "Value at '{path}' failed to satisfy constraint: Member must have exactly one member set, {set} are"
                    ));
                }
            }
            (Some("string"), Value::String(text)) => {
                // Java's String.length(): UTF-16 code units.
                let length = i64::try_from(text.encode_utf16().count()).unwrap_or(i64::MAX);
                if let Some(min) = number("min").filter(|min| length < *min) {
                    violated(format!(
                        "Member must have length greater than or equal to {min}"
                    ));
                }
                if let Some(max) = number("max").filter(|max| length > *max) {
                    violated(format!(
                        "Member must have length less than or equal to {max}"
                    ));
                }
                if let Some(pattern) = self.patterns.get(shape_name) {
                    if !pattern.matches(text) {
                        violated(format!(
                            "Member must satisfy regular expression pattern: {}",
                            pattern.source
                        ));
                    }
                }
                if let Some(values) = shape.get("enum").and_then(Value::as_array) {
                    if !values.iter().any(|allowed| allowed == value) {
                        let listed: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
                        violated(format!(
                            "Member must satisfy enum value set: [{}]",
                            listed.join(", ")
                        ));
                    }
                }
            }
            (Some("integer" | "long"), Value::Number(given)) => {
                let given = given.as_f64().unwrap_or_default();
                #[allow(clippy::cast_precision_loss)]
                if let Some(min) = number("min").filter(|min| given < *min as f64) {
                    violated(format!(
                        "Member must have value greater than or equal to {min}"
                    ));
                }
                #[allow(clippy::cast_precision_loss)]
                if let Some(max) = number("max").filter(|max| given > *max as f64) {
                    violated(format!(
                        "Member must have value less than or equal to {max}"
                    ));
                }
            }
            (Some("list"), Value::Array(items)) => {
                let count = i64::try_from(items.len()).unwrap_or(i64::MAX);
                if let Some(min) = number("min").filter(|min| count < *min) {
                    violated(format!(
                        "Member must have length greater than or equal to {min}"
                    ));
                }
                if let Some(max) = number("max").filter(|max| count > *max) {
                    violated(format!(
                        "Member must have length less than or equal to {max}"
                    ));
                }
                let target = shape
                    .get("member")
                    .and_then(|member| member.get("shape"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                for (index, item) in items.iter().enumerate() {
                    self.check(
                        target,
                        item,
                        &format!("{path}.{}.member", index + 1),
                        violations,
                    );
                }
            }
            (Some("map"), Value::Object(entries)) => {
                let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
                if let Some(max) = number("max").filter(|max| count > *max) {
                    violated(format!(
                        "Member must have length less than or equal to {max}"
                    ));
                }
                let target = |key: &str| {
                    shape
                        .get(key)
                        .and_then(|part| part.get("shape"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                let (key_shape, value_shape) = (target("key"), target("value"));
                for (key, item) in entries {
                    let entry_path = format!("{path}.{key}");
                    self.check(
                        &key_shape,
                        &Value::String(key.clone()),
                        &entry_path,
                        violations,
                    );
                    self.check(&value_shape, item, &entry_path, violations);
                }
            }
            // Types (a string where a structure belongs) are the deserialiser's to refuse, with
            // a SerializationException, as the services do.
            _ => {}
        }
    }
}

fn unmodelled(operation: &str) -> ApiError {
    ApiError::UnknownOperation(format!("{operation} is not an operation of this model"))
}

/// A value as AWS's validation messages show it.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => format!("'{text}'"),
        Value::Null => "null".to_owned(),
        other => format!("'{other}'"),
    }
}

/// Repetition bounds above this are left to the shape's length constraint: the `regex` crate
/// refuses to compile `[\P{M}\p{M}]{1,5000}` (its size limit), and the same shape's `max` says
/// the same thing.
const LARGEST_COUNTED_REPETITION: u32 = 1000;

fn compile(source: &str) -> Result<Pattern, String> {
    let (lookahead, rest) = split_negative_lookahead(source)?;
    let full_match =
        Regex::new(&format!("^(?:{})$", translate(rest)?)).map_err(|err| err.to_string())?;
    let forbidden_prefix = lookahead
        .map(|prefix| {
            translate(prefix).and_then(|prefix| {
                Regex::new(&format!("^(?:{prefix})")).map_err(|err| err.to_string())
            })
        })
        .transpose()?;
    Ok(Pattern {
        source: source.to_owned(),
        full_match,
        forbidden_prefix,
    })
}

/// `(?!aws:)rest` → (`aws:`, `rest`): the `regex` crate has no lookaround, and the models use it
/// only at the start ("must not begin with").
fn split_negative_lookahead(source: &str) -> Result<(Option<&str>, &str), String> {
    let body = source.strip_prefix('^').unwrap_or(source);
    let Some(after) = body.strip_prefix("(?!") else {
        if source.contains("(?!") || source.contains("(?=") || source.contains("(?<") {
            return Err("lookaround other than a leading (?!...)".to_owned());
        }
        return Ok((None, source));
    };
    let mut depth = 1;
    let mut escaped = false;
    for (index, c) in after.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((Some(&after[..index]), &after[index + 1..]));
                }
            }
            _ => {}
        }
    }
    Err("unbalanced (?!".to_owned())
}

/// Java regex → `regex` crate: `\d` and `\w` are ASCII in Java (Unicode here), and counted
/// repetitions above [`LARGEST_COUNTED_REPETITION`] become open-ended.
fn translate(source: &str) -> Result<String, String> {
    let mut output = String::with_capacity(source.len());
    let mut in_class = false;
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars.next().ok_or("a trailing backslash")?;
                match (escaped, in_class) {
                    ('d', false) => output.push_str("[0-9]"),
                    ('d', true) => output.push_str("0-9"),
                    ('w', false) => output.push_str("[a-zA-Z_0-9]"),
                    ('w', true) => output.push_str("a-zA-Z_0-9"),
                    _ => {
                        output.push('\\');
                        output.push(escaped);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                output.push(c);
                // A `]` right after `[` or `[^` is a literal in both dialects.
                if chars.peek() == Some(&'^') {
                    output.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    output.push_str("\\]");
                    chars.next();
                }
            }
            ']' if in_class => {
                in_class = false;
                output.push(c);
            }
            '{' if !in_class => {
                let mut bounds = String::new();
                while let Some(&next) = chars.peek() {
                    chars.next();
                    if next == '}' {
                        break;
                    }
                    bounds.push(next);
                }
                let upper = bounds.rsplit(',').next().unwrap_or("").trim();
                match upper.parse::<u32>() {
                    Ok(upper) if upper > LARGEST_COUNTED_REPETITION && bounds.contains(',') => {
                        let lower = bounds.split(',').next().unwrap_or("0");
                        output.push_str(&format!("{{{lower},}}"));
                    }
                    _ => output.push_str(&format!("{{{bounds}}}")),
                }
            }
            _ => output.push(c),
        }
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every operation the double serves, by service, as the models name them.
    const HEALTHLAKE_OPERATIONS: &[&str] = &[
        "StartFHIRImportJob",
        "DescribeFHIRImportJob",
        "ListFHIRImportJobs",
        "StartFHIRExportJob",
        "DescribeFHIRExportJob",
        "ListFHIRExportJobs",
        "CreateFHIRDatastore",
        "DescribeFHIRDatastore",
        "ListFHIRDatastores",
    ];
    const IMAGING_OPERATIONS: &[&str] = &[
        "StartDICOMImportJob",
        "GetDICOMImportJob",
        "ListDICOMImportJobs",
        "CreateDatastore",
        "GetDatastore",
        "ListDatastores",
    ];

    fn models() -> ServiceModels {
        let dir = locate(None).unwrap_or_else(|err| panic!("{err}"));
        ServiceModels::load(&dir).unwrap_or_else(|err| panic!("{err}"))
    }

    fn message(result: Result<(), ApiError>) -> String {
        match result {
            Err(ApiError::Validation(message)) => message,
            other => panic!("expected a ValidationException, got {other:?}"),
        }
    }

    fn fhir_import(overrides: Value) -> Value {
        let mut input = json!({
            "InputDataConfig": {"S3Uri": "s3://bucket/in/"},
            "JobOutputDataConfig": {"S3Configuration": {
                "S3Uri": "s3://bucket/out/",
                "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000001",
            }},
            "DatastoreId": "0123456789abcdef0123456789abcdef",
            "DataAccessRoleArn": "arn:aws:iam::123456789012:role/import",
            "ClientToken": "batch-1",
            "JobName": "batch-1",
            "ValidationLevel": "strict",
        });
        merge(&mut input, overrides);
        input
    }

    fn merge(into: &mut Value, overrides: Value) {
        match (into, overrides) {
            (Value::Object(into), Value::Object(overrides)) => {
                for (key, value) in overrides {
                    match into.get_mut(&key) {
                        Some(existing) if value.is_object() => merge(existing, value),
                        _ => {
                            into.insert(key, value);
                        }
                    }
                }
            }
            (into, overrides) => *into = overrides,
        }
    }

    #[test]
    fn every_operation_the_double_serves_is_in_its_model_with_every_pattern_compiled() {
        let models = models();
        for (model, operations) in [
            (&models.healthlake, HEALTHLAKE_OPERATIONS),
            (&models.imaging, IMAGING_OPERATIONS),
        ] {
            for operation in operations {
                assert!(
                    model.has_operation(operation),
                    "{} has no {operation}",
                    model.path().display()
                );
            }
            let unsupported = model.unsupported_patterns(operations);
            assert!(
                unsupported.is_empty(),
                "patterns of {} the double cannot check: {unsupported:#?}",
                model.path().display()
            );
        }
    }

    #[test]
    fn a_valid_start_passes_and_a_bad_kms_key_is_named() {
        let model = models().healthlake;
        model
            .validate("StartFHIRImportJob", &fhir_import(json!({})))
            .unwrap();
        let bad = fhir_import(json!({"JobOutputDataConfig": {"S3Configuration": {
            "KmsKeyId": "not a key!!"}}}));
        let shown = message(model.validate("StartFHIRImportJob", &bad));
        assert!(
            shown.starts_with(
                "1 validation error detected: Value 'not a key!!' at 'JobOutputDataConfig.S3Configuration.KmsKeyId' failed to satisfy constraint: Member must satisfy regular expression pattern: "
            ),
            "{shown}"
        );
    }

    #[test]
    fn a_too_long_client_token_and_an_unknown_enum_are_both_reported() {
        let model = models().healthlake;
        let bad = fhir_import(json!({"ClientToken": "a".repeat(65), "ValidationLevel": "lenient"}));
        let shown = message(model.validate("StartFHIRImportJob", &bad));
        assert!(
            shown.starts_with("2 validation errors detected: "),
            "{shown}"
        );
        assert!(
            shown.contains("at 'ClientToken' failed to satisfy constraint: Member must have length less than or equal to 64"),
            "{shown}"
        );
        assert!(
            shown.contains("Value 'lenient' at 'ValidationLevel' failed to satisfy constraint: Member must satisfy enum value set: [strict, structure-only, minimal]"),
            "{shown}"
        );
        let underscore = fhir_import(json!({"ClientToken": "batch_1"}));
        assert!(
            message(model.validate("StartFHIRImportJob", &underscore)).contains("'ClientToken'")
        );
    }

    #[test]
    fn missing_required_members_are_named() {
        let model = models().healthlake;
        let shown = message(model.validate("StartFHIRImportJob", &json!({})));
        assert!(
            shown.starts_with("4 validation errors detected: "),
            "{shown}"
        );
        assert!(
            shown.contains("Value null at 'DataAccessRoleArn' failed to satisfy constraint: Member must not be null"),
            "{shown}"
        );
    }

    #[test]
    fn an_imaging_job_name_with_a_space_is_refused_from_the_rest_binding() {
        let model = models().imaging;
        let body = json!({
            "jobName": "has a space",
            "dataAccessRoleArn": "arn:aws:iam::123456789012:role/import",
            "clientToken": "batch.1",
            "inputS3Uri": "s3://bucket/in/",
            "outputS3Uri": "s3://bucket/out/",
            "inputOwnerAccountId": "123456789012",
        });
        let datastore = "0123456789abcdef0123456789abcdef";
        let input = model
            .rest_input(
                "StartDICOMImportJob",
                &[("datastoreId", datastore)],
                &HashMap::new(),
                body.clone(),
            )
            .unwrap();
        assert_eq!(input["datastoreId"], datastore, "the URI label is bound");
        let shown = message(model.validate("StartDICOMImportJob", &input));
        assert!(
            shown.contains("Value 'has a space' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern: [A-Za-z0-9._/#-]+"),
            "{shown}"
        );
        let mut fixed = body;
        fixed["jobName"] = json!("batch-1");
        let input = model
            .rest_input(
                "StartDICOMImportJob",
                &[("datastoreId", "NOT-AN-ID")],
                &HashMap::new(),
                fixed,
            )
            .unwrap();
        assert!(message(model.validate("StartDICOMImportJob", &input)).contains("'datastoreId'"));
    }

    #[test]
    fn query_members_are_typed_and_bounded() {
        let model = models().imaging;
        let query: HashMap<String, String> = [
            ("maxResults".to_owned(), "51".to_owned()),
            ("datastoreStatus".to_owned(), "READY".to_owned()),
        ]
        .into_iter()
        .collect();
        let input = model
            .rest_input("ListDatastores", &[], &query, Value::Null)
            .unwrap();
        assert_eq!(input["maxResults"], 51);
        let shown = message(model.validate("ListDatastores", &input));
        assert!(
            shown.contains("Member must have value less than or equal to 50"),
            "{shown}"
        );
        assert!(
            shown.contains("Value 'READY' at 'datastoreStatus'"),
            "{shown}"
        );
        let query: HashMap<String, String> = [("maxResults".to_owned(), "many".to_owned())]
            .into_iter()
            .collect();
        assert!(matches!(
            model.rest_input("ListDatastores", &[], &query, Value::Null),
            Err(ApiError::Serialization(_))
        ));
    }

    #[test]
    fn tag_keys_keep_their_leading_negative_lookahead() {
        let model = models().imaging;
        let input = |key: &str| json!({"clientToken": "t", "tags": {key: "v"}});
        model.validate("CreateDatastore", &input("team")).unwrap();
        let shown = message(model.validate("CreateDatastore", &input("aws:owner")));
        assert!(shown.contains("at 'tags.aws:owner'"), "{shown}");
    }

    #[test]
    fn java_patterns_translate_to_the_same_language() {
        let digits = compile(r"\d+").unwrap();
        assert!(digits.matches("123456789012"));
        assert!(!digits.matches("١٢٣"), "Java's \\d is ASCII only");
        let large = compile(r"[\P{M}\p{M}]{1,5000}").unwrap();
        assert!(large.matches("anything at all"));
        assert!(!large.matches(""));
        let ascii = compile(r"\p{ASCII}{0,8192}").unwrap();
        assert!(ascii.matches("token=1"));
        assert!(!ascii.matches("é"));
        assert!(compile("(?<=x)y").is_err());
    }

    #[test]
    fn the_ids_the_double_hands_out_fit_both_models() {
        let models = models();
        let id = super::super::state::new_id();
        let ids = json!({"DatastoreId": id, "JobId": id});
        models
            .healthlake
            .validate("DescribeFHIRImportJob", &ids)
            .unwrap();
        let labels = [("datastoreId", id.as_str()), ("jobId", id.as_str())];
        let input = models
            .imaging
            .rest_input("GetDICOMImportJob", &labels, &HashMap::new(), Value::Null)
            .unwrap();
        models
            .imaging
            .validate("GetDICOMImportJob", &input)
            .unwrap();
    }

    #[test]
    fn a_missing_model_directory_says_make_venv() {
        let err = ServiceModels::load(Path::new("/nonexistent/botocore/data")).unwrap_err();
        assert!(err.to_string().contains("make venv"), "{err}");
    }
}
