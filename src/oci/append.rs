//! `pexinit image append`: add layers to an image of an OCI image layout.
//!
//! The plan reads and verifies everything (index, manifest, config, each layer's
//! digest and diff_id) and builds the new config, manifest and index in memory; only
//! then are blobs written (layers, config, manifest, each atomically) and `index.json`
//! last. An interrupted append leaves unreferenced blobs at worst: the old image is
//! intact and still tagged.
//!
//! The config and manifest are edited as JSON values with their key order kept, never
//! through typed structs: a typed round trip drops fields it does not model
//! (Healthcheck, OnBuild, vendor keys) and reorders maps, which would change the base's
//! meaning and every digest.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::oci::AppendRequest;
use crate::oci::compress::hex;
use crate::oci::config::{check_base, edit_config};
use crate::oci::inspect::{NewLayer, inspect_layer};
use crate::oci::layout::Layout;
use crate::oci::manifest as manifest_edit;
use crate::oci::media;
use crate::oci::platform::{self, Nested, Platform};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug)]
pub struct Plan {
    layout: Layout,
    layers: Vec<NewLayer>,
    config: Blob,
    manifest: Blob,
    /// The multi-platform index the new manifest was put in (written after it).
    nested: Option<Blob>,
    index: Vec<u8>,
    tag: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Blob {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip)]
    bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: String, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: format!("sha256:{}", hex(&Sha256::digest(&bytes))),
            size: bytes.len() as u64,
            bytes,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub manifest: Blob,
    /// With --platform: the rewritten multi-platform index holding the new manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<Blob>,
    pub config: Blob,
    pub layers: Vec<NewLayer>,
}

