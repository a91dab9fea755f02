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

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::cli::ImageAppendArgs;
use crate::error::{Error, Result};
use crate::oci::compress::hex;
use crate::oci::layout::{self, Layout};
use crate::oci::media::{self, LayerFormat};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A layer file, inspected.
#[derive(Debug, Clone, Serialize)]
pub struct NewLayer {
    #[serde(skip)]
    pub file: PathBuf,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
}

#[derive(Debug)]
pub struct Plan {
    layout: Layout,
    layers: Vec<NewLayer>,
    config: Blob,
    manifest: Blob,
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
    pub config: Blob,
    pub layers: Vec<NewLayer>,
}

pub fn plan(args: &ImageAppendArgs) -> Result<Plan> {
    let layout = Layout::open(&args.layout)?;
    let mut index = layout.read_index()?;
    let position = pick_image(&index, args.reference.as_deref(), &args.layout)?;
    let base_descriptor = index["manifests"][position].clone();
    let manifest_digest = string_field(&base_descriptor, "digest", "index.json descriptor")?;
    let manifest_bytes =
        layout.read_blob("manifest", &manifest_digest, size_field(&base_descriptor))?;
    let mut manifest: Value = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        Error::Usage(format!(
            "manifest {manifest_digest}: not JSON ({e}); the layout is corrupt"
        ))
    })?;
    let manifest_type = manifest
        .get("mediaType")
        .or_else(|| base_descriptor.get("mediaType"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let docker = manifest_type == media::docker_manifest();
    if manifest_type == media::oci_index() || manifest_type == media::docker_manifest_list() {
        return Err(Error::Usage(format!(
            "{manifest_digest} is a multi-platform index; append to one platform's image (e.g. skopeo copy --override-arch amd64 into a new layout)"
        )));
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
    let config_digest = string_field(&config_descriptor, "digest", "manifest config")?;
    let config_bytes =
        layout.read_blob("config", &config_digest, size_field(&config_descriptor))?;
    let mut config: Value = serde_json::from_slice(&config_bytes).map_err(|e| {
        Error::Usage(format!(
            "config {config_digest}: not JSON ({e}); the layout is corrupt"
        ))
    })?;
    if !config.is_object() {
        return Err(Error::Usage(format!(
            "config {config_digest} is not a JSON object"
        )));
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
    let manifest_blob = Blob::new(manifest_type.clone(), compact(&manifest)?);

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
    descriptor["digest"] = json!(manifest_blob.digest);
    descriptor["size"] = json!(manifest_blob.size);
    if !manifest_type.is_empty() {
        descriptor["mediaType"] = json!(manifest_type);
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
        index: compact(&index)?,
        tag,
    })
}

/// Blobs first, index.json last: until the rename of index.json nothing refers to the
/// new blobs, and the old image stays whole.
pub fn apply(plan: &Plan) -> Result<Report> {
    for layer in &plan.layers {
        plan.layout.put_blob_from_file(&layer.digest, &layer.file)?;
    }
    plan.layout
        .put_blob(&plan.config.digest, &plan.config.bytes)?;
    plan.layout
        .put_blob(&plan.manifest.digest, &plan.manifest.bytes)?;
    plan.layout.write_index(&plan.index)?;
    Ok(Report {
        reference: plan.tag.clone(),
        manifest: plan.manifest.clone(),
        config: plan.config.clone(),
        layers: plan.layers.clone(),
    })
}

pub fn print(report: &Report, json: bool) -> Result<()> {
    let mut stdout = io::stdout().lock();
    let result = if json {
        serde_json::to_writer_pretty(&mut stdout, report)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(stdout))
    } else {
        writeln!(
            stdout,
            "{}: manifest {} ({} bytes), config {}, {} layer(s) appended",
            report.reference.as_deref().unwrap_or("(untagged)"),
            report.manifest.digest,
            report.manifest.size,
            report.config.digest,
            report.layers.len()
        )
    };
    result.map_err(|e| Error::io("stdout", e))
}

/// The index entry to append to: by ref name, or the only image of the layout.
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

/// Ref names as the image-layout spec allows them (no path tricks, no spaces).
fn check_ref(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:@/+".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--tag {tag:?}: use letters, digits and - . _ : @ / + only"
        )))
    }
}

/// Digest, size and diff_id of a layer file; its compression is read from its first
/// bytes, and its uncompressed content must start like a tar.
fn inspect_layer(file: &PathBuf, docker: bool) -> Result<NewLayer> {
    let context = || format!("layer {}", file.display());
    let digest =
        layout::sha256_of(file).map_err(|e| Error::Usage(format!("{}: {e}", context())))?;
    let size = std::fs::metadata(file)
        .map_err(|e| Error::io(context(), e))?
        .len();
    let mut head = [0u8; 4];
    let mut f = File::open(file).map_err(|e| Error::io(context(), e))?;
    let n = read_up_to(&mut f, &mut head).map_err(|e| Error::io(context(), e))?;
    let format = LayerFormat::sniff(&head[..n]);
    let media_type = format
        .media_type(docker)
        .map_err(|e| Error::Usage(format!("{}: {e}", context())))?;
    let f = File::open(file).map_err(|e| Error::io(context(), e))?;
    let reader: Box<dyn Read> = match format {
        LayerFormat::Tar => Box::new(f),
        LayerFormat::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(f))),
        LayerFormat::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(f).map_err(|e| Error::io(context(), e))?)
        }
    };
    let diff_id = diff_id(reader).map_err(|e| {
        Error::Usage(format!(
            "{}: not a layer ({e}); give a file written by `pexinit layer`",
            context()
        ))
    })?;
    Ok(NewLayer {
        file: file.clone(),
        media_type,
        digest,
        size,
        diff_id,
    })
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = f.read(&mut buf[n..])?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

