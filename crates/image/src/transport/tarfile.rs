//! Reading and writing the tar files that hold whole images (oci-archive, docker-archive).

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Component, Path, PathBuf};

use crate::{ImageError, Result};

/// Where an archive member's bytes come from.
pub(crate) enum Member {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// Writes `members` (in the order given) as a tar file at `out`, atomically: the file
/// appears whole or not at all. Headers are fixed (mode 0644, owner 0, mtime 0) so the same
/// content gives the same bytes.
pub(crate) fn write_archive(out: &Path, members: Vec<(String, Member)>) -> Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(ImageError::io(dir))?;
    {
        let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
        let mut dirs_done = std::collections::BTreeSet::new();
        for (name, member) in members {
            // Parent directories first, once each.
            let mut prefix = PathBuf::new();
            let parents: Vec<_> = Path::new(&name)
                .parent()
                .into_iter()
                .flat_map(|p| p.components())
                .collect();
            for c in parents {
                prefix.push(c);
                if dirs_done.insert(prefix.clone()) {
                    let mut h = header(tar::EntryType::Directory, 0, 0o755);
                    builder
                        .append_data(&mut h, &prefix, io::empty())
                        .map_err(ImageError::io(out))?;
                }
            }
            match member {
                Member::Bytes(b) => {
                    let mut h = header(tar::EntryType::Regular, b.len() as u64, 0o644);
                    builder
                        .append_data(&mut h, &name, &b[..])
                        .map_err(ImageError::io(out))?;
                }
                Member::File(p) => {
                    let f = File::open(&p).map_err(ImageError::io(&p))?;
                    let len = f.metadata().map_err(ImageError::io(&p))?.len();
                    let mut h = header(tar::EntryType::Regular, len, 0o644);
                    builder
                        .append_data(&mut h, &name, f)
                        .map_err(ImageError::io(&p))?;
                }
            }
        }
        let w = builder.into_inner().map_err(ImageError::io(out))?;
        w.into_inner()
            .map_err(|e| ImageError::io(out)(e.into_error()))?
            .sync_data()
            .map_err(ImageError::io(out))?;
    }
    tmp.persist(out).map_err(|e| ImageError::io(out)(e.error))?;
    Ok(())
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// A member name made safe: relative, no `..`, no leading `./`. None when unusable.
pub(crate) fn clean_name(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Extracts the regular files of the tar at `file` under `dest` (a fresh directory),
/// skipping anything that is not a plain file with a clean relative name. `accept` can
/// refuse members by name. Errors name the archive.
pub(crate) fn extract_files(
    file: &Path,
    dest: &Path,
    accept: &dyn Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>> {
    let f = File::open(file).map_err(ImageError::io(file))?;
    let mut ar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
    let mut names = Vec::new();
    let bad =
        |e: io::Error| ImageError::invalid(file.display(), format!("not a valid tar archive: {e}"));
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.header().entry_type() != tar::EntryType::Regular
            && entry.header().entry_type() != tar::EntryType::Continuous
        {
            continue;
        }
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(name) = clean_name(&path) else {
            continue;
        };
        if !accept(&name) {
            continue;
        }
        let target = dest.join(&name);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
        }
        let mut out = File::create(&target).map_err(ImageError::io(&target))?;
        let expected = entry.header().size().map_err(bad)?;
        let n = io::copy(&mut entry, &mut out).map_err(bad)?;
        if n != expected {
            return Err(ImageError::invalid(
                file.display(),
                format!(
                    "truncated archive: {} has {n} of {expected} bytes",
                    name.display()
                ),
            ));
        }
        names.push(name);
    }
    Ok(names)
}
