//! The image config edits of `image append`, on the config as a JSON value with its key
//! order kept: only the fields named here change.

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::oci::AppendRequest;
use crate::oci::inspect::NewLayer;

/// `created` for the config and history is SOURCE_DATE_EPOCH as RFC 3339. Unset, the
/// base's `created` is kept and history entries carry none, so the config (and so the
/// manifest digest) never depends on the clock.
pub fn edit_config(config: &mut Value, args: &AppendRequest, layers: &[NewLayer]) -> Result<()> {
    let created = args.source_date_epoch.map(rfc3339);
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

/// Checks the fields of the base config that the edit reads or extends have the types
/// image-spec gives them, and that it lists one diff_id per layer of its manifest: an
/// edit would otherwise replace them silently and publish an image runtimes reject.
pub fn check_base(config: &Value, digest: &str, manifest_layers: usize) -> Result<()> {
    let damaged = |field: &str, should: &str| {
        Error::Usage(format!(
            "config {digest}: {field} is not {should}; the base image is damaged, rebuild or copy it again"
        ))
    };
    let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    let Some(root) = config.as_object() else {
        return Err(damaged("the config", "a JSON object"));
    };
    let empty = serde_json::Map::new();
    let rootfs = match root.get("rootfs") {
        None => &empty,
        Some(Value::Object(rootfs)) => rootfs,
        Some(_) => return Err(damaged("rootfs", "an object")),
    };
    match rootfs.get("type") {
        None => {}
        Some(t) if t.as_str() == Some("layers") => {}
        Some(_) => return Err(damaged("rootfs.type", "\"layers\"")),
    }
    let diff_ids = match rootfs.get("diff_ids") {
        None => 0,
        Some(ids) if strings(ids) => ids.as_array().map_or(0, Vec::len),
        _ => return Err(damaged("rootfs.diff_ids", "a list of digests")),
    };
    if diff_ids != manifest_layers {
        return Err(damaged(
            "rootfs.diff_ids",
            &format!("one digest per layer ({diff_ids} for {manifest_layers} layers)"),
        ));
    }
    match root.get("history") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) if entries.iter().all(Value::is_object) => {}
        Some(_) => return Err(damaged("history", "a list of objects")),
    }
    let cfg = match root.get("config") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(cfg)) => cfg,
        Some(_) => return Err(damaged("config", "an object")),
    };
    for key in ["Env", "Entrypoint", "Cmd"] {
        match cfg.get(key) {
            None | Some(Value::Null) => {}
            Some(v) if strings(v) => {}
            Some(_) => return Err(damaged(&format!("config.{key}"), "a list of strings")),
        }
    }
    match cfg.get("Labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) if labels.values().all(Value::is_string) => {}
        Some(_) => return Err(damaged("config.Labels", "an object of strings")),
    }
    for key in ["User", "WorkingDir"] {
        match cfg.get(key) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => return Err(damaged(&format!("config.{key}"), "a string")),
        }
    }
    Ok(())
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
