//! Settings from the YAML config file, `PEXINIT_*` variables and flags.
//!
//! Precedence is flag > `PEXINIT_*` variable > config file > default. clap already
//! merges a flag with its variable (`#[arg(env = ...)]`), so this module only lays the
//! file underneath what clap produced.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fs::bounded;
use crate::run::signals::{Rewrite, parse_rewrite};

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
    /// Supervise the program as an init: auto, always or never.
    pub init: Option<InitMode>,
    /// Seconds the rest of the program's process group gets between SIGTERM and SIGKILL.
    pub grace: Option<f64>,
    /// Forward signals to the program's whole process group, not just the program.
    pub kill_process_group: Option<bool>,
    /// Exit statuses of the program reported as 0: a number or a list.
    #[serde(default, deserialize_with = "success_exits")]
    pub success_exit: Vec<u8>,
    /// Signals passed on as others: `FROM:TO` or a list of them (TO 0 drops FROM).
    #[serde(default, deserialize_with = "rewrites")]
    pub rewrite_signal: Vec<Rewrite>,
    /// Run the program as USER[:GROUP] (names or numbers).
    pub user: Option<EnvValue>,
    /// Heal a poisoned PEX_ROOT before the program starts: auto, check or off.
    pub repair: Option<RepairMode>,
    /// A seeded PEX_ROOT (made by `pexinit seed`) to run from.
    pub seed: Option<PathBuf>,
    /// Run (and seed) zipapp PEX files in venv mode (PEX_VENV=1; needs --include-tools):
    /// `true` for every PEX, or a list of the PEX files it applies to.
    pub venv: Option<VenvChoice>,
}

/// The config's `venv:` as written: a switch, or the PEX files it applies to.
#[derive(Debug, Clone)]
pub enum VenvChoice {
    Switch(bool),
    Only(Vec<PathBuf>),
}

// By hand rather than `#[serde(untagged)]`: an untagged enum's error loses the key and
// the line; a visitor's error keeps both ("venv: invalid type: ... at line 3").
impl<'de> Deserialize<'de> for VenvChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = VenvChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or a list of PEX file paths")
            }
            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<VenvChoice, E> {
                Ok(VenvChoice::Switch(value))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<VenvChoice, A::Error> {
                let mut paths = Vec::new();
                while let Some(path) = seq.next_element::<PathBuf>()? {
                    paths.push(path);
                }
                Ok(VenvChoice::Only(paths))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Which PEX files run (and are seeded) in venv mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum VenvMode {
    #[default]
    Off,
    All,
    /// Only these PEX files (compared by physical path).
    Only(Vec<PathBuf>),
}

impl From<VenvChoice> for VenvMode {
    fn from(choice: VenvChoice) -> Self {
        match choice {
            VenvChoice::Switch(false) => VenvMode::Off,
            VenvChoice::Switch(true) => VenvMode::All,
            VenvChoice::Only(paths) => VenvMode::Only(paths),
        }
    }
}

impl VenvMode {
    /// Whether the PEX at `pex` runs in venv mode. Paths are compared physically, so
    /// `/app/app.pex` in the config matches the same file reached through a link.
    pub fn applies_to(&self, pex: &Path) -> bool {
        match self {
            VenvMode::Off => false,
            VenvMode::All => true,
            VenvMode::Only(paths) => {
                let physical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.into());
                let pex = physical(pex);
                paths.iter().any(|listed| physical(listed) == pex)
            }
        }
    }
}

/// What `run` does about a PEX_ROOT poisoned by pex's symlink bugs before it starts
/// the program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairMode {
    /// Heal poisoned links and quarantine broken entries, then run.
    #[default]
    Auto,
    /// Report and refuse to run (exit 125) when the cache is poisoned.
    Check,
    /// Do not look at the cache.
    Off,
}

/// When `run` supervises the program (fork, forward signals, reap) instead of exec'ing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitMode {
    /// Supervise when pexinit is PID 1, otherwise exec the program in place.
    #[default]
    Auto,
    /// Always supervise; outside PID 1 pexinit becomes a child subreaper.
    Always,
    /// Always exec the program in place (no init duties).
    Never,
}

/// Seconds between SIGTERM and SIGKILL for the program's leftover process group.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Parses a grace period in seconds: a finite, non-negative number (`0`, `2.5`).
pub fn parse_grace(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    check_grace(value)
}

fn check_grace(value: f64) -> Result<f64, String> {
    if value.is_finite() && (0.0..=1e9).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{value} is not a usable number of seconds (0 or more, e.g. 5 or 0.5)"
        ))
    }
}

