//! The local stack's data stores, created the way a deployment creates them: from what
//! `template.yaml`'s `FhirDatastore` (`AWS::HealthLake::FHIRDatastore`) and `ImagingDatastore`
//! (`AWS::HealthImaging::Datastore`) resources say, through CreateFHIRDatastore and
//! CreateDatastore with the real SDK clients, then waited on until Describe / Get say ACTIVE.
//! Nothing is pre-seeded in the double, so the ids exist only once this has run; the
//! `provision-datastores` binary hands them to the functions through the stack's env file.
//!
//! The template's intrinsic functions are evaluated as CloudFormation would for a stack named
//! [`LOCAL_STACK_NAME`] deployed with every parameter at its default ([`crate::cfn`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::SdkConfig;
use serde_json::{Map, Value as Json};

use crate::cfn::{json_text, TemplateError};
pub use crate::cfn::{Deployment, Template};

/// The stack name the local stack stands for (`${AWS::StackName}`), the prefix of every local
/// resource name in `scripts/local-functions.env`.
pub const LOCAL_STACK_NAME: &str = "healthimport-local";
/// The template's logical ids of the two data stores.
pub const FHIR_DATASTORE_RESOURCE: &str = "FhirDatastore";
pub const IMAGING_DATASTORE_RESOURCE: &str = "ImagingDatastore";

#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    #[error(transparent)]
    TemplateFile(#[from] TemplateError),
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
            Ok::<_, DatastoreError>(
                SseConfiguration::builder()
                    .kms_encryption_config(config)
                    .build(),
            )
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
    let stack = template.stack_name();
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
        Template::read(&template_path(), Deployment::local(LOCAL_STACK_NAME)).unwrap()
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
}
