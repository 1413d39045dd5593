//! `fluke-runc`: the runc command line over fluke's runtime library, so that containerd,
//! podman and anything else that drives runc can drive fluke. Each subcommand parses its
//! flags and calls one library function; errors go to stderr and to `--log`.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use runtime::stats as runtime_stats;
use runtime::{CreateOptions, Runtime, RuntimeError};

#[derive(Parser)]
#[command(
    name = "fluke-runc",
    version,
    about = "fluke's OCI runtime (runc-compatible command line)"
)]
struct Cli {
    /// Directory for the containers' state
    #[arg(long, global = true, default_value = "/run/fluke-runc")]
    root: PathBuf,
    /// Append errors (and debug lines) to this file
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// text or json
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    /// Log more
    #[arg(long, global = true)]
    debug: bool,
    /// Manage cgroups through systemd
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Bundle directory (holding config.json)
    #[arg(long, short, default_value = ".")]
    bundle: PathBuf,
    /// Write the container's pid here
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket to receive the terminal's master (for process.terminal)
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Do not pivot_root (move and chroot instead)
    #[arg(long)]
    no_pivot: bool,
    /// Do not create a session keyring (fluke never does)
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass the caller's descriptors 3 .. 3+N to the container
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    container_id: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container (it waits for `start`)
    Create(CreateArgs),
    /// Start a created container
    Start { container_id: String },
    /// Create, start, wait and delete a container (or leave it running with --detach)
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(long, short)]
        detach: bool,
    },
    /// Print a container's state as JSON
    State { container_id: String },
    /// List containers
    #[command(alias = "ls")]
    List {
        /// table or json
        #[arg(long, short, default_value = "table")]
        format: String,
        /// Only ids
        #[arg(long, short)]
        quiet: bool,
    },
    /// Send a signal (name or number; default SIGTERM)
    Kill {
        container_id: String,
        signal: Option<String>,
        /// Signal every process of the container
        #[arg(long, short)]
        all: bool,
    },
    /// Freeze every process of a container
    Pause { container_id: String },
    /// Thaw a paused container
    Resume { container_id: String },
    /// List a container's processes
    Ps {
        container_id: String,
        /// table or json
        #[arg(long, short, default_value = "table")]
        format: String,
    },
    /// Change a container's resources
    Update(UpdateArgs),
    /// Print a container's resource usage (one-shot, with --stats)
    Events {
        container_id: String,
        /// Print the statistics once
        #[arg(long)]
        stats: bool,
        /// Seconds between statistics when streaming
        #[arg(long, default_value = "5s")]
        interval: String,
    },
    /// Print what this runtime supports (JSON)
    Features,
    /// Remove a container
    Delete {
        container_id: String,
        #[arg(long, short)]
        force: bool,
    },
    /// Write a default config.json
    Spec {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        /// A spec for an unprivileged user (user namespace, no devices)
        #[arg(long)]
        rootless: bool,
    },
}

#[derive(clap::Args)]
struct UpdateArgs {
    container_id: String,
    /// A JSON file (or - for stdin) of linux.resources
    #[arg(long, short)]
    resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k/m/g)
    #[arg(long, short)]
    memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited)
    #[arg(long)]
    memory_swap: Option<String>,
    /// Memory reservation (soft limit)
    #[arg(long)]
    memory_reservation: Option<String>,
    /// Maximum number of processes (-1 or 0: unlimited)
    #[arg(long)]
    pids_limit: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long)]
    cpu_shares: Option<u64>,
    /// CPU CFS quota in microseconds
    #[arg(long)]
    cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long)]
    cpu_period: Option<u64>,
    /// CPUs the container may use (e.g. 0-1)
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use
    #[arg(long)]
    cpuset_mems: Option<String>,
}

/// Bytes from `123`, `64k`, `64m`, `1g` (any case), or -1.
fn parse_bytes(flag: &str, s: &str) -> Result<i64, RuntimeError> {
    let bad = || {
        RuntimeError::Unsupported(format!(
            "--{flag} {s:?}: expected bytes, optionally with k, m or g"
        ))
    };
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n == -1 {
        return Ok(-1);
    }
    n.checked_mul(mult).filter(|v| *v >= 0).ok_or_else(bad)
}

