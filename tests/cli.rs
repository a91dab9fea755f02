//! The command-line contract: precedence of flags, variables and the config file,
//! `env` output forms, interpreter choice, `doctor`'s verdicts, help and completions.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::*;

fn env_json(cmd: &mut Command) -> Value {
    let ran = run(cmd);
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    ran.json()
}

fn pexinit_in(sandbox: &Sandbox) -> Command {
    let mut cmd = pexinit();
    cmd.env("HOME", sandbox.mkdir("home"))
        .current_dir(sandbox.path());
    cmd
}

#[test]
fn pex_root_precedence_is_flag_then_variable_then_file_then_default() {
    let s = Sandbox::new();
    let config = s.write(
        "pexinit.yaml",
        format!("pex_root: {}\n", s.join("from-file").display()).as_bytes(),
    );
    let value = |flag: bool, var: bool, file: bool| {
        let mut cmd = pexinit_in(&s);
        cmd.args(["env", "--json"]);
        if flag {
            cmd.arg("--pex-root").arg(s.join("from-flag"));
        }
        if var {
            cmd.env("PEXINIT_PEX_ROOT", s.join("from-var"));
        }
        if file {
            cmd.env("PEXINIT_CONFIG", &config);
        }
        env_json(&mut cmd)["env"]["PEX_ROOT"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let at = |rel: &str| s.join(rel).display().to_string();
    assert_eq!(value(true, true, true), at("from-flag"));
    assert_eq!(value(false, true, true), at("from-var"));
    assert_eq!(value(false, false, true), at("from-file"));
    assert_eq!(value(false, false, false), at("home/.cache/pex"));
}

#[test]
fn python_precedence_and_interpreter_choice() {
    let s = Sandbox::new();
    let pex = cowsay(PEX_FIXED, Kind::Zipapp);
    // A wrapper interpreter that leaves a trace, then is the real python.
    let wrapper = s.write(
        "python-wrapper",
        format!("#!/bin/sh\necho wrapped >&2\nexec {PYTHON} \"$@\"\n").as_bytes(),
    );
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = s.write("c.yaml", b"python: /usr/bin/python3\n");

    let plan = |args: &[&str], var: Option<&Path>| {
        let mut cmd = pexinit_in(&s);
        cmd.args(["env", "--json", "--config"])
            .arg(&config)
            .args(args)
            .arg("--")
            .arg(&pex);
        if let Some(v) = var {
            cmd.env("PEXINIT_PYTHON", v);
        }
        let json = env_json(&mut cmd);
        (
            json["command"]["executable"].as_str().unwrap().to_owned(),
            json["command"]["interpreter_source"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    };
    let w = wrapper.to_str().unwrap();
    assert_eq!(
        plan(&["--python", w], Some(Path::new("/nonexistent"))),
        (w.to_owned(), "flag".to_owned())
    );
    assert_eq!(plan(&[], Some(&wrapper)), (w.to_owned(), "flag".to_owned()));
    assert_eq!(
        plan(&[], None),
        ("/usr/bin/python3".to_owned(), "config_file".to_owned())
    );

    let mut cmd = pexinit_in(&s);
    cmd.args(["env", "--json", "--"]).arg(&pex);
    let json = env_json(&mut cmd);
    assert_eq!(
        json["command"]["executable"], PYTHON,
        "the #! line names python3.11, found on PATH"
    );
    assert_eq!(json["command"]["interpreter_source"], "shebang");

    // run really uses the chosen interpreter.
    let mut cmd = pexinit_in(&s);
    cmd.args(["run", "--python", w, "--"])
        .arg(&pex)
        .args(["-t", "wrapped"]);
    let ran = run(&mut cmd);
    assert_cowsay_said(&ran, "wrapped");
    assert!(ran.stderr.contains("wrapped"), "{}", ran.describe());

    // A missing interpreter is 127, named with where it came from.
    let mut cmd = pexinit_in(&s);
    cmd.args(["run", "--python", "/nonexistent/python", "--"])
        .arg(&pex);
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(127), "{}", ran.describe());
    assert!(
        ran.stderr.contains("/nonexistent/python") && ran.stderr.contains("--python"),
        "{}",
        ran.describe()
    );
}

#[test]
fn config_env_adds_defaults_and_is_normalized() {
    let s = Sandbox::new();
    let real = s.mkdir("real");
    s.symlink(&real, "link");
    let config = s.write(
        "c.yaml",
        format!(
            "env:\n  APP_MODE: prod\n  PORT: 8080\n  KEPT: from-file\n  PEX_ROOT: {}/link/pex\n",
            s.path().display()
        )
        .as_bytes(),
    );
    let mut cmd = pexinit_in(&s);
    cmd.args(["env", "--json", "--config"])
        .arg(&config)
        .env("KEPT", "from-env");
    let json = env_json(&mut cmd);
    assert_eq!(json["env"]["APP_MODE"], "prod");
    assert_eq!(json["env"]["PORT"], "8080");
    assert_eq!(
        json["env"]["KEPT"], "from-env",
        "the environment wins over config env:"
    );
    assert_eq!(json["env"]["PEX_ROOT"], real.join("pex").to_str().unwrap());
}

#[test]
fn default_config_file_is_etc_pexinit_yaml() {
    // A private copy of /etc in a mount namespace, so the host's /etc is untouched.
    let s = Sandbox::new();
    let etc = s.join("etc");
    let copied = Command::new("cp")
        .arg("-a")
        .arg("/etc")
        .arg(&etc)
        .status()
        .unwrap();
    assert!(copied.success());
    fs::write(
        etc.join("pexinit.yaml"),
        format!("pex_root: {}\n", s.join("etc-root").display()),
    )
    .unwrap();
    let mut inner = pexinit_in(&s);
    inner.args(["env", "--json"]);
    let mut cmd = Command::new("/usr/bin/unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        "mount --bind \"$0\" /etc && exec \"$@\"",
    ])
    .arg(&etc)
    .arg(inner.get_program())
    .args(inner.get_args())
    .env_clear()
    .env("PATH", PATH)
    .env("HOME", s.join("home"))
    .current_dir(s.path());
    let json = env_json(&mut cmd);
    assert_eq!(
        json["env"]["PEX_ROOT"],
        s.join("etc-root").to_str().unwrap()
    );
}

#[test]
fn export_lines_round_trip_through_a_shell() {
    let s = Sandbox::new();
    let real = s.mkdir("it's/real");
    s.symlink(&real, "home-link");
    let mut cmd = pexinit_in(&s);
    cmd.env("HOME", s.join("home-link"))
        .env("XDG_CACHE_HOME", "relative/cache")
        .args(["env", "--export"]);
    let ran = run(&mut cmd);
    assert!(ran.success(), "{}", ran.describe());
    assert!(
        ran.stdout.contains("unset XDG_CACHE_HOME"),
        "{}",
        ran.stdout
    );
    let script = format!(
        "XDG_CACHE_HOME=x\n{}\necho \"$HOME|$PEX_ROOT|${{XDG_CACHE_HOME-unset}}\"",
        ran.stdout
    );
    let shell = run(clean_command("/bin/sh").args(["-c", &script]));
    assert_eq!(
        shell.stdout.trim(),
        format!("{}|{}/.cache/pex|unset", real.display(), real.display())
    );

    let mut cmd = pexinit_in(&s);
    cmd.arg("env");
    let plain = run(&mut cmd);
    assert!(
        plain.stdout.lines().any(|l| l.starts_with("PEX_ROOT=/")),
        "{}",
        plain.stdout
    );
}

#[test]
fn any_program_gets_the_normalized_environment() {
    let s = Sandbox::new();
    let real = s.mkdir("var/home/u");
    s.symlink("var/home", "home");
    let mut cmd = pexinit();
    cmd.env("HOME", s.join("home/u"))
        .env("PWD", s.join("home/u"))
        .current_dir(s.join("home/u"));
    cmd.args(["run", "--", "/usr/bin/env"]);
    let ran = run(&mut cmd);
    assert!(ran.success(), "{}", ran.describe());
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines.contains(&format!("HOME={}", real.display()).as_str()),
        "{}",
        ran.stdout
    );
    assert!(
        lines.contains(&format!("PWD={}", real.display()).as_str()),
        "{}",
        ran.stdout
    );
    assert!(
        lines.contains(&format!("PEX_ROOT={}/.cache/pex", real.display()).as_str()),
        "{}",
        ran.stdout
    );
}

#[test]
fn doctor_is_unhealthy_when_pex_root_cannot_be_written() {
    let s = Sandbox::new();
    let home = s.mkdir("home");
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let locked = s.mkdir("locked");
    let mut cmd = pexinit();
    cmd.env("HOME", &home)
        .env("PEX_ROOT", &locked)
        .current_dir(s.path())
        .args(["doctor", "--json"]);
    let ran = run(&mut as_user(65534, 65534, &cmd));
    assert_eq!(ran.code, Some(1), "{}", ran.describe());
    let json = ran.json();
    assert_eq!(json["healthy"], false);
    assert!(
        json["problems"][0]
            .as_str()
            .unwrap()
            .contains("not writable"),
        "{json:#}"
    );

    // run still runs the program (pex will start cold), after one warning line.
    let mut cmd = pexinit();
    cmd.env("HOME", &home)
        .env("PEX_ROOT", &locked)
        .current_dir(s.path())
        .args(["run", "--", "/bin/true"]);
    let ran = run(&mut as_user(65534, 65534, &cmd));
    assert_eq!(ran.code, Some(0), "{}", ran.describe());
    assert_eq!(ran.stderr_lines().len(), 1, "{}", ran.describe());
    assert!(ran.stderr.contains("start cold"), "{}", ran.describe());

    // The text report says the same.
    let mut cmd = pexinit();
    cmd.env("HOME", &home)
        .env("PEX_ROOT", &locked)
        .current_dir(s.path())
        .arg("doctor");
    let ran = run(&mut as_user(65534, 65534, &cmd));
    assert!(
        ran.stdout.trim_end().ends_with("unhealthy"),
        "{}",
        ran.describe()
    );
}

#[test]
fn doctor_names_the_runtime_and_its_bugs_per_layout() {
    for (version, kind, layout, venv) in [
        (PEX_BUGGY, Kind::Zipapp, "zipapp", false),
        (PEX_BUGGY, Kind::Venv, "zipapp", true),
        (PEX_FIXED, Kind::Packed, "packed", false),
        (PEX_NEWEST, Kind::Loose, "loose", false),
    ] {
        let s = Sandbox::new();
        let pex = cowsay(version, kind);
        let mut cmd = pexinit_in(&s);
        cmd.args(["doctor", "--json"]).arg(&pex);
        let json = env_json(&mut cmd);
        assert_eq!(json["pex"]["pex_version"], version);
        assert_eq!(json["pex"]["layout"], layout);
        assert_eq!(json["pex"]["venv"], venv);
        assert_eq!(json["pex"]["pex_hash"].as_str().map(str::len), Some(40));
        // Unaffected: the fixed and newest runtimes, except a `--venv` PEX built before
        // pex 2.98.3 (pex#3223).
        assert_eq!(
            json["pex"]["known_bugs"].as_array().unwrap().is_empty(),
            version != PEX_BUGGY && !(venv && version != PEX_NEWEST)
        );
        // The interpreter form is recognised too.
        let mut cmd = pexinit_in(&s);
        cmd.args(["doctor", "--json", "--", "python3.11"]).arg(&pex);
        assert_eq!(env_json(&mut cmd)["pex"]["pex_version"], version);
    }
}

#[test]
fn help_has_examples_and_version_and_completions_work() {
    for sub in ["run", "env", "doctor", "repair", "completions"] {
        let ran = run(pexinit().args([sub, "--help"]));
        assert_eq!(ran.code, Some(0));
        assert!(
            ran.stdout.contains("Example"),
            "{sub} --help has no example:\n{}",
            ran.stdout
        );
    }
    let ran = run(pexinit().arg("--version"));
    assert_eq!(
        ran.stdout.trim(),
        format!("pexinit {}", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish"] {
        let ran = run(pexinit().args(["completions", shell]));
        assert!(
            ran.success() && ran.stdout.contains("doctor") && ran.stdout.contains("pex-root"),
            "{shell}"
        );
    }
    let ran = run(pexinit().args(["completions", "tcsh"]));
    assert_eq!(ran.code, Some(125));
    assert_eq!(ran.stderr_lines().len(), 1, "{}", ran.describe());
    // bash accepts what it generated.
    let script = run(pexinit().args(["completions", "bash"])).stdout;
    let ran =
        run(clean_command("/bin/bash").args(["-c", &format!("{script}\ncomplete -p pexinit")]));
    assert!(
        ran.success() && ran.stdout.contains("pexinit"),
        "{}",
        ran.describe()
    );
}
