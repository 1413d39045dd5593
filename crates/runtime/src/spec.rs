//! Loading and checking a bundle's `config.json` before anything is created.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::{Result, RuntimeError};

/// A bundle whose configuration parsed and passed the checks the runtime relies on.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    /// The root filesystem, absolute.
    pub rootfs: PathBuf,
}

fn spec_err(path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Spec {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Bundle {
    /// Reads `DIR/config.json`. Errors name the file and, for JSON errors, line and column.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| spec_err(dir, format!("bundle directory: {e}")))?;
        let path = dir.join("config.json");
        let text = std::fs::read(&path).map_err(|e| spec_err(&path, e.to_string()))?;
        let spec: Spec =
            serde_json::from_slice(&text).map_err(|e| spec_err(&path, e.to_string()))?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| spec_err(&path, "root: missing (the bundle's root filesystem)"))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        if !rootfs.is_dir() {
            return Err(spec_err(
                &path,
                format!("root.path: {} is not a directory", rootfs.display()),
            ));
        }
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| spec_err(&path, "process: missing"))?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(spec_err(
                &path,
                "process.args: must name the program to run",
            ));
        }
        if !process.cwd().is_absolute() {
            return Err(spec_err(&path, "process.cwd: must be an absolute path"));
        }
        for (i, m) in spec.mounts().iter().flatten().enumerate() {
            if !m.destination().is_absolute() {
                return Err(spec_err(
                    &path,
                    format!(
                        "mounts[{i}].destination: {} is not absolute",
                        m.destination().display()
                    ),
                ));
            }
        }
        Ok(Bundle {
            dir,
            rootfs: std::fs::canonicalize(&rootfs)
                .map_err(|e| spec_err(&path, format!("root.path: {e}")))?,
            spec,
        })
    }
}

/// Container ids: what runc accepts.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidId(id.to_string()))
    }
}
