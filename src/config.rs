//! Settings from the YAML config file, `PEXINIT_*` variables and flags.
//!
//! Precedence is flag > `PEXINIT_*` variable > config file > default. clap already
//! merges a flag with its variable (`#[arg(env = ...)]`), so this module only lays the
//! file underneath what clap produced.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Read when neither `--config` nor `PEXINIT_CONFIG` names a file; optional.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pexinit.yaml";

/// The config file, exactly as documented in the README. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Interpreter for PEX programs: a path, or a name looked up on PATH.
    pub python: Option<PathBuf>,
    /// PEX_ROOT for the program (made physical like everything else).
    pub pex_root: Option<PathBuf>,
    /// Variables added to the program's environment when not already set.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Log level: off, error, warn, info, debug, trace.
    pub log: Option<String>,
}

/// A scalar YAML value used as an environment variable (`PORT: 8080` is fine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvValue(pub String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl Visitor<'_> for Scalar {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

/// Where a setting came from, for `doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A flag or its `PEXINIT_*` variable.
    Flag,
    ConfigFile,
}

/// The merged settings a plan is built from.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub config_file: Option<PathBuf>,
    pub python: Option<(PathBuf, Source)>,
    pub pex_root: Option<(PathBuf, Source)>,
    pub env: Vec<(String, String)>,
    pub log: Option<String>,
}

/// What the command line (flags and their variables) said; `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct FlagSettings {
    pub config: Option<PathBuf>,
    pub python: Option<PathBuf>,
    pub pex_root: Option<PathBuf>,
}

impl Settings {
    /// Loads the config file (if any) and lays the flags over it.
    pub fn load(flags: &FlagSettings) -> Result<Settings> {
        let (file, config_file) = match &flags.config {
            Some(path) => (read_file(path)?, Some(path.clone())),
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.exists() {
                    (read_file(default)?, Some(default.to_path_buf()))
                } else {
                    (FileConfig::default(), None)
                }
            }
        };
        let pick = |flag: &Option<PathBuf>, file: Option<PathBuf>| {
            flag.clone()
                .map(|v| (v, Source::Flag))
                .or(file.map(|v| (v, Source::ConfigFile)))
        };
        Ok(Settings {
            python: pick(&flags.python, file.python),
            pex_root: pick(&flags.pex_root, file.pex_root),
            env: file.env.into_iter().map(|(k, v)| (k, v.0)).collect(),
            log: file.log,
            config_file,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let config_error = |message: String| Error::Config {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        config_error(format!(
            "cannot read it ({e}); fix its permissions or point --config / PEXINIT_CONFIG at a readable file"
        ))
    })?;
    let config: FileConfig = serde_yaml::from_str(&text).map_err(|e| {
        config_error(format!(
            "{e} (the keys are listed in the README under Configuration)"
        ))
    })?;
    for name in config.env.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(config_error(format!(
                "env: {name:?} is not a valid variable name (no '=' or NUL, not empty)"
            )));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_key_and_line() {
        let err = parse("python: /usr/bin/python3\npyton: x\n").unwrap_err();
        assert!(err.contains("pyton") && err.contains("line 2"), "{err}");
        let err = parse("env:\n  A: [1]\n").unwrap_err();
        assert!(err.contains("env.A") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn env_scalars_become_strings() {
        let c = parse("env:\n  PORT: 8080\n  DEBUG: true\n  NAME: x\n").unwrap();
        assert_eq!(c.env["PORT"].0, "8080");
        assert_eq!(c.env["DEBUG"].0, "true");
    }
}
