//! Images pushed to a real registry (the distribution registry, Debian's
//! `docker-registry`), started by the test on 127.0.0.1 with its storage in the test's
//! temp dir: the registry's own access log says which blobs each push uploaded, so the
//! promise "a code change re-uploads only the small layers" is checked where it matters.

mod oci_support;
mod support;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_support::*;
use serde_json::Value;
use support::*;

const SDE: &str = "1700000000";
const REGISTRY_HINT: &str =
    "run scripts/install-test-deps (apt-get install -y docker-registry skopeo umoci)";

/// A registry process serving 127.0.0.1:`port`, storing blobs under its temp dir and
/// logging every request to `log`; stopped by its pid when dropped.
struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        let binary = Path::new("/usr/bin/docker-registry");
        assert!(
            binary.exists(),
            "docker-registry is not installed; {REGISTRY_HINT}"
        );
        // A port the kernel says is free now; the registry binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            ),
        )
        .expect("registry config");
        let log = dir.join("registry.log");
        let out = fs::File::create(&log).expect("registry log");
        let err = out.try_clone().expect("registry log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker-registry: {e}; {REGISTRY_HINT}"));
        let mut registry = Registry { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}):\n{}",
                    fs::read_to_string(&registry.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on 127.0.0.1:{port} within 30 s:\n{}",
                fs::read_to_string(&registry.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://127.0.0.1:PORT/NAME:TAG`; the digests of the
    /// blobs the registry received during the copy (completed uploads, from its log).
    fn push(&self, layout: &Path, tag: &str, name: &str) -> BTreeSet<String> {
        let before = fs::read(&self.log).expect("registry log").len();
        must(
            "skopeo copy to the registry",
            tool("skopeo").args([
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{}:{tag}", layout.display()),
                &format!("docker://127.0.0.1:{}/{name}:{tag}", self.port),
            ]),
        );
        let log = fs::read(&self.log).expect("registry log");
        let text = String::from_utf8_lossy(&log[before..]);
        let upload = format!("\"PUT /v2/{name}/blobs/uploads/");
        let uploaded: BTreeSet<String> = text
            .lines()
            .filter(|l| l.contains(&upload) && l.contains("\" 201 "))
            .filter_map(|l| {
                let rest = &l[l.find("digest=")? + "digest=".len()..];
                let end = rest.find(['&', ' ', '"']).unwrap_or(rest.len());
                Some(rest[..end].replace("%3A", ":").replace("%3a", ":"))
            })
            .collect();
        assert!(
            text.contains(&format!("\"PUT /v2/{name}/manifests/{tag} HTTP/1.1\" 201")),
            "the registry log shows no manifest pushed for {name}:{tag}:\n{text}"
        );
        uploaded
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Child::kill signals the registry's own pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An app of `requirements` plus its own module printing `word` with cowsay: two of
/// them differ only in the application's code, or only in one requirement.
fn regapp(word: &str, requirements: &[&str]) -> PathBuf {
    let mut name = format!("regapp-{word}");
    if requirements != ["cowsay"] {
        for r in requirements {
            name.push('-');
            name.extend(r.chars().filter(char::is_ascii_alphanumeric));
        }
    }
    let requirements: Vec<OsString> = requirements.iter().map(OsString::from).collect();
    pex_fixture(PEX_NEWEST, Kind::Zipapp, &name, || {
        let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fixtures/{name}-src"));
        fs::create_dir_all(src.join("regapp")).expect("src dir");
        fs::write(src.join("regapp/__init__.py"), "").expect("write");
        fs::write(
            src.join("regapp/main.py"),
            format!("import cowsay\n\n\ndef main():\n    cowsay.cow({word:?})\n"),
        )
        .expect("write");
        let mut args = requirements;
        args.extend([
            "-D".into(),
            src.into_os_string(),
            "-e".into(),
            OsString::from("regapp.main:main"),
        ]);
        args
    })
}

fn src_dest(src: &Path, dest: &str) -> OsString {
    let mut arg = src.as_os_str().to_os_string();
    arg.push(":");
    arg.push(dest);
    arg
}

/// `pexinit layer --json ARGS`: the layers it wrote, in order, as (file, digest).
fn layer(args: &[OsString]) -> Vec<(PathBuf, String)> {
    let ran = run(pexinit()
        .env("SOURCE_DATE_EPOCH", SDE)
        .arg("layer")
        .arg("--json")
        .args(args));
    assert!(ran.success(), "pexinit layer {args:?}:\n{}", ran.describe());
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

/// One build as the README describes it, for `app`: the app copied to one fixed build
/// path, seeded at the path the image has (`root`), pexinit, app.pex, dependencies and
/// code as layers, appended to a copy of the base. (layout, [pexinit, app.pex, deps,
/// code] digests (with `split_extra`, such as `--distributions DIR`, the layers it adds
/// come before code), config digest)
fn build(
    sb: &Sandbox,
    name: &str,
    app: &Path,
    root: &Path,
    split_extra: &[&str],
) -> (PathBuf, Vec<String>, String) {
    let _ = fs::remove_dir_all(root);
    let build_dir = sb.join("build");
    fs::create_dir_all(&build_dir).expect("build dir");
    let app_pex = build_dir.join("app.pex");
    fs::copy(app, &app_pex).expect("copy app");
    let ran = run(pexinit()
        .env("SOURCE_DATE_EPOCH", SDE)
        .args(["seed", "--pex-root"])
        .arg(root)
        .args(["--python", PYTHON])
        .arg(&app_pex));
    assert!(ran.success(), "seed:\n{}", ran.describe());
    let out = sb.mkdir(&format!("layers-{name}"));
    let mut digests = layer(&[
        "-o".into(),
        out.join("pexinit.tar.gz").into(),
        src_dest(Path::new(pexinit_bin()), "/usr/local/bin/pexinit"),
    ]);
    digests.extend(layer(&[
        "-o".into(),
        out.join("app-pex.tar.gz").into(),
        src_dest(&app_pex, "/app/app.pex"),
    ]));
    let mut split: Vec<OsString> = vec![
        "-o".into(),
        out.join("deps.tar.gz").into(),
        "--split".into(),
        out.join("code.tar.gz").into(),
    ];
    split.extend(
        split_extra
            .iter()
            .map(|a| OsString::from(a.replace("{out}", &out.display().to_string()))),
    );
    split.push(src_dest(root, &root.display().to_string()));
    digests.extend(layer(&split));
    let layout = copy_base(&sb.join(&format!("layout-{name}")));
    let mut cmd = pexinit();
    cmd.env("SOURCE_DATE_EPOCH", SDE)
        .args(["image", "append", "--json", "--layout"])
        .arg(&layout)
        .args(["--ref", "base", "--tag", "app"]);
    for (file, _) in &digests {
        cmd.arg("--layer").arg(file);
    }
    let ran = run(cmd.args([
        "--entrypoint",
        r#"["/usr/local/bin/pexinit","run","--python","/usr/bin/python3.11","--"]"#,
        "--cmd",
        r#"["/app/app.pex"]"#,
        "--env",
        &format!("PEXINIT_SEED={}", root.display()),
    ]));
    assert!(ran.success(), "image append:\n{}", ran.describe());
    let config = ran.json()["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string();
    (
        layout,
        digests.into_iter().map(|(_, d)| d).collect(),
        config,
    )
}

#[test]
fn a_code_change_uploads_only_the_changed_layers_and_the_config() {
    let sb = Sandbox::new();
    let registry = Registry::start(&sb.mkdir("registry"));
    let top = PathBuf::from(format!("/opt/pexinit-registry-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(top.clone());
    let root = top.join("pex-root");

    let (first, first_layers, first_config) =
        build(&sb, "one", &regapp("moo", &["cowsay"]), &root, &[]);
    let uploaded = registry.push(&first, "app", "app");
    // Everything is new to the registry: the base layer, the four layers, the config.
    for digest in first_layers.iter().chain([&first_config]) {
        assert!(
            uploaded.contains(digest),
            "{digest} was not uploaded by the first push: {uploaded:?}"
        );
    }
    assert_eq!(uploaded.len(), first_layers.len() + 2, "{uploaded:?}");

    let (second, second_layers, second_config) =
        build(&sb, "two", &regapp("baa", &["cowsay"]), &root, &[]);
    let changed: BTreeSet<String> = second_layers
        .iter()
        .zip(&first_layers)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.clone())
        .collect();
    // [pexinit, app.pex, deps, code]: the code change moves app.pex and the code layer.
    let expected_changed: BTreeSet<String> =
        [second_layers[1].clone(), second_layers[3].clone()].into();
    assert_eq!(
        changed, expected_changed,
        "layers other than app.pex and the code changed: {first_layers:?} -> {second_layers:?}"
    );
    let uploaded = registry.push(&second, "app", "app");
    let mut expected = expected_changed;
    expected.insert(second_config);
    assert_eq!(
        uploaded, expected,
        "the second push uploaded other blobs than the changed layers and the config"
    );

    // What the registry holds is the second image, whole.
    let pulled = sb.join("pulled");
    must(
        "skopeo copy from the registry",
        tool("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://127.0.0.1:{}/app:app", registry.port),
            &format!("oci:{}:app", pulled.display()),
        ]),
    );
    let bundle = sb.join("bundle");
    must(
        "umoci unpack",
        tool("umoci")
            .args(["unpack", "--image", &format!("{}:app", pulled.display())])
            .arg(&bundle),
    );
    let manifest_list: Value =
        serde_json::from_slice(&fs::read(pulled.join("index.json")).expect("pulled index"))
            .expect("json");
    assert_eq!(manifest_list["manifests"].as_array().map(Vec::len), Some(1));
    assert!(
        bundle
            .join("rootfs")
            .join(root.strip_prefix("/").expect("absolute"))
            .join(".pexinit-seed.json")
            .is_file()
    );
}

#[test]
fn a_requirement_bump_uploads_only_that_distributions_layer() {
    let sb = Sandbox::new();
    let registry = Registry::start(&sb.mkdir("registry"));
    let top = PathBuf::from(format!("/opt/pexinit-registry-bump-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(top.clone());
    let root = top.join("pex-root");
    let split = [
        "--distributions",
        "{out}/dists",
        "--min-distribution-size",
        "1",
    ];

    let old = regapp("moo", &["cowsay==6.0", "six==1.16.0"]);
    let new = regapp("moo", &["cowsay==6.1", "six==1.16.0"]);
    let (first, first_layers, _) = build(&sb, "old", &old, &root, &split);
    // [pexinit, app.pex, group, cowsay, six, code]
    assert_eq!(first_layers.len(), 6, "{first_layers:?}");
    registry.push(&first, "app", "app");

    let (second, second_layers, second_config) = build(&sb, "new", &new, &root, &split);
    assert_eq!(second_layers.len(), 6, "{second_layers:?}");
    let dists = fs::read_dir(sb.join("layers-new/dists"))
        .expect("dists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<BTreeSet<_>>();
    assert!(
        dists.iter().any(|n| n.starts_with("cowsay-6.1-"))
            && dists.iter().any(|n| n.starts_with("six-1.16.0-")),
        "{dists:?}"
    );
    // pexinit, the group and six are the same layers; cowsay, app.pex and the code moved.
    for i in [0, 2, 4] {
        assert_eq!(
            first_layers[i], second_layers[i],
            "layer {i} changed: {first_layers:?} -> {second_layers:?}"
        );
    }
    let uploaded = registry.push(&second, "app", "app");
    let expected: BTreeSet<String> = [
        second_layers[1].clone(),
        second_layers[3].clone(),
        second_layers[5].clone(),
        second_config,
    ]
    .into();
    assert_eq!(
        uploaded, expected,
        "the bump uploaded other blobs than cowsay's layer, app.pex, the code and the config"
    );
}
