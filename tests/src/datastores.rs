//! The local stack's data stores, created the way a deployment creates them: from what
//! `template.yaml`'s `FhirDatastore` (`AWS::HealthLake::FHIRDatastore`) and `ImagingDatastore`
//! (`AWS::HealthImaging::Datastore`) resources say, through CreateFHIRDatastore and
//! CreateDatastore with the real SDK clients, then waited on until Describe / Get say ACTIVE.
//! Nothing is pre-seeded in the double, so the ids exist only once this has run; the
//! `provision-datastores` binary hands them to the functions through the stack's env file.
//!
//! The template's intrinsic functions are evaluated as CloudFormation would for a stack named
//! [`LOCAL_STACK_NAME`] deployed with every parameter at its default.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::SdkConfig;
use serde_json::{Map, Value as Json};
use serde_yaml::Value as Yaml;

use crate::provision::{LOCAL_ACCOUNT, LOCAL_REGION};

/// The stack name the local stack stands for (`${AWS::StackName}`), the prefix of every local
/// resource name in `scripts/local-functions.env`.
pub const LOCAL_STACK_NAME: &str = "healthimport-local";
/// The template's logical ids of the two data stores.
pub const FHIR_DATASTORE_RESOURCE: &str = "FhirDatastore";
pub const IMAGING_DATASTORE_RESOURCE: &str = "ImagingDatastore";

