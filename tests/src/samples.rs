//! The synthetic sample set the demo and the end-to-end tests upload: small FHIR R4 NDJSON files
//! (one with a broken line), a DICOM batch of generated P10 files with one broken file and its
//! batch marker, and a lone DICOM file. No real patient data: every name, id and UID is made up.

use serde_json::json;

/// One object to upload, in upload order (a batch marker comes after its batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleObject {
    pub key: String,
    pub body: Vec<u8>,
}

/// What the sample set should turn into: one job per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedJob {
    /// The key whose upload starts the job (the file, or the batch marker).
    pub trigger_key: String,
    pub service: &'static str,
    /// Input files of the job (an NDJSON file is one, however many resources it holds).
    pub files: u64,
    /// Whether some of its input must be reported failed (a broken line or file).
    pub has_failures: bool,
}

/// The whole sample set under `fhir_prefix` / `dicom_prefix` (each ending in `/`), and the jobs it
/// should produce. `tag` keeps two runs' keys apart (the demo runs twice without a reset).
pub fn sample_set(
    fhir_prefix: &str,
    dicom_prefix: &str,
    marker: &str,
    tag: &str,
) -> (Vec<SampleObject>, Vec<ExpectedJob>) {
    let mut objects = Vec::new();
    let mut jobs = Vec::new();

    let patients: Vec<_> = (1..=3).map(patient).collect();
    let observations: Vec<_> = (1..=4).map(|i| observation(i, (i % 3) + 1)).collect();
    let mut encounters: Vec<_> = (1..=2).map(|i| encounter(i, i)).collect();
    // A line cut off mid-object: HealthLake rejects that line and imports the others.
    encounters.insert(
        1,
        r#"{"resourceType":"Encounter","id":"enc-broken","status":"#.to_owned(),
    );
    for (name, lines, has_failures) in [
        ("patients", patients, false),
        ("observations", observations, false),
        ("encounters-with-a-broken-line", encounters, true),
    ] {
        let key = format!("{fhir_prefix}{tag}/{name}.ndjson");
        jobs.push(ExpectedJob {
            trigger_key: key.clone(),
            service: "HEALTHLAKE",
            files: 1,
            has_failures,
        });
        objects.push(SampleObject {
            key,
            body: (lines.join("\n") + "\n").into_bytes(),
        });
    }

    let batch = format!("{dicom_prefix}{tag}-study-0001/");
    let study = format!("2.25.{}", stable_number(&batch));
    for instance in 1..=4 {
        objects.push(SampleObject {
            key: format!("{batch}ct-{instance:04}.dcm"),
            body: dicom_p10(&study, instance),
        });
    }
    objects.push(SampleObject {
        key: format!("{batch}ct-0005.dcm"),
        body: b"this is not a DICOM Part 10 file".to_vec(),
    });
    objects.push(SampleObject {
        key: format!("{batch}{marker}"),
        body: Vec::new(),
    });
    jobs.push(ExpectedJob {
        trigger_key: format!("{batch}{marker}"),
        service: "HEALTHIMAGING",
        files: 5,
        has_failures: true,
    });

    let lone = format!("{dicom_prefix}{tag}-lone-xray.dcm");
    objects.push(SampleObject {
        key: lone.clone(),
        body: dicom_p10(&format!("2.25.{}", stable_number(&lone)), 1),
    });
    jobs.push(ExpectedJob {
        trigger_key: lone,
        service: "HEALTHIMAGING",
        files: 1,
        has_failures: false,
    });
    (objects, jobs)
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
    fn the_sample_set_is_what_the_expected_jobs_say() {
        let (objects, jobs) = sample_set("fhir/", "dicom/", "_READY", "run1");
        assert_eq!(jobs.len(), 5);
        for job in &jobs {
            assert!(objects.iter().any(|o| o.key == job.trigger_key), "{job:?}");
        }
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
