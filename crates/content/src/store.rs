use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Algorithm, Digest, Hasher};

/// Errors of the blob store. Each names the blob or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {expected}: content hashes to {actual}; discarded")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: expected {expected} bytes, got {actual}; discarded")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the store")]
    NotFound(Digest),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A content-addressed blob store rooted at a directory.
///
/// Layout: `ROOT/blobs/<algorithm>/<hex>` for committed blobs (the OCI image-layout shape),
/// `ROOT/ingest/` for writes in progress. Whatever is in `ingest/` is not part of the store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What [`Store::fsck`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub checked: usize,
    /// Blobs whose content did not match their name (removed when repairing).
    pub corrupt: Vec<Digest>,
    /// Files under `blobs/` that are not named like a digest (removed when repairing).
    pub stray: Vec<PathBuf>,
    /// Unfinished writes left in `ingest/` (removed when repairing).
    pub partial: Vec<PathBuf>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.stray.is_empty() && self.partial.is_empty()
    }
}

static INGEST_SEQ: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating when absent) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        for dir in [root.join("blobs").join("sha256"), root.join("ingest")] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(Store { root })
    }

    /// A store over an existing directory, creating nothing until a blob is written
    /// (for reading layouts that belong to someone else).
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// Removes the ingest directory when nothing is in it (keeps foreign layouts tidy).
    pub fn tidy(&self) {
        let _ = fs::remove_dir(self.root.join("ingest"));
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The size of a present blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, StoreError> {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err(&self.blob_path(digest))(e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::NotFound(digest.clone())
            } else {
                io_err(&path)(e)
            }
        })
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut buf = Vec::new();
        let path = self.blob_path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut buf)
            .map_err(io_err(&path))?;
        Ok(buf)
    }

    /// Starts writing a blob. With `expected` set, commit fails unless the content hashes to
    /// it; with `size` set, unless it has exactly that many bytes.
    pub fn ingest(
        &self,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<Ingest, StoreError> {
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let seq = INGEST_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}-{}-{}.partial",
            expected.map_or("new", |d| d.short()),
            std::process::id(),
            seq
        );
        let dir = self.root.join("ingest");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(Ingest {
            store: self.clone(),
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            path,
            hasher: Some(Hasher::new(algorithm)),
            written: 0,
            expected: expected.cloned(),
            size,
        })
    }

    /// Stores `data` and returns its digest.
    pub fn put(&self, data: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::sha256_of(data);
        if self.contains(&digest) {
            return Ok(digest);
        }
        let mut w = self.ingest(Some(&digest), Some(data.len() as u64))?;
        w.write_all(data).map_err(io_err(&w.path.clone()))?;
        w.commit()
    }

    /// Copies everything `reader` yields into the store, checking it against `expected`.
    pub fn put_reader(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<Digest, StoreError> {
        let mut w = self.ingest(expected, size)?;
        let path = w.path.clone();
        io::copy(reader, &mut w).map_err(io_err(&path))?;
        w.commit()
    }

    /// Removes a blob; absent blobs are not an error.
    pub fn remove(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Every committed blob.
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        let blobs = self.root.join("blobs");
        for algo in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let algo = algo.map_err(io_err(&blobs))?;
            let Some(algo_name) = algo.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let dir = algo.path();
            if !dir.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let entry = entry.map_err(io_err(&dir))?;
                let name = entry.file_name();
                if let Ok(d) = format!("{algo_name}:{}", name.to_string_lossy()).parse() {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes every blob and looks for leftovers; with `repair`, removes what is wrong.
    pub fn fsck(&self, repair: bool) -> Result<FsckReport, StoreError> {
        let mut report = FsckReport::default();
        let blobs = self.root.join("blobs");
        for algo in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let algo = algo.map_err(io_err(&blobs))?;
            let dir = algo.path();
            if !dir.is_dir() {
                report.stray.push(dir);
                continue;
            }
            let algo_name = algo.file_name().to_string_lossy().into_owned();
            for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let entry = entry.map_err(io_err(&dir))?;
                let path = entry.path();
                let parsed: Option<Digest> =
                    format!("{algo_name}:{}", entry.file_name().to_string_lossy())
                        .parse()
                        .ok();
                let Some(digest) = parsed.filter(|_| path.is_file()) else {
                    report.stray.push(path);
                    continue;
                };
                report.checked += 1;
                let mut h = Hasher::new(digest.algorithm());
                let mut f = File::open(&path).map_err(io_err(&path))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).map_err(io_err(&path))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                if h.finish() != digest {
                    report.corrupt.push(digest);
                }
            }
        }
        let ingest = self.root.join("ingest");
        if ingest.is_dir() {
            for entry in fs::read_dir(&ingest).map_err(io_err(&ingest))? {
                report.partial.push(entry.map_err(io_err(&ingest))?.path());
            }
        }
        report.stray.sort();
        report.partial.sort();
        if repair {
            for d in &report.corrupt {
                self.remove(d)?;
            }
            for p in report.stray.iter().chain(&report.partial) {
                let r = if p.is_dir() {
                    fs::remove_dir_all(p)
                } else {
                    fs::remove_file(p)
                };
                r.map_err(io_err(p))?;
            }
        }
        Ok(report)
    }
}

