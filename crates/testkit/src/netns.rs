//! A real registry on a non-loopback address: Debian's `docker-registry` run inside a network
//! namespace of its own, reached from the host over a veth pair in a private /30.
//!
//! fluke (like Docker) always speaks plain HTTP to loopback registries, so testing TLS — and
//! the plain-HTTP fallback of `--tls-verify=false` — needs an address that is not loopback.
//! The fixture makes namespace `fluke-tls-<pid>-<n>`, a veth pair `fk<i>h` (host side,
//! 10.231.A.B+1/30) and `fk<i>n` (inside, 10.231.A.B+2/30) and runs the registry inside with
//! `ip netns exec`. Traffic only flows between the host and that namespace. With TLS, the
//! certificate is self-signed (made by `openssl`, SAN `IP:<inside address>`) and trusted by
//! nobody: the system trust store and `SSL_CERT_FILE` are left alone.
//!
//! Each fixture claims its own subnet (the veth name is derived from it and `ip link add`
//! fails when it exists, so concurrent tests and test processes never share one). Drop kills
//! the registry by its pid and deletes the veth pair and the namespace, also on panic.
//! Needs root (CAP_NET_ADMIN) and `ip` from iproute2.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::registry::{base_config_yaml, yaml_path};
use crate::tools::{describe_failure, find_tool, require_tool, run, run_output};

/// The port the registry listens on inside its namespace (always free there).
const PORT: u16 = 5000;
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// /30 subnets in 10.231.0.0/16.
const SUBNETS: u32 = 1 << 14;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A `docker-registry` (HTTPS with a self-signed certificate, or plain HTTP) in its own
/// network namespace, at `10.231.A.B:5000`.
pub struct NetnsRegistry {
    dir: TempDir,
    ip_tool: PathBuf,
    namespace: Option<String>,
    host_if: Option<String>,
    ip: Ipv4Addr,
    tls: bool,
    child: Option<Child>,
}

impl NetnsRegistry {
    /// An anonymous registry serving HTTPS with a fresh self-signed certificate.
    pub fn start_tls() -> NetnsRegistry {
        NetnsRegistry::start(true)
    }

    /// An anonymous registry serving plain HTTP on the namespace address.
    pub fn start_plain() -> NetnsRegistry {
        NetnsRegistry::start(false)
    }

    fn start(tls: bool) -> NetnsRegistry {
        let ip_tool = find_tool("ip").unwrap_or_else(|| {
            panic!("ip not found: install iproute2 (scripts/deps.sh test installs it)")
        });
        let dir = tempfile::Builder::new()
            .prefix("testkit-netns-registry-")
            .tempdir()
            .expect("create registry temp dir");
        fs::create_dir(dir.path().join("storage")).expect("create storage dir");
        // From here on, Drop undoes whatever part of the setup was done.
        let mut reg = NetnsRegistry {
            dir,
            ip_tool,
            namespace: None,
            host_if: None,
            ip: Ipv4Addr::UNSPECIFIED,
            tls,
            child: None,
        };
        reg.create_namespace();
        reg.create_link();
        if tls {
            reg.make_certificate();
        }
        reg.launch();
        reg
    }

    /// "10.231.A.B:5000".
    pub fn addr(&self) -> String {
        format!("{}:{PORT}", self.ip)
    }

