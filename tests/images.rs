//! Images built with the README's recipe (`seed --slim`, pexinit, dependency and code
//! layers) against pex's own container recipe, and rebuilt elsewhere: the app is stored
//! once, and nothing of the build host (directory, umask, kernel, clock) reaches a digest.

mod oci_support;
mod support;

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::Command;

use oci_support::recipe::{Built, Recipe, SDE, build, src_dest};
use oci_support::*;
use support::*;

/// The package `PACKAGE` in `dir`: an empty `__init__.py` and `main.py` holding `main`.
fn write_package(dir: &Path, package: &str, main: &str) {
    fs::create_dir_all(dir.join(package)).expect("src dir");
    fs::write(dir.join(package).join("__init__.py"), "").expect("write");
    fs::write(dir.join(package).join("main.py"), main).expect("write");
}

/// An app of cowsay plus its own module, built by pex from sources in `dir`.
fn write_sources(dir: &Path) {
    write_package(
        dir,
        "imgapp",
        "import cowsay\n\n\ndef main():\n    cowsay.cow('same')\n",
    );
}

/// `pex cowsay -D SRC -e imgapp.main:main -o OUT`, as a user builds it in a checkout.
fn pex_build(src: &Path, out: &Path) {
    let ran = run(Command::new(pex_venv(PEX_NEWEST).join("bin/pex"))
        .args(["cowsay==6.1", "-D"])
        .arg(src)
        .args(["-e", "imgapp.main:main", "--python", PYTHON, "-o"])
        .arg(out)
        .env_clear()
        .env("PATH", PATH)
        .env(
            "PEX_ROOT",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures/build-root-images"),
        ));
    assert!(ran.success(), "pex:\n{}", ran.describe());
}

#[test]
fn rebuilds_in_another_directory_umask_kernel_and_date_give_the_same_digests() {
    let sb = Sandbox::new();
    let top = image_dir("images-same");
    let root = top.path().join("pex-root");

    let mut builds: Vec<Built> = Vec::new();
    let variants: [(&str, u32, bool, &str); 2] = [
        ("ci/job-1", 0o022, false, "2020-01-02 03:04:05"),
        (
            "elsewhere/a/much/deeper/workspace",
            0o002,
            true,
            "2031-05-06 07:08:09",
        ),
    ];
    for (dir, umask, other_kernel, date) in variants {
        let checkout = sb.mkdir(dir);
        let src = checkout.join("src");
        write_sources(&src);
        must(
            "touch every source file",
            tool("find")
                .arg(&src)
                .args(["-exec", "touch", "-h", "-d", date, "{}", "+"]),
        );
        let app = checkout.join("dist/app.pex");
        pex_build(&src, &app);
        builds.push(build(
            &sb,
            &Recipe {
                build_dir: Some(checkout.join("image")),
                umask: Some(umask),
                other_kernel,
                ..Recipe::new(dir, &app, &root)
            },
        ));
    }
    let [one, two] = &builds[..] else {
        unreachable!("two builds")
    };
    assert_eq!(
        one.digests(),
        two.digests(),
        "a layer depends on the build directory, the umask, the kernel or the date"
    );
    assert_eq!(one.config, two.config, "the image config differs");
    assert_eq!(one.manifest, two.manifest, "the manifest differs");
}

