//! The image manifest edits of `image append` that are not about layers: the manifest's
//! own `mediaType` (image-spec: SHOULD; some clients refuse a manifest without it) and
//! `--annotation K=V`. Edited as a JSON value with its key order kept.

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// Puts `mediaType` right after `schemaVersion` when the manifest has none (a manifest
/// that has one keeps it, Docker v2s2 included).
pub fn ensure_media_type(manifest: &mut Value, media_type: &str) {
    let Some(map) = manifest.as_object_mut() else {
        return;
    };
    if map.contains_key("mediaType") {
        return;
    }
    let old = std::mem::take(map);
    let mut placed = false;
    for (key, value) in old {
        let after = key == "schemaVersion";
        map.insert(key, value);
        if after {
            map.insert("mediaType".into(), json!(media_type));
            placed = true;
        }
    }
    if !placed {
        let rest = std::mem::take(map);
        map.insert("mediaType".into(), json!(media_type));
        map.extend(rest);
    }
}

/// Sets each `K=V` of `pairs` in the manifest's `annotations` (replacing K in place,
/// appending new keys in the order given).
pub fn annotate(manifest: &mut Value, pairs: &[String]) -> Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let Some(map) = manifest.as_object_mut() else {
        return Err(Error::Usage("the manifest is not a JSON object".into()));
    };
    let slot = map
        .entry("annotations".to_string())
        .or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    let Some(annotations) = slot.as_object_mut() else {
        return Ok(());
    };
    for pair in pairs {
        match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                annotations.insert(key.to_string(), json!(value));
            }
            _ => {
                return Err(Error::Usage(format!(
                    "--annotation {pair:?}: write it as KEY=VALUE (e.g. org.opencontainers.image.source=https://...)"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_goes_after_schema_version_and_is_kept_when_present() {
        let mut m = json!({"schemaVersion": 2, "config": {}, "layers": []});
        ensure_media_type(&mut m, "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(
            serde_json::to_string(&m).expect("json"),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#
        );
        let mut d = json!({"schemaVersion": 2, "mediaType": "x", "config": {}});
        ensure_media_type(&mut d, "y");
        assert_eq!(d["mediaType"], "x");
    }

    #[test]
    fn annotations_replace_in_place_and_refuse_pairs_without_a_key() {
        let mut m = json!({"schemaVersion": 2, "annotations": {"a": "1", "b": "2"}});
        annotate(&mut m, &["a=9".into(), "c=3=x".into()]).expect("annotate");
        assert_eq!(
            serde_json::to_string(&m["annotations"]).expect("json"),
            r#"{"a":"9","b":"2","c":"3=x"}"#
        );
        assert!(annotate(&mut m, &["=1".into()]).is_err());
        assert!(annotate(&mut m, &["novalue".into()]).is_err());
    }
}
