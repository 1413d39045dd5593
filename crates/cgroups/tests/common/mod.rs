//! Shared helpers for the tests that run against this machine's real cgroup hierarchies.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cgroups::{Hierarchies, Manager, Signal};

static N: AtomicUsize = AtomicUsize::new(0);

/// A unique absolute cgroupsPath for one test: `/fluke-test-<pid>-<n>[/sub]`.
pub fn unique(sub: Option<&str>) -> PathBuf {
    let n = N.fetch_add(1, Ordering::SeqCst);
    let mut p = PathBuf::from(format!("/fluke-test-{}-{n}", std::process::id()));
    if let Some(s) = sub {
        p.push(s);
    }
    p
}

/// Whether this process may manage cgroups (root, with a writable cgroup fs).
pub fn can_run() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    true
}

/// The cgroup2 mount of this machine, if any.
pub fn unified_mount() -> Option<PathBuf> {
    Hierarchies::detect().ok()?.unified.map(|u| u.mountpoint)
}

/// A manager whose cgroup is removed when it goes out of scope, even on panic: every
/// process in it is killed, the directories deleted, and the test checks they are gone.
pub struct Guard {
    pub m: Manager,
    children: Vec<Child>,
}

impl Guard {
    pub fn new(m: Manager) -> Guard {
        Guard {
            m,
            children: Vec::new(),
        }
    }

    pub fn keep(&mut self, c: Child) -> u32 {
        let pid = c.id();
        self.children.push(c);
        pid
    }
}

impl std::ops::Deref for Guard {
    type Target = Manager;
    fn deref(&self) -> &Manager {
        &self.m
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.m.kill_all(Signal::KILL);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let r = self.m.delete();
        if !std::thread::panicking() {
            r.expect("delete");
        }
    }
}

/// A `sh` child that waits for a line on stdin before running `script` — time to move it
/// into a cgroup first.
pub struct Gated {
    pub child: Child,
    stdin: Option<ChildStdin>,
}

impl Gated {
    pub fn spawn(script: &str) -> Gated {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdin = child.stdin.take();
        Gated { child, stdin }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads one line the child printed (byte by byte: nothing is buffered away from `run`).
    pub fn line(&mut self) -> String {
        use std::io::Read;
        let out = self.child.stdout.as_mut().expect("stdout");
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    pub fn go(&mut self) {
        let mut s = self.stdin.take().expect("started twice");
        s.write_all(b"go\n").unwrap();
    }

    /// Releases the child and collects (status ok, stdout, stderr).
    pub fn run(mut self) -> (bool, String, String) {
        self.go();
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

pub fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
        .trim()
        .to_string()
}

/// The `State:` letter in /proc/<pid>/status.
pub fn proc_state(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Runs a shell inside the cgroup that opens /dev/null for writing and for reading:
/// (write worked, read worked, stderr).
pub fn probe_dev_null(m: &Manager) -> (bool, bool, String) {
    let g = Gated::spawn(
        "if (exec 3>/dev/null); then echo W-OK; fi; if (exec 4</dev/null); then echo R-OK; fi",
    );
    m.add_process(g.pid()).unwrap();
    let (_, out, err) = g.run();
    (out.contains("W-OK"), out.contains("R-OK"), err)
}
