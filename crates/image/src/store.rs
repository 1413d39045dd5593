//! The local image store: an OCI image layout whose index names images by their full
//! reference (`docker.io/library/busybox:1`), with garbage collection and a checker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use content::Digest;

use crate::layout::Layout;
use crate::manifest::{Descriptor, Manifest, REF_NAME};
use crate::reference::DockerRef;
use crate::transport::{LayoutDestination, LayoutSource};
use crate::{ImageError, Result};

pub struct ImageStore {
    layout: Layout,
}

/// One named image in the store.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub name: DockerRef,
    pub descriptor: Descriptor,
}

/// What `gc` removed.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub removed: Vec<Digest>,
    pub bytes: u64,
}

/// An image name and what is wrong with it.
pub type Problem = (String, String);

/// What `fsck` found (and, repairing, removed).
#[derive(Debug, Default, Clone)]
pub struct StoreFsck {
    pub blobs: content::FsckReport,
    /// Images whose manifests or blobs are missing or unreadable: (name, problem).
    pub broken: Vec<Problem>,
}

impl StoreFsck {
    pub fn is_clean(&self) -> bool {
        self.blobs.is_clean() && self.broken.is_empty()
    }
}

impl ImageStore {
    /// Opens the store at `root`, creating it when absent.
    pub fn open(root: impl AsRef<Path>) -> Result<ImageStore> {
        Ok(ImageStore {
            layout: Layout::create(root.as_ref())?,
        })
    }

    pub fn root(&self) -> &Path {
        self.layout.dir()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The image a name refers to: by tag, or by digest (any image with that manifest).
    pub fn resolve(&self, name: &DockerRef) -> Result<Descriptor> {
        let idx = self.layout.index()?;
        let found = match &name.digest {
            Some(d) => idx.manifests.into_iter().find(|m| {
                &m.digest == d
                    && m.annotation(REF_NAME)
                        .and_then(|n| DockerRef::parse(n, true).ok())
                        .is_some_and(|r| {
                            r.registry == name.registry && r.repository == name.repository
                        })
            }),
            None => {
                let want = name.to_string();
                idx.manifests
                    .into_iter()
                    .find(|m| m.annotation(REF_NAME) == Some(want.as_str()))
            }
        };
        found.ok_or_else(|| ImageError::NotFound(format!("store:{}", name.familiar())))
    }

    pub fn source(&self, name: &DockerRef) -> Result<LayoutSource> {
        let top = self.resolve(name)?;
        Ok(LayoutSource::with(
            self.layout.clone(),
            top,
            format!("store:{}", name.familiar()),
        ))
    }

    pub fn destination(&self, name: &DockerRef) -> Result<LayoutDestination> {
        if name.digest.is_some() {
            return Err(ImageError::invalid(
                format!("store:{name}"),
                "a store destination needs a tag, not a digest",
            ));
        }
        LayoutDestination::with(
            self.layout.clone(),
            Some(name.to_string()),
            format!("store:{}", name.familiar()),
        )
    }

    /// Every named image, sorted by name.
    pub fn list(&self) -> Result<Vec<StoredImage>> {
        let mut out: Vec<StoredImage> = self
            .layout
            .index()?
            .manifests
            .into_iter()
            .filter_map(|d| {
                let name = DockerRef::parse(d.annotation(REF_NAME)?, true).ok()?;
                Some(StoredImage {
                    name,
                    descriptor: d,
                })
            })
            .collect();
        out.sort_by_key(|i| i.name.to_string());
        Ok(out)
    }

    /// Gives the image `from` the additional name `to`.
    pub fn tag(&self, from: &DockerRef, to: &DockerRef) -> Result<()> {
        let desc = self.resolve(from)?;
        let mut clean = desc.clone();
        clean.annotations = None;
        self.layout.add(clean, Some(&to.to_string()))
    }

    /// Removes a name. Blobs no other image uses are removed by [`ImageStore::gc`].
    pub fn remove(&self, name: &DockerRef) -> Result<()> {
        let key = match &name.digest {
            Some(_) => self
                .resolve(name)?
                .annotation(REF_NAME)
                .map(str::to_string)
                .unwrap_or_default(),
            None => name.to_string(),
        };
        if !self.layout.remove(&key)? {
            return Err(ImageError::NotFound(format!("store:{}", name.familiar())));
        }
        Ok(())
    }

    /// The blobs reachable from the index, and the problems met on the way.
    fn reachable(&self) -> Result<(BTreeSet<Digest>, Vec<Problem>)> {
        let store = self.layout.store();
        let mut seen = BTreeSet::new();
        let mut problems = Vec::new();
        for top in self.layout.index()?.manifests {
            let name = top
                .annotation(REF_NAME)
                .map_or_else(|| top.digest.to_string(), str::to_string);
            let mut stack = vec![top];
            while let Some(d) = stack.pop() {
                if !seen.insert(d.digest.clone()) {
                    continue;
                }
                if !crate::manifest::is_index_type(&d.media_type)
                    && !crate::manifest::is_manifest_type(&d.media_type)
                {
                    if !store.contains(&d.digest) {
                        problems.push((name.clone(), format!("blob {} is missing", d.digest)));
                    }
                    continue;
                }
                let bytes = match store.read(&d.digest) {
                    Ok(b) => b,
                    Err(e) => {
                        problems.push((name.clone(), e.to_string()));
                        continue;
                    }
                };
                match Manifest::parse(&bytes, &d.media_type, &format!("manifest {}", d.digest)) {
                    Ok(Manifest::Index(i)) => stack.extend(i.manifests),
                    Ok(m) => stack.extend(m.blobs().into_iter().cloned()),
                    Err(e) => problems.push((name.clone(), e.to_string())),
                }
            }
        }
        Ok((seen, problems))
    }

    /// Removes every blob no named image reaches. Waits for copies in progress.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.layout.lock(true)?;
        let (keep, _) = self.reachable()?;
        let mut report = GcReport::default();
        let store = self.layout.store();
        for d in store.list()? {
            if !keep.contains(&d) {
                report.bytes += store.size(&d).unwrap_or(0);
                store.remove(&d)?;
                report.removed.push(d);
            }
        }
        Ok(report)
    }

    /// Re-hashes every blob and checks that every named image is whole. With `repair`,
    /// removes corrupt blobs and leftovers, and the names of images that are not whole (so
    /// that pulling them again completes them).
    pub fn fsck(&self, repair: bool) -> Result<StoreFsck> {
        let _lock = self.layout.lock(true)?;
        let blobs = self.layout.store().fsck(repair)?;
        let (_, broken) = self.reachable()?;
        if repair {
            let names: BTreeSet<&str> = broken.iter().map(|(n, _)| n.as_str()).collect();
            for n in names {
                self.layout.remove(n)?;
            }
        }
        Ok(StoreFsck { blobs, broken })
    }
}

/// The store directory: `--root`, else `$FLUKE_ROOT`, else `/var/lib/fluke` for root and
/// `$XDG_DATA_HOME/fluke` (or `~/.local/share/fluke`) for others.
pub fn default_root() -> PathBuf {
    if let Some(r) = std::env::var_os("FLUKE_ROOT") {
        return PathBuf::from(r);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/fluke");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return Path::new(&d).join("fluke");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    Path::new(&home).join(".local/share/fluke")
}
