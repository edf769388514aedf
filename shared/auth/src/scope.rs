//! SMART on FHIR scopes. They are passed to HealthLake unchanged (v1 `patient/Observation.read`,
//! v2 `patient/Observation.rs`, v2.2 `patient/Observation.rs?category=laboratory`): HealthLake
//! enforces them. Here we only decide whether a token carries any SMART scope at all, because a
//! token without one (an ID token, a token for another API) has no business at the FHIR API.

/// Joins scope values into HealthLake's space-separated string. Each value may itself be a
/// space-separated list (a `scope` string); runs of whitespace collapse to one space.
pub fn join<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut joined = String::new();
    for scope in values.flat_map(str::split_ascii_whitespace) {
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(scope);
    }
    joined
}

/// True when one of the space-separated scopes is a SMART scope: a clinical scope
/// `patient/…`, `user/…`, `system/…` with something after the slash, or a launch scope
/// (`launch`, `launch/patient`, `launch/encounter`).
pub fn has_smart_scope(scopes: &str) -> bool {
    scopes.split_ascii_whitespace().any(is_smart_scope)
}

fn is_smart_scope(scope: &str) -> bool {
    if scope == "launch" {
        return true;
    }
    match scope.split_once('/') {
        Some(("patient" | "user" | "system" | "launch", rest)) => !rest.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_versions_are_recognised() {
        for scope in [
            "patient/Observation.read",
            "user/*.*",
            "system/*.write",
            "patient/Observation.rs",
            "system/*.cruds",
            "user/Encounter.cud",
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            "launch",
            "launch/patient",
            "openid fhirUser patient/Patient.r",
        ] {
            assert!(has_smart_scope(scope), "{scope}");
        }
    }

    #[test]
    fn non_smart_scopes_are_not() {
        for scope in [
            "",
            "openid profile",
            "fhirUser offline_access",
            "patient/",
            "patient",
            "launcher",
            "Patient/*.read",
            "admin/x",
            "launch/",
        ] {
            assert!(!has_smart_scope(scope), "{scope}");
        }
    }

    #[test]
    fn join_passes_scopes_through_unchanged() {
        let v22 = "patient/Observation.rs?category=laboratory&code=1234-5";
        assert_eq!(join(["launch", v22].into_iter()), format!("launch {v22}"));
        assert_eq!(join(["  a \t b ", "c"].into_iter()), "a b c");
        assert_eq!(join(std::iter::empty()), "");
    }
}
