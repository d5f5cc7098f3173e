//! What a finished job leaves in its output assets: a few deterministic blobs
//! (two MP4 renditions, the `.ism`/`.ismc` manifests and a thumbnail).
//!
//! The bytes depend only on the job input and the transform output's preset,
//! never on the account, job name or time, so the same encode submitted in
//! two regions produces identical outputs and failover tests can compare them.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{Account, Job, JOB_INPUTS, JOB_INPUT_ASSET, JOB_INPUT_HTTP};

/// Base name of every output file; the manifest is `video.ism`.
pub const MANIFEST_BASE: &str = "video";

/// Writes the outputs of `job` into each output asset's container.
pub fn write_job_outputs(account: &mut Account, job: &Job, now: DateTime<Utc>) {
    let presets: Vec<Value> = account
        .transforms
        .get(&job.transform.to_ascii_lowercase())
        .map(|t| t.outputs.iter().map(|o| o.get("preset").cloned().unwrap_or(Value::Null)).collect())
        .unwrap_or_default();
    let input = input_fingerprint(account, &job.input);
    for (i, out) in job.outputs.iter().enumerate() {
        let Some(container) = account.assets.get(&out.asset_name.to_ascii_lowercase()).map(|a| a.container.clone())
        else {
            continue;
        };
        let preset = presets.get(i).map(canonical_json).unwrap_or_default();
        let seed: [u8; 32] = Sha256::digest(format!("ams-emulator/encode\n{input}\n{preset}").as_bytes()).into();
        for (name, bytes, content_type) in files(&seed) {
            account.storage.put_blob(&container, &name, bytes, content_type, now);
        }
    }
}

/// The output files for one seed.
fn files(seed: &[u8; 32]) -> Vec<(String, Vec<u8>, &'static str)> {
    let hex: String = seed.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mp4 = |kbps: u32, len: usize| {
        let mut bytes = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec();
        bytes.extend(stream(seed, &format!("mp4-{kbps}"), len));
        (format!("{MANIFEST_BASE}_{kbps}kbps.mp4"), bytes, "video/mp4")
    };
    // Duration in 100 ns ticks, a few seconds, fixed by the seed.
    let duration = 10_000_000u64 * (5 + u64::from(seed[0] % 25));
    let ism = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<smil xmlns=\"http://www.w3.org/2001/SMIL20/Language\">\n  <head>\n    \
         <meta name=\"formats\" content=\"mp4\" />\n    <meta name=\"fragmentsAligned\" content=\"true\" />\n    \
         <meta name=\"clientManifestRelativePath\" content=\"{MANIFEST_BASE}.ismc\" />\n    \
         <meta name=\"encoding\" content=\"{hex}\" />\n  </head>\n  <body>\n    <switch>\n      \
         <video src=\"{MANIFEST_BASE}_1000kbps.mp4\" systemBitrate=\"1000000\" />\n      \
         <video src=\"{MANIFEST_BASE}_2000kbps.mp4\" systemBitrate=\"2000000\" />\n    </switch>\n  </body>\n</smil>\n"
    );
    let ismc = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<SmoothStreamingMedia MajorVersion=\"2\" MinorVersion=\"2\" \
         Duration=\"{duration}\" TimeScale=\"10000000\">\n  <StreamIndex Chunks=\"1\" Type=\"video\" QualityLevels=\"2\" \
         Url=\"QualityLevels({{bitrate}})/Fragments(video={{start time}})\">\n    \
         <QualityLevel Index=\"0\" Bitrate=\"2000000\" FourCC=\"H264\" />\n    \
         <QualityLevel Index=\"1\" Bitrate=\"1000000\" FourCC=\"H264\" />\n    <c t=\"0\" d=\"{duration}\" />\n  \
         </StreamIndex>\n</SmoothStreamingMedia>\n"
    );
    let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpg.extend(stream(seed, "thumbnail", 512));
    jpg.extend([0xFF, 0xD9]);
    vec![
        mp4(1000, 4096),
        mp4(2000, 8192),
        (format!("{MANIFEST_BASE}.ism"), ism.into_bytes(), "application/octet-stream"),
        (format!("{MANIFEST_BASE}.ismc"), ismc.into_bytes(), "application/octet-stream"),
        ("thumbnail.jpg".to_string(), jpg, "image/jpeg"),
    ]
}