#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    #[error("cannot read {path}")]
    ReadTemplate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML")]
    TemplateYaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("template: {0}")]
    Template(String),
    #[error("{what} failed")]
    Sdk {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("data store {id} is {status} after {waited:?}, not ACTIVE")]
    NotActive {
        id: String,
        status: String,
        waited: Duration,
    },
    #[error("cannot write {path}")]
    WriteEnv {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn template_error(message: impl Into<String>) -> DatastoreError {
    DatastoreError::Template(message.into())
}

fn sdk_error(
    what: &str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> DatastoreError + '_ {
    move |source| DatastoreError::Sdk {
        what: what.to_owned(),
        source,
    }
}

/// A template with its parameters and conditions, for evaluating resource properties.
pub struct Template {
    document: Yaml,
    stack_name: String,
}

impl Template {
    pub fn read(path: &Path, stack_name: &str) -> Result<Self, DatastoreError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| DatastoreError::ReadTemplate {
                path: path.to_owned(),
                source,
            })?;
        let document =
            serde_yaml::from_str(&text).map_err(|source| DatastoreError::TemplateYaml {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            document,
            stack_name: stack_name.to_owned(),
        })
    }

    /// The resource's `Properties` with every intrinsic function evaluated, as JSON; `None`
    /// when its `Condition` is false (CloudFormation would not create it).
    pub fn resource_properties(
        &self,
        logical_id: &str,
        expected_type: &str,
    ) -> Result<Option<Map<String, Json>>, DatastoreError> {
        let resource = self
            .document
            .get("Resources")
            .and_then(|resources| resources.get(logical_id))
            .ok_or_else(|| template_error(format!("no resource {logical_id}")))?;
        let kind = resource.get("Type").and_then(Yaml::as_str);
        if kind != Some(expected_type) {
            return Err(template_error(format!(
                "{logical_id} is {kind:?}, not {expected_type}"
            )));
        }
        if let Some(condition) = resource.get("Condition").and_then(Yaml::as_str) {
            if !self.condition(condition)? {
                return Ok(None);
            }
        }
        let properties = resource
            .get("Properties")
            .map(|properties| self.evaluate(properties))
            .transpose()?
            .flatten();
        match properties {
            None => Ok(Some(Map::new())),
            Some(Json::Object(map)) => Ok(Some(map)),
            Some(other) => Err(template_error(format!(
                "{logical_id}.Properties is not a mapping: {other}"
            ))),
        }
    }

    fn parameter_default(&self, name: &str) -> Result<Json, DatastoreError> {
        let parameter = self
            .document
            .get("Parameters")
            .and_then(|parameters| parameters.get(name))
            .ok_or_else(|| template_error(format!("!Ref {name}: no such parameter")))?;
        let default = parameter.get("Default").ok_or_else(|| {
            template_error(format!(
                "parameter {name} has no Default (the local stack deploys with defaults)"
            ))
        })?;
        let text = scalar_text(default)
            .ok_or_else(|| template_error(format!("parameter {name}: Default is not a scalar")))?;
        let is_list = parameter
            .get("Type")
            .and_then(Yaml::as_str)
            .is_some_and(|kind| {
                kind.starts_with("CommaDelimitedList") || kind.starts_with("List<")
            });
        Ok(if is_list {
            Json::Array(
                text.split(',')
                    .map(|item| Json::String(item.trim().to_owned()))
                    .collect(),
            )
        } else {
            Json::String(text)
        })
    }

    /// `!Ref`: pseudo parameters and parameters (at their defaults). `None` for AWS::NoValue.
    fn reference(&self, name: &str) -> Result<Option<Json>, DatastoreError> {
        let pseudo = match name {
            "AWS::NoValue" => return Ok(None),
            "AWS::StackName" => self.stack_name.clone(),
            "AWS::Region" => LOCAL_REGION.to_owned(),
            "AWS::AccountId" => LOCAL_ACCOUNT.to_owned(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            _ => return self.parameter_default(name).map(Some),
        };
        Ok(Some(Json::String(pseudo)))
    }

    fn condition(&self, name: &str) -> Result<bool, DatastoreError> {
        let definition = self
            .document
            .get("Conditions")
            .and_then(|conditions| conditions.get(name))
            .ok_or_else(|| template_error(format!("no condition {name}")))?;
        self.truth(definition)
    }

    /// A condition function's value.
    fn truth(&self, value: &Yaml) -> Result<bool, DatastoreError> {
        let (function, argument) = intrinsic(value)
            .ok_or_else(|| template_error(format!("not a condition function: {value:?}")))?;
        let arguments = || {
            argument
                .as_sequence()
                .ok_or_else(|| template_error(format!("{function} needs a list")))
        };
        match function.as_str() {
            "Condition" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| template_error("Condition needs a name"))?;
                self.condition(name)
            }
            "Fn::Equals" => match arguments()?.as_slice() {
                [left, right] => Ok(self.evaluate(left)? == self.evaluate(right)?),
                _ => Err(template_error("Fn::Equals needs two values")),
            },
            "Fn::Not" => match arguments()?.as_slice() {
                [inner] => Ok(!self.truth(inner)?),
                _ => Err(template_error("Fn::Not needs one condition")),
            },
            "Fn::And" => arguments()?
                .iter()
                .try_fold(true, |all, inner| Ok(all && self.truth(inner)?)),
            "Fn::Or" => arguments()?
                .iter()
                .try_fold(false, |any, inner| Ok(any || self.truth(inner)?)),
            other => Err(template_error(format!(
                "{other} is not a condition function"
            ))),
        }
    }

    /// A value with its intrinsic functions evaluated; `None` for AWS::NoValue (the member is
    /// then left out, as CloudFormation leaves it out).
    fn evaluate(&self, value: &Yaml) -> Result<Option<Json>, DatastoreError> {
        if let Some((function, argument)) = intrinsic(value) {
            return self.call(&function, argument);
        }
        Ok(Some(match value {
            Yaml::Null => Json::Null,
            Yaml::Bool(flag) => Json::Bool(*flag),
            Yaml::Number(_) | Yaml::String(_) => {
                Json::String(scalar_text(value).unwrap_or_default())
            }
            Yaml::Sequence(items) => Json::Array(
                items
                    .iter()
                    .map(|item| self.evaluate(item))
                    .filter_map(Result::transpose)
                    .collect::<Result<_, _>>()?,
            ),
            Yaml::Mapping(mapping) => {
                let mut object = Map::new();
                for (key, item) in mapping {
                    let key = key
                        .as_str()
                        .ok_or_else(|| template_error(format!("a non-string key {key:?}")))?;
                    if let Some(item) = self.evaluate(item)? {
                        object.insert(key.to_owned(), item);
                    }
                }
                Json::Object(object)
            }
            Yaml::Tagged(tagged) => {
                return Err(template_error(format!("unsupported tag {}", tagged.tag)))
            }
        }))
    }

    fn call(&self, function: &str, argument: &Yaml) -> Result<Option<Json>, DatastoreError> {
        match function {
            "Ref" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| template_error("Ref needs a name"))?;
                self.reference(name)
            }
            "Fn::If" => match argument.as_sequence().map(Vec::as_slice) {
                Some([condition, then, otherwise]) => {
                    let name = condition
                        .as_str()
                        .ok_or_else(|| template_error("Fn::If needs a condition name"))?;
                    let chosen = if self.condition(name)? {
                        then
                    } else {
                        otherwise
                    };
                    self.evaluate(chosen)
                }
                _ => Err(template_error("Fn::If needs [condition, then, else]")),
            },
            "Fn::Sub" => {
                let (text, variables) = match argument {
                    Yaml::String(text) => (text.as_str(), None),
                    Yaml::Sequence(items) => match items.as_slice() {
                        [Yaml::String(text), variables] => (text.as_str(), Some(variables)),
                        _ => return Err(template_error("Fn::Sub needs [text, variables]")),
                    },
                    _ => return Err(template_error("Fn::Sub needs a string")),
                };
                self.substitute(text, variables)
                    .map(|text| Some(Json::String(text)))
            }
            "Fn::Join" => match argument.as_sequence().map(Vec::as_slice) {
                Some([delimiter, items]) => {
                    let delimiter = delimiter
                        .as_str()
                        .ok_or_else(|| template_error("Fn::Join needs a delimiter"))?;
                    let items = match self.evaluate(items)? {
                        Some(Json::Array(items)) => items,
                        other => return Err(template_error(format!("Fn::Join of {other:?}"))),
                    };
                    let parts: Vec<String> = items.iter().map(json_text).collect();
                    Ok(Some(Json::String(parts.join(delimiter))))
                }
                _ => Err(template_error("Fn::Join needs [delimiter, list]")),
            },
            // A resource's attribute (an ARN, an alias) exists only once CloudFormation created
            // it: the local stack cannot know it, so it says so rather than guess.
            other => Err(template_error(format!(
                "{other} cannot be evaluated locally (argument {argument:?})"
            ))),
        }
    }

    fn substitute(&self, text: &str, variables: Option<&Yaml>) -> Result<String, DatastoreError> {
        let mut output = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("${") {
            output.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let close = after
                .find('}')
                .ok_or_else(|| template_error(format!("unclosed ${{ in {text:?}")))?;
            let name = &after[..close];
            if let Some(literal) = name.strip_prefix('!') {
                output.push_str("${");
                output.push_str(literal);
                output.push('}');
            } else {
                let value = match variables.and_then(|variables| variables.get(name)) {
                    Some(variable) => self.evaluate(variable)?,
                    None if name.contains('.') => {
                        return Err(template_error(format!(
                            "${{{name}}} is a resource attribute, not known locally"
                        )))
                    }
                    None => self.reference(name)?,
                };
                output.push_str(&value.as_ref().map(json_text).unwrap_or_default());
            }
            rest = &after[close + 1..];
        }
        output.push_str(rest);
        Ok(output)
    }
}

