//! fluke-runc driven as containerd or podman would drive runc, on busybox bundles.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    bundle: PathBuf,
}

/// Whatever a test left (it may have panicked half-way), its containers go: processes,
/// cgroups and state, through the runtime's own force delete.
impl Drop for Env {
    fn drop(&mut self) {
        for entry in fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let _ = Command::new(env!("CARGO_BIN_EXE_fluke-runc"))
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force"])
                .arg(entry.file_name())
                .output();
        }
    }
}

fn runc(e: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fluke-runc"));
    c.arg("--root").arg(&e.root).args(args);
    c
}

fn out(mut c: Command) -> Output {
    c.output().expect("spawn fluke-runc")
}

fn ok(c: Command) -> String {
    let dbg = format!("{c:?}");
    let o = out(c);
    assert!(
        o.status.success(),
        "{dbg} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(c: Command) -> String {
    let dbg = format!("{c:?}");
    let o = out(c);
    assert!(!o.status.success(), "{dbg} should have failed");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line of error:\n{err}");
    err
}

/// A bundle with busybox and the default spec, then `edit` applied to its JSON.
fn bundle(edit: impl FnOnce(&mut serde_json::Value)) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    testkit::busybox_rootfs(&bundle.join("rootfs"));
    let e = Env {
        root: tmp.path().join("state"),
        bundle: bundle.clone(),
        _tmp: tmp,
    };
    let mut c = runc(&e, &["spec", "--bundle", bundle.to_str().unwrap()]);
    ok(std::mem::replace(&mut c, Command::new("true")));
    let path = bundle.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    v["process"]["terminal"] = false.into();
    edit(&mut v);
    fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    e
}

fn args(v: &mut serde_json::Value, script: &str) {
    v["process"]["args"] = serde_json::json!(["sh", "-c", script]);
}

/// `create` (or `run -d`): the container keeps the stdio it inherits, so give it files,
/// as containerd does, and wait only for the runtime's own exit.
fn detached(e: &Env, args: &[&str]) -> Result<(), String> {
    let log = e.bundle.join(format!("{}.log", args.last().unwrap()));
    let f = fs::File::create(&log).unwrap();
    let status = runc(e, args)
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .status()
        .unwrap();
    if status.success() {
        Ok(())
    } else {
        Err(fs::read_to_string(&log).unwrap())
    }
}

fn run(e: &Env, id: &str) -> Output {
    out(runc(
        e,
        &["run", "--bundle", e.bundle.to_str().unwrap(), id],
    ))
}

fn leftovers(e: &Env) -> Vec<PathBuf> {
    fs::read_dir(&e.root)
        .map(|r| r.flatten().map(|d| d.path()).collect())
        .unwrap_or_default()
}

#[test]
fn run_prints_output_and_returns_the_exit_code() {
    let e = bundle(|v| args(v, "echo hello; echo $$; hostname; exit 3"));
    let o = run(&e, "t-run");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout, "hello\n1\nfluke\n");
    assert!(leftovers(&e).is_empty(), "{:?}", leftovers(&e));
}

