//! `s3://bucket/key` URIs, built and taken apart in one place.

/// `s3://bucket/key`.
pub fn s3_uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// Splits `s3://bucket/key` into its bucket and key.
pub fn split_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_split_into_bucket_and_key() {
        assert_eq!(split_s3_uri("s3://b/k/x.json"), Some(("b", "k/x.json")));
        assert_eq!(split_s3_uri("s3://b"), Some(("b", "")));
        assert_eq!(split_s3_uri("https://b/k"), None);
        assert_eq!(split_s3_uri("s3:///k"), None);
    }

    #[test]
    fn built_uris_split_back() {
        let uri = s3_uri("b", "dicom/a b/x.dcm");
        assert_eq!(uri, "s3://b/dicom/a b/x.dcm");
        assert_eq!(split_s3_uri(&uri), Some(("b", "dicom/a b/x.dcm")));
    }
}