    /// The registry's address inside the namespace.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// "https://…" or "http://…".
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    /// "docker://10.231.A.B:5000/{name}".
    pub fn docker_ref(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.addr())
    }

    /// Whether the registry serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The network namespace's name.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    /// The self-signed certificate (PEM) the registry presents, when it serves HTTPS. Handy
    /// to show verification works when a client is told to trust it.
    pub fn cert_path(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("registry.crt"))
    }

    /// The registry's filesystem storage root.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The registry process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn ip_cmd(&self) -> Command {
        Command::new(&self.ip_tool)
    }

    fn create_namespace(&mut self) {
        let pid = std::process::id();
        for _ in 0..100 {
            let name = format!("fluke-tls-{pid}-{}", NEXT.fetch_add(1, Ordering::SeqCst));
            let out = run_output(self.ip_cmd().args(["netns", "add", &name]));
            if out.status.success() {
                self.namespace = Some(name);
                return;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            // A namespace left behind by an earlier process with the same pid: next name.
            if !err.contains("exists") {
                panic!(
                    "cannot create network namespace {name} (root with CAP_NET_ADMIN needed)\n{}",
                    describe_failure(self.ip_cmd().args(["netns", "add", &name]), &out)
                );
            }
        }
        panic!("no free network namespace name fluke-tls-{pid}-*");
    }

    /// Claims a free /30 and makes the veth pair with one end in the namespace.
    fn create_link(&mut self) {
        let ns = self.namespace().to_string();
        let seed = std::process::id()
            .wrapping_mul(64)
            .wrapping_add(NEXT.load(Ordering::SeqCst).wrapping_mul(7));
        let in_use = run(self.ip_cmd().args(["-o", "-4", "addr", "show"]));
        for step in 0..SUBNETS {
            let i = (seed.wrapping_add(step)) % SUBNETS;
            let base = Ipv4Addr::new(10, 231, (i / 64) as u8, ((i % 64) * 4) as u8);
            let [a, b, c, d] = base.octets();
            let host_ip = Ipv4Addr::new(a, b, c, d + 1);
            let ns_ip = Ipv4Addr::new(a, b, c, d + 2);
            if in_use.contains(&format!(" {host_ip}/")) || in_use.contains(&format!(" {ns_ip}/")) {
                continue;
            }
            let host_if = format!("fk{i}h");
            let ns_if = format!("fk{i}n");
            let out = run_output(self.ip_cmd().args([
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns,
            ]));
            if !out.status.success() {
                if String::from_utf8_lossy(&out.stderr).contains("exists") {
                    // Another fixture holds this subnet.
                    continue;
                }
                panic!(
                    "cannot create veth pair {host_if}/{ns_if}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            self.host_if = Some(host_if.clone());
            run(self
                .ip_cmd()
                .args(["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]));
            run(self.ip_cmd().args(["link", "set", &host_if, "up"]));
            let in_ns = |args: &[&str]| {
                run(self
                    .ip_cmd()
                    .args(["netns", "exec", &ns])
                    .arg(&self.ip_tool)
                    .args(args));
            };
            in_ns(&["addr", "add", &format!("{ns_ip}/30"), "dev", &ns_if]);
            in_ns(&["link", "set", &ns_if, "up"]);
            in_ns(&["link", "set", "lo", "up"]);
            self.ip = ns_ip;
            return;
        }
        panic!("no free /30 subnet left in 10.231.0.0/16");
    }

    fn make_certificate(&self) {
        let openssl = require_tool("openssl");
        let d = self.dir.path();
        run(Command::new(openssl)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=fluke testkit registry"])
            .arg("-addext")
            .arg(format!("subjectAltName=IP:{}", self.ip))
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"])
            .arg("-keyout")
            .arg(d.join("registry.key"))
            .arg("-out")
            .arg(d.join("registry.crt")));
    }

    fn config_yaml(&self) -> String {
        let mut yaml = base_config_yaml(&self.storage_dir(), &self.addr());
        if self.tls {
            let d = self.dir.path();
            yaml += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_path(&d.join("registry.crt")),
                yaml_path(&d.join("registry.key")),
            );
        }
        yaml
    }

    fn launch(&mut self) {
        let binary = require_tool("docker-registry");
        let config = self.dir.path().join("config.yml");
        fs::write(&config, self.config_yaml()).expect("write registry config");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open registry log");
        let _ = writeln!(
            log,
            "=== testkit: starting docker-registry in netns {} on {}",
            self.namespace(),
            self.url()
        );
        // `ip netns exec` enters the namespace and execs: the child's pid is the registry's.
        let child = self
            .ip_cmd()
            .args(["netns", "exec", self.namespace()])
            .arg(&binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} in a netns: {e}", binary.display()));
        self.child = Some(child);
        let listening = format!("listening on {}", self.addr());
        let addr = SocketAddr::from((self.ip, PORT));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "docker-registry exited during startup ({status})\n--- registry log ---\n{}",
                    self.log()
                );
            }
            if self.log().contains(&listening)
                && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry in netns {} did not listen on {addr} within {READY_TIMEOUT:?}\n--- registry log ---\n{}",
                    self.namespace(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NetnsRegistry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting one end of a veth pair deletes both.
        if let Some(host_if) = self.host_if.take() {
            let _ = run_output(self.ip_cmd().args(["link", "del", &host_if]));
        }
        if let Some(ns) = self.namespace.take() {
            let _ = run_output(self.ip_cmd().args(["netns", "del", &ns]));
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- testkit: last {} lines of the netns registry log ({}) ---\n{}",
                tail.len(),
                self.log_path().display(),
                tail.join("\n")
            );
        }
    }
}
