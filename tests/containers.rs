//! End to end in real containers (podman + runc): the repo's Dockerfile and the example
//! app Dockerfile build and run; pexinit is PID 1 and passes signals on; a read-only,
//! arbitrary-uid container starts warm; the Kubernetes example runs under `podman kube
//! play`, its initContainer priming the cache; primes survive kills and concurrency.
//!
//! Base images are made locally (scripts/make-base-images: mmdebstrap, no registry) and,
//! like pexinit's image and the app image, reused across runs while their inputs match.

mod containers_support;
mod support;

use std::time::Duration;

use containers_support::*;
use serde_json::Value;

/// The app's `info` report, parsed from the container's stdout.
fn info(stdout: &str) -> Value {
    let start = stdout
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in:\n{stdout}"));
    serde_json::from_str(&stdout[start..]).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{stdout}"))
}

/// Files the start wrote other than pex's and pexinit's bookkeeping (lock files,
/// access times, a link farm's marker): anything else (sources, bytecode, wheels,
/// venvs) means something was unpacked.
fn extracted(report: &Value) -> Vec<String> {
    const BOOKKEEPING: [&str; 3] = ["access.lck", ".last-access", ".pexinit-farm.json"];
    report["written"]
        .as_array()
        .expect("written")
        .iter()
        .filter_map(|p| p.as_str())
        .filter(|p| {
            !BOOKKEEPING
                .iter()
                .any(|name| p.ends_with(&format!("/{name}")))
        })
        .map(str::to_owned)
        .collect()
}

/// pex's message when it cannot write its PEX_ROOT and starts cold from a temporary one.
const PEX_FALLBACK: [&str; 2] = ["un-writeable", "temporary PEX_ROOT"];

#[test]
fn dockerfile_image_runs_programs_as_pid_1_as_a_non_root_user() {
    let image = pexinit_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("pid1");
    let ran = podman_ok([
        "run",
        "--name",
        &name,
        &image,
        IMAGE_PYTHON,
        "-c",
        "import json, os; print(json.dumps([os.getpid(), os.getppid(), os.getuid(), \
         os.getgid(), os.environ['HOME'], os.environ['PEX_ROOT'], \
         open('/proc/1/cmdline').read().split(chr(0))[:3]]))",
    ]);
    let report: Value = serde_json::from_str(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("bad output ({e}):\n{}", ran.describe()));
    // pexinit stays PID 1 (supervising), the program is its child.
    assert_eq!(
        report[6],
        serde_json::json!(["pexinit", "run", "--"]),
        "{report}"
    );
    assert_ne!(
        report[0], 1,
        "the program replaced pexinit as PID 1: {report}"
    );
    assert_eq!(report[1], 1, "the program is not pexinit's child: {report}");
    assert_eq!(report[2], 10001, "the image runs as uid 10001: {report}");
    assert_eq!(report[3], 0, "the image runs in group 0: {report}");
    assert_eq!(report[4], "/home/app", "{report}");
    assert_eq!(report[5], "/home/app/.cache/pex", "{report}");
    assert!(
        ran.stderr.trim().is_empty(),
        "a plain start warns:\n{}",
        ran.describe()
    );
}

#[test]
fn dockerfile_image_works_under_an_arbitrary_uid() {
    let image = pexinit_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("anyuid");
    let ran = podman_ok([
        "run",
        "--name",
        &name,
        "--user",
        "123456:0",
        &image,
        "/bin/sh",
        "-c",
        "id -u; touch \"$PEX_ROOT/probe\" && echo writable",
    ]);
    assert_eq!(ran.stdout, "123456\nwritable\n", "{}", ran.describe());
}

#[test]
fn example_image_runs_the_app_seeded_through_pexinit_as_pid_1() {
    let image = app_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("app");
    let ran = podman_ok(["run", "--name", &name, &image, "info"]);
    let report = info(&ran.stdout);
    assert_eq!(report["pid1"][0], "pexinit", "{report}");
    assert_eq!(report["ppid"], 1, "{report}");
    assert_eq!(report["uid"], 10001, "{report}");
    let cowsay = report["cowsay"].as_str().expect("cowsay");
    assert!(
        cowsay.starts_with(SEED),
        "the app did not run from the seed: {report}"
    );
}

