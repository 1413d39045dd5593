//! A real registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1 for one test.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::token::{TokenServer, ISSUER};
use crate::tools::{require_tool, run};

/// The `service` name a token-auth registry announces and expects in tokens' `aud`.
pub const TOKEN_SERVICE: &str = "testkit-registry";

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 5;

enum Auth {
    None,
    Basic {
        user: String,
        pass: String,
    },
    Token {
        credentials: Option<(String, String)>,
    },
}

/// A `docker-registry serve` child process with its own config, storage and log in a temp
/// dir. It is killed (by its pid) and reaped on drop; the temp dir is then removed.
pub struct Registry {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    auth: Auth,
    token: Option<TokenServer>,
}

enum Launch {
    Ready(Child),
    AddressInUse,
}

impl Registry {
    /// An anonymous registry (push and pull need no credentials; deletes are enabled).
    pub fn start() -> Registry {
        Registry::launch_new(Auth::None)
    }

    /// A registry that demands HTTP basic auth (htpasswd file with a bcrypt hash made by
    /// `htpasswd -Bbn`; needs Debian's apache2-utils).
    pub fn with_basic_auth(user: &str, pass: &str) -> Registry {
        Registry::launch_new(Auth::Basic {
            user: user.into(),
            pass: pass.into(),
        })
    }

    /// A registry using Bearer tokens from a token server run by this fixture; the token
    /// server hands tokens only to `user`/`pass` (HTTP basic on the token request).
    pub fn with_token_auth(user: &str, pass: &str) -> Registry {
        Registry::launch_new(Auth::Token {
            credentials: Some((user.into(), pass.into())),
        })
    }

    /// Like [`Registry::with_token_auth`], but the token server gives a token to anyone
    /// (the anonymous Docker Hub flow: 401 → token → retry).
    pub fn with_anonymous_token_auth() -> Registry {
        Registry::launch_new(Auth::Token { credentials: None })
    }

