//! The synthetic sample set the demo and the end-to-end tests upload: small FHIR R4 NDJSON files
//! (one with a broken line) in one folder, a DICOM study of generated P10 files with one broken
//! file and its batch marker, and a lone DICOM file. No real patient data: every name, id and UID is made up.

use healthimport::domain::job::JobStatus;
use serde_json::json;

/// One object to upload, in upload order (a batch marker comes after its batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleObject {
    pub key: String,
    pub body: Vec<u8>,
}

/// What one upload of the sample set should end as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedUpload {
    pub key: String,
    pub service: &'static str,
    /// The upload's own final status: its file's result from its batch's output manifest
    /// (`SKIPPED` for the batch marker, which closes its batch and is not imported itself).
    pub status: JobStatus,
    /// Which of the set's batches it joins (uploads with the same label share one batch).
    pub batch: &'static str,
}

impl ExpectedUpload {
    pub fn is_imported(&self) -> bool {
        self.status != JobStatus::Skipped
    }
}

/// The whole sample set under `fhir_prefix` / `dicom_prefix` (each ending in `/`), and what each
/// upload should end as. `tag` keeps two runs' keys apart (the demo runs twice without a reset).
/// Three batches: the FHIR files of one folder (closed when quiet), a DICOM study with a broken
/// file and its marker (closed by the marker), and a lone DICOM file directly under the prefix.
pub fn sample_set(
    fhir_prefix: &str,
    dicom_prefix: &str,
    marker: &str,
    tag: &str,
) -> (Vec<SampleObject>, Vec<ExpectedUpload>) {
    let mut objects = Vec::new();
    let mut uploads = Vec::new();
    let mut add = |key: String, body: Vec<u8>, service, status, batch| {
        uploads.push(ExpectedUpload {
            key: key.clone(),
            service,
            status,
            batch,
        });
        objects.push(SampleObject { key, body });
    };

    let patients: Vec<_> = (1..=3).map(patient).collect();
    let observations: Vec<_> = (1..=4).map(|i| observation(i, (i % 3) + 1)).collect();
    let mut encounters: Vec<_> = (1..=2).map(|i| encounter(i, i)).collect();
    // A line cut off mid-object: HealthLake rejects that line and imports the others.
    encounters.insert(
        1,
        r#"{"resourceType":"Encounter","id":"enc-broken","status":"#.to_owned(),
    );
    for (name, lines, status) in [
        ("patients", patients, JobStatus::Completed),
        ("observations", observations, JobStatus::Completed),
        (
            "encounters-with-a-broken-line",
            encounters,
            JobStatus::CompletedWithErrors,
        ),
    ] {
        add(
            format!("{fhir_prefix}{tag}/{name}.ndjson"),
            (lines.join("\n") + "\n").into_bytes(),
            "HEALTHLAKE",
            status,
            "fhir",
        );
    }

    let batch = format!("{dicom_prefix}{tag}-study-0001/");
    let study = format!("2.25.{}", stable_number(&batch));
    for instance in 1..=4 {
        add(
            format!("{batch}ct-{instance:04}.dcm"),
            dicom_p10(&study, instance),
            "HEALTHIMAGING",
            JobStatus::Completed,
            "study",
        );
    }
    add(
        format!("{batch}ct-0005.dcm"),
        b"this is not a DICOM Part 10 file".to_vec(),
        "HEALTHIMAGING",
        JobStatus::Failed,
        "study",
    );
    add(
        format!("{batch}{marker}"),
        Vec::new(),
        "HEALTHIMAGING",
        JobStatus::Skipped,
        "study",
    );

    let lone = format!("{dicom_prefix}{tag}-lone-xray.dcm");
    let body = dicom_p10(&format!("2.25.{}", stable_number(&lone)), 1);
    add(lone, body, "HEALTHIMAGING", JobStatus::Completed, "lone");
    (objects, uploads)
}

fn patient(i: u32) -> String {
    json!({
        "resourceType": "Patient",
        "id": format!("demo-patient-{i}"),
        "name": [{"family": "Synthetic", "given": [format!("Demo{i}")]}],
        "gender": if i.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": format!("19{:02}-0{}-1{}", 50 + i, (i % 9) + 1, i % 10),
    })
    .to_string()
}

fn observation(i: u32, patient: u32) -> String {
    json!({
        "resourceType": "Observation",
        "id": format!("demo-observation-{i}"),
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/demo-patient-{patient}")},
        "valueQuantity": {"value": 60 + i, "unit": "beats/minute"},
    })
    .to_string()
}

fn encounter(i: u32, patient: u32) -> String {
    json!({
        "resourceType": "Encounter",
        "id": format!("demo-encounter-{i}"),
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/demo-patient-{patient}")},
    })
    .to_string()
}

