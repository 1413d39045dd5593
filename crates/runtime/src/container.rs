//! The lifecycle as the runtime's caller sees it: create, start, state, kill, delete, run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::channel::{self, Msg};
use crate::error::{Result, RuntimeError};
use crate::hooks;
use crate::init::{self, InitArgs};
use crate::spec::{validate_id, Bundle};
use crate::state::{self, State, StateRoot, Status};

/// Options of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Move the rootfs and chroot instead of pivot_root (for ramdisk roots).
    pub no_pivot: bool,
    /// Write the container's pid here.
    pub pid_file: Option<PathBuf>,
    /// Descriptors 3 .. 3+N of the caller are passed to the container.
    pub preserve_fds: u32,
}

/// A runtime over one state root (`--root`). Not thread-safe by design: create forks,
/// and the calling process must be single-threaded when it does.
pub struct Runtime {
    root: StateRoot,
}

/// Removes a half-created container (process, cgroup, state directory) unless disarmed.
struct Cleanup<'a> {
    dir: &'a Path,
    pid: Option<i32>,
    cgroup: Option<cgroups::Manager>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Some(pid) = self.pid.and_then(Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            if let Some(cg) = &self.cgroup {
                let _ = cg.kill_all(Signal::KILL);
                let _ = cg.delete();
            }
            let _ = state::remove_dir(self.dir);
        }
    }
}