    fn launch_new(auth: Auth) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("testkit-registry-")
            .tempdir()
            .expect("create registry temp dir");
        fs::create_dir(dir.path().join("storage")).expect("create storage dir");
        let token = match &auth {
            Auth::None => None,
            Auth::Basic { user, pass } => {
                let htpasswd = require_tool("htpasswd");
                let line = run(Command::new(htpasswd).args(["-Bbn", user, pass]));
                fs::write(
                    dir.path().join("htpasswd"),
                    line.trim_end().to_string() + "\n",
                )
                .expect("write htpasswd file");
                None
            }
            Auth::Token { credentials } => Some(TokenServer::start(
                dir.path(),
                TOKEN_SERVICE,
                credentials.clone(),
            )),
        };
        let mut registry = Registry {
            dir,
            port: 0,
            child: None,
            auth,
            token,
        };
        registry.launch(None);
        registry
    }

    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "http://127.0.0.1:PORT".
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// "docker://127.0.0.1:PORT/{name}", e.g. `docker_ref("busybox:1")`.
    pub fn docker_ref(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.addr())
    }

    /// The registry's filesystem storage root (it survives `stop`/`restart`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log file (stdout and stderr of every run, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The user and password this registry (or its token server) accepts, if any.
    pub fn credentials(&self) -> Option<(String, String)> {
        match &self.auth {
            Auth::None => None,
            Auth::Basic { user, pass } => Some((user.clone(), pass.clone())),
            Auth::Token { credentials } => credentials.clone(),
        }
    }

    /// `user:pass` as skopeo's `--creds` wants it, if credentials are set.
    pub fn creds_arg(&self) -> Option<String> {
        self.credentials().map(|(u, p)| format!("{u}:{p}"))
    }

    /// The token server's realm URL (token auth only).
    pub fn token_realm(&self) -> Option<String> {
        self.token.as_ref().map(TokenServer::realm)
    }

    /// How many token requests the token server has answered (0 without token auth).
    pub fn token_requests(&self) -> usize {
        self.token.as_ref().map_or(0, TokenServer::requests)
    }

    /// Every scope asked of the token server so far, in order.
    pub fn token_scopes(&self) -> Vec<String> {
        self.token
            .as_ref()
            .map_or_else(Vec::new, TokenServer::scopes)
    }

    /// The pid of the running registry process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the registry process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills the registry (SIGKILL to its pid) and reaps it; storage is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the registry if running and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.launch(Some(self.port));
    }

    fn launch(&mut self, fixed_port: Option<u16>) {
        let binary = require_tool("docker-registry");
        for attempt in 1..=START_ATTEMPTS {
            let port = fixed_port.unwrap_or_else(free_port);
            match self.try_launch(&binary, port) {
                Launch::Ready(child) => {
                    self.port = port;
                    self.child = Some(child);
                    return;
                }
                // Someone took the port between our probe and the registry's bind.
                Launch::AddressInUse if attempt < START_ATTEMPTS => {
                    std::thread::sleep(Duration::from_millis(100 * attempt as u64));
                }
                Launch::AddressInUse => break,
            }
        }
        panic!(
            "docker-registry could not bind a port after {START_ATTEMPTS} attempts\n--- registry log ---\n{}",
            self.log()
        );
    }

    fn try_launch(&self, binary: &Path, port: u16) -> Launch {
        let config = self.dir.path().join("config.yml");
        fs::write(&config, self.config_yaml(port)).expect("write registry config");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open registry log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(log, "=== testkit: starting docker-registry on port {port}");
        let mut child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let listening = format!("listening on 127.0.0.1:{port}");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let new_log = read_from(&self.log_path(), log_start);
            if let Ok(Some(status)) = child.try_wait() {
                if new_log.contains("address already in use") {
                    return Launch::AddressInUse;
                }
                panic!("docker-registry exited during startup ({status})\n--- registry log ---\n{new_log}");
            }
            // The log line proves *our* process bound the port; the probe that it serves.
            if new_log.contains(&listening) && http_status(port, "/v2/").is_some() {
                return Launch::Ready(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "docker-registry did not answer GET /v2/ on port {port} within {READY_TIMEOUT:?}\n--- registry log ---\n{new_log}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn config_yaml(&self, port: u16) -> String {
        let mut yaml = base_config_yaml(&self.storage_dir(), &format!("127.0.0.1:{port}"));
        match &self.auth {
            Auth::None => {}
            Auth::Basic { .. } => {
                yaml += &format!(
                    "auth:\n  htpasswd:\n    realm: testkit\n    path: {}\n",
                    yaml_path(&self.dir.path().join("htpasswd"))
                );
            }
            Auth::Token { .. } => {
                let token = self.token.as_ref().expect("token server");
                yaml += &format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    serde_json::to_string(&token.realm()).unwrap(),
                    yaml_path(token.cert_path()),
                );
            }
        }
        yaml
    }
}

/// A path as a quoted YAML (JSON) string.
pub(crate) fn yaml_path(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).expect("a string serialises")
}

/// The part of a docker-registry config every fixture shares: logging, storage with
/// deletes on and upload purging off, the listen address and the HTTP section (which a
/// caller may extend with `  tls:` lines).
pub(crate) fn base_config_yaml(storage: &Path, addr: &str) -> String {
    format!(
        "version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: testkit-not-a-secret
  headers:
    X-Content-Type-Options: [nosniff]
",
        storage = yaml_path(storage),
    )
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- testkit: last {} lines of the registry log ({}) ---\n{}",
                tail.len(),
                self.log_path().display(),
                tail.join("\n")
            );
        }
    }
}

/// A port that was free a moment ago (bound to port 0 and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = File::open(path) {
        use std::io::{Seek, SeekFrom};
        let _ = file.seek(SeekFrom::Start(offset));
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The status code of `GET path` on 127.0.0.1:port, or None if nothing answers HTTP.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let head = std::str::from_utf8(&head[..n]).ok()?;
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}
