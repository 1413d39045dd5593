//! Real kernel enforcement. Each scenario runs in a child process — this test binary run
//! again as `--exact child` with the scenario in the environment — which installs a filter
//! and reports what its system calls did; the test runner itself is never filtered.

mod common;

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::net::{SocketFlags, SocketType};
use serde_json::json;

const SCENARIO: &str = "FLUKE_SECCOMP_SCENARIO";
const DIR: &str = "FLUKE_SECCOMP_DIR";
const SIGSYS: i32 = 31;

// ---------------------------------------------------------------------------------------
// The child side.

/// The entry point of every child; a no-op in a normal test run.
#[test]
fn child() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    // SIGSYS deaths dump core by default: not here.
    let no_core = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    rustix::process::setrlimit(rustix::process::Resource::Core, no_core).unwrap();
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    println!(); // libtest's "test child ... " has no newline yet
    let code = match scenario.as_str() {
        "errno" => errno_scenario(&dir),
        "allowlist" => allowlist_scenario(&dir),
        "args" => args_scenario(&dir),
        "kill_process" => deadly_scenario(&dir, "SCMP_ACT_KILL_PROCESS"),
        "trap" => deadly_scenario(&dir, "SCMP_ACT_TRAP"),
        "kill_thread" => kill_thread_scenario(&dir),
        "log" => log_scenario(&dir),
        "tsync" => tsync_scenario(&dir),
        "notify" => notify_scenario(&dir),
        "agent" => agent_scenario(&dir),
        s if s.starts_with("docker:") => docker_scenario(&dir, &s["docker:".len()..]),
        other => panic!("unknown scenario {other}"),
    };
    std::process::exit(code);
}

/// Compiles `json`, sets no_new_privs and installs the filter on this thread.
fn install(json: serde_json::Value) -> Option<OwnedFd> {
    let filter = seccomp::compile(&common::profile(json)).expect("profile compiles");
    rustix::thread::set_no_new_privs(true).unwrap();
    filter.install().expect("filter loads")
}

fn outcome<T>(r: io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
    }
}

fn say(what: &str, r: String) {
    println!("{what}: {r}");
}

fn mkdir_errno() -> serde_json::Value {
    json!({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"})
}

fn errno_scenario(dir: &Path) -> i32 {
    install(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [mkdir_errno()]}));
    say("mkdir", outcome(std::fs::create_dir(dir.join("a"))));
    say("create", outcome(std::fs::write(dir.join("f"), b"x")));
    say(
        "chmod",
        outcome(std::fs::set_permissions(
            dir.join("f"),
            std::fs::Permissions::from_mode(0o600),
        )),
    );
    0
}

fn allowlist_scenario(dir: &Path) -> i32 {
    // Just what this thread needs to print and exit.
    install(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 13,
        "syscalls": [{"names": [
            "write", "exit", "exit_group", "futex", "rt_sigprocmask", "rt_sigaction",
            "sigaltstack", "munmap", "mmap", "mprotect", "madvise", "brk", "close",
            "sched_yield"
        ], "action": "SCMP_ACT_ALLOW"}]
    }));
    say("stat", outcome(std::fs::metadata(dir)));
    say("mkdir", outcome(std::fs::create_dir(dir.join("a"))));
    say("getcwd", outcome(std::env::current_dir()));
    0
}

