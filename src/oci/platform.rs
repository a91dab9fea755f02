//! `image append --platform OS/ARCH[/VARIANT]`: one platform's image inside a
//! multi-platform index (an OCI image index or a Docker manifest list).
//!
//! The chosen entry's descriptor gets the new manifest's digest and size; every other
//! entry, and every other field of the index, is kept as it was (key order included),
//! so the other platforms' manifests, configs and layers keep their digests.

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::oci::media;

/// A platform as `OS/ARCH[/VARIANT]`, e.g. `linux/amd64`, `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(text: &str) -> Result<Platform> {
        let parts: Vec<&str> = text.split('/').collect();
        let ok = (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty());
        if !ok {
            return Err(Error::Usage(format!(
                "--platform {text:?}: write it as OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8"
            )));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// `os`, `architecture` and (when asked for) `variant` of a descriptor's `platform`
    /// or of an image config, which use the same field names.
    fn matches(&self, value: &Value) -> bool {
        let field = |k: &str| value.get(k).and_then(Value::as_str);
        field("os") == Some(self.os.as_str())
            && field("architecture") == Some(self.architecture.as_str())
            && self
                .variant
                .as_deref()
                .is_none_or(|v| field("variant") == Some(v))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Whether a blob read as a manifest is in fact an index of manifests.
pub fn is_index(value: &Value, media_type: &str) -> bool {
    media_type == media::oci_index()
        || media_type == media::docker_manifest_list()
        || value.get("manifests").is_some_and(Value::is_array)
}

/// A multi-platform index and the entry being replaced.
#[derive(Debug)]
pub struct Nested {
    pub index: Value,
    pub media_type: String,
    pub position: usize,
}

impl Nested {
    /// Picks the entry of `platform` in the index `digest`. Without a platform an index
    /// of one image is that image; an index of several is refused, naming them.
    pub fn choose(
        index: Value,
        media_type: String,
        digest: &str,
        platform: Option<&Platform>,
    ) -> Result<Nested> {
        let entries = index["manifests"].as_array().cloned().unwrap_or_default();
        let described = |e: &Value| {
            let p = &e["platform"];
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
            match p.get("variant").and_then(Value::as_str) {
                Some(v) => format!("{}/{}/{v}", s("os"), s("architecture")),
                None => format!("{}/{}", s("os"), s("architecture")),
            }
        };
        let known = || entries.iter().map(described).collect::<Vec<_>>().join(", ");
        let position = match platform {
            None if entries.len() == 1 => 0,
            None => {
                return Err(Error::Usage(format!(
                    "{digest} is a multi-platform index ({}); choose the image to append to with --platform OS/ARCH[/VARIANT]",
                    known()
                )));
            }
            Some(platform) => {
                let found: Vec<usize> = entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| platform.matches(&e["platform"]))
                    .map(|(i, _)| i)
                    .collect();
                match found.as_slice() {
                    [one] => *one,
                    [] => {
                        return Err(Error::Usage(format!(
                            "--platform {platform}: the index {digest} has no such image (platforms: {}); pass one of them",
                            known()
                        )));
                    }
                    _ => {
                        return Err(Error::Usage(format!(
                            "--platform {platform}: the index {digest} holds several such images ({}); add the variant, e.g. {platform}/v8",
                            known()
                        )));
                    }
                }
            }
        };
        Ok(Nested {
            index,
            media_type,
            position,
        })
    }

    /// The descriptor of the chosen image, as the index has it.
    pub fn entry(&self) -> Value {
        self.index["manifests"][self.position].clone()
    }

    /// The index with the chosen entry pointing at the new manifest (digest, size and
    /// media type changed, nothing else).
    pub fn replaced(mut self, digest: &str, size: u64, media_type: &str) -> Value {
        let entry = &mut self.index["manifests"][self.position];
        entry["digest"] = json!(digest);
        entry["size"] = json!(size);
        if !media_type.is_empty() && entry.get("mediaType").is_some() {
            entry["mediaType"] = json!(media_type);
        }
        self.index
    }
}

/// With --platform on a single image: the image's config must be of that platform.
pub fn check_config(config: &Value, platform: Option<&Platform>, digest: &str) -> Result<()> {
    match platform {
        Some(p) if !p.matches(config) => Err(Error::Usage(format!(
            "--platform {p}: the image {digest} is not of that platform (its config says {}/{}); drop --platform or pick another --ref",
            config.get("os").and_then(Value::as_str).unwrap_or("?"),
            config
                .get("architecture")
                .and_then(Value::as_str)
                .unwrap_or("?")
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").expect("parse");
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches(&json!({"os": "linux", "architecture": "arm64", "variant": "v8"})));
        assert!(!p.matches(&json!({"os": "linux", "architecture": "arm64"})));
        let p = Platform::parse("linux/amd64").expect("parse");
        assert!(p.matches(&json!({"os": "linux", "architecture": "amd64"})));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
