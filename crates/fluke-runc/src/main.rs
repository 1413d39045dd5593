//! `fluke-runc`: the runc command line over fluke's runtime library, so that containerd,
//! podman and anything else that drives runc can drive fluke. Each subcommand parses its
//! flags and calls one library function; errors go to stderr and to `--log`.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
