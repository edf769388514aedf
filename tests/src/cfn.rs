//! A CloudFormation template read as a deployment would evaluate it: parameters at their
//! defaults, conditions, pseudo parameters and the intrinsic functions a property can use
//! (`Ref`, `Fn::If`, `Fn::Sub`, `Fn::Join`, the condition functions). One evaluator for the local
//! stack's provisioning (data stores from `template.yaml`) and for the tests that read the
//! template (the dashboard's body).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};
use serde_yaml::Value as Yaml;

use crate::provision::{LOCAL_ACCOUNT, LOCAL_REGION};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML")]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("template: {0}")]
    Unsupported(String),
}

fn unsupported(message: impl Into<String>) -> TemplateError {
    TemplateError::Unsupported(message.into())
}

/// The stack the template is evaluated for.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub stack_name: String,
    pub region: String,
    pub account: String,
    pub resources: ResourceReferences,
}

/// What a reference to one of the template's resources evaluates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceReferences {
    /// An error: the value exists only once CloudFormation created the resource, and the local
    /// stack says so rather than guess.
    Refused,
    /// `Name-ref` for `!Ref Name` and `${Name}`, `Name-Attribute` for `${Name.Attribute}`: for a
    /// test that checks which resource a value names.
    Placeholders,
}

impl Deployment {
    /// The local stack: its Region and account, resources refused.
    pub fn local(stack_name: &str) -> Deployment {
        Deployment {
            stack_name: stack_name.to_owned(),
            region: LOCAL_REGION.to_owned(),
            account: LOCAL_ACCOUNT.to_owned(),
            resources: ResourceReferences::Refused,
        }
    }
}

/// A template with its parameters and conditions, for evaluating resource properties.
pub struct Template {
    document: Yaml,
    deployment: Deployment,
}