/// The function a value calls, in either syntax (`!Sub x` or `{"Fn::Sub": x}`).
fn intrinsic(value: &Yaml) -> Option<(String, &Yaml)> {
    match value {
        Yaml::Tagged(tagged) => {
            let name = tagged.tag.to_string();
            let name = name.trim_start_matches('!');
            let function = if matches!(name, "Ref" | "Condition") {
                name.to_owned()
            } else {
                format!("Fn::{name}")
            };
            Some((function, &tagged.value))
        }
        Yaml::Mapping(mapping) if mapping.len() == 1 => {
            let (key, argument) = mapping.iter().next()?;
            let key = key.as_str()?;
            (key == "Ref" || key == "Condition" || key.starts_with("Fn::"))
                .then(|| (key.to_owned(), argument))
        }
        _ => None,
    }
}

fn scalar_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(text) => Some(text.clone()),
        Yaml::Number(number) => Some(number.to_string()),
        Yaml::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn json_text(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The properties the local stack knows how to pass on; any other one fails, so that a
/// property added to the template is not silently dropped here.
fn check_known(
    resource: &str,
    properties: &Map<String, Json>,
    known: &[&str],
) -> Result<(), DatastoreError> {
    match properties.keys().find(|key| !known.contains(&key.as_str())) {
        Some(unknown) => Err(template_error(format!(
            "{resource}.{unknown} is not passed on by the local provisioning (tests/src/datastores.rs)"
        ))),
        None => Ok(()),
    }
}

fn text_of(properties: &Map<String, Json>, name: &str) -> Option<String> {
    properties.get(name).map(json_text)
}

/// The ids of the two data stores, once both are ACTIVE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedDatastores {
    pub fhir_datastore_id: String,
    pub imaging_datastore_id: String,
}