fn args_scenario(dir: &Path) -> i32 {
    let file = std::fs::File::create(dir.join("f")).unwrap();
    install(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
             "args": [{"index": 1, "value": 0x80000, "valueTwo": 0x80000, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
             "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}]},
            {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 25,
             "args": [{"index": 1, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GT"}]}
        ]
    }));
    let socket = |family, flags| {
        rustix::net::socket_with(family, SocketType::DGRAM, flags, None).map_err(io::Error::from)
    };
    say(
        "socket unix",
        outcome(socket(AddressFamily::UNIX, SocketFlags::empty())),
    );
    say(
        "socket inet",
        outcome(socket(AddressFamily::INET, SocketFlags::empty())),
    );
    say(
        "socket unix cloexec",
        outcome(socket(AddressFamily::UNIX, SocketFlags::CLOEXEC)),
    );
    say(
        "socket inet6",
        outcome(socket(AddressFamily::INET6, SocketFlags::empty())),
    );
    say(
        "socket netlink",
        outcome(socket(AddressFamily::NETLINK, SocketFlags::empty())),
    );
    for offset in [
        2u64,
        0x1_0000_0000,
        0x1_0000_0001,
        0x2_0000_0000,
        0x0_ffff_ffff,
    ] {
        let r = rustix::fs::seek(&file, rustix::fs::SeekFrom::Start(offset));
        say(
            &format!("lseek {offset:#x}"),
            outcome(r.map_err(io::Error::from)),
        );
    }
    0
}

fn deadly_scenario(dir: &Path, action: &str) -> i32 {
    install(json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": action}]}));
    say("before", "ok".into());
    let r = std::fs::create_dir(dir.join("a"));
    say("after", outcome(r));
    0
}

fn kill_thread_scenario(dir: &Path) -> i32 {
    install(json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]}));
    let a = dir.join("a");
    // The thread inherits the filter and dies in mkdir; this one goes on.
    let _detached = std::thread::spawn(move || {
        let r = std::fs::create_dir(a);
        say("thread", outcome(r));
    });
    std::thread::sleep(Duration::from_millis(300));
    say("main thread", "survived".into());
    0
}

fn log_scenario(dir: &Path) -> i32 {
    install(json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"},
                                {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]}));
    say("mkdir", outcome(std::fs::create_dir(dir.join("a"))));
    say("rmdir", outcome(std::fs::remove_dir(dir.join("a"))));
    0
}

fn tsync_scenario(dir: &Path) -> i32 {
    // A thread started before the filter: only TSYNC filters it too.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let a = dir.join("a");
    let other = std::thread::spawn(move || {
        go_rx.recv().unwrap();
        outcome(std::fs::create_dir(a))
    });
    install(json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
                   "syscalls": [mkdir_errno()]}));
    go_tx.send(()).unwrap();
    say("other thread mkdir", other.join().unwrap());
    0
}

fn notify_profile(flags: serde_json::Value) -> serde_json::Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": flags,
           "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]})
}

fn notify_scenario(dir: &Path) -> i32 {
    // The supervisor is a thread started before the filter, so it is not filtered.
    let (fd_tx, fd_rx) = mpsc::channel::<OwnedFd>();
    let (closed_tx, closed_rx) = mpsc::channel::<()>();
    let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    let supervisor = std::thread::spawn(move || {
        let listener = fd_rx.recv().unwrap();
        let n = sys::seccomp::notif_recv(listener.as_fd()).unwrap();
        let names = [Some("mkdir"), Some("mkdirat")];
        let name = seccomp::Abi::X86_64.syscall_name(n.data.nr as u32);
        say(
            "notified",
            format!(
                "{} from the filtered thread: {}",
                name.unwrap_or("?"),
                n.pid == me
            ),
        );
        assert!(names.contains(&name) && n.data.arch == seccomp::AUDIT_ARCH_X86_64);
        sys::seccomp::notif_respond(listener.as_fd(), n.id, 0, -30, 0).unwrap();
        let n = sys::seccomp::notif_recv(listener.as_fd()).unwrap();
        let cont = sys::seccomp::USER_NOTIF_FLAG_CONTINUE;
        sys::seccomp::notif_respond(listener.as_fd(), n.id, 0, 0, cont).unwrap();
        drop(listener);
        closed_tx.send(()).unwrap();
    });
    let listener = install(notify_profile(json!([
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
    ])));
    fd_tx.send(listener.expect("a listener")).unwrap();
    say(
        "mkdir answered",
        outcome(std::fs::create_dir(dir.join("a"))),
    );
    say(
        "mkdir continued",
        outcome(std::fs::create_dir(dir.join("b"))),
    );
    closed_rx.recv().unwrap();
    say(
        "mkdir without listener",
        outcome(std::fs::create_dir(dir.join("c"))),
    );
    supervisor.join().unwrap();
    0
}

