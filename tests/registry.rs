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

use oci_support::recipe::{Built, Recipe, build};
use oci_support::*;
use support::*;

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
    regapp_as(Kind::Zipapp, word, requirements)
}

fn regapp_as(kind: Kind, word: &str, requirements: &[&str]) -> PathBuf {
    let mut name = format!("regapp-{word}");
    if requirements != ["cowsay"] {
        for r in requirements {
            name.push('-');
            name.extend(r.chars().filter(char::is_ascii_alphanumeric));
        }
    }
    let requirements: Vec<OsString> = requirements.iter().map(OsString::from).collect();
    pex_fixture(PEX_NEWEST, kind, &name, || {
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

/// Two builds of the README's recipe differing only in the app's own code: the second
/// push uploads the code layer and the config, nothing else. Returns the registry and
/// the second build, pushed as `app:app`.
fn code_change_pushes_only_the_code(sb: &Sandbox, kind: Kind, root: &Path) -> (Registry, Built) {
    let registry = Registry::start(&sb.mkdir("registry"));
    let first = build(
        sb,
        &Recipe::new("one", &regapp_as(kind, "moo", &["cowsay"]), root),
    );
    let uploaded = registry.push(&first.layout, "app", "app");
    // Everything is new to the registry: the base layer, the three layers, the config.
    for digest in first.digests().iter().chain([&first.config]) {
        assert!(
            uploaded.contains(digest),
            "{digest} was not uploaded by the first push: {uploaded:?}"
        );
    }
    assert_eq!(uploaded.len(), first.layers.len() + 2, "{uploaded:?}");

    let second = build(
        sb,
        &Recipe::new("two", &regapp_as(kind, "baa", &["cowsay"]), root),
    );
    let (before, after) = (first.digests(), second.digests());
    // [pexinit, dependencies, code]: only the code moved.
    assert_eq!(
        (&before[..2], before[2] != after[2]),
        (&after[..2], true),
        "layers other than the code changed, or the code did not: {before:?} -> {after:?}"
    );
    let uploaded = registry.push(&second.layout, "app", "app");
    let expected: BTreeSet<String> = [after[2].clone(), second.config.clone()].into();
    assert_eq!(
        uploaded, expected,
        "the second push uploaded other blobs than the code layer and the config"
    );
    (registry, second)
}

#[test]
fn a_code_change_uploads_only_the_code_layer_and_the_config() {
    let sb = Sandbox::new();
    let top = image_dir("registry");
    let root = top.path().join("pex-root");
    let (registry, second) = code_change_pushes_only_the_code(&sb, Kind::Zipapp, &root);

    // What the registry holds is the second image, whole: umoci checks every diff_id.
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
    let rootfs = bundle.join("rootfs");
    let seed = rootfs.join(root.strip_prefix("/").expect("absolute"));
    assert!(seed.join(".pexinit-seed.json").is_file());
    // The app is stored once: no .pex file, no pex runtime, no interpreter cache.
    assert!(!rootfs.join("app/app.pex").exists());
    for name in ["bootstraps", "isolated", "interpreters"] {
        assert!(!seed.join(name).exists(), "{name} shipped in a slim image");
    }
    assert_eq!(second.layers.len(), 3);

    // Pulled by podman from the registry and run read-only as an arbitrary uid: warm,
    // through the fast path, from the seed alone, writing nothing.
    let _storage = podman_storage_lock();
    let image = format!("127.0.0.1:{}/app:app", registry.port);
    let container = format!("pexinit-registry-{}", std::process::id());
    let _cleanup_image = RemoveImage(image.clone(), container.clone());
    must(
        "podman pull",
        podman().args(["pull", "--tls-verify=false", &image]),
    );
    let ran = run(podman().args([
        "run",
        "--name",
        &container,
        "--read-only",
        "--user",
        "123456:0",
        "--env",
        "PEXINIT_LOG=info",
        &image,
    ]));
    assert_cowsay_said(&ran, "baa");
    ran.assert_stderr_has("fast path: exec the seeded launcher");
    ran.assert_stderr_has("/app/app.pex is not here: starting the PEX of that name seeded in");
    let diff = must("podman diff", podman().args(["diff", &container]));
    // Only podman's own: /etc's bind-mounted files and --read-only's tmpfs mount points.
    let podmans_own = ["C /etc", "C /var", "A /var", "A /var/tmp"];
    let written: Vec<&str> = diff
        .stdout
        .lines()
        .filter(|l| !podmans_own.contains(l))
        .collect();
    assert!(
        written.is_empty(),
        "the run wrote into the container: {written:?}"
    );
}

#[test]
fn a_venv_apps_code_change_uploads_only_the_code_layer_and_the_config() {
    let sb = Sandbox::new();
    let top = image_dir("registry-venv");
    code_change_pushes_only_the_code(&sb, Kind::Venv, &top.path().join("pex-root"));
}

/// An image and its container, removed from podman's storage when the test ends.
struct RemoveImage(String, String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", &self.1]).output();
        let _ = podman().args(["rmi", "-f", &self.0]).output();
    }
}

#[test]
fn a_requirement_bump_uploads_only_that_distributions_layer() {
    let sb = Sandbox::new();
    let registry = Registry::start(&sb.mkdir("registry"));
    let top = image_dir("registry-bump");
    let root = top.path().join("pex-root");
    let split = [
        "--distributions",
        "{out}/dists",
        "--min-distribution-size",
        "1",
    ];

    let old = regapp("moo", &["cowsay==6.0", "six==1.16.0"]);
    let new = regapp("moo", &["cowsay==6.1", "six==1.16.0"]);
    let first = build(
        &sb,
        &Recipe {
            split_extra: &split,
            ..Recipe::new("old", &old, &root)
        },
    );
    let before = first.digests();
    // [pexinit, group, cowsay, six, code]
    assert_eq!(before.len(), 5, "{before:?}");
    registry.push(&first.layout, "app", "app");

    let second = build(
        &sb,
        &Recipe {
            split_extra: &split,
            ..Recipe::new("new", &new, &root)
        },
    );
    let after = second.digests();
    assert_eq!(after.len(), 5, "{after:?}");
    let dists = fs::read_dir(sb.join("build-new/layers/dists"))
        .expect("dists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<BTreeSet<_>>();
    assert!(
        dists.iter().any(|n| n.starts_with("cowsay-6.1-"))
            && dists.iter().any(|n| n.starts_with("six-1.16.0-")),
        "{dists:?}"
    );
    // pexinit, the group and six are the same layers; cowsay and the code moved.
    for i in [0, 1, 3] {
        assert_eq!(
            before[i], after[i],
            "layer {i} changed: {before:?} -> {after:?}"
        );
    }
    let uploaded = registry.push(&second.layout, "app", "app");
    let expected: BTreeSet<String> = [after[2].clone(), after[4].clone(), second.config].into();
    assert_eq!(
        uploaded, expected,
        "the bump uploaded other blobs than cowsay's layer, the code and the config"
    );
}