#[test]
fn create_start_state_kill_delete() {
    let e = bundle(|v| args(v, "sleep 60"));
    let pidfile = e.bundle.join("pid");
    detached(
        &e,
        &[
            "create",
            "--bundle",
            e.bundle.to_str().unwrap(),
            "--pid-file",
            pidfile.to_str().unwrap(),
            "life",
        ],
    )
    .unwrap();
    let st: serde_json::Value = serde_json::from_str(&ok(runc(&e, &["state", "life"]))).unwrap();
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(fs::read_to_string(&pidfile).unwrap(), pid.to_string());
    assert_eq!(
        st["bundle"],
        e.bundle.canonicalize().unwrap().to_str().unwrap()
    );
    ok(runc(&e, &["start", "life"]));
    let st: serde_json::Value = serde_json::from_str(&ok(runc(&e, &["state", "life"]))).unwrap();
    assert_eq!(st["status"], "running");
    let list: serde_json::Value =
        serde_json::from_str(&ok(runc(&e, &["list", "--format", "json"]))).unwrap();
    assert_eq!(list[0]["id"], "life");
    let err = fails(runc(&e, &["delete", "life"]));
    assert!(err.contains("is running"), "{err}");
    ok(runc(&e, &["kill", "life", "KILL"]));
    // The container's process is not our child: wait for the kernel to reap it via init.
    for _ in 0..200 {
        let st: serde_json::Value =
            serde_json::from_str(&ok(runc(&e, &["state", "life"]))).unwrap();
        if st["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    ok(runc(&e, &["delete", "life"]));
    let err = fails(runc(&e, &["state", "life"]));
    assert!(err.contains("does not exist"), "{err}");
    assert!(leftovers(&e).is_empty());
}

#[test]
fn force_delete_kills_a_running_container() {
    let e = bundle(|v| args(v, "sleep 60"));
    detached(
        &e,
        &["run", "-d", "--bundle", e.bundle.to_str().unwrap(), "bg"],
    )
    .unwrap();
    let st: serde_json::Value = serde_json::from_str(&ok(runc(&e, &["state", "bg"]))).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    ok(runc(&e, &["delete", "--force", "bg"]));
    assert!(
        !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    );
    assert!(leftovers(&e).is_empty());
}

#[test]
fn the_spec_is_applied_inside() {
    let e = bundle(|v| {
        args(
            v,
            "cat /proc/kcore | wc -c; (echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo sysrw || echo sysro; \
             (touch /newfile) 2>/dev/null && echo rootrw || echo rootro; ulimit -n; id -u; grep CapEff /proc/self/status; \
             ls /proc/self/fd | wc -l; pwd",
        );
        v["root"]["readonly"] = true.into();
        v["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        v["process"]["cwd"] = "/tmp".into();
        v["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
    });
    let o = run(&e, "applied");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0].trim(), "0", "masked /proc/kcore: {stdout}");
    assert_eq!(lines[1], "sysro", "{stdout}");
    assert_eq!(lines[2], "rootro", "{stdout}");
    assert_eq!(lines[3], "256", "{stdout}");
    assert_eq!(lines[4], "1000", "{stdout}");
    // The spec's sets apply whatever the uid: AUDIT_WRITE, KILL, NET_BIND_SERVICE.
    assert_eq!(lines[5], "CapEff:\t0000000020000420", "{stdout}");
    // stdin, stdout, stderr and the descriptor `ls` opens to list them: nothing of the runtime.
    assert_eq!(
        lines[6].trim(),
        "4",
        "descriptors leaked into the container: {stdout}"
    );
    assert_eq!(lines[7], "/tmp", "{stdout}");
}

#[test]
fn a_mount_through_a_symlink_stays_in_the_rootfs() {
    let host = tempfile::tempdir().unwrap();
    let host_dir = host.path().to_path_buf();
    let e = bundle(|v| {
        args(v, "ls /escape/target >/dev/null 2>&1; echo done");
        v["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/escape/target/mnt", "type": "tmpfs", "source": "tmpfs"}));
    });
    // The rootfs's /escape points at a host directory.
    std::os::unix::fs::symlink(&host_dir, e.bundle.join("rootfs/escape")).unwrap();
    let o = run(&e, "escape");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        fs::read_dir(&host_dir).unwrap().next().is_none(),
        "the mount reached the host directory"
    );
    assert!(e
        .bundle
        .join("rootfs")
        .join(host_dir.strip_prefix("/").unwrap())
        .join("target/mnt")
        .is_dir());
}

#[test]
fn hooks_get_the_state_on_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let record = tmp.path().join("hook.json");
    let e = bundle(|v| {
        args(v, "true");
        v["hooks"] = serde_json::json!({
            "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", record.display())]}],
            "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat >> {}", record.display())]}],
        });
    });
    assert!(run(&e, "hooked").status.success());
    let text = fs::read_to_string(&record).unwrap();
    assert!(text.contains("\"id\":\"hooked\""), "{text}");
    assert!(text.contains("\"status\":\"created\""), "{text}");
    assert!(text.contains("\"status\":\"stopped\""), "{text}");
}