/// `len` pseudo-random bytes from `seed` and `label` (SHA-256 in counter mode).
fn stream(seed: &[u8; 32], label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed);
        h.update(label.as_bytes());
        h.update(counter.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// What identifies the input content. HTTP inputs: the URLs without their
/// query strings (SAS tokens differ between regions, the content does not).
/// Asset inputs: names and hashes of the blobs in the asset's container, so an
/// asset copied to another region fingerprints the same.
fn input_fingerprint(account: &Account, input: &Value) -> String {
    let kind = input.get("@odata.type").and_then(Value::as_str).unwrap_or("");
    let strip = |s: &str| s.split('?').next().unwrap_or("").to_string();
    let files: Vec<String> = input
        .get("files")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(strip).collect())
        .unwrap_or_default();
    match kind {
        JOB_INPUT_HTTP => {
            let base = input.get("baseUri").and_then(Value::as_str).map(strip).unwrap_or_default();
            format!("http:{base}|{}", files.join("|"))
        }
        JOB_INPUT_ASSET => {
            let name = input.get("assetName").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
            let blobs = account
                .assets
                .get(&name)
                .and_then(|a| account.storage.containers.get(&a.container))
                .map(|c| {
                    c.blobs
                        .iter()
                        .map(|(n, b)| {
                            let h: String = Sha256::digest(&b.bytes).iter().map(|x| format!("{x:02x}")).collect();
                            format!("{n}={h}")
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            format!("asset:[{blobs}]|{}", files.join("|"))
        }
        JOB_INPUTS => {
            let inner: Vec<String> = input
                .get("inputs")
                .and_then(Value::as_array)
                .map(|i| i.iter().map(|x| input_fingerprint(account, x)).collect())
                .unwrap_or_default();
            format!("inputs:[{}]", inner.join(";"))
        }
        other => format!("other:{other}"),
    }
}

/// JSON with object keys sorted, so presets that differ only in key order are the same preset.
fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> =
                keys.into_iter().map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k]))).collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn http_inputs_fingerprint_without_their_sas() {
        let a = Account::new("a", "r");
        let one = json!({"@odata.type": JOB_INPUT_HTTP, "baseUri": "https://x/in/", "files": ["v.mp4?sig=1"]});
        let two = json!({"@odata.type": JOB_INPUT_HTTP, "baseUri": "https://x/in/", "files": ["v.mp4?sig=2"]});
        assert_eq!(input_fingerprint(&a, &one), input_fingerprint(&a, &two));
        let other = json!({"@odata.type": JOB_INPUT_HTTP, "baseUri": "https://x/in/", "files": ["w.mp4"]});
        assert_ne!(input_fingerprint(&a, &one), input_fingerprint(&a, &other));
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        assert_eq!(canonical_json(&json!({"b": 1, "a": [{"d": 2, "c": 3}]})), r#"{"a":[{"c":3,"d":2}],"b":1}"#);
    }

    #[test]
    fn output_files_depend_only_on_the_seed() {
        let names: Vec<String> = files(&[1; 32]).into_iter().map(|f| f.0).collect();
        assert_eq!(names, ["video_1000kbps.mp4", "video_2000kbps.mp4", "video.ism", "video.ismc", "thumbnail.jpg"]);
        assert_eq!(files(&[1; 32])[0].1, files(&[1; 32])[0].1);
        assert_ne!(files(&[1; 32])[0].1, files(&[2; 32])[0].1);
    }
}