fn agent_scenario(dir: &Path) -> i32 {
    let listener = install(notify_profile(json!([]))).expect("a listener");
    let state = json!({
        "ociVersion": "1.2.0",
        "fds": ["seccompFd"],
        "pid": std::process::id(),
        "metadata": "from the profile",
        "state": {"ociVersion": "1.2.0", "id": "c1", "status": "creating",
                  "pid": std::process::id(), "bundle": "/b"}
    });
    seccomp::send_listener(&dir.join("agent.sock"), &listener, &state.to_string()).unwrap();
    drop(listener);
    say("mkdir", outcome(std::fs::create_dir(dir.join("a"))));
    0
}

fn docker_scenario(dir: &Path, what: &str) -> i32 {
    let spec: oci_spec::runtime::LinuxSeccomp =
        serde_json::from_str(include_str!("fixtures/docker-default.json")).unwrap();
    let filter = seccomp::compile(&spec).unwrap();
    rustix::thread::set_no_new_privs(true).unwrap();
    assert!(filter.install().unwrap().is_none());
    let mut cmd = Command::new("/bin/busybox");
    match what {
        "true" => cmd.arg("true"),
        "sh" => cmd
            .args([
                "sh",
                "-c",
                "mkdir \"$1\"/made && ls \"$1\" && cat /proc/self/status",
                "sh",
            ])
            .arg(dir),
        "unshare" => cmd.args(["unshare", "-m", "true"]),
        "mount" => cmd.args(["mount", "-t", "tmpfs", "none"]).arg(dir),
        other => panic!("{other}"),
    };
    let err = cmd.exec();
    eprintln!("exec: {err}");
    100
}

// ---------------------------------------------------------------------------------------
// The parent side.

struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn line(&self, what: &str) -> &str {
        let prefix = format!("{what}: ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {what:?} line in\n{}\n{}", self.stdout, self.stderr))
    }
}