#[test]
fn bad_bundles_get_one_line_and_leave_nothing() {
    // Invalid JSON: the file and position are named.
    let e = bundle(|_| {});
    fs::write(
        e.bundle.join("config.json"),
        b"{\"ociVersion\": \"1.0.2\",\n \"process\": [}",
    )
    .unwrap();
    let err = fails(runc(
        &e,
        &["create", "--bundle", e.bundle.to_str().unwrap(), "x"],
    ));
    assert!(
        err.contains("config.json") && err.contains("line 2"),
        "{err}"
    );
    assert!(leftovers(&e).is_empty());

    // A missing rootfs.
    let e = bundle(|v| v["root"]["path"] = "nope".into());
    let err = fails(runc(
        &e,
        &["create", "--bundle", e.bundle.to_str().unwrap(), "x"],
    ));
    assert!(err.contains("root.path"), "{err}");

    // An absent executable: reported at create, nothing left (no state, no process).
    let e = bundle(|v| v["process"]["args"] = serde_json::json!(["/bin/nope"]));
    let err = fails(runc(
        &e,
        &["create", "--bundle", e.bundle.to_str().unwrap(), "x"],
    ));
    assert!(
        err.contains("/bin/nope") && err.contains("no such executable"),
        "{err}"
    );
    assert!(leftovers(&e).is_empty(), "{:?}", leftovers(&e));
    let e = bundle(|v| v["process"]["args"] = serde_json::json!(["nope"]));
    let err = fails(runc(
        &e,
        &["create", "--bundle", e.bundle.to_str().unwrap(), "x"],
    ));
    assert!(err.contains("executable file not found in $PATH"), "{err}");

    // An unknown capability name.
    let e = bundle(|v| v["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_NOPE"]));
    let err = fails(runc(
        &e,
        &["create", "--bundle", e.bundle.to_str().unwrap(), "x"],
    ));
    assert!(
        err.contains("config.json") && err.contains("CAP_NOPE"),
        "{err}"
    );

    // A duplicate id.
    let e = bundle(|v| args(v, "sleep 30"));
    detached(
        &e,
        &["create", "--bundle", e.bundle.to_str().unwrap(), "dup"],
    )
    .unwrap();
    let err = fails(runc(
        &e,
        &["create", "--bundle", e.bundle.to_str().unwrap(), "dup"],
    ));
    assert!(err.contains("already exists"), "{err}");
    ok(runc(&e, &["delete", "--force", "dup"]));
    assert!(leftovers(&e).is_empty());

    // A bad id.
    let err = fails(runc(
        &e,
        &["create", "--bundle", e.bundle.to_str().unwrap(), "../x"],
    ));
    assert!(err.contains("invalid container id"), "{err}");
}

fn status(e: &Env, id: &str) -> String {
    let st: serde_json::Value = serde_json::from_str(&ok(runc(e, &["state", id]))).unwrap();
    st["status"].as_str().unwrap().to_string()
}