impl ProvisionedDatastores {
    /// The lines the functions' env file gets (later lines of that file win).
    pub fn env_lines(&self) -> String {
        format!(
            "# Created through the API by provision-datastores (tests/src/datastores.rs)\n\
             FHIR_DATASTORE_ID={}\nIMAGING_DATASTORE_ID={}\n",
            self.fhir_datastore_id, self.imaging_datastore_id
        )
    }

    /// Appends [`Self::env_lines`] to `path`.
    pub fn append_to(&self, path: &Path) -> Result<(), DatastoreError> {
        use std::io::Write;
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)?;
            file.write_all(self.env_lines().as_bytes())
        };
        write().map_err(|source| DatastoreError::WriteEnv {
            path: path.to_owned(),
            source,
        })
    }
}

/// The CreateFHIRDatastore request `FhirDatastore`'s properties make.
pub fn fhir_create_request(
    properties: &Map<String, Json>,
    client_token: &str,
) -> Result<
    aws_sdk_healthlake::operation::create_fhir_datastore::CreateFhirDatastoreInput,
    DatastoreError,
> {
    use aws_sdk_healthlake::types::{
        AuthorizationStrategy, CmkType, FhirVersion, IdentityProviderConfiguration,
        KmsEncryptionConfig, PreloadDataConfig, PreloadDataType, SseConfiguration, Tag,
    };
    check_known(
        FHIR_DATASTORE_RESOURCE,
        properties,
        &[
            "DatastoreName",
            "DatastoreTypeVersion",
            "SseConfiguration",
            "PreloadDataConfig",
            "IdentityProviderConfiguration",
            "Tags",
        ],
    )?;
    let built = |what: &str| {
        let what = what.to_owned();
        move |err: aws_sdk_healthlake::error::BuildError| {
            template_error(format!("{FHIR_DATASTORE_RESOURCE}.{what}: {err}"))
        }
    };
    let sse = properties
        .get("SseConfiguration")
        .and_then(|sse| sse.get("KmsEncryptionConfig"))
        .map(|kms| {
            let config = KmsEncryptionConfig::builder()
                .cmk_type(CmkType::from(
                    kms.get("CmkType")
                        .map(json_text)
                        .unwrap_or_default()
                        .as_str(),
                ))
                .set_kms_key_id(kms.get("KmsKeyId").map(json_text))
                .build()
                .map_err(built("SseConfiguration"))?;
            Ok(SseConfiguration::builder()
                .kms_encryption_config(config)
                .build())
        })
        .transpose()?;
    let preload = properties
        .get("PreloadDataConfig")
        .map(|preload| {
            PreloadDataConfig::builder()
                .preload_data_type(PreloadDataType::from(
                    preload
                        .get("PreloadDataType")
                        .map(json_text)
                        .unwrap_or_default()
                        .as_str(),
                ))
                .build()
                .map_err(built("PreloadDataConfig"))
        })
        .transpose()?;
    // The template sets it only for SMART on FHIR; with the parameters' defaults (AWS_AUTH) the
    // local stack takes the non-SMART branch, which leaves it out. Were it evaluated, its
    // IdpLambdaArn (the decoder's alias) would stop the evaluation above: it does not exist
    // locally.
    let identity_provider = properties
        .get("IdentityProviderConfiguration")
        .map(|idp| {
            IdentityProviderConfiguration::builder()
                .authorization_strategy(AuthorizationStrategy::from(
                    idp.get("AuthorizationStrategy")
                        .map(json_text)
                        .unwrap_or_default()
                        .as_str(),
                ))
                .set_fine_grained_authorization_enabled(
                    idp.get("FineGrainedAuthorizationEnabled")
                        .map(|flag| json_text(flag) == "true"),
                )
                .set_metadata(idp.get("Metadata").map(json_text))
                .set_idp_lambda_arn(idp.get("IdpLambdaArn").map(json_text))
                .build()
                .map_err(built("IdentityProviderConfiguration"))
        })
        .transpose()?;
    let tags = properties
        .get("Tags")
        .and_then(Json::as_array)
        .map(|tags| {
            tags.iter()
                .map(|tag| {
                    Tag::builder()
                        .key(tag.get("Key").map(json_text).unwrap_or_default())
                        .value(tag.get("Value").map(json_text).unwrap_or_default())
                        .build()
                        .map_err(built("Tags"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    aws_sdk_healthlake::operation::create_fhir_datastore::CreateFhirDatastoreInput::builder()
        .set_datastore_name(text_of(properties, "DatastoreName"))
        .datastore_type_version(FhirVersion::from(
            text_of(properties, "DatastoreTypeVersion")
                .unwrap_or_default()
                .as_str(),
        ))
        .set_sse_configuration(sse)
        .set_preload_data_config(preload)
        .set_identity_provider_configuration(identity_provider)
        .set_tags(tags)
        .client_token(client_token)
        .build()
        .map_err(built("request"))
}

/// The CreateDatastore request `ImagingDatastore`'s properties make.
pub fn imaging_create_request(
    properties: &Map<String, Json>,
    client_token: &str,
) -> Result<aws_sdk_medicalimaging::operation::create_datastore::CreateDatastoreInput, DatastoreError>
{
    check_known(
        IMAGING_DATASTORE_RESOURCE,
        properties,
        &[
            "DatastoreName",
            "KmsKeyArn",
            "LambdaAuthorizerArn",
            "LosslessStorageFormat",
            "Tags",
        ],
    )?;
    let tags: Option<HashMap<String, String>> = properties
        .get("Tags")
        .and_then(Json::as_object)
        .map(|tags| {
            tags.iter()
                .map(|(k, v)| (k.clone(), json_text(v)))
                .collect()
        });
    aws_sdk_medicalimaging::operation::create_datastore::CreateDatastoreInput::builder()
        .set_datastore_name(text_of(properties, "DatastoreName"))
        .set_kms_key_arn(text_of(properties, "KmsKeyArn"))
        .set_lambda_authorizer_arn(text_of(properties, "LambdaAuthorizerArn"))
        .set_lossless_storage_format(text_of(properties, "LosslessStorageFormat").map(|format| {
            aws_sdk_medicalimaging::types::LosslessStorageFormat::from(format.as_str())
        }))
        .set_tags(tags)
        .client_token(client_token)
        .build()
        .map_err(|err| template_error(format!("{IMAGING_DATASTORE_RESOURCE}: {err}")))
}

/// How often the start-up readiness wait asks whether a data store is ACTIVE.
const ACTIVE_POLL: Duration = Duration::from_millis(50);

/// Creates both data stores from the template (idempotent: the ClientTokens are derived from
/// the stack and the logical ids) and waits until both are ACTIVE, at most `deadline`.
pub async fn provision(
    sdk: &SdkConfig,
    template: &Template,
    deadline: Duration,
) -> Result<ProvisionedDatastores, DatastoreError> {
    let stack = &template.stack_name;
    let fhir_properties = template
        .resource_properties(FHIR_DATASTORE_RESOURCE, "AWS::HealthLake::FHIRDatastore")?
        .ok_or_else(|| template_error("FhirDatastore's condition is false with the defaults"))?;
    let imaging_properties = template
        .resource_properties(IMAGING_DATASTORE_RESOURCE, "AWS::HealthImaging::Datastore")?
        .ok_or_else(|| template_error("ImagingDatastore's condition is false with the defaults"))?;
    let fhir_input = fhir_create_request(
        &fhir_properties,
        &format!("{stack}-{FHIR_DATASTORE_RESOURCE}"),
    )?;
    let imaging_input = imaging_create_request(
        &imaging_properties,
        &format!("{stack}-{IMAGING_DATASTORE_RESOURCE}"),
    )?;

    let healthlake = aws_sdk_healthlake::Client::new(sdk);
    let imaging = aws_sdk_medicalimaging::Client::new(sdk);
    let fhir_id = healthlake
        .create_fhir_datastore()
        .set_datastore_name(fhir_input.datastore_name)
        .set_datastore_type_version(fhir_input.datastore_type_version)
        .set_sse_configuration(fhir_input.sse_configuration)
        .set_preload_data_config(fhir_input.preload_data_config)
        .set_identity_provider_configuration(fhir_input.identity_provider_configuration)
        .set_tags(fhir_input.tags)
        .set_client_token(fhir_input.client_token)
        .send()
        .await
        .map_err(|err| sdk_error("CreateFHIRDatastore")(err.into()))?
        .datastore_id
        .clone();
    let imaging_id = imaging
        .create_datastore()
        .set_datastore_name(imaging_input.datastore_name)
        .set_kms_key_arn(imaging_input.kms_key_arn)
        .set_lambda_authorizer_arn(imaging_input.lambda_authorizer_arn)
        .set_lossless_storage_format(imaging_input.lossless_storage_format)
        .set_tags(imaging_input.tags)
        .set_client_token(imaging_input.client_token)
        .send()
        .await
        .map_err(|err| sdk_error("CreateDatastore")(err.into()))?
        .datastore_id
        .clone();

    let started = tokio::time::Instant::now();
    loop {
        let fhir_status = healthlake
            .describe_fhir_datastore()
            .datastore_id(&fhir_id)
            .send()
            .await
            .map_err(|err| sdk_error("DescribeFHIRDatastore")(err.into()))?
            .datastore_properties
            .map(|properties| properties.datastore_status.as_str().to_owned())
            .unwrap_or_default();
        let imaging_status = imaging
            .get_datastore()
            .datastore_id(&imaging_id)
            .send()
            .await
            .map_err(|err| sdk_error("GetDatastore")(err.into()))?
            .datastore_properties
            .map(|properties| properties.datastore_status.as_str().to_owned())
            .unwrap_or_default();
        if fhir_status == "ACTIVE" && imaging_status == "ACTIVE" {
            return Ok(ProvisionedDatastores {
                fhir_datastore_id: fhir_id,
                imaging_datastore_id: imaging_id,
            });
        }
        let waited = started.elapsed();
        if waited >= deadline {
            let (id, status) = if fhir_status == "ACTIVE" {
                (imaging_id, imaging_status)
            } else {
                (fhir_id, fhir_status)
            };
            return Err(DatastoreError::NotActive { id, status, waited });
        }
        // Start-up readiness wait, as the stack's own wait for its servers.
        tokio::time::sleep(ACTIVE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_stack::template_path;

    fn template() -> Template {
        Template::read(&template_path(), LOCAL_STACK_NAME).unwrap()
    }

    #[test]
    fn the_fhir_datastore_is_what_the_template_says_with_its_defaults() {
        let properties = template()
            .resource_properties(FHIR_DATASTORE_RESOURCE, "AWS::HealthLake::FHIRDatastore")
            .unwrap()
            .expect("created with the defaults");
        assert_eq!(properties["DatastoreName"], "healthimport-local-fhir");
        assert_eq!(properties["DatastoreTypeVersion"], "R4");
        assert!(
            !properties.contains_key("IdentityProviderConfiguration"),
            "AWS_AUTH by default: no identity provider"
        );
        assert_eq!(
            properties["SseConfiguration"]["KmsEncryptionConfig"]["CmkType"],
            "AWS_OWNED_KMS_KEY"
        );
        let request = fhir_create_request(&properties, "healthimport-local-FhirDatastore").unwrap();
        assert_eq!(request.datastore_name(), Some("healthimport-local-fhir"));
        assert_eq!(
            request
                .sse_configuration()
                .and_then(|sse| sse.kms_encryption_config())
                .map(|kms| kms.cmk_type().as_str()),
            Some("AWS_OWNED_KMS_KEY")
        );
    }

    #[test]
    fn the_imaging_datastore_is_what_the_template_says_with_its_defaults() {
        let properties = template()
            .resource_properties(IMAGING_DATASTORE_RESOURCE, "AWS::HealthImaging::Datastore")
            .unwrap()
            .expect("created with the defaults");
        assert_eq!(properties["DatastoreName"], "healthimport-local-imaging");
        assert!(
            !properties.contains_key("KmsKeyArn"),
            "AWS::NoValue drops it"
        );
        let request = imaging_create_request(&properties, "t").unwrap();
        assert_eq!(request.datastore_name(), Some("healthimport-local-imaging"));
        assert_eq!(request.client_token(), Some("t"));
    }

    #[test]
    fn intrinsics_follow_cloudformation() {
        let template = Template {
            document: serde_yaml::from_str(
                r#"
Parameters:
  Name: {Type: String, Default: x}
  Empty: {Type: String, Default: ""}
  Items: {Type: CommaDelimitedList, Default: "a,b"}
Conditions:
  IsEmpty: !Equals [!Ref Empty, ""]
  Both: !And [!Condition IsEmpty, !Not [!Equals [!Ref Name, y]]]
Resources:
  R:
    Type: T
    Properties:
      A: !Sub "${AWS::StackName}-${Name}-${!Literal}"
      B: !If [Both, yes-branch, !Ref AWS::NoValue]
      C: !If [IsEmpty, !Ref AWS::NoValue, kept]
      D: !Join ["+", !Ref Items]
      E: {"Fn::Sub": ["${V}!", {V: !Ref Name}]}
  Unknown:
    Type: T
    Properties:
      A: !GetAtt R.Arn
"#,
            )
            .unwrap(),
            stack_name: "s".to_owned(),
        };
        let properties = template.resource_properties("R", "T").unwrap().unwrap();
        assert_eq!(properties["A"], "s-x-${Literal}");
        assert_eq!(properties["B"], "yes-branch");
        assert!(!properties.contains_key("C"));
        assert_eq!(properties["D"], "a+b");
        assert_eq!(properties["E"], "x!");
        let err = template.resource_properties("Unknown", "T").unwrap_err();
        assert!(err.to_string().contains("GetAtt"), "{err}");
    }
}
