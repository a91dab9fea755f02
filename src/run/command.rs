//! Which executable `run` starts, with which argv: a PEX with its interpreter, or any
//! other program found the way execvp(3) finds it.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Settings, Source};
use crate::envmap::EnvMap;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::paths::{Lookup, find_executable, is_executable};
use crate::pex::info::{self, Pex};

/// What execvp uses when PATH is unset (and what Docker sets by default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpreterSource {
    /// `--python` or `PEXINIT_PYTHON`.
    Flag,
    /// The config file's `python`.
    ConfigFile,
    /// The PEX's own `#!` line.
    Shebang,
    /// The interpreter the seed was built for: the PEX file is not here to say.
    Seed,
}

#[derive(Debug, Clone, Serialize)]
pub struct CommandPlan {
    /// The file handed to execve.
    #[serde(serialize_with = "crate::json_bytes::os")]
    pub executable: PathBuf,
    #[serde(skip)]
    pub argv: Vec<String>,
    /// The argv handed to execve, byte for byte.
    #[serde(rename = "argv", serialize_with = "crate::json_bytes::vec_os")]
    pub argv_os: Vec<OsString>,
    /// The PEX being run: PROGRAM itself, or the script argument of a python PROGRAM.
    pub pex: Option<Pex>,
    /// Where the PEX path stands in `argv` (interpreter options before it, the app's
    /// arguments after it).
    pub pex_arg: Option<usize>,
    pub interpreter_source: Option<InterpreterSource>,
}

impl CommandPlan {
    /// Interpreter options before the PEX path and the app's arguments after it.
    pub fn around_pex(&self) -> Option<(&[OsString], &[OsString])> {
        let at = self.pex_arg?;
        Some((&self.argv_os[1..at], &self.argv_os[at + 1..]))
    }
}

/// Plans how to execute `command` (PROGRAM and its arguments) with environment `env`.
pub fn plan_command(
    command: &[OsString],
    settings: &Settings,
    env: &EnvMap,
    who: &Identity,
) -> Result<CommandPlan> {
    let Some((program, args)) = command.split_first() else {
        return Err(Error::Usage(
            "no PROGRAM given; usage: pexinit run [OPTIONS] [--] PROGRAM [ARGS...]".into(),
        ));
    };
    let path_var = env.get("PATH").unwrap_or(OsStr::new(DEFAULT_PATH));
    let program_path = locate_program(program, path_var, who)?;

    if let Some(opened) = info::probe(&program_path) {
        let pex = opened.map_err(|e| {
            Error::CannotExecute(format!(
                "{} {e}; rebuild it with pex or check the path",
                program_path.display()
            ))
        })?;
        let interpreter = choose_interpreter(&pex, settings)?;
        return plan_pex(program, args, pex, interpreter, path_var, who);
    }

    check_executable(&program_path, who)?;
    let (pex_arg, pex) = script_argument_pex(&program_path, args).unzip();
    Ok(CommandPlan {
        executable: program_path,
        argv: lossy_all(command),
        argv_os: command.to_vec(),
        pex,
        pex_arg,
        interpreter_source: None,
    })
}

/// PROGRAM names a PEX whose file is not here but whose seed is (an image built with
/// `pexinit seed --slim` need not ship the .pex files): planned as the file would be,
/// with the seed's interpreter unless one is named.
pub fn plan_seeded_pex(
    command: &[OsString],
    pex: Pex,
    seed_python: &Path,
    settings: &Settings,
    env: &EnvMap,
    who: &Identity,
) -> Result<CommandPlan> {
    let Some((program, args)) = command.split_first() else {
        return Err(Error::Usage("no PROGRAM given".into()));
    };
    let interpreter = match &settings.python {
        Some(_) => choose_interpreter(&pex, settings)?,
        None => (
            seed_python.to_path_buf(),
            InterpreterSource::Seed,
            Vec::new(),
        ),
    };
    let path_var = env.get("PATH").unwrap_or(OsStr::new(DEFAULT_PATH));
    plan_pex(program, args, pex, interpreter, path_var, who)
}

/// The command of a PEX: its interpreter, the interpreter's options, the PEX, its args.
fn plan_pex(
    program: &OsString,
    args: &[OsString],
    pex: Pex,
    (interpreter, source, interpreter_args): (PathBuf, InterpreterSource, Vec<String>),
    path_var: &OsStr,
    who: &Identity,
) -> Result<CommandPlan> {
    let executable = find_executable(OsStr::new(&interpreter), path_var, who).map_err(|e| {
        let origin = match source {
            InterpreterSource::Flag => "from --python / PEXINIT_PYTHON".to_owned(),
            InterpreterSource::ConfigFile => "from the config file's python".to_owned(),
            InterpreterSource::Shebang => format!("from the #! line of {}", pex.path.display()),
            InterpreterSource::Seed => "the seed's interpreter".to_owned(),
        };
        with_context(
            e,
            &format!("interpreter {} ({origin})", interpreter.display()),
            "install it or pass --python PATH",
        )
    })?;
    let mut argv_os = vec![executable.clone().into_os_string()];
    argv_os.extend(interpreter_args.into_iter().map(OsString::from));
    let pex_arg = Some(argv_os.len());
    argv_os.push(program.clone());
    argv_os.extend(args.iter().cloned());
    Ok(CommandPlan {
        executable,
        argv: lossy_all(&argv_os),
        argv_os,
        pex: Some(pex),
        pex_arg,
        interpreter_source: Some(source),
    })
}

