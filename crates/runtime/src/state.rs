//! The state directory of each container (`ROOT/ID/state.json`, the exec FIFO) and how
//! a container's status is worked out.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// What `state` prints: the OCI state, plus the fields runc adds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::HashMap<String, String>>,
    /// The start time of `pid` (field 22 of /proc/PID/stat), so that a reused pid is not
    /// mistaken for the container.
    #[serde(default)]
    pub start_time: u64,
    /// The cgroup path the container was placed in (relative to each hierarchy's root).
    #[serde(default)]
    pub cgroup_path: String,
    /// How many trailing levels of `cgroup_path` the runtime created (removed on delete).
    #[serde(default)]
    pub cgroup_depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

/// Where containers' state lives (`--root`, default `/run/fluke-runc`).
#[derive(Debug, Clone)]
pub struct StateRoot {
    pub dir: PathBuf,
}

impl StateRoot {
    pub fn new(dir: impl Into<PathBuf>) -> StateRoot {
        StateRoot { dir: dir.into() }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Creates the directory of a new container; fails if the id is taken.
    pub fn create_container_dir(&self, id: &str) -> Result<PathBuf> {
        fs::create_dir_all(&self.dir).map_err(RuntimeError::io(self.dir.display().to_string()))?;
        let dir = self.container_dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(RuntimeError::Exists(id.to_string()))
            }
            Err(e) => Err(RuntimeError::io(dir.display().to_string())(e)),
        }
    }

    pub fn load(&self, id: &str) -> Result<State> {
        crate::spec::validate_id(id)?;
        let path = self.container_dir(id).join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound(id.to_string()))
            }
            Err(e) => return Err(RuntimeError::io(path.display().to_string())(e)),
        };
        let mut state: State = serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Spec {
            path: path.clone(),
            message: e.to_string(),
        })?;
        state.status = self.status_of(&state);
        Ok(state)
    }

    pub fn save(&self, state: &State) -> Result<()> {
        let dir = self.container_dir(&state.id);
        let tmp = dir.join(".state.json.tmp");
        let what = || tmp.display().to_string();
        let mut f = fs::File::create(&tmp).map_err(RuntimeError::io(what()))?;
        f.write_all(&serde_json::to_vec(state).expect("state serialises"))
            .map_err(RuntimeError::io(what()))?;
        fs::rename(&tmp, dir.join(STATE_FILE)).map_err(RuntimeError::io(what()))?;
        Ok(())
    }

    /// Every container with a state file, sorted by id.
    pub fn list(&self) -> Result<Vec<State>> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for e in rd.flatten() {
            if let Some(id) = e.file_name().to_str() {
                if let Ok(s) = self.load(id) {
                    out.push(s);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The status, worked out from the process and the FIFO, as runc does: no live process
    /// with the recorded start time means stopped; the FIFO still there means created.
    pub fn status_of(&self, s: &State) -> Status {
        if s.pid <= 0 || process_start_time(s.pid) != Some(s.start_time) {
            return Status::Stopped;
        }
        if is_zombie(s.pid) {
            return Status::Stopped;
        }
        if let Some(m) = crate::cgroup::from_state(&s.cgroup_path, s.cgroup_depth) {
            if matches!(m.state(), Ok(cgroups::FreezerState::Frozen)) {
                return Status::Paused;
            }
        }
        if self.container_dir(&s.id).join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Field 22 of /proc/PID/stat (index 19 after the name), in clock ticks since boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().map(String::as_str) == Some("Z"))
}

/// RFC 3339 UTC with nanoseconds, as runc writes `created`.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

pub fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(RuntimeError::io(dir.display().to_string())(e))
        }
        _ => Ok(()),
    }
}
