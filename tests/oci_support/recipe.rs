//! The README's image recipe, run as a user runs it: the PEX seeded slim at the path the
//! image has, pexinit as its own layer, the seed as dependency and code layers, appended
//! to a copy of the base. The .pex file itself is not in the image.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{copy_base, tool};
use crate::support::{PYTHON, Ran, Sandbox, pexinit_bin, run};

/// SOURCE_DATE_EPOCH of every recipe build (a commit's date).
pub const SDE: &str = "1700000000";
/// The entrypoint the README gives: the app is named by the seeded PEX's path.
pub const ENTRYPOINT: &str =
    r#"["/usr/local/bin/pexinit","run","--python","/usr/bin/python3.11","--"]"#;

/// How and where one build runs.
pub struct Recipe<'a> {
    /// Names this build's files in the sandbox.
    pub name: &'a str,
    /// The PEX, copied into the build directory as `app.pex` before it is seeded.
    pub app: &'a Path,
    /// The seed's path: the path it has in the image.
    pub root: &'a Path,
    /// Extra `pexinit layer --split` arguments (`{out}` is the build's layer directory).
    pub split_extra: &'a [&'a str],
    /// The build directory (default: `build-<name>` in the sandbox).
    pub build_dir: Option<PathBuf>,
    /// The umask every build step runs with (default: the test's own).
    pub umask: Option<u32>,
    /// Every build step runs under `setarch x86_64 --uname-2.6` (another kernel release).
    pub other_kernel: bool,
}

impl<'a> Recipe<'a> {
    pub fn new(name: &'a str, app: &'a Path, root: &'a Path) -> Recipe<'a> {
        Recipe {
            name,
            app,
            root,
            split_extra: &[],
            build_dir: None,
            umask: None,
            other_kernel: false,
        }
    }
}

/// What a build made.
pub struct Built {
    pub layout: PathBuf,
    /// (file, digest) of each appended layer, in order: pexinit, dependencies (and the
    /// distributions `--distributions` adds), code.
    pub layers: Vec<(PathBuf, String)>,
    pub config: String,
    pub manifest: String,
}

impl Built {
    pub fn digests(&self) -> Vec<String> {
        self.layers.iter().map(|(_, d)| d.clone()).collect()
    }

    /// Bytes of every layer but pexinit's own (shared by every app of a registry).
    pub fn app_bytes(&self) -> u64 {
        self.layers[1..]
            .iter()
            .map(|(f, _)| fs::metadata(f).expect("layer").len())
            .sum()
    }
}

pub fn src_dest(src: &Path, dest: &str) -> OsString {
    let mut arg = src.as_os_str().to_os_string();
    arg.push(":");
    arg.push(dest);
    arg
}

/// pexinit as this recipe's steps run it: its umask, its kernel release.
fn step(recipe: &Recipe<'_>) -> Command {
    let mut cmd = match recipe.other_kernel {
        true => {
            let mut cmd = tool("setarch");
            cmd.args(["x86_64", "--uname-2.6"]);
            cmd
        }
        false => {
            let mut cmd = tool("env");
            cmd.arg("--");
            cmd
        }
    };
    let umask = recipe
        .umask
        .map_or(String::new(), |m| format!("umask {m:04o}; "));
    cmd.args([
        "sh",
        "-c",
        &format!("{umask}exec \"$0\" \"$@\""),
        pexinit_bin(),
    ])
    .env("SOURCE_DATE_EPOCH", SDE);
    cmd
}

fn must_step(what: &str, cmd: &mut Command) -> Ran {
    let ran = run(cmd);
    assert!(ran.success(), "{what}:\n{}", ran.describe());
    ran
}

/// `pexinit layer --json ARGS`: the layers it wrote, in order, as (file, digest).
fn layer(recipe: &Recipe<'_>, args: &[OsString]) -> Vec<(PathBuf, String)> {
    let ran = must_step(
        &format!("pexinit layer {args:?}"),
        step(recipe).args(["layer", "--json"]).args(args),
    );
    ran.json()["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                PathBuf::from(l["path"].as_str().expect("path")),
                l["digest"].as_str().expect("digest").to_string(),
            )
        })
        .collect()
}

/// Runs the README's recipe for `recipe.app`.
pub fn build(sb: &Sandbox, recipe: &Recipe<'_>) -> Built {
    let _ = fs::remove_dir_all(recipe.root);
    let build_dir = recipe
        .build_dir
        .clone()
        .unwrap_or_else(|| sb.join(&format!("build-{}", recipe.name)));
    fs::create_dir_all(&build_dir).expect("build dir");
    let app_pex = build_dir.join("app.pex");
    fs::copy(recipe.app, &app_pex).expect("copy app");
    must_step(
        "seed --slim",
        step(recipe)
            .args(["seed", "--slim", "--pex-root"])
            .arg(recipe.root)
            .args(["--python", PYTHON])
            .arg(&app_pex),
    );
    let out = build_dir.join("layers");
    fs::create_dir_all(&out).expect("layers dir");
    let mut layers = layer(
        recipe,
        &[
            "--normalize-modes".into(),
            "-o".into(),
            out.join("pexinit.tar.gz").into(),
            src_dest(Path::new(pexinit_bin()), "/usr/local/bin/pexinit"),
        ],
    );
    let mut split: Vec<OsString> = vec![
        "-o".into(),
        out.join("deps.tar.gz").into(),
        "--split".into(),
        out.join("code.tar.gz").into(),
    ];
    split.extend(
        recipe
            .split_extra
            .iter()
            .map(|a| OsString::from(a.replace("{out}", &out.display().to_string()))),
    );
    split.push(src_dest(recipe.root, &recipe.root.display().to_string()));
    layers.extend(layer(recipe, &split));

    let layout = copy_base(&build_dir.join("layout"));
    let mut append = step(recipe);
    append
        .args(["image", "append", "--json", "--layout"])
        .arg(&layout)
        .args(["--ref", "base", "--tag", "app"]);
    for (file, _) in &layers {
        append.arg("--layer").arg(file);
    }
    let ran = must_step(
        "image append",
        append.args([
            "--entrypoint",
            ENTRYPOINT,
            "--cmd",
            r#"["/app/app.pex"]"#,
            "--env",
            &format!("PEXINIT_SEED={}", recipe.root.display()),
            "--user",
            "123456:0",
        ]),
    );
    let report: Value = ran.json();
    let digest = |key: &str| {
        report[key]["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} digest: {report}"))
            .to_string()
    };
    Built {
        config: digest("config"),
        manifest: digest("manifest"),
        layout,
        layers,
    }
}