pub fn plan(args: &AppendRequest) -> Result<Plan> {
    let layout = Layout::open(&args.layout)?;
    let mut index = layout.read_index()?;
    let position = pick_image(&index, args.reference.as_deref(), &args.layout)?;
    let base_descriptor = index["manifests"][position].clone();
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let (mut manifest_digest, mut manifest) = read_json_blob(
        &layout,
        "manifest",
        &base_descriptor,
        "index.json descriptor",
    )?;
    let mut image_descriptor = base_descriptor.clone();
    let mut nested = None;
    let outer_type = media_type_of(&manifest, &base_descriptor);
    if platform::is_index(&manifest, &outer_type) {
        let chosen = Nested::choose(manifest, outer_type, &manifest_digest, platform.as_ref())?;
        image_descriptor = chosen.entry();
        (manifest_digest, manifest) =
            read_json_blob(&layout, "manifest", &image_descriptor, "image index entry")?;
        if platform::is_index(&manifest, &media_type_of(&manifest, &image_descriptor)) {
            return Err(Error::Usage(format!(
                "{manifest_digest} is an index inside an index; pexinit appends to one level of index only"
            )));
        }
        nested = Some(chosen);
    }
    let mut manifest_type = media_type_of(&manifest, &image_descriptor);
    let docker = manifest_type == media::docker_manifest();
    if manifest_type.is_empty() {
        manifest_type = media::oci_manifest();
    }
    if !manifest.get("layers").is_some_and(Value::is_array)
        || !manifest.get("config").is_some_and(Value::is_object)
    {
        return Err(Error::Usage(format!(
            "manifest {manifest_digest} has no config or layers; it is not an image manifest"
        )));
    }

    // The base must be whole: its config verified, its layers present.
    let config_descriptor = manifest["config"].clone();
    let (config_digest, mut config) =
        read_json_blob(&layout, "config", &config_descriptor, "manifest config")?;
    let base_layers = manifest["layers"].as_array().map_or(0, Vec::len);
    check_base(&config, &config_digest, base_layers)?;
    if nested.is_none() {
        platform::check_config(&config, platform.as_ref(), &manifest_digest)?;
    }
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        let digest = string_field(layer, "digest", "manifest layer")?;
        layout.check_blob("layer", &digest, size_field(layer))?;
    }

    let layers = args
        .layer
        .iter()
        .map(|file| inspect_layer(file, docker))
        .collect::<Result<Vec<_>>>()?;
    edit_config(&mut config, args, &layers)?;
    let config_type = string_field(&config_descriptor, "mediaType", "manifest config")?;
    let config_blob = Blob::new(config_type, compact(&config)?);

    manifest["config"]["digest"] = json!(config_blob.digest);
    manifest["config"]["size"] = json!(config_blob.size);
    if let Some(list) = manifest["layers"].as_array_mut() {
        for layer in &layers {
            list.push(json!({
                "mediaType": layer.media_type,
                "digest": layer.digest,
                "size": layer.size,
            }));
        }
    }
    manifest_edit::ensure_media_type(&mut manifest, &manifest_type);
    manifest_edit::annotate(&mut manifest, &args.annotation)?;
    let manifest_blob = Blob::new(manifest_type.clone(), compact(&manifest)?);
    let nested = nested.map(|n| {
        let media_type = n.media_type.clone();
        let index = n.replaced(
            &manifest_blob.digest,
            manifest_blob.size,
            &manifest_blob.media_type,
        );
        compact(&index).map(|bytes| Blob::new(media_type, bytes))
    });
    let nested = nested.transpose()?;

    let tag = args
        .tag
        .clone()
        .or_else(|| args.reference.clone())
        .or_else(|| {
            base_descriptor
                .pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let mut descriptor = base_descriptor.clone();
    let top = nested.as_ref().unwrap_or(&manifest_blob);
    descriptor["digest"] = json!(top.digest);
    descriptor["size"] = json!(top.size);
    if !top.media_type.is_empty() {
        descriptor["mediaType"] = json!(top.media_type);
    }
    if let Some(tag) = &tag {
        check_ref(tag)?;
        if !descriptor.get("annotations").is_some_and(Value::is_object) {
            descriptor["annotations"] = json!({});
        }
        descriptor["annotations"][REF_NAME] = json!(tag);
    }
    place_descriptor(
        &mut index,
        position,
        descriptor,
        tag.as_deref(),
        args.tag.is_some(),
    );

    Ok(Plan {
        layout,
        layers,
        config: config_blob,
        manifest: manifest_blob,
        nested,
        index: compact(&index)?,
        tag,
    })
}

/// Blobs first, index.json last: until the rename of index.json nothing refers to the
/// new blobs, and the old image stays whole. On failure the blobs this append wrote are
/// removed again, so the layout is as it was.
pub fn apply(plan: &Plan) -> Result<Report> {
    let mut written = Vec::new();
    let result = write_all(plan, &mut written);
    if result.is_err() {
        plan.layout.remove_blobs(&written);
    }
    result?;
    Ok(Report {
        reference: plan.tag.clone(),
        manifest: plan.manifest.clone(),
        index: plan.nested.clone(),
        config: plan.config.clone(),
        layers: plan.layers.clone(),
    })
}

fn write_all(plan: &Plan, written: &mut Vec<String>) -> Result<()> {
    for layer in &plan.layers {
        if plan.layout.put_blob_from_file(&layer.digest, &layer.file)? {
            written.push(layer.digest.clone());
        }
    }
    for blob in [&plan.config, &plan.manifest]
        .into_iter()
        .chain(plan.nested.as_ref())
    {
        if plan.layout.put_blob(&blob.digest, &blob.bytes)? {
            written.push(blob.digest.clone());
        }
    }
    plan.layout.write_index(&plan.index)
}

fn pick_image(index: &Value, reference: Option<&str>, dir: &std::path::Path) -> Result<usize> {
    let manifests = index["manifests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names: Vec<Option<&str>> = manifests
        .iter()
        .map(|m| {
            m.get("annotations")
                .and_then(|a| a.get(REF_NAME))
                .and_then(Value::as_str)
        })
        .collect();
    let known = || {
        let list: Vec<&str> = names.iter().flatten().copied().collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    match reference {
        Some(reference) => names
            .iter()
            .position(|n| *n == Some(reference))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no image named {reference:?} in {} (refs: {}); pass one of them to --ref",
                    dir.display(),
                    known()
                ))
            }),
        None if manifests.len() == 1 => Ok(0),
        None => Err(Error::Usage(format!(
            "{} holds {} images (refs: {}); choose one with --ref",
            dir.display(),
            manifests.len(),
            known()
        ))),
    }
}