/// PROGRAM as execvp finds it, except that a PEX in the working directory is found by
/// its bare name too (`pexinit run -- app.pex`), as users of `python app.pex` expect.
fn locate_program(program: &OsStr, path_var: &OsStr, who: &Identity) -> Result<PathBuf> {
    let as_path = Path::new(program);
    if program.is_empty() {
        return Err(Error::NotFound(
            "PROGRAM is an empty string; name a program (a path or a command on PATH)".into(),
        ));
    }
    if program.as_encoded_bytes().contains(&b'/') {
        if fs::symlink_metadata(as_path).is_err() && fs::metadata(as_path).is_err() {
            return Err(Error::NotFound(format!(
                "{}: no such file; check the path",
                as_path.display()
            )));
        }
        if let Some(kind) = special_kind(as_path) {
            return Err(Error::CannotExecute(format!(
                "{} is {kind}, not a program; give an executable file or a PEX",
                as_path.display()
            )));
        }
        return Ok(as_path.to_path_buf());
    }
    // A fifo or device in the working directory is no PEX (and reading one could block).
    if special_kind(as_path).is_none() && info::is_pex_candidate(as_path) {
        return Ok(as_path.to_path_buf());
    }
    find_executable(program, path_var, who).map_err(|e| {
        with_context(
            e,
            &as_path.display().to_string(),
            "install it, fix PATH or give the full path",
        )
    })
}

/// What `path` is when it is neither a regular file nor a directory (following links).
fn special_kind(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = fs::metadata(path).ok()?.file_type();
    if kind.is_fifo() {
        Some("a fifo")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

fn with_context(lookup: Lookup, what: &str, fix: &str) -> Error {
    match lookup {
        Lookup::NotFound => Error::NotFound(format!("{what}: command not found; {fix}")),
        Lookup::NotExecutable(path) => Error::CannotExecute(format!(
            "{what}: {} is not executable; fix its permissions or {fix}",
            path.display()
        )),
    }
}

fn check_executable(path: &Path, who: &Identity) -> Result<()> {
    let meta = fs::metadata(path)
        .map_err(|e| Error::NotFound(format!("{}: {e}; check the path", path.display())))?;
    if meta.is_dir() {
        return Err(Error::CannotExecute(format!(
            "{}: is a directory (and not a PEX directory: no PEX-INFO); name a program or a PEX",
            path.display()
        )));
    }
    if !is_executable(&meta, who) {
        return Err(Error::CannotExecute(format!(
            "{}: permission denied; make it executable (chmod +x) or run it through its interpreter",
            path.display()
        )));
    }
    Ok(())
}

fn choose_interpreter(
    pex: &Pex,
    settings: &Settings,
) -> Result<(PathBuf, InterpreterSource, Vec<String>)> {
    if let Some((python, source)) = &settings.python {
        let source = match source {
            Source::ConfigFile => InterpreterSource::ConfigFile,
            // No interpreter is ever taken from PEX-INFO: that is the #! line's job.
            Source::Flag | Source::PexInfo => InterpreterSource::Flag,
        };
        return Ok((python.clone(), source, Vec::new()));
    }
    match &pex.shebang {
        Some(shebang) => Ok((
            PathBuf::from(&shebang.program),
            InterpreterSource::Shebang,
            shebang.args.clone(),
        )),
        None => Err(Error::CannotExecute(format!(
            "{}: the PEX has no #! line naming its interpreter; pass --python PATH",
            pex.path.display()
        ))),
    }
}

/// `python3.11 [-u] app.pex ...`: the PEX is the first argument that is not an option;
/// returns its index in the whole argv (program first).
fn script_argument_pex(program: &Path, args: &[OsString]) -> Option<(usize, Pex)> {
    let name = program.file_name()?.to_string_lossy();
    if !name.starts_with("python") {
        return None;
    }
    let at = args
        .iter()
        .position(|a| !a.as_encoded_bytes().starts_with(b"-"))?;
    let script = Path::new(&args[at]);
    let pex = info::probe(script)?.ok()?;
    Some((at + 1, pex))
}

fn lossy_all(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::error::exit;

    fn plan(program: &Path, path_var: &Path) -> Result<CommandPlan> {
        let env = EnvMap::from_pairs([(OsString::from("PATH"), path_var.as_os_str().to_owned())]);
        plan_command(
            &[program.as_os_str().to_owned(), "--flag".into()],
            &Settings::default(),
            &env,
            &Identity::current(),
        )
    }

    #[test]
    fn programs_are_found_on_path_and_failures_carry_docker_run_statuses() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        fs::write(&tool, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();

        let found = plan(Path::new("tool"), &bin).unwrap();
        assert_eq!(found.executable, tool);
        assert_eq!(found.argv[1..], ["--flag"]);
        assert!(found.pex.is_none());

        let missing = plan(Path::new("no-such-tool"), &bin).unwrap_err();
        assert_eq!(missing.exit_code(), exit::NOT_FOUND, "{missing}");
        let dir = plan(&bin, &bin).unwrap_err();
        assert_eq!(dir.exit_code(), exit::CANNOT_EXECUTE, "{dir}");
        assert!(!dir.to_string().contains('\n'), "{dir}");
    }
}
