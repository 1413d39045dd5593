//! `linux.cgroupsPath`: its forms and where it lands in each hierarchy.
//!
//! - `/a/b` (absolute): `<mountpoint>/a/b` in every hierarchy.
//! - `a/b` (relative): under this process's own cgroup in each hierarchy.
//! - `slice:prefix:name` (systemd): not supported (no systemd driver).

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// A parsed, normalised cgroupsPath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupsPath {
    /// From the hierarchy's root.
    Absolute(Vec<String>),
    /// From the runtime's own cgroup.
    Relative(Vec<String>),
}

/// The cgroupsPath fluke uses when the spec gives none: `/fluke/<container-id>`.
pub fn default_path(container_id: &str) -> PathBuf {
    Path::new("/fluke").join(container_id)
}

fn invalid(p: &str, reason: &str) -> Error {
    Error::Path {
        path: p.to_string(),
        reason: reason.to_string(),
    }
}

impl CgroupsPath {
    /// Parses and normalises (`.` and repeated `/` dropped); `..`, an empty path, the bare
    /// root and the systemd `slice:prefix:name` form are refused.
    pub fn parse(path: &Path) -> Result<CgroupsPath> {
        let s = path
            .to_str()
            .ok_or_else(|| invalid(&path.to_string_lossy(), "not valid UTF-8"))?;
        if s.is_empty() {
            return Err(invalid(s, "empty"));
        }
        let absolute = s.starts_with('/');
        if !absolute && s.split(':').count() == 3 {
            return Err(invalid(
                s,
                "the systemd form slice:prefix:name is not supported (fluke manages cgroups \
                 through the cgroupfs only); use a path like /fluke/<id>",
            ));
        }
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                Component::ParentDir => return Err(invalid(s, "'..' is not allowed")),
                Component::Prefix(_) => return Err(invalid(s, "not a Linux path")),
            }
        }
        if parts.is_empty() {
            return Err(invalid(
                s,
                "names the root of the hierarchy, not a cgroup in it",
            ));
        }
        Ok(if absolute {
            CgroupsPath::Absolute(parts)
        } else {
            CgroupsPath::Relative(parts)
        })
    }

    /// The path's components.
    pub fn components(&self) -> &[String] {
        match self {
            CgroupsPath::Absolute(p) | CgroupsPath::Relative(p) => p,
        }
    }

    /// The directory the path starts from in a hierarchy mounted at `mountpoint` showing the
    /// cgroup `root`, for a process whose own cgroup there is `own` (from `/proc/self/cgroup`).
    pub fn base(&self, mountpoint: &Path, root: &Path, own: Option<&Path>) -> Result<PathBuf> {
        match self {
            CgroupsPath::Absolute(_) => Ok(mountpoint.to_path_buf()),
            CgroupsPath::Relative(p) => {
                let own = own.ok_or_else(|| {
                    invalid(
                        &p.join("/"),
                        &format!(
                            "relative, but this process's cgroup in {} is unknown",
                            mountpoint.display()
                        ),
                    )
                })?;
                let rel = own.strip_prefix(root).unwrap_or(own);
                let mut dir = mountpoint.to_path_buf();
                dir.extend(
                    rel.components()
                        .filter(|c| matches!(c, Component::Normal(_))),
                );
                Ok(dir)
            }
        }
    }

    /// The cgroup's directory: [`base`](Self::base) joined with the components.
    pub fn resolve(&self, mountpoint: &Path, root: &Path, own: Option<&Path>) -> Result<PathBuf> {
        let mut dir = self.base(mountpoint, root, own)?;
        dir.extend(self.components());
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<CgroupsPath> {
        CgroupsPath::parse(Path::new(s))
    }

    #[test]
    fn forms() {
        assert_eq!(
            p("/a//b/./c").unwrap(),
            CgroupsPath::Absolute(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            p("a/b").unwrap(),
            CgroupsPath::Relative(vec!["a".into(), "b".into()])
        );
        assert_eq!(default_path("x1"), Path::new("/fluke/x1"));
        // A relative path with a colon that is not the systemd triple is a plain name.
        assert_eq!(p("a:b").unwrap(), CgroupsPath::Relative(vec!["a:b".into()]));
    }

    #[test]
    fn refused() {
        for bad in ["", "/", "//", "/a/../b", "..", "system.slice:fluke:abc"] {
            assert!(matches!(p(bad), Err(Error::Path { .. })), "{bad:?}");
        }
        let e = p("machine.slice:libpod:abc").unwrap_err().to_string();
        assert!(e.contains("systemd"), "{e}");
    }

    #[test]
    fn resolution() {
        let mnt = Path::new("/sys/fs/cgroup/memory");
        let abs = p("/fluke/c1").unwrap();
        let rel = p("fluke/c1").unwrap();
        let own = Path::new("/process_api/abc");
        assert_eq!(
            abs.resolve(mnt, Path::new("/"), Some(own)).unwrap(),
            Path::new("/sys/fs/cgroup/memory/fluke/c1")
        );
        assert_eq!(
            rel.resolve(mnt, Path::new("/"), Some(own)).unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/abc/fluke/c1")
        );
        // A mount that shows a sub-cgroup as its root: own paths are below it.
        assert_eq!(
            rel.resolve(mnt, Path::new("/process_api"), Some(own))
                .unwrap(),
            Path::new("/sys/fs/cgroup/memory/abc/fluke/c1")
        );
        assert_eq!(
            rel.resolve(mnt, Path::new("/"), Some(Path::new("/")))
                .unwrap(),
            Path::new("/sys/fs/cgroup/memory/fluke/c1")
        );
        assert!(rel.resolve(mnt, Path::new("/"), None).is_err());
    }
}
