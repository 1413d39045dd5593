//! What runs in the forked processes: the intermediate one joins and creates namespaces
//! and forks the container init, which prepares the rootfs and the process, reports
//! ready, waits on the exec FIFO for `start`, and executes the container's program.

use std::convert::Infallible;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use rustix::fs::{Mode, OFlags};

use crate::channel::{Msg, Receiver, Sender};
use crate::error::{Result, RuntimeError};
use crate::spec::Bundle;
use crate::{caps, hooks, rootfs};

pub(crate) struct InitArgs<'a> {
    pub bundle: &'a Bundle,
    pub state_dir: PathBuf,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub to_parent: Sender,
    pub from_parent: Receiver,
}

fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// The intermediate process. Never returns.
pub(crate) fn intermediate(mut a: InitArgs<'_>) -> ! {
    let result = run_intermediate(&mut a);
    if let Err(e) = result {
        let _ = a.to_parent.send(&Msg::Error(e.to_string()));
        sys::process::exit_immediately(1);
    }
    sys::process::exit_immediately(0)
}

fn run_intermediate(a: &mut InitArgs<'_>) -> Result<()> {
    match a.from_parent.recv()? {
        Some(Msg::Go) => {}
        _ => return Err(RuntimeError::Init("the runtime went away".into())),
    }
    let spec = &a.bundle.spec;
    let mut unshare = 0;
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        match ns.path() {
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|e| {
                    RuntimeError::Init(format!("linux.namespaces: {}: {e}", p.display()))
                })?;
                rustix::thread::move_into_link_name_space(rustix::fd::AsFd::as_fd(&f), None)
                    .map_err(|e| {
                        RuntimeError::Init(format!(
                            "linux.namespaces: joining {}: {}",
                            p.display(),
                            std::io::Error::from(e)
                        ))
                    })?;
            }
            None => unshare |= ns_flag(ns.typ()),
        }
    }
    if unshare != 0 {
        sys::process::unshare_namespaces(unshare)
            .map_err(|e| RuntimeError::Init(format!("creating namespaces: {e}")))?;
    }
    match sys::process::fork_single_threaded()
        .map_err(|e| RuntimeError::Init(format!("forking the container init: {e}")))?
    {
        sys::process::Fork::Child => container_init(a),
        sys::process::Fork::Parent(pid) => a.to_parent.send(&Msg::Pid(pid)),
    }
}

/// The container init. Never returns: it executes the program or exits.
fn container_init(a: &mut InitArgs<'_>) -> ! {
    let err = match setup_and_exec(a) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = a.to_parent.send(&Msg::Error(err.to_string()));
    sys::process::exit_immediately(1)
}

fn init_err(what: &str) -> impl FnOnce(rustix::io::Errno) -> RuntimeError + '_ {
    move |e| RuntimeError::Init(format!("{what}: {}", std::io::Error::from(e)))
}

fn setup_and_exec(a: &mut InitArgs<'_>) -> Result<Infallible> {
    let spec = &a.bundle.spec;
    let process = spec.process().as_ref().expect("checked at load");
    let state_json = match a.from_parent.recv()? {
        Some(Msg::State(s)) => s,
        _ => return Err(RuntimeError::Init("the runtime went away".into())),
    };
    // The exec FIFO, held as an O_PATH descriptor across the pivot and the change of
    // user, and reopened for writing through /proc/self/fd (which needs no search right on
    // the state directory). Close-on-exec: it never reaches the program.
    let fifo_path = rustix::fs::open(
        a.state_dir.join(crate::state::EXEC_FIFO),
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(init_err("opening the exec FIFO"))?;

    let has_ns = |t: LinuxNamespaceType| {
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|n| n.iter().any(|ns| ns.typ() == t))
    };
    if !has_ns(LinuxNamespaceType::Mount) {
        return Err(RuntimeError::Init(
            "linux.namespaces: a mount namespace is required".into(),
        ));
    }
    rootfs::prepare(spec, &a.bundle.rootfs)?;
    hooks::run_all(
        "createContainer",
        spec.hooks()
            .as_ref()
            .and_then(|h| h.create_container().as_ref()),
        &state_json,
    )?;
    rootfs::enter(&a.bundle.rootfs, a.no_pivot)?;
    rootfs::finish(spec)?;
    if has_ns(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname() {
            rustix::system::sethostname(h.as_bytes()).map_err(init_err("setting the hostname"))?;
        }
        if let Some(d) = spec.domainname() {
            rustix::system::setdomainname(d.as_bytes())
                .map_err(init_err("setting the domain name"))?;
        }
    }
    rootfs::sysctl(spec)?;
    // Compiled now, so that a bad profile is reported by `create`.
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Some(
            seccomp::compile(profile)
                .map_err(|e| RuntimeError::Init(format!("linux.seccomp: {e}")))?,
        ),
        None => None,
    };
    let nnp = process.no_new_privileges().unwrap_or(false);
    if !nnp {
        // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it while the
        // process still has it (runc's order too).
        if let Some(f) = &filter {
            install_filter(f, spec, &state_json)?;
        }
    }
    let program = prepare_process(process)?;
    a.to_parent.send(&Msg::Ready)?;

    // Wait for `start`: opening the FIFO for writing blocks until it opens it to read.
    let fifo = rustix::fs::open(
        format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fifo_path)
        ),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(init_err("waiting on the exec FIFO (is /proc mounted?)"))?;
    rustix::io::write(&fifo, b"0").map_err(init_err("writing the exec FIFO"))?;
    drop(fifo);
    drop(fifo_path);
    hooks::run_all(
        "startContainer",
        spec.hooks()
            .as_ref()
            .and_then(|h| h.start_container().as_ref()),
        &state_json,
    )?;
    close_other_fds(3 + a.preserve_fds as i32)?;
    if nnp {
        // As close to the exec as possible: the filter then governs the program only.
        if let Some(f) = &filter {
            install_filter(f, spec, &state_json)?;
        }
    }
    let args = process.args().as_ref().expect("checked at load");
    let err = std::process::Command::new(&program)
        .arg0(&args[0])
        .args(&args[1..])
        .env_clear()
        .envs(env_pairs(process))
        .exec();
    Err(RuntimeError::Init(format!("exec {}: {err}", args[0])))
}