#[test]
fn podman_stop_delivers_sigterm_and_kill_usr1_reaches_the_app() {
    let image = app_image();
    let mut cleanup = Cleanup::new();
    let name = cleanup.container("signals");
    podman_ok(["run", "--detach", "--name", &name, &image, "serve"]);
    wait_for_log(&name, "ready", Duration::from_secs(60));

    podman_ok(["kill", "--signal", "USR1", &name]);
    wait_for_log(&name, "got SIGUSR1", Duration::from_secs(30));
    assert!(state(&name).starts_with("running"), "USR1 ended the app");

    // A generous stop timeout: the app must exit on SIGTERM, not on the SIGKILL after it.
    podman_ok(["stop", "--time", "60", &name]);
    let log = logs(&name);
    assert!(
        log.contains("got SIGTERM") && log.contains("stopping cleanly"),
        "the app never saw SIGTERM:\n{log}"
    );
    assert_eq!(
        state(&name),
        "exited 0",
        "the app's own exit status:\n{log}"
    );
}

#[test]
fn read_only_arbitrary_uid_symlinked_home_and_cache_volume_start_warm() {
    let image = app_image();
    let mut cleanup = Cleanup::new();
    let cache = cleanup.volume("xdg-cache");
    podman_ok(["volume", "create", &cache]);
    // HOME reached through a symlink inside a bind mount, as /home -> /var/home hosts
    // and volume mounts give it: /mnt/d/home -> real/home.
    let host = support::Sandbox::new();
    let home = host.mkdir("real/home");
    std::os::unix::fs::chown(&home, Some(123456), Some(0)).expect("chown home");
    host.symlink("real/home", "home");
    // Twice: through pexinit's fast path (the seeded venv started directly), and through
    // pex's own bootstrap (PEX_PYTHON set, so pexinit leaves the start to pex, which must
    // find the seed warm through pexinit's link farm).
    for pex_python in [None, Some(IMAGE_PYTHON)] {
        let name = cleanup.container("readonly");
        let mut args: Vec<String> = [
            "run",
            "--name",
            &name,
            "--read-only",
            "--user",
            "123456:0",
            "--tmpfs",
            "/pex-root:mode=1777",
            "--volume",
            &format!("{}:/mnt/d", host.path().display()),
            "--volume",
            &format!("{cache}:/xdg-cache:U"),
            "--env",
            "HOME=/mnt/d/home",
            "--env",
            "XDG_CACHE_HOME=/xdg-cache",
            "--env",
            "PEX_ROOT=/pex-root",
            "--env",
            "PEX_VERBOSE=1",
        ]
        .map(String::from)
        .to_vec();
        if let Some(python) = pex_python {
            args.extend(["--env".into(), format!("PEX_PYTHON={python}")]);
        }
        args.extend(
            [
                &image,
                "info",
                "/mnt/d/real/home",
                "/xdg-cache",
                "/pex-root",
                "/tmp",
            ]
            .map(String::from),
        );
        let ran = podman_ok(&args);
        let report = info(&ran.stdout);
        assert_eq!(report["uid"], 123456, "{report}");
        assert_eq!(report["pid1"][0], "pexinit", "{report}");
        // pexinit handed the app physical paths.
        assert_eq!(report["env"]["HOME"], "/mnt/d/real/home", "{report}");
        assert_eq!(report["env"]["XDG_CACHE_HOME"], "/xdg-cache", "{report}");
        // Warm: the app's code comes from the image's seed, nothing was unpacked anywhere
        // writable, and pex did not fall back to a cold temporary PEX_ROOT.
        let cowsay = report["cowsay"].as_str().expect("cowsay");
        assert!(cowsay.starts_with(SEED), "not run from the seed: {report}");
        assert_eq!(extracted(&report), Vec::<String>::new(), "{report}");
        for needle in PEX_FALLBACK {
            assert!(!ran.stderr.contains(needle), "{}", ran.describe());
        }
        let lines = ran.stderr_lines();
        match pex_python {
            // pexinit says nothing, pex never ran.
            None => assert_eq!(lines, Vec::<&str>::new(), "{}", ran.describe()),
            // pex ran (verbose) and only started the seeded venv: no extraction, no
            // warning from either.
            Some(_) => assert!(
                !lines.is_empty()
                    && lines
                        .iter()
                        .all(|l| l.starts_with("pex: Executing venv PEX")),
                "{}",
                ran.describe()
            ),
        }
    }
}