/// sha256 of the uncompressed stream, which must begin with a tar header (or the
/// zero block of an empty tar).
fn diff_id(mut reader: Box<dyn Read>) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut first = Vec::with_capacity(512);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if first.len() < 512 {
            let take = (512 - first.len()).min(n);
            first.extend_from_slice(&buf[..take]);
        }
        hasher.update(&buf[..n]);
    }
    if first.len() < 512 || !tar_header_ok(&first) {
        return Err(io::Error::other("no tar header at its start"));
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

fn tar_header_ok(block: &[u8]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return true;
    }
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == Some(computed)
}

fn edit_config(config: &mut Value, args: &ImageAppendArgs, layers: &[NewLayer]) -> Result<()> {
    let created = created_timestamp()?;
    let root = config
        .as_object_mut()
        .ok_or_else(|| Error::Usage("config is not an object".into()))?;
    if let Some(created) = &created {
        root.insert("created".into(), json!(created));
    }
    let rootfs = object_entry(root, "rootfs");
    if !rootfs.contains_key("type") {
        rootfs.insert("type".into(), json!("layers"));
    }
    let diff_ids = array_entry(rootfs, "diff_ids");
    diff_ids.extend(layers.iter().map(|l| json!(l.diff_id)));
    let history = array_entry(root, "history");
    for layer in layers {
        let name = layer
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut entry = Map::new();
        if let Some(created) = &created {
            entry.insert("created".into(), json!(created));
        }
        entry.insert("created_by".into(), json!(format!("pexinit layer {name}")));
        entry.insert("comment".into(), json!(layer.diff_id));
        history.push(Value::Object(entry));
    }

    let cfg = object_entry(root, "config");
    if let Some(entrypoint) = &args.entrypoint {
        cfg.insert(
            "Entrypoint".into(),
            json!(command_line(entrypoint, "--entrypoint")?),
        );
        // As a Dockerfile's ENTRYPOINT does: the base's Cmd was meant for the base's entrypoint.
        if args.cmd.is_none() {
            cfg.remove("Cmd");
        }
    }
    if let Some(cmd) = &args.cmd {
        cfg.insert("Cmd".into(), json!(command_line(cmd, "--cmd")?));
    }
    if !args.env.is_empty() {
        let env = array_entry(cfg, "Env");
        for pair in &args.env {
            let (key, _) = split_pair(pair, "--env")?;
            let prefix = format!("{key}=");
            match env
                .iter()
                .position(|v| v.as_str().is_some_and(|s| s.starts_with(&prefix)))
            {
                Some(i) => env[i] = json!(pair),
                None => env.push(json!(pair)),
            }
        }
    }
    if let Some(user) = &args.user {
        cfg.insert("User".into(), json!(user));
    }
    if let Some(workdir) = &args.workdir {
        if !workdir.starts_with('/') {
            return Err(Error::Usage(format!(
                "--workdir {workdir:?} must be an absolute path"
            )));
        }
        cfg.insert("WorkingDir".into(), json!(workdir));
    }
    if !args.label.is_empty() {
        let labels = object_entry(cfg, "Labels");
        for pair in &args.label {
            let (key, value) = split_pair(pair, "--label")?;
            labels.insert(key.to_string(), json!(value));
        }
    }
    Ok(())
}

/// `created` for the config and history: SOURCE_DATE_EPOCH as RFC 3339. Unset, the
/// base's `created` is kept and history entries carry none, so the config (and so the
/// manifest digest) never depends on the clock.
fn created_timestamp() -> Result<Option<String>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse::<i64>().map(|s| Some(rfc3339(s))).map_err(|_| {
            Error::Usage(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds; set it to e.g. $(git log -1 --format=%ct)"
            ))
        }),
        Err(_) => Ok(None),
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Civil date from a day count (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A JSON array (`["/bin/app","--x"]`) or a plain command line split on whitespace.
fn command_line(text: &str, flag: &str) -> Result<Vec<String>> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| {
            Error::Usage(format!(
                "{flag} {text:?}: not a JSON array of strings ({e})"
            ))
        })
    } else {
        Ok(text.split_whitespace().map(str::to_string).collect())
    }
}

fn split_pair<'a>(pair: &'a str, flag: &str) -> Result<(&'a str, &'a str)> {
    match pair.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(Error::Usage(format!(
            "{flag} {pair:?}: write it as KEY=VALUE"
        ))),
    }
}

fn object_entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("an object was just put here")
}

fn array_entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    slot.as_array_mut().expect("an array was just put here")
}

fn string_field(value: &Value, key: &str, what: &str) -> Result<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::Usage(format!("{what} has no {key}; the layout is damaged")))
}

fn size_field(value: &Value) -> Option<u64> {
    value.get("size").and_then(Value::as_u64)
}

fn compact(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Usage(format!("cannot serialize JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(315_532_800), "1980-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn command_line_accepts_json_or_words() {
        assert_eq!(
            command_line("[\"a b\",\"c\"]", "--cmd").expect("json"),
            vec!["a b", "c"]
        );
        assert_eq!(
            command_line("a  b", "--cmd").expect("words"),
            vec!["a", "b"]
        );
        assert!(command_line("[1]", "--cmd").is_err());
    }
}