fn install_filter(f: &seccomp::Filter, spec: &Spec, state_json: &str) -> Result<()> {
    let listener = f
        .install()
        .map_err(|e| RuntimeError::Init(format!("linux.seccomp: installing the filter: {e}")))?;
    if let Some(fd) = listener {
        let path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .and_then(|s| s.listener_path().clone())
            .ok_or_else(|| {
                RuntimeError::Init("linux.seccomp: SCMP_ACT_NOTIFY needs listenerPath".into())
            })?;
        seccomp::send_listener(&path, &fd, state_json).map_err(|e| {
            RuntimeError::Init(format!(
                "linux.seccomp.listenerPath {}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

fn env_pairs(p: &Process) -> Vec<(String, String)> {
    p.env()
        .iter()
        .flatten()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Everything about the process but the exec itself; returns the program's path.
fn prepare_process(p: &Process) -> Result<PathBuf> {
    for r in p.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let res = rlimit_resource(&name)
            .ok_or_else(|| RuntimeError::Init(format!("process.rlimits: unknown type {name}")))?;
        rustix::process::setrlimit(
            res,
            rustix::process::Rlimit {
                current: Some(r.soft()),
                maximum: Some(r.hard()),
            },
        )
        .map_err(|e| {
            RuntimeError::Init(format!(
                "process.rlimits: setting {name} to {}/{}: {}",
                r.soft(),
                r.hard(),
                std::io::Error::from(e)
            ))
        })?;
    }
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| RuntimeError::Init(format!("process.oomScoreAdj: {e}")))?;
    }
    let masks = caps::masks(p.capabilities());
    caps::drop_bounding(masks.bounding)?;
    let user = p.user();
    rustix::thread::set_keep_capabilities(true).map_err(init_err("keeping capabilities"))?;
    let groups: Vec<rustix::process::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| rustix::process::Gid::from_raw(*g))
        .collect();
    rustix::thread::set_thread_groups(&groups).map_err(init_err("process.user.additionalGids"))?;
    let gid = rustix::process::Gid::from_raw(user.gid());
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(init_err("process.user.gid"))?;
    let uid = rustix::process::Uid::from_raw(user.uid());
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(init_err("process.user.uid"))?;
    rustix::thread::set_keep_capabilities(false).map_err(init_err("keeping capabilities"))?;
    caps::apply(&masks)?;
    if let Some(mask) = user.umask() {
        rustix::process::umask(Mode::from_raw_mode(mask));
    }
    rustix::process::chdir(p.cwd()).map_err(|e| {
        RuntimeError::Init(format!(
            "process.cwd {}: {}",
            p.cwd().display(),
            std::io::Error::from(e)
        ))
    })?;
    if p.no_new_privileges().unwrap_or(false) {
        rustix::thread::set_no_new_privs(true).map_err(init_err("process.noNewPrivileges"))?;
    }
    let args = p.args().as_ref().expect("checked at load");
    find_program(&args[0], p)
}

/// Resolves the program as `execvp` would, with the container's PATH, so that a missing
/// executable is reported before `start` (with runc's wording).
fn find_program(name: &str, p: &Process) -> Result<PathBuf> {
    let executable = |path: &Path| {
        path.is_file() && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        return if executable(&path) {
            Ok(path)
        } else {
            Err(RuntimeError::Init(format!(
                "exec: {name:?}: no such executable file"
            )))
        };
    }
    let path_var = env_pairs(p)
        .into_iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(RuntimeError::Init(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

fn rlimit_resource(name: &str) -> Option<rustix::process::Resource> {
    use rustix::process::Resource as R;
    Some(match name {
        "RLIMIT_CPU" => R::Cpu,
        "RLIMIT_FSIZE" => R::Fsize,
        "RLIMIT_DATA" => R::Data,
        "RLIMIT_STACK" => R::Stack,
        "RLIMIT_CORE" => R::Core,
        "RLIMIT_RSS" => R::Rss,
        "RLIMIT_NPROC" => R::Nproc,
        "RLIMIT_NOFILE" => R::Nofile,
        "RLIMIT_MEMLOCK" => R::Memlock,
        "RLIMIT_AS" => R::As,
        "RLIMIT_LOCKS" => R::Locks,
        "RLIMIT_SIGPENDING" => R::Sigpending,
        "RLIMIT_MSGQUEUE" => R::Msgqueue,
        "RLIMIT_NICE" => R::Nice,
        "RLIMIT_RTPRIO" => R::Rtprio,
        "RLIMIT_RTTIME" => R::Rttime,
        _ => return None,
    })
}

/// Marks every descriptor from `first` on close-on-exec, so that only stdio and the
/// preserved ones reach the program (no runtime descriptor leaks into the container).
fn close_other_fds(first: i32) -> Result<()> {
    sys::process::cloexec_from(first)
        .map_err(|e| RuntimeError::Init(format!("closing inherited descriptors: {e}")))
}