/// A small, valid DICOM Part 10 CT image (explicit VR little endian, 8×8 16-bit pixels).
pub fn dicom_p10(study_uid: &str, instance: u32) -> Vec<u8> {
    const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
    const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
    let series_uid = format!("{study_uid}.1");
    let instance_uid = format!("{series_uid}.{instance}");

    let mut meta = Vec::new();
    element(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    element(
        &mut meta,
        0x0002,
        0x0002,
        b"UI",
        CT_IMAGE_STORAGE.as_bytes(),
    );
    element(&mut meta, 0x0002, 0x0003, b"UI", instance_uid.as_bytes());
    element(
        &mut meta,
        0x0002,
        0x0010,
        b"UI",
        EXPLICIT_VR_LITTLE_ENDIAN.as_bytes(),
    );

    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    element(
        &mut file,
        0x0002,
        0x0000,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    file.extend_from_slice(&meta);
    element(
        &mut file,
        0x0008,
        0x0016,
        b"UI",
        CT_IMAGE_STORAGE.as_bytes(),
    );
    element(&mut file, 0x0008, 0x0018, b"UI", instance_uid.as_bytes());
    element(&mut file, 0x0008, 0x0060, b"CS", b"CT");
    element(&mut file, 0x0010, 0x0010, b"PN", b"SYNTHETIC^DEMO");
    element(&mut file, 0x0010, 0x0020, b"LO", b"DEMO-0001");
    element(&mut file, 0x0020, 0x000D, b"UI", study_uid.as_bytes());
    element(&mut file, 0x0020, 0x000E, b"UI", series_uid.as_bytes());
    element(
        &mut file,
        0x0020,
        0x0013,
        b"IS",
        instance.to_string().as_bytes(),
    );
    element(&mut file, 0x0028, 0x0002, b"US", &1u16.to_le_bytes());
    element(&mut file, 0x0028, 0x0004, b"CS", b"MONOCHROME2");
    element(&mut file, 0x0028, 0x0010, b"US", &8u16.to_le_bytes());
    element(&mut file, 0x0028, 0x0011, b"US", &8u16.to_le_bytes());
    element(&mut file, 0x0028, 0x0100, b"US", &16u16.to_le_bytes());
    element(&mut file, 0x0028, 0x0101, b"US", &12u16.to_le_bytes());
    element(&mut file, 0x0028, 0x0102, b"US", &11u16.to_le_bytes());
    element(&mut file, 0x0028, 0x0103, b"US", &0u16.to_le_bytes());
    let pixels: Vec<u8> = (0..64u16)
        .flat_map(|p| (p * 64 + instance as u16).to_le_bytes())
        .collect();
    element(&mut file, 0x7FE0, 0x0010, b"OW", &pixels);
    file
}

/// One explicit-VR little-endian element, its value padded to even length as Part 5 requires.
fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    let mut value = value.to_vec();
    if !value.len().is_multiple_of(2) {
        value.push(if vr == b"UI" || vr == b"OB" { 0 } else { b' ' });
    }
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"OF" | b"SQ" | b"UT" | b"UN") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(&value);
}

/// A number derived from a string, for UIDs that differ between keys but not between runs.
fn stable_number(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) % 10_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_p10_file_has_the_preamble_magic_and_a_true_group_length() {
        let file = dicom_p10("2.25.1234", 7);
        assert_eq!(&file[128..132], b"DICM");
        // (0002,0000) UL, length 4, then the value: the byte length of the rest of group 0002.
        assert_eq!(&file[132..138], &[0x02, 0x00, 0x00, 0x00, b'U', b'L']);
        let group_length = u32::from_le_bytes(file[140..144].try_into().unwrap()) as usize;
        let after_meta = 144 + group_length;
        assert_eq!(
            &file[after_meta..after_meta + 2],
            &[0x08, 0x00],
            "the data set starts right after the meta group"
        );
        assert!(file.len().is_multiple_of(2));
    }

    #[test]
    fn the_sample_set_is_what_the_expected_uploads_say() {
        let (objects, uploads) = sample_set("fhir/", "dicom/", "_READY", "run1");
        assert_eq!(uploads.len(), objects.len());
        for (upload, object) in uploads.iter().zip(&objects) {
            assert_eq!(upload.key, object.key);
        }
        let batches: std::collections::BTreeSet<_> = uploads.iter().map(|u| u.batch).collect();
        assert_eq!(batches.len(), 3);
        let marker = objects
            .iter()
            .position(|o| o.key.ends_with("/_READY"))
            .unwrap();
        let batch_files = objects
            .iter()
            .filter(|o| o.key.starts_with("dicom/run1-study-0001/") && o.key.ends_with(".dcm"))
            .count();
        assert_eq!(batch_files, 5);
        assert!(
            objects[..marker]
                .iter()
                .filter(|o| o.key.starts_with("dicom/run1-study-0001/"))
                .count()
                == 5,
            "the marker is uploaded after its batch"
        );
        let broken = objects
            .iter()
            .find(|o| o.key.contains("broken-line"))
            .unwrap();
        let lines: Vec<_> = std::str::from_utf8(&broken.body).unwrap().lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(serde_json::from_str::<serde_json::Value>(lines[1]).is_err());
        assert!(serde_json::from_str::<serde_json::Value>(lines[0]).is_ok());
    }
}