/// examples/k8s/deployment.yaml as the tests play it: the local app image, unique
/// names for the Deployment and its volumes (podman turns emptyDirs into named volumes),
/// and the app container running `args`.
///
/// One deviation, for podman < 4.6 only: the pod's restart policy is OnFailure, because
/// those versions give init containers the pod's policy (a Deployment's Always restarts
/// a finished initContainer forever; fixed by containers/podman#18481).
struct KubeExample {
    manifest: std::path::PathBuf,
    pod: String,
    init: String,
    app: String,
    pex_cache: String,
    _dir: support::Sandbox,
}

fn kube_example(
    cleanup: &mut Cleanup,
    image: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> KubeExample {
    let text = std::fs::read_to_string(repo().join("examples/k8s/deployment.yaml"))
        .expect("read examples/k8s/deployment.yaml");
    let deployment = unique("kube");
    let pex_cache = cleanup.volume("pex-cache");
    let home = cleanup.volume("home");
    let tmp = cleanup.volume("tmp");
    let mut env_yaml = String::new();
    for (name, value) in env {
        env_yaml.push_str(&format!(
            "            - name: {name}\n              value: \"{value}\"\n"
        ));
    }
    let args_yaml = serde_json::to_string(args).expect("args");
    let replacements = [
        ("registry.example.com/hello-pex:1.0", image),
        ("hello-pex", deployment.as_str()),
        ("name: pex-cache", &format!("name: {pex_cache}")),
        ("name: home", &format!("name: {home}")),
        ("name: tmp", &format!("name: {tmp}")),
        ("args: [\"serve\"]", &format!("args: {args_yaml}")),
        (
            "      securityContext:\n        runAsNonRoot",
            "      restartPolicy: OnFailure\n      securityContext:\n        runAsNonRoot",
        ),
        ("          env:\n", &format!("          env:\n{env_yaml}")),
    ];
    let mut text = text;
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "examples/k8s/deployment.yaml lost {from:?}"
        );
        text = text.replace(from, to);
    }
    let dir = support::Sandbox::new();
    let manifest = dir.write("deployment.yaml", text.as_bytes());
    let pod = format!("{deployment}-pod-0");
    cleanup.pod(&pod);
    KubeExample {
        manifest,
        init: format!("{pod}-prime-pex-root"),
        app: format!("{pod}-app"),
        pod,
        pex_cache,
        _dir: dir,
    }
}

/// The host path of a named volume.
fn volume_path(name: &str) -> Option<std::path::PathBuf> {
    let ran = run_podman(podman().args(["volume", "inspect", "--format", "{{.Mountpoint}}", name]));
    ran.success()
        .then(|| std::path::PathBuf::from(ran.stdout.trim()))
}