fn wait_status(e: &Env, id: &str, want: &str) {
    for _ in 0..500 {
        if status(e, id) == want {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{id} never became {want} (is {})", status(e, id));
}

#[test]
fn cgroup_limits_pause_resume_kill_all_and_cleanup() {
    let cg = format!("/fluke-test/lifecycle-{}", std::process::id());
    let e = bundle(|v| {
        args(v, "sleep 60 & sleep 60");
        v["linux"]["cgroupsPath"] = cg.clone().into();
        v["linux"]["resources"]["memory"] = serde_json::json!({"limit": 67108864});
        v["linux"]["resources"]["pids"] = serde_json::json!({"limit": 32});
    });
    let b = e.bundle.to_str().unwrap().to_string();
    detached(&e, &["run", "-d", "--bundle", &b, "cg"]).unwrap();
    let mem = Path::new("/sys/fs/cgroup/memory").join(cg.trim_start_matches('/'));
    let pids = Path::new("/sys/fs/cgroup/pids").join(cg.trim_start_matches('/'));
    if mem.exists() {
        assert_eq!(
            fs::read_to_string(mem.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            "67108864"
        );
    }
    if pids.exists() {
        assert_eq!(
            fs::read_to_string(pids.join("pids.max")).unwrap().trim(),
            "32"
        );
    }
    // Two sleeps (the shell execs the last command itself).
    for _ in 0..100 {
        if ok(runc(&e, &["ps", "--format", "json", "cg"]))
            .matches(',')
            .count()
            >= 1
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let listed: Vec<u32> =
        serde_json::from_str(&ok(runc(&e, &["ps", "--format", "json", "cg"]))).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    ok(runc(&e, &["pause", "cg"]));
    assert_eq!(status(&e, "cg"), "paused");
    let err = fails(runc(&e, &["pause", "cg"]));
    assert!(err.contains("is paused"), "{err}");
    ok(runc(&e, &["resume", "cg"]));
    assert_eq!(status(&e, "cg"), "running");
    ok(runc(&e, &["kill", "--all", "cg", "9"]));
    wait_status(&e, "cg", "stopped");
    for p in &listed {
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "process {p} survived kill --all: {stat}"
        );
    }
    ok(runc(&e, &["delete", "cg"]));
    for dir in [&mem, &pids] {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert!(leftovers(&e).is_empty());
}

#[test]
fn seccomp_profiles_are_enforced_with_and_without_no_new_privileges() {
    for nnp in [true, false] {
        let e = bundle(|v| {
            args(v, "mkdir /tmp/x 2>&1; echo rc=$?; echo alive");
            v["process"]["noNewPrivileges"] = nnp.into();
            v["linux"]["seccomp"] = serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
            });
            v["mounts"].as_array_mut().unwrap().push(
                serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
            );
        });
        let o = run(&e, &format!("sc-{nnp}"));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            stdout.contains("Operation not permitted"),
            "nnp={nnp}: {stdout}"
        );
        assert!(stdout.contains("rc=1"), "nnp={nnp}: {stdout}");
        assert!(stdout.contains("alive"), "{stdout}");
    }
    // A profile with a bad field is refused at create, naming it.
    let e = bundle(|v| {
        args(v, "true");
        v["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}],
        });
    });
    let err = fails(runc(
        &e,
        &["create", "--bundle", e.bundle.to_str().unwrap(), "badsc"],
    ));
    assert!(err.contains("linux.seccomp"), "{err}");
    assert!(leftovers(&e).is_empty());
}

#[test]
fn update_events_and_features() {
    let cg = format!("/fluke-test/update-{}", std::process::id());
    let e = bundle(|v| {
        args(v, "sleep 60");
        v["linux"]["cgroupsPath"] = cg.clone().into();
        v["linux"]["resources"]["pids"] = serde_json::json!({"limit": 32});
    });
    let b = e.bundle.to_str().unwrap().to_string();
    detached(&e, &["run", "-d", "--bundle", &b, "upd"]).unwrap();
    ok(runc(
        &e,
        &["update", "--memory", "96m", "--pids-limit", "16", "upd"],
    ));
    let rel = cg.trim_start_matches('/');
    let mem = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.limit_in_bytes");
    if mem.exists() {
        assert_eq!(
            fs::read_to_string(&mem).unwrap().trim(),
            (96u64 << 20).to_string()
        );
    }
    let pids = Path::new("/sys/fs/cgroup/pids").join(rel).join("pids.max");
    if pids.exists() {
        assert_eq!(fs::read_to_string(&pids).unwrap().trim(), "16");
    }
    // The same through a resources file.
    let res = e.bundle.join("res.json");
    fs::write(&res, r#"{"pids": {"limit": 8}}"#).unwrap();
    ok(runc(
        &e,
        &["update", "--resources", res.to_str().unwrap(), "upd"],
    ));
    if pids.exists() {
        assert_eq!(fs::read_to_string(&pids).unwrap().trim(), "8");
    }
    let err = fails(runc(&e, &["update", "--memory", "lots", "upd"]));
    assert!(err.contains("--memory \"lots\""), "{err}");

    let ev: serde_json::Value =
        serde_json::from_str(&ok(runc(&e, &["events", "--stats", "upd"]))).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "upd");
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1, "{ev}");
    assert!(
        ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{ev}"
    );

    let f: serde_json::Value = serde_json::from_str(&ok(runc(&e, &["features"]))).unwrap();
    assert!(f["linux"]["seccomp"]["enabled"].as_bool().unwrap());
    assert!(f["hooks"].as_array().unwrap().len() == 6);
    ok(runc(&e, &["delete", "--force", "upd"]));
}