/// With a new tag, the base keeps its own name and the tag moves to the new image (from
/// whatever image had it); without one, the new image replaces the base's entry.
fn place_descriptor(
    index: &mut Value,
    position: usize,
    descriptor: Value,
    tag: Option<&str>,
    new_tag: bool,
) {
    let Some(list) = index["manifests"].as_array_mut() else {
        return;
    };
    let base_name = list[position]
        .get("annotations")
        .and_then(|a| a.get(REF_NAME))
        .and_then(Value::as_str)
        .map(str::to_string);
    if !new_tag || base_name.as_deref() == tag {
        list[position] = descriptor;
        return;
    }
    let holder = list.iter().position(|m| {
        m.get("annotations")
            .and_then(|a| a.get(REF_NAME))
            .and_then(Value::as_str)
            == tag
    });
    match holder {
        Some(i) => list[i] = descriptor,
        None => list.push(descriptor),
    }
}

/// Ref names as image-spec's `org.opencontainers.image.ref.name` grammar allows them:
/// `component ("/" component)*`, a component being alphanumerics joined by single
/// separators (`-` `.` `_` `:` `@` `+`, or `--`). No path tricks, no spaces.
fn check_ref(tag: &str) -> Result<()> {
    if valid_ref(tag) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--tag {tag:?} is not a valid ref name: use letters and digits joined by single - . _ : @ + (or --), in parts separated by /, e.g. app or v1.2"
        )))
    }
}

fn valid_ref(tag: &str) -> bool {
    !tag.is_empty() && tag.split('/').all(valid_component)
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let mut i = 0;
    let alphanum = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_alphanumeric() {
            *i += 1;
        }
        *i > start
    };
    if !alphanum(&mut i) {
        return false;
    }
    while i < bytes.len() {
        if bytes[i..].starts_with(b"--") {
            i += 2;
        } else if b"-._:@+".contains(&bytes[i]) {
            i += 1;
        } else {
            return false;
        }
        if !alphanum(&mut i) {
            return false;
        }
    }
    true
}

fn string_field(value: &Value, key: &str, what: &str) -> Result<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::Usage(format!("{what} has no {key}; the layout is damaged")))
}

/// The JSON blob `descriptor` (found in `described_in`) names, its digest and size
/// verified: the digest and the parsed value.
fn read_json_blob(
    layout: &Layout,
    what: &str,
    descriptor: &Value,
    described_in: &str,
) -> Result<(String, Value)> {
    let digest = string_field(descriptor, "digest", described_in)?;
    let bytes = layout.read_blob(what, &digest, size_field(descriptor))?;
    let value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Usage(format!(
            "{what} {digest}: not JSON ({e}); the layout is corrupt"
        ))
    })?;
    Ok((digest, value))
}

/// A manifest's media type: its own field, else its descriptor's; empty when neither has one.
fn media_type_of(manifest: &Value, descriptor: &Value) -> String {
    manifest
        .get("mediaType")
        .or_else(|| descriptor.get("mediaType"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn size_field(value: &Value) -> Option<u64> {
    value.get("size").and_then(Value::as_u64)
}

fn compact(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Usage(format!("cannot serialize JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::valid_ref;

    #[test]
    fn ref_names_follow_the_image_spec_grammar() {
        for good in ["app", "v1.2.3", "a/b", "x--y", "sha:1@2+3", "A_b-c"] {
            assert!(valid_ref(good), "{good}");
        }
        for bad in [
            "", "../x", "a//b", "/a", "a/", "-a", "a-", "a..b", "a---b", "a b", "é",
        ] {
            assert!(!valid_ref(bad), "{bad}");
        }
    }
}