/// The app's report from a kube-played container that ran `info`: warm from the primed
/// cache (the seed's fast path: pex itself had nothing to do, so PEX_VERBOSE is silent),
/// nothing unpacked anywhere, no warning from pexinit.
fn assert_warm_from_primed_cache(container: &str) {
    assert_eq!(wait_exit(container), 0, "{}", logs(container));
    let out = run_podman(podman().args(["logs", container]));
    let report = info(&out.stdout);
    assert_eq!(report["uid"], 123456, "{report}");
    assert_eq!(report["pid1"][0], "pexinit", "{report}");
    let prefix = report["prefix"].as_str().expect("prefix");
    assert!(
        prefix.starts_with("/cache/pex-root/venvs/"),
        "not the primed venv: {report}"
    );
    let cowsay = report["cowsay"].as_str().expect("cowsay");
    assert!(
        cowsay.starts_with("/cache/pex-root/"),
        "not from the primed cache: {report}"
    );
    assert_eq!(extracted(&report), Vec::<String>::new(), "{report}");
    assert!(
        out.stderr.trim().is_empty(),
        "the start was not clean:\n{}",
        out.describe()
    );
}

const WARM_INFO: [&str; 3] = ["info", "/home/app", "/tmp"];

#[test]
fn kube_play_of_the_k8s_example_primes_an_empty_dir_and_starts_warm() {
    let image = app_image();
    let mut cleanup = Cleanup::new();
    let kube = kube_example(&mut cleanup, &image, &WARM_INFO, &[("PEX_VERBOSE", "1")]);
    let mut play = podman();
    play.args(["kube", "play"]).arg(&kube.manifest);
    let ran = run_podman(&mut play);
    assert!(ran.success(), "kube play failed:\n{}", ran.describe());
    assert_warm_from_primed_cache(&kube.app);
    // The emptyDir holds the primed cache and nothing half-made beside it.
    let volume = volume_path(&kube.pex_cache).expect("pex-cache volume");
    assert!(
        volume.join("pex-root/venvs").is_dir(),
        "{:#?}",
        support::tree(&volume)
    );
    let _ = kube.pod;
}

#[test]
fn init_container_killed_mid_prime_is_restarted_and_the_app_never_sees_half_a_cache() {
    let image = app_image();
    let mut cleanup = Cleanup::new();
    let kube = kube_example(&mut cleanup, &image, &WARM_INFO, &[("PEX_VERBOSE", "1")]);
    let mut play = podman();
    play.args(["kube", "play"])
        .arg(&kube.manifest)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = play.spawn().expect("podman kube play");

    // Mid-prime: the cache is being built beside its final name, which is not there yet.
    let start = std::time::Instant::now();
    let partial = loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the prime never started"
        );
        if child.try_wait().expect("kube play").is_some() {
            let out = child.wait_with_output().expect("kube play output");
            panic!(
                "kube play ended before the prime was caught mid-way:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let building = volume_path(&kube.pex_cache).and_then(|volume| {
            let entries = std::fs::read_dir(&volume).ok()?;
            entries.flatten().map(|e| e.path()).find(|p| {
                p.file_name().is_some_and(|n| n != "pex-root")
                    && p.is_dir()
                    && std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some())
            })
        });
        if let Some(dir) = building {
            break dir;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    podman_ok(["kill", &kube.init]);
    let played = child.wait_with_output().expect("kube play");
    assert!(
        !played.status.success(),
        "the pod came up although its initContainer was killed"
    );
    let volume = partial.parent().expect("volume").to_path_buf();
    assert!(
        !volume.join("pex-root").exists(),
        "a killed prime left a cache under the final name ({} was being built): {:#?}",
        partial.display(),
        support::tree(&volume)
    );
    assert!(
        state(&kube.app).starts_with("created"),
        "the app started before its cache was primed: {}",
        state(&kube.app)
    );

    // The restarted pod runs its initContainer again: it completes, then the app starts.
    podman_ok(["pod", "start", &kube.pod]);
    assert_warm_from_primed_cache(&kube.app);
    // The killed prime's half-made tree is gone too.
    assert!(!partial.exists(), "{:#?}", support::tree(&volume));
}