impl Template {
    pub fn read(path: &Path, deployment: Deployment) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        let document = serde_yaml::from_str(&text).map_err(|source| TemplateError::Yaml {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            document,
            deployment,
        })
    }

    /// The stack it is evaluated for (`${AWS::StackName}`).
    pub fn stack_name(&self) -> &str {
        &self.deployment.stack_name
    }

    /// The template as read, for what is not a resource's properties (its Globals, Outputs).
    pub fn document(&self) -> &Yaml {
        &self.document
    }

    /// The resource's `Properties` with every intrinsic function evaluated, as JSON; `None`
    /// when its `Condition` is false (CloudFormation would not create it).
    pub fn resource_properties(
        &self,
        logical_id: &str,
        expected_type: &str,
    ) -> Result<Option<Map<String, Json>>, TemplateError> {
        let resource = self
            .document
            .get("Resources")
            .and_then(|resources| resources.get(logical_id))
            .ok_or_else(|| unsupported(format!("no resource {logical_id}")))?;
        let kind = resource.get("Type").and_then(Yaml::as_str);
        if kind != Some(expected_type) {
            return Err(unsupported(format!(
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
            Some(other) => Err(unsupported(format!(
                "{logical_id}.Properties is not a mapping: {other}"
            ))),
        }
    }

    fn parameter_default(&self, name: &str) -> Result<Json, TemplateError> {
        let parameter = self
            .document
            .get("Parameters")
            .and_then(|parameters| parameters.get(name))
            .ok_or_else(|| unsupported(format!("!Ref {name}: no such parameter")))?;
        let default = parameter.get("Default").ok_or_else(|| {
            unsupported(format!(
                "parameter {name} has no Default (the local stack deploys with defaults)"
            ))
        })?;
        let text = scalar_text(default)
            .ok_or_else(|| unsupported(format!("parameter {name}: Default is not a scalar")))?;
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

    /// `!Ref`: pseudo parameters, parameters (at their defaults) and, as the deployment says,
    /// resources. `None` for AWS::NoValue.
    fn reference(&self, name: &str) -> Result<Option<Json>, TemplateError> {
        let deployment = &self.deployment;
        let pseudo = match name {
            "AWS::NoValue" => return Ok(None),
            "AWS::StackName" => deployment.stack_name.clone(),
            "AWS::Region" => deployment.region.clone(),
            "AWS::AccountId" => deployment.account.clone(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            _ if self.is_resource(name) => return self.resource_reference(name, None).map(Some),
            _ => return self.parameter_default(name).map(Some),
        };
        Ok(Some(Json::String(pseudo)))
    }

    fn is_resource(&self, name: &str) -> bool {
        self.document
            .get("Resources")
            .and_then(|resources| resources.get(name))
            .is_some()
    }

    /// A resource's `!Ref` (no attribute) or attribute: known only once CloudFormation created it.
    fn resource_reference(
        &self,
        name: &str,
        attribute: Option<&str>,
    ) -> Result<Json, TemplateError> {
        let spelled = match attribute {
            Some(attribute) => format!("{name}.{attribute}"),
            None => name.to_owned(),
        };
        if !self.is_resource(name) {
            return Err(unsupported(format!(
                "{spelled} names nothing in the template"
            )));
        }
        match self.deployment.resources {
            ResourceReferences::Refused => Err(unsupported(format!(
                "{spelled} is a resource's, not known locally"
            ))),
            ResourceReferences::Placeholders => Ok(Json::String(format!(
                "{name}-{}",
                attribute.unwrap_or("ref")
            ))),
        }
    }

    fn condition(&self, name: &str) -> Result<bool, TemplateError> {
        let definition = self
            .document
            .get("Conditions")
            .and_then(|conditions| conditions.get(name))
            .ok_or_else(|| unsupported(format!("no condition {name}")))?;
        self.truth(definition)
    }

    /// A condition function's value.
    fn truth(&self, value: &Yaml) -> Result<bool, TemplateError> {
        let (function, argument) = intrinsic(value)
            .ok_or_else(|| unsupported(format!("not a condition function: {value:?}")))?;
        let arguments = || {
            argument
                .as_sequence()
                .ok_or_else(|| unsupported(format!("{function} needs a list")))
        };
        match function.as_str() {
            "Condition" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| unsupported("Condition needs a name"))?;
                self.condition(name)
            }
            "Fn::Equals" => match arguments()?.as_slice() {
                [left, right] => Ok(self.evaluate(left)? == self.evaluate(right)?),
                _ => Err(unsupported("Fn::Equals needs two values")),
            },
            "Fn::Not" => match arguments()?.as_slice() {
                [inner] => Ok(!self.truth(inner)?),
                _ => Err(unsupported("Fn::Not needs one condition")),
            },
            "Fn::And" => arguments()?
                .iter()
                .try_fold(true, |all, inner| Ok(all && self.truth(inner)?)),
            "Fn::Or" => arguments()?
                .iter()
                .try_fold(false, |any, inner| Ok(any || self.truth(inner)?)),
            other => Err(unsupported(format!("{other} is not a condition function"))),
        }
    }

    /// A value with its intrinsic functions evaluated; `None` for AWS::NoValue (the member is
    /// then left out, as CloudFormation leaves it out).
    pub fn evaluate(&self, value: &Yaml) -> Result<Option<Json>, TemplateError> {
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
                        .ok_or_else(|| unsupported(format!("a non-string key {key:?}")))?;
                    if let Some(item) = self.evaluate(item)? {
                        object.insert(key.to_owned(), item);
                    }
                }
                Json::Object(object)
            }
            Yaml::Tagged(tagged) => {
                return Err(unsupported(format!("unsupported tag {}", tagged.tag)))
            }
        }))
    }

    fn call(&self, function: &str, argument: &Yaml) -> Result<Option<Json>, TemplateError> {
        match function {
            "Ref" => {
                let name = argument
                    .as_str()
                    .ok_or_else(|| unsupported("Ref needs a name"))?;
                self.reference(name)
            }
            "Fn::If" => match argument.as_sequence().map(Vec::as_slice) {
                Some([condition, then, otherwise]) => {
                    let name = condition
                        .as_str()
                        .ok_or_else(|| unsupported("Fn::If needs a condition name"))?;
                    let chosen = if self.condition(name)? {
                        then
                    } else {
                        otherwise
                    };
                    self.evaluate(chosen)
                }
                _ => Err(unsupported("Fn::If needs [condition, then, else]")),
            },
            "Fn::Sub" => {
                let (text, variables) = match argument {
                    Yaml::String(text) => (text.as_str(), None),
                    Yaml::Sequence(items) => match items.as_slice() {
                        [Yaml::String(text), variables] => (text.as_str(), Some(variables)),
                        _ => return Err(unsupported("Fn::Sub needs [text, variables]")),
                    },
                    _ => return Err(unsupported("Fn::Sub needs a string")),
                };
                self.substitute(text, variables)
                    .map(|text| Some(Json::String(text)))
            }
            "Fn::Join" => match argument.as_sequence().map(Vec::as_slice) {
                Some([delimiter, items]) => {
                    let delimiter = delimiter
                        .as_str()
                        .ok_or_else(|| unsupported("Fn::Join needs a delimiter"))?;
                    let items = match self.evaluate(items)? {
                        Some(Json::Array(items)) => items,
                        other => return Err(unsupported(format!("Fn::Join of {other:?}"))),
                    };
                    let parts: Vec<String> = items.iter().map(json_text).collect();
                    Ok(Some(Json::String(parts.join(delimiter))))
                }
                _ => Err(unsupported("Fn::Join needs [delimiter, list]")),
            },
            // A resource's attribute (an ARN, an alias) exists only once CloudFormation created
            // it: the local stack cannot know it, so it says so rather than guess.
            other => Err(unsupported(format!(
                "{other} cannot be evaluated locally (argument {argument:?})"
            ))),
        }
    }

    fn substitute(&self, text: &str, variables: Option<&Yaml>) -> Result<String, TemplateError> {
        let mut output = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("${") {
            output.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let close = after
                .find('}')
                .ok_or_else(|| unsupported(format!("unclosed ${{ in {text:?}")))?;
            let name = &after[..close];
            if let Some(literal) = name.strip_prefix('!') {
                output.push_str("${");
                output.push_str(literal);
                output.push('}');
            } else {
                let value = match variables.and_then(|variables| variables.get(name)) {
                    Some(variable) => self.evaluate(variable)?,
                    None => match name.split_once('.') {
                        Some((resource, attribute)) => {
                            Some(self.resource_reference(resource, Some(attribute))?)
                        }
                        None => self.reference(name)?,
                    },
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

pub fn json_text(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            deployment: Deployment {
                stack_name: "s".to_owned(),
                ..Deployment::local("s")
            },
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