/// A blob being written. Hashes as it goes; [`Ingest::commit`] verifies and publishes it.
/// Dropped without a commit, it removes its temporary file.
pub struct Ingest {
    store: Store,
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Option<Hasher>,
    written: u64,
    expected: Option<Digest>,
    size: Option<u64>,
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks size and digest, flushes to disk and renames into place.
    pub fn commit(mut self) -> Result<Digest, StoreError> {
        let actual = self
            .hasher
            .take()
            .expect("hasher present until commit")
            .finish();
        if let Some(size) = self.size {
            if size != self.written {
                return Err(StoreError::SizeMismatch {
                    digest: self
                        .expected
                        .as_ref()
                        .map_or_else(|| actual.to_string(), Digest::to_string),
                    expected: size,
                    actual: self.written,
                });
            }
        }
        if let Some(expected) = &self.expected {
            if *expected != actual {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let path = self.path.clone();
        let file = self
            .file
            .take()
            .expect("file present until commit")
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        file.sync_data().map_err(io_err(&path))?;
        drop(file);
        let dest = self.store.blob_path(&actual);
        if dest.is_file() {
            // Another writer got there first; its copy is equally good.
            let _ = fs::remove_file(&path);
            self.path = PathBuf::new();
            return Ok(actual);
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::rename(&path, &dest).map_err(io_err(&dest))?;
        // The temporary name is gone; nothing for Drop to clean.
        self.path = PathBuf::new();
        Ok(actual)
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self
            .file
            .as_mut()
            .expect("file present until commit")
            .write(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.written += n as u64;
        if let Some(size) = self.size {
            if self.written > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than the {size} bytes announced"),
                ));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_and_reject_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put(b"hello").unwrap();
        assert_eq!(store.read(&d).unwrap(), b"hello");
        assert_eq!(store.list().unwrap(), vec![d.clone()]);

        let wrong = Digest::sha256_of(b"other");
        let mut w = store.ingest(Some(&wrong), None).unwrap();
        w.write_all(b"not other").unwrap();
        let err = w.commit().unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&wrong.to_string()));
        assert!(!store.contains(&wrong));
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn size_is_enforced_and_drop_cleans() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.ingest(None, Some(3)).unwrap();
        assert!(w.write_all(b"four").is_err());
        drop(w);
        let w = store.ingest(None, Some(3)).unwrap();
        assert!(matches!(w.commit(), Err(StoreError::SizeMismatch { .. })));
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn fsck_finds_and_repairs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = store.put(b"good").unwrap();
        let bad = store.put(b"bad").unwrap();
        fs::write(store.blob_path(&bad), b"tampered").unwrap();
        fs::write(dir.path().join("ingest/x.partial"), b"half").unwrap();
        let report = store.fsck(false).unwrap();
        assert_eq!(report.checked, 2);
        assert_eq!(report.corrupt, vec![bad.clone()]);
        assert_eq!(report.partial.len(), 1);
        assert!(store.contains(&bad));
        let report = store.fsck(true).unwrap();
        assert!(!report.is_clean());
        assert!(!store.contains(&bad) && store.contains(&good));
        assert!(store.fsck(false).unwrap().is_clean());
    }
}