#[test]
fn two_containers_priming_one_shared_volume_at_once_prime_it_once() {
    let image = app_image();
    let mut cleanup = Cleanup::new();
    let shared = cleanup.volume("shared");
    podman_ok(["volume", "create", &shared]);
    let primers: Vec<String> = (0..2).map(|_| cleanup.container("primer")).collect();
    for name in &primers {
        podman_ok([
            "run",
            "--detach",
            "--name",
            name,
            "--user",
            "123456:0",
            "--volume",
            &format!("{shared}:/shared:U"),
            "--entrypoint",
            "pexinit",
            &image,
            "prime",
            "--json",
            "--from",
            SEED,
            "--into",
            "/shared/pex-root",
        ]);
    }
    let mut reports = Vec::new();
    for name in &primers {
        assert_eq!(wait_exit(name), 0, "{name}: {}", logs(name));
        let out = run_podman(podman().args(["logs", name]));
        reports.push(
            serde_json::from_str::<Value>(out.stdout.trim())
                .unwrap_or_else(|e| panic!("{name}: prime --json ({e}):\n{}", out.describe())),
        );
    }
    // The two really ran at the same time (else this proves nothing about concurrency).
    let spans: Vec<(u128, u128)> = primers.iter().map(|name| run_span(name)).collect();
    assert!(
        spans[0].0 < spans[1].1 && spans[1].0 < spans[0].1,
        "the primes did not overlap: {spans:?}; {reports:#?}"
    );
    let primed = reports
        .iter()
        .filter(|r| r["already_primed"] == false)
        .count();
    let found = reports
        .iter()
        .filter(|r| r["already_primed"] == true)
        .count();
    assert_eq!(
        (primed, found),
        (1, 1),
        "one primes, the other finds it primed: {reports:#?}"
    );

    let volume = volume_path(&shared).expect("shared volume");
    let app = cleanup.container("shared-app");
    let ran = podman_ok([
        "run",
        "--name",
        &app,
        "--user",
        "123456:0",
        "--volume",
        &format!("{shared}:/shared"),
        "--env",
        "PEXINIT_PEX_ROOT=/shared/pex-root",
        "--env",
        "PEXINIT_SEED=/shared/pex-root",
        &image,
        "info",
        "/tmp",
    ]);
    let report = info(&ran.stdout);
    let cowsay = report["cowsay"].as_str().expect("cowsay");
    assert!(cowsay.starts_with("/shared/pex-root/"), "{report}");
    assert_eq!(extracted(&report), Vec::<String>::new(), "{report}");
    assert!(ran.stderr.trim().is_empty(), "{}", ran.describe());
    let leftovers: Vec<String> = std::fs::read_dir(&volume)
        .expect("read volume")
        .flatten()
        .filter(|e| e.path().is_dir() && e.file_name() != "pex-root")
        .map(|e| e.path().display().to_string())
        .collect();
    assert_eq!(
        leftovers,
        Vec::<String>::new(),
        "half-made caches left behind"
    );
}

#[test]
fn example_config_covers_every_key_and_loads() {
    let config = repo().join("examples/config/pexinit.yaml");
    let ran = support::run(
        support::pexinit()
            .args(["env", "--json", "--config"])
            .arg(&config),
    );
    assert!(ran.success(), "{}", ran.describe());
    let plan = ran.json();
    assert_eq!(plan["env"]["PEX_ROOT"], "/var/cache/pex", "{plan}");
    assert_eq!(plan["env"]["APP_MODE"], "production", "{plan}");
    assert_eq!(plan["user"]["uid"], 10001, "{plan}");
    // Every key the config file accepts appears in the example.
    let text = std::fs::read_to_string(&config).expect("read example config");
    let source = std::fs::read_to_string(repo().join("src/config.rs")).expect("src/config.rs");
    let struct_body = source
        .split("pub struct FileConfig {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("FileConfig in src/config.rs");
    let keys: Vec<&str> = struct_body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert!(keys.len() >= 11, "FileConfig keys: {keys:?}");
    for key in keys {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key}:"))),
            "examples/config/pexinit.yaml lacks the key {key}"
        );
    }
}