/// The gz bytes pex's own recipe gives the same app, as a registry stores them:
/// `PEX_TOOLS=1 app.pex venv --scope=deps --compile /app`, then `--scope=srcs`, each
/// directory one layer, compressed on push (skopeo compresses the uncompressed layers
/// exactly as `podman push` of a `podman build` image does).
fn pex_recipe_bytes(sb: &Sandbox, name: &str, app: &Path, top: &Path) -> u64 {
    let venv = top.join(format!("{name}-app"));
    let layout = copy_base(&sb.join(&format!("pex-recipe-{name}")));
    let mut append = pexinit();
    append
        .env("SOURCE_DATE_EPOCH", SDE)
        .args(["image", "append", "--layout"])
        .arg(&layout)
        .args(["--ref", "base", "--tag", "app"]);
    for scope in ["deps", "srcs"] {
        let _ = fs::remove_dir_all(&venv);
        let ran = run(Command::new(pex_venv(PEX_NEWEST).join("bin/pex-tools"))
            .arg(app)
            .args(["venv", &format!("--scope={scope}"), "--compile"])
            .arg(&venv)
            .env_clear()
            .env("PATH", PATH));
        assert!(ran.success(), "pex-tools venv:\n{}", ran.describe());
        let tar = sb.join(&format!("pex-recipe-{name}-{scope}.tar"));
        let ran = run(pexinit()
            .env("SOURCE_DATE_EPOCH", SDE)
            .args(["layer", "--compression", "none", "-o"])
            .arg(&tar)
            .arg(src_dest(&venv, "/app")));
        assert!(ran.success(), "layer:\n{}", ran.describe());
        append.arg("--layer").arg(&tar);
    }
    let ran = run(&mut append);
    assert!(ran.success(), "image append:\n{}", ran.describe());
    let pushed = sb.join(&format!("pex-recipe-{name}-pushed"));
    must(
        "skopeo copy, compressing as a push does",
        tool("skopeo").args([
            "copy",
            "--dest-compress",
            "--dest-compress-format",
            "gzip",
            &format!("oci:{}:app", layout.display()),
            &format!("oci:{}:app", pushed.display()),
        ]),
    );
    let manifest = skopeo_manifest(&pushed);
    let layers = manifest["layers"].as_array().expect("layers");
    layers[layers.len() - 2..]
        .iter()
        .map(|l| l["size"].as_u64().expect("size"))
        .sum()
}

fn skopeo_manifest(layout: &Path) -> serde_json::Value {
    let ran = must(
        "skopeo inspect --raw",
        tool("skopeo").args(["inspect", "--raw", &format!("oci:{}:app", layout.display())]),
    );
    ran.json()
}

/// One app both ways: (pexinit's image bytes without pexinit's own layer, pex's).
fn both_recipes(sb: &Sandbox, name: &str, app: &Path, args: &[&str], prints: &str) -> (u64, u64) {
    let top = image_dir(&format!("images-{name}"));
    let root = top.path().join("pex-root");
    let ours = build(sb, &Recipe::new(name, app, &root));
    // The slim seed starts the app without its .pex file.
    let ran = run(pexinit()
        .arg("run")
        .arg("--seed")
        .arg(&root)
        .args(["--python", PYTHON, "--", "/app/app.pex"])
        .args(args));
    assert!(ran.success(), "{}", ran.describe());
    ran.assert_stdout_has(prints);
    // The app is in the image once: the .pex file is not shipped at all.
    for (file, _) in &ours.layers {
        let listing = must("tar tzf", tool("tar").arg("tzf").arg(file));
        assert!(
            !listing.stdout.lines().any(|l| l.ends_with(".pex")),
            "a .pex file is in {}:\n{}",
            file.display(),
            listing.stdout
        );
    }
    (
        ours.app_bytes(),
        pex_recipe_bytes(sb, name, app, top.path()),
    )
}

fn assert_no_bigger(name: &str, (ours, theirs): (u64, u64)) {
    eprintln!(
        "{name}: pexinit {ours} bytes, pex's recipe {theirs} bytes ({:.3}x)",
        ours as f64 / theirs as f64
    );
    assert!(
        ours <= theirs,
        "{name}: pexinit's image holds {ours} gz bytes of the app, pex's recipe {theirs}"
    );
}

#[test]
fn a_slim_cowsay_image_is_no_bigger_than_pex_recipe() {
    let sb = Sandbox::new();
    let app = cowsay(PEX_NEWEST, Kind::Zipapp);
    assert_no_bigger(
        "cowsay",
        both_recipes(&sb, "cowsay", &app, &["-t", "Moo"], "Moo"),
    );
}

#[test]
fn a_slim_numpy_image_is_no_bigger_than_pex_recipe() {
    let sb = Sandbox::new();
    let app = pex_fixture(PEX_NEWEST, Kind::Zipapp, "npapp", || {
        let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures/npapp-src");
        write_package(
            &src,
            "npapp",
            "import numpy\n\n\ndef main():\n    print(numpy.arange(6).sum())\n",
        );
        let args: Vec<OsString> = vec![
            "numpy==2.1.3".into(),
            "-D".into(),
            src.into_os_string(),
            "-e".into(),
            "npapp.main:main".into(),
        ];
        args
    });
    assert_no_bigger("numpy", both_recipes(&sb, "numpy", &app, &[], "15"));
}
