//! OCI image layouts (`oci-layout`, `index.json`, `blobs/`): read, written and locked.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use content::Store;

use crate::manifest::{to_json, Descriptor, Index, OCI_INDEX, REF_NAME};
use crate::{ImageError, Result};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_JSON: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
    store: Store,
}

/// Holds an `flock` on a layout directory until dropped.
pub struct LockGuard {
    _file: File,
}

impl Layout {
    /// Opens an existing layout; an error names the directory when it is not one.
    pub fn open(dir: &Path) -> Result<Layout> {
        let marker = dir.join(LAYOUT_FILE);
        let text = fs::read(&marker).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ImageError::invalid(
                    dir.display(),
                    "not an OCI image layout (no oci-layout file)",
                )
            } else {
                ImageError::io(&marker)(e)
            }
        })?;
        let v: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| ImageError::invalid(marker.display(), format!("invalid JSON: {e}")))?;
        if v.get("imageLayoutVersion")
            .and_then(|v| v.as_str())
            .is_none()
        {
            return Err(ImageError::invalid(
                marker.display(),
                "no imageLayoutVersion",
            ));
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
            store: Store::at(dir),
        })
    }

    /// Opens a layout, creating an empty one when the directory is absent or empty.
    /// Creation survives being killed at any point: a new directory is built beside its
    /// final name and renamed into place, an existing empty one gets `oci-layout` last,
    /// and a directory holding only the parts of a layout is an unfinished creation that
    /// is completed.
    pub fn create(dir: &Path) -> Result<Layout> {
        if dir.join(LAYOUT_FILE).exists() {
            let layout = Layout::open(dir)?;
            if !dir.join("index.json").exists() {
                write_atomic(&dir.join("index.json"), &to_json(&empty_index()))?;
            }
            return Ok(layout);
        }
        if !dir.exists() {
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
            let tmp = tempfile::Builder::new()
                .prefix(".tmp-layout-")
                .tempdir_in(parent)
                .map_err(ImageError::io(parent))?;
            populate(tmp.path())?;
            let tmp_path = tmp.keep();
            if let Err(e) = fs::rename(&tmp_path, dir) {
                let _ = fs::remove_dir_all(&tmp_path);
                if !dir.join(LAYOUT_FILE).exists() {
                    return Err(ImageError::io(dir)(e));
                }
            }
            return Layout::open(dir);
        }
        let ours = |name: &str| {
            matches!(name, "index.json" | "blobs" | "ingest") || name.starts_with(".tmp-")
        };
        for e in fs::read_dir(dir).map_err(ImageError::io(dir))? {
            let e = e.map_err(ImageError::io(dir))?;
            if !ours(&e.file_name().to_string_lossy()) {
                return Err(ImageError::invalid(
                    dir.display(),
                    "directory is not empty and not an OCI image layout",
                ));
            }
        }
        populate(dir)?;
        Layout::open(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Takes the layout's lock: shared while blobs are added, exclusive to collect garbage.
    pub fn lock(&self, exclusive: bool) -> Result<LockGuard> {
        use rustix::fs::{flock, FlockOperation};
        let file = File::open(&self.dir).map_err(ImageError::io(&self.dir))?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        flock(&file, op).map_err(|e| ImageError::io(&self.dir)(e.into()))?;
        Ok(LockGuard { _file: file })
    }

    pub fn index(&self) -> Result<Index> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(ImageError::io(&path))?;
        let idx: Index =
            serde_json::from_slice(&bytes).map_err(|e| ImageError::InvalidManifest {
                what: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(idx)
    }

    /// Finds an image by its `ref.name` annotation (a tag) or, with no name, the layout's
    /// only image.
    pub fn find(&self, reference: Option<&str>) -> Result<Descriptor> {
        let idx = self.index()?;
        let what = || match reference {
            Some(r) => format!("{}:{r}", self.dir.display()),
            None => self.dir.display().to_string(),
        };
        match reference {
            Some(r) => idx
                .manifests
                .into_iter()
                .find(|d| d.annotation(REF_NAME) == Some(r) || d.digest.to_string() == r)
                .ok_or_else(|| ImageError::NotFound(what())),
            None => match idx.manifests.len() {
                1 => Ok(idx.manifests.into_iter().next().expect("one entry")),
                0 => Err(ImageError::NotFound(what())),
                n => Err(ImageError::invalid(
                    what(),
                    format!("the layout holds {n} images: name one (oci:DIR:REF)"),
                )),
            },
        }
    }

    /// Adds `desc` to the index under `name` (replacing an entry of the same name), or
    /// unnamed (once per digest). Index updates hold the exclusive lock briefly.
    pub fn add(&self, mut desc: Descriptor, name: Option<&str>) -> Result<()> {
        self.update_index(|idx| {
            if let Some(n) = name {
                idx.manifests.retain(|d| d.annotation(REF_NAME) != Some(n));
                desc.annotations
                    .get_or_insert_with(Default::default)
                    .insert(REF_NAME.to_string(), n.to_string());
            } else if idx
                .manifests
                .iter()
                .any(|d| d.digest == desc.digest && d.annotation(REF_NAME).is_none())
            {
                return false;
            }
            idx.manifests.push(desc);
            true
        })
    }

    /// Removes the entry named `name`; true when there was one.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let mut found = false;
        self.update_index(|idx| {
            let before = idx.manifests.len();
            idx.manifests
                .retain(|d| d.annotation(REF_NAME) != Some(name));
            found = idx.manifests.len() != before;
            found
        })?;
        Ok(found)
    }

    fn update_index(&self, change: impl FnOnce(&mut Index) -> bool) -> Result<()> {
        use rustix::fs::{flock, FlockOperation};
        // Index writers lock `oci-layout`, which is never replaced (index.json is, by
        // rename), and not the directory, which a pull in progress holds shared.
        let lock_path = self.dir.join(LAYOUT_FILE);
        let lock = File::open(&lock_path).map_err(ImageError::io(&lock_path))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| ImageError::io(&lock_path)(e.into()))?;
        let mut idx = self.index()?;
        if change(&mut idx) {
            idx.media_type.get_or_insert_with(|| OCI_INDEX.to_string());
            write_atomic(&self.dir.join("index.json"), &to_json(&idx))?;
        }
        Ok(())
    }
}

fn empty_index() -> Index {
    Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests: Vec::new(),
        annotations: None,
    }
}

/// Fills `dir` with an empty layout; `oci-layout`, the marker, comes last.
fn populate(dir: &Path) -> Result<()> {
    Store::open(dir)?;
    if !dir.join("index.json").exists() {
        write_atomic(&dir.join("index.json"), &to_json(&empty_index()))?;
    }
    write_atomic(&dir.join(LAYOUT_FILE), LAYOUT_JSON)
}

/// Writes a file through a temporary name and a rename, so readers see old or new.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(ImageError::io(dir))?;
    tmp.write_all(data).map_err(ImageError::io(path))?;
    tmp.as_file().sync_data().map_err(ImageError::io(path))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| ImageError::io(path)(e.error))?;
    Ok(())
}