fn signal_of(n: i32) -> Result<Signal> {
    Signal::from_named_raw(n)
        .ok_or_else(|| RuntimeError::Unsupported(format!("invalid signal {n}")))
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: StateRoot::new(root),
        }
    }

    pub fn state_root(&self) -> &StateRoot {
        &self.root
    }

    /// Creates the container `id` from the bundle at `bundle_dir`: its namespaces and
    /// rootfs are ready and its process waits for [`Runtime::start`]. On failure nothing
    /// is left: no state directory, no process.
    pub fn create(&self, id: &str, bundle_dir: &Path, opts: &CreateOptions) -> Result<State> {
        validate_id(id)?;
        let bundle = Bundle::load(bundle_dir)?;
        let spec = &bundle.spec;
        let process = spec.process().as_ref().expect("checked at load");
        if process.terminal().unwrap_or(false) {
            return Err(RuntimeError::Unsupported(
                "process.terminal: true is not supported yet (use a container without a terminal)"
                    .into(),
            ));
        }
        let userns_new = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|n| {
                n.iter().any(|ns| {
                    ns.typ() == oci_spec::runtime::LinuxNamespaceType::User && ns.path().is_none()
                })
            });
        if userns_new {
            return Err(RuntimeError::Unsupported(
                "linux.namespaces: creating a user namespace is not supported yet".into(),
            ));
        }
        let mut cg = crate::cgroup::manager(spec, id)?;
        let cgroup_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_else(|| cgroups::path::default_path(id));
        let dir = self.root.create_container_dir(id)?;
        let mut cleanup = Cleanup {
            dir: &dir,
            pid: None,
            cgroup: None,
            armed: true,
        };
        if cg.exists() {
            return Err(RuntimeError::Unsupported(format!(
                "linux.cgroupsPath: {} is already in use",
                cgroup_path.display()
            )));
        }
        cg.create()?;
        // Under the default path, /fluke belongs to the runtime: whichever container is
        // deleted last removes it, not only the one that happened to create it.
        let owns_parent = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .is_none();
        let cgroup_depth = if owns_parent {
            cg.created_depth().max(2)
        } else {
            cg.created_depth()
        };
        cleanup.cgroup = Some(cg);
        let cg = cleanup.cgroup.as_ref().expect("just set");
        cg.apply(&crate::cgroup::resources_with_defaults(spec))?;
        let dir_fd = rustix::fs::open(
            &dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RuntimeError::io(dir.display().to_string())(e.into()))?;
        rustix::fs::mknodat(
            &dir_fd,
            state::EXEC_FIFO,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(|e| RuntimeError::io("creating the exec FIFO")(e.into()))?;
        // Writable by the container's user, whoever it is (the FIFO only carries a byte).
        rustix::fs::chmodat(
            &dir_fd,
            state::EXEC_FIFO,
            Mode::from_raw_mode(0o622),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(|e| RuntimeError::io("creating the exec FIFO")(e.into()))?;

        let (mut from_child, to_parent) = channel::pipe()?;
        let (from_parent, mut to_child) = channel::pipe()?;
        let child = sys::process::fork_single_threaded()
            .map_err(|e| RuntimeError::io("forking the container's first process")(e))?;
        let intermediate = match child {
            sys::process::Fork::Child => {
                drop(from_child);
                drop(to_child);
                init::intermediate(InitArgs {
                    bundle: &bundle,
                    state_dir: dir.clone(),
                    no_pivot: opts.no_pivot,
                    preserve_fds: opts.preserve_fds,
                    to_parent,
                    from_parent,
                })
            }
            sys::process::Fork::Parent(pid) => pid,
        };
        drop(to_parent);
        drop(from_parent);
        let reap = || {
            if let Some(p) = Pid::from_raw(intermediate) {
                let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
            }
        };
        if let Err(e) = cg.add_process(intermediate as u32) {
            let _ = rustix::process::kill_process(
                Pid::from_raw(intermediate).expect("a child"),
                Signal::KILL,
            );
            reap();
            return Err(e.into());
        }
        to_child.send(&Msg::Go)?;
        let pid = match from_child.recv()? {
            Some(Msg::Pid(p)) => p,
            Some(Msg::Error(e)) => {
                reap();
                return Err(RuntimeError::Init(e));
            }
            _ => {
                reap();
                return Err(RuntimeError::Init(
                    "the container's first process exited during setup".into(),
                ));
            }
        };
        cleanup.pid = Some(pid);
        reap();
        let mut st = State {
            oci_version: spec.version().clone(),
            id: id.to_string(),
            status: Status::Creating,
            pid,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: state::now_rfc3339(),
            owner: String::new(),
            annotations: spec.annotations().clone(),
            start_time: state::process_start_time(pid).unwrap_or(0),
            cgroup_path: cgroup_path.to_string_lossy().into_owned(),
            cgroup_depth,
        };
        to_child.send(&Msg::State(hook_state_json(&st)))?;
        match from_child.recv()? {
            Some(Msg::Ready) => {}
            Some(Msg::Error(e)) => return Err(RuntimeError::Init(e)),
            _ => {
                return Err(RuntimeError::Init(
                    "the container init exited during setup".into(),
                ))
            }
        }
        st.status = Status::Created;
        let hooks = spec.hooks().as_ref();
        let json = hook_state_json(&st);
        hooks::run_all("prestart", hooks.and_then(|h| h.prestart().as_ref()), &json)?;
        hooks::run_all(
            "createRuntime",
            hooks.and_then(|h| h.create_runtime().as_ref()),
            &json,
        )?;
        self.root.save(&st)?;
        if let Some(pf) = &opts.pid_file {
            write_pid_file(pf, pid)?;
        }
        cleanup.armed = false;
        Ok(st)
    }

    /// Lets a created container's process run its program.
    pub fn start(&self, id: &str) -> Result<()> {
        let st = self.root.load(id)?;
        if st.status != Status::Created {
            return Err(wrong(&st, "start", "created"));
        }
        let dir = self.root.container_dir(id);
        let fifo = dir.join(state::EXEC_FIFO);
        let f = rustix::fs::open(
            &fifo,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RuntimeError::io(fifo.display().to_string())(e.into()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut byte = [0u8; 1];
        loop {
            match rustix::io::read(&f, &mut byte) {
                Ok(1) => break,
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(RuntimeError::io("reading the exec FIFO")(e.into())),
            }
            if state::process_start_time(st.pid) != Some(st.start_time) || Instant::now() > deadline
            {
                return Err(RuntimeError::Init(format!(
                    "container {id:?}: its process exited before it could start"
                )));
            }
            // Sleep until the init writes (or 10 ms pass, to look at it again).
            let mut fds = [rustix::event::PollFd::new(&f, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            let _ = rustix::event::poll(&mut fds, Some(&timeout));
        }
        let _ = std::fs::remove_file(&fifo);
        drop(f);
        let bundle = Bundle::load(&st.bundle)?;
        let mut running = st.clone();
        running.status = Status::Running;
        // Poststart hook failures are reported but do not stop the container (as runc).
        hooks::run_all(
            "poststart",
            bundle
                .spec
                .hooks()
                .as_ref()
                .and_then(|h| h.poststart().as_ref()),
            &hook_state_json(&running),
        )
    }

    pub fn state(&self, id: &str) -> Result<State> {
        self.root.load(id)
    }

    pub fn list(&self) -> Result<Vec<State>> {
        self.root.list()
    }

    /// Sends `signal` to the container's process (with `all`, to every process in its
    /// cgroup).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let st = self.root.load(id)?;
        if all {
            if let Some(cg) = crate::cgroup::from_state(&st.cgroup_path, st.cgroup_depth) {
                cg.kill_all(signal_of(signal)?)?;
                return Ok(());
            }
        }
        if !matches!(
            st.status,
            Status::Created | Status::Running | Status::Paused
        ) {
            return Err(wrong(&st, "kill", "created, running or paused"));
        }
        let pid = Pid::from_raw(st.pid).ok_or_else(|| RuntimeError::NotFound(id.into()))?;
        rustix::process::kill_process(pid, signal_of(signal)?)
            .map_err(|e| RuntimeError::io(format!("signalling container {id:?}"))(e.into()))
    }

    /// Freezes every process of a running container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let st = self.root.load(id)?;
        if st.status != Status::Running {
            return Err(wrong(&st, "pause", "running"));
        }
        self.cgroup_of(&st)?.freeze()?;
        Ok(())
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let st = self.root.load(id)?;
        if st.status != Status::Paused {
            return Err(wrong(&st, "resume", "paused"));
        }
        self.cgroup_of(&st)?.thaw()?;
        Ok(())
    }

    /// The pids (host namespace) of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let st = self.root.load(id)?;
        Ok(self.cgroup_of(&st)?.pids()?)
    }

    /// Changes a live container's resources (what is not given stays as it is).
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let st = self.root.load(id)?;
        if !matches!(
            st.status,
            Status::Created | Status::Running | Status::Paused
        ) {
            return Err(wrong(&st, "update", "created, running or paused"));
        }
        self.cgroup_of(&st)?.apply(resources)?;
        Ok(())
    }

    /// The container's resource usage, from its cgroup.
    pub fn stats(&self, id: &str) -> Result<cgroups::Stats> {
        let st = self.root.load(id)?;
        if !matches!(
            st.status,
            Status::Created | Status::Running | Status::Paused
        ) {
            return Err(wrong(&st, "events", "created, running or paused"));
        }
        Ok(self.cgroup_of(&st)?.stats()?)
    }

    fn cgroup_of(&self, st: &State) -> Result<cgroups::Manager> {
        crate::cgroup::from_state(&st.cgroup_path, st.cgroup_depth).ok_or_else(|| {
            RuntimeError::Unsupported(format!("container {:?} has no cgroup", st.id))
        })
    }

    /// Removes a stopped container (with `force`, kills it first), its cgroup included.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let st = self.root.load(id)?;
        let cg = crate::cgroup::from_state(&st.cgroup_path, st.cgroup_depth);
        if st.status != Status::Stopped {
            if !force {
                return Err(wrong(&st, "delete", "stopped (or --force)"));
            }
            if let Some(cg) = &cg {
                // A frozen cgroup's processes die only once thawed.
                let _ = cg.thaw();
                let _ = cg.kill_all(Signal::KILL);
            }
            if let Some(pid) = Pid::from_raw(st.pid) {
                let _ = rustix::process::kill_process(pid, Signal::KILL);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.root.status_of(&st) != Status::Stopped && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if let Some(cg) = &cg {
            // Leftover processes (forked by the program) go with the container.
            let _ = cg.kill_all(Signal::KILL);
            cg.delete()?;
        }
        let mut stopped = st.clone();
        stopped.status = Status::Stopped;
        if let Ok(bundle) = Bundle::load(&st.bundle) {
            // Poststop failures are logged by the caller's error, after cleanup.
            let r = hooks::run_all(
                "poststop",
                bundle
                    .spec
                    .hooks()
                    .as_ref()
                    .and_then(|h| h.poststop().as_ref()),
                &hook_state_json(&stopped),
            );
            state::remove_dir(&self.root.container_dir(id))?;
            return r;
        }
        state::remove_dir(&self.root.container_dir(id))
    }

    /// create + start, then (unless `detach`) wait for the program and delete the
    /// container; returns its exit code (128 + signal when killed).
    pub fn run(&self, id: &str, bundle: &Path, opts: &CreateOptions, detach: bool) -> Result<i32> {
        if !detach {
            // The container init is orphaned when the first child exits: become its
            // reaper so that its exit status comes back here.
            rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
                .map_err(|e| RuntimeError::io("becoming a subreaper")(e.into()))?;
        }
        let st = self.create(id, bundle, opts)?;
        if let Err(e) = self.start(id) {
            let _ = self.delete(id, true);
            return Err(e);
        }
        if detach {
            return Ok(0);
        }
        let pid = Pid::from_raw(st.pid).expect("a created container has a pid");
        let code = loop {
            match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
                Ok(Some((_, status))) => {
                    if let Some(c) = status.exit_status() {
                        break c;
                    }
                    if let Some(s) = status.terminating_signal() {
                        break 128 + s;
                    }
                }
                Ok(None) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(RuntimeError::io("waiting for the container")(e.into())),
            }
        };
        self.delete(id, true)?;
        Ok(code)
    }
}

fn wrong(st: &State, action: &str, needed: &str) -> RuntimeError {
    RuntimeError::WrongState {
        id: st.id.clone(),
        status: st.status.to_string(),
        action: action.into(),
        needed: needed.into(),
    }
}

/// The state as hooks receive it (the OCI state, without fluke's extra fields).
fn hook_state_json(st: &State) -> String {
    serde_json::json!({
        "ociVersion": st.oci_version,
        "id": st.id,
        "status": st.status.to_string(),
        "pid": st.pid,
        "bundle": st.bundle,
        "annotations": st.annotations.clone().unwrap_or_default(),
    })
    .to_string()
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("tmp-fluke");
    std::fs::write(&tmp, pid.to_string()).map_err(RuntimeError::io(tmp.display().to_string()))?;
    std::fs::rename(&tmp, path).map_err(RuntimeError::io(path.display().to_string()))
}