fn spawn(scenario: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .env(DIR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(mut child: std::process::Child) -> Run {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "child timed out\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(scenario: &str) -> (Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let r = finish(spawn(scenario, dir.path()));
    (r, dir)
}

fn assert_ok(r: &Run) {
    assert_eq!(r.status.code(), Some(0), "{}\n{}", r.stdout, r.stderr);
}

#[test]
fn errno_action_denies_mkdir_and_nothing_else() {
    let (r, dir) = run("errno");
    assert_ok(&r);
    assert_eq!(r.line("mkdir"), "errno 1");
    assert_eq!(r.line("create"), "ok");
    assert_eq!(r.line("chmod"), "ok");
    assert!(!dir.path().join("a").exists() && dir.path().join("f").exists());
}

#[test]
fn default_errno_with_an_allow_list() {
    let (r, dir) = run("allowlist");
    assert_ok(&r);
    // statx and newfstatat are numbered above every allowed call: runc's stub says ENOSYS.
    assert_eq!(r.line("stat"), "errno 38");
    assert_eq!(r.line("mkdir"), "errno 13");
    assert_eq!(r.line("getcwd"), "errno 13");
    assert!(!dir.path().join("a").exists());
}

#[test]
fn argument_conditions_are_enforced() {
    let (r, _dir) = run("args");
    assert_ok(&r);
    assert_eq!(r.line("socket unix"), "ok");
    assert_eq!(r.line("socket inet"), "errno 97", "EQ on arg0");
    assert_eq!(
        r.line("socket unix cloexec"),
        "errno 7",
        "MASKED_EQ on the type's flags"
    );
    assert_eq!(r.line("socket inet6"), "errno 22", "repeated index: ORed");
    assert_eq!(r.line("socket netlink"), "errno 22", "repeated index: ORed");
    // 64-bit GT: the high word decides first.
    assert_eq!(r.line("lseek 0x2"), "ok");
    assert_eq!(r.line("lseek 0x100000000"), "ok");
    assert_eq!(r.line("lseek 0x100000001"), "errno 25");
    assert_eq!(r.line("lseek 0x200000000"), "errno 25");
    assert_eq!(r.line("lseek 0xffffffff"), "ok");
}

#[test]
fn kill_process_dies_of_sigsys() {
    let (r, dir) = run("kill_process");
    assert_eq!(
        r.status.signal(),
        Some(SIGSYS),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.line("before"), "ok");
    assert!(!r.stdout.contains("after") && !dir.path().join("a").exists());
}

#[test]
fn trap_raises_sigsys() {
    let (r, dir) = run("trap");
    assert_eq!(
        r.status.signal(),
        Some(SIGSYS),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stdout.contains("after") && !dir.path().join("a").exists());
}

#[test]
fn kill_thread_kills_only_the_calling_thread() {
    let (r, dir) = run("kill_thread");
    assert_ok(&r);
    assert_eq!(r.line("main thread"), "survived");
    assert!(!r.stdout.lines().any(|l| l.starts_with("thread: ")));
    assert!(!dir.path().join("a").exists());
}

#[test]
fn log_allows() {
    let (r, dir) = run("log");
    assert_ok(&r);
    assert_eq!(r.line("mkdir"), "ok");
    assert_eq!(r.line("rmdir"), "errno 1");
    assert!(dir.path().join("a").is_dir());
}

#[test]
fn tsync_filters_every_thread() {
    let (r, _dir) = run("tsync");
    assert_ok(&r);
    assert_eq!(r.line("other thread mkdir"), "errno 1");
}

#[test]
fn notify_answers_continues_and_fails_with_enosys_once_the_listener_is_gone() {
    let (r, dir) = run("notify");
    assert_ok(&r);
    assert!(
        r.line("notified")
            .ends_with("from the filtered thread: true"),
        "{}",
        r.stdout
    );
    assert_eq!(r.line("mkdir answered"), "errno 30");
    assert_eq!(r.line("mkdir continued"), "ok");
    assert_eq!(r.line("mkdir without listener"), "errno 38");
    assert!(!dir.path().join("a").exists() && dir.path().join("b").is_dir());
}

#[test]
fn listener_reaches_the_agent_with_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let socket = UnixListener::bind(dir.path().join("agent.sock")).unwrap();
    socket.set_nonblocking(true).unwrap();
    let child = spawn("agent", dir.path());
    let pid = child.id();

    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match socket.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("accept: {e}; child: {:?}", finish(child).stdout),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    assert_eq!(fds.len(), 1, "one descriptor");
    let state: serde_json::Value = serde_json::from_slice(&buf[..msg.bytes]).unwrap();
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "from the profile");
    assert_eq!(state["pid"], pid);

    // Act as the agent: wait for the child's mkdir and refuse it with EROFS.
    let listener = fds.pop().unwrap();
    let mut pollfd = [rustix::event::PollFd::new(
        &listener,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    assert_eq!(rustix::event::poll(&mut pollfd, Some(&timeout)).unwrap(), 1);
    let n = sys::seccomp::notif_recv(listener.as_fd()).unwrap();
    let task = format!("/proc/{pid}/task/{}", n.pid);
    assert!(
        Path::new(&task).exists(),
        "a thread of the child, seen from our PID namespace"
    );
    sys::seccomp::notif_respond(listener.as_fd(), n.id, 0, -30, 0).unwrap();

    let r = finish(child);
    assert_ok(&r);
    assert_eq!(r.line("mkdir"), "errno 30");
    assert!(!dir.path().join("a").exists());
}

#[test]
fn docker_like_profile_runs_busybox_but_refuses_unshare_and_mount() {
    // Without a filter, as root, these would succeed: check the first to be sure.
    let control = Command::new("/bin/busybox")
        .args(["unshare", "-m", "true"])
        .status()
        .unwrap();
    assert!(control.success(), "unshare works unfiltered");

    let (r, _dir) = run("docker:true");
    assert_ok(&r);
    let (r, dir) = run("docker:sh");
    assert_ok(&r);
    assert!(r.stdout.contains("made"), "{}", r.stdout);
    assert!(r.stdout.contains("Seccomp:\t2"), "filtered: {}", r.stdout);
    assert!(r.stdout.contains("NoNewPrivs:\t1"), "{}", r.stdout);
    assert!(dir.path().join("made").is_dir());

    for what in ["unshare", "mount"] {
        let (r, dir) = run(&format!("docker:{what}"));
        assert_ne!(r.status.code(), Some(0), "{what} was allowed: {}", r.stderr);
        assert_ne!(r.status.code(), Some(100), "exec failed: {}", r.stderr);
        let stderr = r.stderr.to_lowercase();
        assert!(
            stderr.contains("not permitted") || stderr.contains("permission denied"),
            "{what}: {stderr}"
        );
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }
}