fn update_resources(a: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources, RuntimeError> {
    use oci_spec::runtime::{LinuxPids, LinuxResources};
    let mut r: LinuxResources = match &a.resources {
        Some(p) => {
            let text = if p.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
                    RuntimeError::Io {
                        what: "reading stdin".into(),
                        source: e,
                    }
                })?;
                s
            } else {
                std::fs::read_to_string(p).map_err(|e| RuntimeError::Io {
                    what: p.display().to_string(),
                    source: e,
                })?
            };
            serde_json::from_str(&text).map_err(|e| RuntimeError::Spec {
                path: p.clone(),
                message: e.to_string(),
            })?
        }
        None => LinuxResources::default(),
    };
    if a.memory.is_some() || a.memory_swap.is_some() || a.memory_reservation.is_some() {
        let mut m = (*r.memory()).unwrap_or_default();
        if let Some(v) = &a.memory {
            m.set_limit(Some(parse_bytes("memory", v)?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(parse_bytes("memory-swap", v)?));
        }
        if let Some(v) = &a.memory_reservation {
            m.set_reservation(Some(parse_bytes("memory-reservation", v)?));
        }
        r.set_memory(Some(m));
    }
    if let Some(p) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        r.set_pids(Some(pids));
    }
    if a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if a.cpu_shares.is_some() {
            c.set_shares(a.cpu_shares);
        }
        if a.cpu_quota.is_some() {
            c.set_quota(a.cpu_quota);
        }
        if a.cpu_period.is_some() {
            c.set_period(a.cpu_period);
        }
        if a.cpuset_cpus.is_some() {
            c.set_cpus(a.cpuset_cpus.clone());
        }
        if a.cpuset_mems.is_some() {
            c.set_mems(a.cpuset_mems.clone());
        }
        r.set_cpu(Some(c));
    }
    Ok(r)
}

/// runc's `events --stats` shape.
fn stats_json(id: &str, s: &runtime_stats::Stats) -> serde_json::Value {
    use serde_json::json;
    let entry = |e: &runtime_stats::MemoryEntry| json!({"limit": e.limit, "usage": e.usage, "max": e.max, "failcnt": e.failcnt});
    let blk = |v: &Vec<runtime_stats::BlkioEntry>| -> Vec<serde_json::Value> {
        v.iter()
            .map(|b| json!({"major": b.major, "minor": b.minor, "op": b.op, "value": b.value}))
            .collect()
    };
    let hugetlb: serde_json::Map<String, serde_json::Value> = s
        .hugetlb
        .iter()
        .map(|(k, h)| {
            (
                k.clone(),
                json!({"usage": h.usage, "max": h.max, "failcnt": h.failcnt}),
            )
        })
        .collect();
    json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {
                "usage": {"total": s.cpu.usage.total, "percpu": s.cpu.usage.percpu, "kernel": s.cpu.usage.kernel, "user": s.cpu.usage.user},
                "throttling": {"periods": s.cpu.throttling.periods, "throttledPeriods": s.cpu.throttling.throttled_periods, "throttledTime": s.cpu.throttling.throttled_time},
            },
            "memory": {
                "cache": s.memory.cache,
                "usage": entry(&s.memory.usage),
                "swap": entry(&s.memory.swap),
                "kernel": entry(&s.memory.kernel),
                "kernelTCP": entry(&s.memory.kernel_tcp),
                "raw": s.memory.raw,
            },
            "pids": {"current": s.pids.current, "limit": s.pids.limit},
            "blkio": {
                "ioServiceBytesRecursive": blk(&s.blkio.io_service_bytes_recursive),
                "ioServicedRecursive": blk(&s.blkio.io_serviced_recursive),
            },
            "hugetlb": hugetlb,
        }
    })
}

/// What `features` prints (the shape runc prints).
fn features_json() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid", "sync", "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "uts"],
            "capabilities": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
        },
        "annotations": {"org.fluke.runtime.version": env!("CARGO_PKG_VERSION")},
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&cli, &e);
            ExitCode::FAILURE
        }
    }
}

/// One line on stderr and, with `--log`, in the log file (runc's shapes: text or JSON).
fn report(cli: &Cli, e: &RuntimeError) {
    let msg = e.to_string();
    eprintln!("fluke-runc: {msg}");
    if let Some(path) = &cli.log {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let time = runtime::state::now_rfc3339();
            let line = if cli.log_format == "json" {
                serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
            } else {
                format!("time=\"{time}\" level=error msg={msg:?}")
            };
            let _ = writeln!(f, "{line}");
        }
    }
}