/// Parses an exit status of `--success-exit`: 0-255.
pub fn parse_success_exit(text: &str) -> Result<u8, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an exit status; write a number 0-255, e.g. 143"))
}

/// `success_exit:` as a number or a list of numbers, each checked as the flag checks it.
fn success_exits<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    one_or_many(deserializer, parse_success_exit)
}

/// `rewrite_signal:` as `FROM:TO` or a list of them, each checked as the flag checks it.
fn rewrites<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Rewrite>, D::Error> {
    one_or_many(deserializer, parse_rewrite)
}

/// A scalar or a list of scalars, each parsed by `parse`; the errors are the flag's own,
/// and the YAML parser adds the key and the line.
fn one_or_many<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, D::Error> {
    struct OneOrMany<T> {
        parse: fn(&str) -> Result<T, String>,
    }
    impl<'de, T> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a value or a list of values")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            (self.parse)(v).map(|t| vec![t]).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<T>, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<T>, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut values = Vec::new();
            while let Some(value) = seq.next_element::<EnvValue>()? {
                values.push((self.parse)(&value.0).map_err(de::Error::custom)?);
            }
            Ok(values)
        }
    }
    deserializer.deserialize_any(OneOrMany { parse })
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
    /// The PEX's own PEX-INFO (`pex_root`, from `pex --runtime-pex-root`).
    PexInfo,
}

/// The merged settings a plan is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_file: Option<PathBuf>,
    pub python: Option<(PathBuf, Source)>,
    pub pex_root: Option<(PathBuf, Source)>,
    pub env: Vec<(String, String)>,
    pub log: Option<String>,
    pub init: InitMode,
    pub grace: Duration,
    pub kill_process_group: bool,
    /// Exit statuses of the program reported as 0.
    pub success_exit: Vec<u8>,
    /// Signals passed on as others.
    pub rewrite_signal: Vec<Rewrite>,
    /// `USER[:GROUP]` the program runs as; None = as pexinit's own user.
    pub user: Option<String>,
    pub repair: RepairMode,
    pub seed: Option<PathBuf>,
    pub venv: VenvMode,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config_file: None,
            python: None,
            pex_root: None,
            env: Vec::new(),
            log: None,
            init: InitMode::default(),
            grace: DEFAULT_GRACE,
            kill_process_group: false,
            success_exit: Vec::new(),
            rewrite_signal: Vec::new(),
            user: None,
            repair: RepairMode::default(),
            seed: None,
            venv: VenvMode::Off,
        }
    }
}

/// What the command line (flags and their variables) said; `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct FlagSettings {
    pub config: Option<PathBuf>,
    pub python: Option<PathBuf>,
    pub pex_root: Option<PathBuf>,
    pub init: Option<InitMode>,
    /// Seconds, already checked by [`parse_grace`].
    pub grace: Option<f64>,
    pub kill_process_group: Option<bool>,
    /// Empty = not given (the config file's list applies).
    pub success_exit: Vec<u8>,
    /// Empty = not given (the config file's list applies).
    pub rewrite_signal: Vec<Rewrite>,
    pub user: Option<String>,
    pub repair: Option<RepairMode>,
    pub seed: Option<PathBuf>,
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
        let grace = flags
            .grace
            .or(file.grace)
            .map_or(DEFAULT_GRACE, Duration::from_secs_f64);
        Ok(Settings {
            python: pick(&flags.python, file.python),
            pex_root: pick(&flags.pex_root, file.pex_root),
            env: file.env.into_iter().map(|(k, v)| (k, v.0)).collect(),
            log: file.log,
            init: flags.init.or(file.init).unwrap_or_default(),
            grace,
            kill_process_group: flags
                .kill_process_group
                .or(file.kill_process_group)
                .unwrap_or(false),
            success_exit: or_file(&flags.success_exit, file.success_exit),
            rewrite_signal: or_file(&flags.rewrite_signal, file.rewrite_signal),
            user: flags.user.clone().or(file.user.map(|u| u.0)),
            repair: flags.repair.or(file.repair).unwrap_or_default(),
            seed: flags.seed.clone().or(file.seed),
            venv: file.venv.map(VenvMode::from).unwrap_or_default(),
            config_file,
        })
    }
}