fn create_options(a: &CreateArgs) -> Result<CreateOptions, RuntimeError> {
    if a.console_socket.is_some() {
        return Err(RuntimeError::Unsupported(
            "--console-socket: terminals are not supported yet".into(),
        ));
    }
    Ok(CreateOptions {
        no_pivot: a.no_pivot,
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
    })
}

fn run(cli: &Cli) -> Result<u8, RuntimeError> {
    if cli.systemd_cgroup && !std::path::Path::new("/run/systemd/system").is_dir() {
        return Err(RuntimeError::Unsupported(
            "--systemd-cgroup: systemd is not running on this host".into(),
        ));
    }
    let rt = Runtime::new(&cli.root);
    match &cli.command {
        Command::Create(a) => {
            rt.create(&a.container_id, &a.bundle, &create_options(a)?)?;
        }
        Command::Start { container_id } => rt.start(container_id)?,
        Command::Run { create, detach } => {
            let code = rt.run(
                &create.container_id,
                &create.bundle,
                &create_options(create)?,
                *detach,
            )?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::State { container_id } => {
            let st = rt.state(container_id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&runc_state(&st)).expect("json")
            );
        }
        Command::List { format, quiet } => {
            let all = rt.list()?;
            if *quiet {
                for s in &all {
                    println!("{}", s.id);
                }
            } else if format == "json" {
                let v: Vec<_> = all.iter().map(runc_state).collect();
                println!("{}", serde_json::to_string(&v).expect("json"));
            } else {
                println!(
                    "{:<12} {:<8} {:<10} {:<40} {:<30} OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                );
                for s in &all {
                    println!(
                        "{:<12} {:<8} {:<10} {:<40} {:<30} {}",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created,
                        if s.owner.is_empty() { "root" } else { &s.owner }
                    );
                }
            }
        }
        Command::Kill {
            container_id,
            signal,
            all,
        } => {
            let sig = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            rt.kill(container_id, sig, *all)?;
        }
        Command::Update(a) => rt.update(&a.container_id, &update_resources(a)?)?,
        Command::Events {
            container_id,
            stats,
            interval: _,
        } => {
            if !stats {
                return Err(RuntimeError::Unsupported(
                    "events: streaming is not supported yet (use --stats)".into(),
                ));
            }
            let s = rt.stats(container_id)?;
            println!("{}", stats_json(container_id, &s));
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&features_json()).expect("json")
            );
        }
        Command::Pause { container_id } => rt.pause(container_id)?,
        Command::Resume { container_id } => rt.resume(container_id)?,
        Command::Ps {
            container_id,
            format,
        } => {
            let pids = rt.pids(container_id)?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids).expect("json"));
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
        }
        Command::Delete {
            container_id,
            force,
        } => rt.delete(container_id, *force)?,
        Command::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(RuntimeError::Unsupported(format!(
                    "{}: already exists",
                    path.display()
                )));
            }
            let mut spec = if *rootless {
                oci_spec::runtime::Spec::rootless(0, 0)
            } else {
                oci_spec::runtime::Spec::default()
            };
            spec.set_hostname(Some("fluke".into()));
            let text = serde_json::to_string_pretty(&spec).expect("json");
            std::fs::write(&path, text + "\n").map_err(|e| RuntimeError::Io {
                what: path.display().to_string(),
                source: e,
            })?;
        }
    }
    Ok(0)
}

/// The state as runc prints it.
fn runc_state(s: &runtime::State) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": s.oci_version,
        "id": s.id,
        "pid": if s.status == runtime::Status::Stopped { 0 } else { s.pid },
        "status": s.status.to_string(),
        "bundle": s.bundle,
        "rootfs": s.rootfs,
        "created": s.created,
        "owner": if s.owner.is_empty() { "root" } else { &s.owner },
        "annotations": s.annotations.clone().unwrap_or_default(),
    })
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// A signal by number, name or `SIG`-name (any case).
fn parse_signal(s: &str) -> Result<i32, RuntimeError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| RuntimeError::Unsupported(format!("unknown signal {s:?}")))
}