/// A list from the flags (or their variable) when given, else the config file's.
fn or_file<T: Clone>(flags: &[T], file: Vec<T>) -> Vec<T> {
    if flags.is_empty() {
        file
    } else {
        flags.to_vec()
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let config_error = |message: String| Error::Config {
        path: path.to_path_buf(),
        message,
    };
    let text = read_text(path).map_err(config_error)?;
    if text.trim().is_empty() {
        // An empty file (or /dev/null) sets nothing; skip the YAML parser's start-up.
        return Ok(FileConfig::default());
    }
    crate::yaml_shape::check(&text).map_err(config_error)?;
    let config: FileConfig = serde_yaml::from_str(&text).map_err(|e| {
        config_error(format!(
            "{}{} (the keys are listed in the README under Configuration)",
            e,
            duplicate_line(&e.to_string(), &text)
        ))
    })?;
    if let Some(grace) = config.grace {
        check_grace(grace).map_err(|e| config_error(format!("grace: {e}")))?;
    }
    if config.user.as_ref().is_some_and(|u| u.0.trim().is_empty()) {
        return Err(config_error(
            "user: is empty; give USER[:GROUP] or remove the key".to_owned(),
        ));
    }
    for name in config.env.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(config_error(format!(
                "env: {name:?} is not a valid variable name (no '=' or NUL, not empty)"
            )));
        }
    }
    Ok(config)
}

/// The config's text: a regular file (or the null device, which holds nothing) of at
/// most [`bounded::CONFIG_LIMIT`] bytes of UTF-8.
fn read_text(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.file_type().is_char_device()
        && std::fs::metadata("/dev/null").is_ok_and(|null| {
            use std::os::unix::fs::MetadataExt;
            null.rdev() == meta.rdev()
        })
    {
        return Ok(String::new());
    }
    let bytes = bounded::read(path, bounded::CONFIG_LIMIT, false).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => format!(
            "cannot read it ({e}); point --config / PEXINIT_CONFIG at a YAML file"
        ),
        _ => format!(
            "cannot read it ({e}); fix its permissions or point --config / PEXINIT_CONFIG at a readable file"
        ),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (bad byte at offset {}); a config is a YAML text file",
            e.utf8_error().valid_up_to()
        )
    })
}

/// serde_yaml reports a repeated key without a place: ` at line N` of its second
/// appearance as a top-level key, when the message is about one.
fn duplicate_line(message: &str, text: &str) -> String {
    let Some(key) = message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return String::new();
    };
    let mut seen = 0;
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix(key) else {
            continue;
        };
        if rest.trim_start().starts_with(':') {
            seen += 1;
            if seen == 2 {
                return format!(" at line {}", n + 1);
            }
        }
    }
    String::new()
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

    #[test]
    fn init_keys_parse() {
        let c =
            parse("init: always\ngrace: 2\nkill_process_group: true\nuser: 65534:65534\n").unwrap();
        assert_eq!(c.init, Some(InitMode::Always));
        assert_eq!(c.grace, Some(2.0));
        assert_eq!(c.kill_process_group, Some(true));
        assert_eq!(c.user.unwrap().0, "65534:65534");
        assert_eq!(parse("user: 1000\n").unwrap().user.unwrap().0, "1000");
        let err = parse("init: sometimes\n").unwrap_err();
        assert!(err.contains("init") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn grace_must_be_a_non_negative_number() {
        assert_eq!(parse_grace("0"), Ok(0.0));
        assert_eq!(parse_grace("2.5"), Ok(2.5));
        assert!(parse_grace("-1").is_err());
        assert!(parse_grace("nan").is_err());
        assert!(parse_grace("inf").is_err());
        assert!(parse_grace("soon").is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "init: never\ngrace: 1\nkill_process_group: true\nuser: nobody\n",
        )
        .unwrap();
        let mut flags = FlagSettings {
            config: Some(path),
            ..FlagSettings::default()
        };
        let s = Settings::load(&flags).unwrap();
        assert_eq!(s.init, InitMode::Never);
        assert_eq!(s.grace, Duration::from_secs(1));
        assert!(s.kill_process_group);
        assert_eq!(s.user.as_deref(), Some("nobody"));
        flags.init = Some(InitMode::Always);
        flags.grace = Some(0.0);
        flags.kill_process_group = Some(false);
        flags.user = Some("1:1".into());
        let s = Settings::load(&flags).unwrap();
        assert_eq!(s.init, InitMode::Always);
        assert_eq!(s.grace, Duration::ZERO);
        assert!(!s.kill_process_group);
        assert_eq!(s.user.as_deref(), Some("1:1"));
    }
}
