//! Image references: Docker-style names (`[HOST[:PORT]/]PATH[:TAG][@DIGEST]`) and the
//! transport-qualified references fluke accepts (`docker://…`, `oci:…`, `store:…`, …).

use std::fmt;
use std::path::PathBuf;

use content::Digest;

use crate::ImageError;

/// The registry assumed when a name has none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A normalised Docker-style reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DockerRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn bad(input: &str, why: impl fmt::Display) -> ImageError {
    ImageError::Reference {
        input: input.to_string(),
        message: why.to_string(),
    }
}

impl DockerRef {
    /// Parses and normalises a name: `busybox` → `docker.io/library/busybox:latest` (the
    /// tag is filled in only with `default_tag`).
    pub fn parse(input: &str, default_tag: bool) -> Result<DockerRef, ImageError> {
        if input.is_empty() {
            return Err(bad(input, "empty reference"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|e| bad(input, e))?)),
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(bad(input, format!("invalid tag {t:?}")));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if registry.chars().any(|c| c.is_ascii_uppercase()) && registry != registry.to_lowercase() {
            // Host names are case-insensitive but Docker refuses upper case; so do we.
            return Err(bad(input, "registry host must be lower case"));
        }
        let path = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        validate_path(input, &path)?;
        let tag = tag
            .map(str::to_string)
            .or_else(|| (default_tag && digest.is_none()).then(|| "latest".to_string()));
        Ok(DockerRef {
            registry,
            repository: path,
            tag,
            digest,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag or digest to ask a registry for.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The short form a user would type (`busybox:1` for `docker.io/library/busybox:1`).
    pub fn familiar(&self) -> String {
        let name = if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        let mut s = name;
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for DockerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn validate_path(input: &str, path: &str) -> Result<(), ImageError> {
    if path.is_empty() {
        return Err(bad(input, "missing repository name"));
    }
    for comp in path.split('/') {
        let ok = !comp.is_empty()
            && comp
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && comp
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && comp
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        if !ok {
            return Err(bad(
                input,
                format!(
                    "invalid repository component {comp:?} (lower-case letters, digits and \
                     single separators . _ - only)"
                ),
            ));
        }
    }
    Ok(())
}

/// An image location with its transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`
    Docker(DockerRef),
    /// `oci:DIR[:REF]`
    Oci {
        dir: PathBuf,
        reference: Option<String>,
    },
    /// `oci-archive:FILE[:REF]`
    OciArchive {
        file: PathBuf,
        reference: Option<String>,
    },
    /// `docker-archive:FILE[:NAME:TAG]` (or `:@INDEX` for a source)
    DockerArchive {
        file: PathBuf,
        reference: Option<ArchiveRef>,
    },
    /// `dir:DIR`
    Dir(PathBuf),
    /// `store:NAME[:TAG|@DIGEST]`, the local store
    Store(DockerRef),
}

/// Which image of a docker-archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveRef {
    Named(DockerRef),
    Index(usize),
}

/// The transports fluke knows, as written before the first ':'.
pub const TRANSPORTS: &[&str] = &[
    "docker",
    "oci",
    "oci-archive",
    "docker-archive",
    "dir",
    "store",
];

impl ImageRef {
    /// Parses `TRANSPORT:REST`. With `bare_is_store`, a string without a known transport
    /// prefix is a local store name (for commands that take local images).
    pub fn parse(input: &str, bare_is_store: bool) -> Result<ImageRef, ImageError> {
        let Some((transport, rest)) = input.split_once(':') else {
            if bare_is_store {
                return Ok(ImageRef::Store(DockerRef::parse(input, true)?));
            }
            return Err(bad(
                input,
                "missing transport (e.g. docker://, oci:, dir:, store:)",
            ));
        };
        match transport {
            "docker" => {
                let name = rest.strip_prefix("//").ok_or_else(|| {
                    bad(
                        input,
                        "docker transport needs two slashes: docker://HOST/NAME",
                    )
                })?;
                Ok(ImageRef::Docker(DockerRef::parse(name, true)?))
            }
            "oci" => {
                let (dir, reference) = split_path_ref(input, rest)?;
                if let Some(r) = &reference {
                    validate_oci_ref(input, r)?;
                }
                Ok(ImageRef::Oci { dir, reference })
            }
            "oci-archive" => {
                let (file, reference) = split_path_ref(input, rest)?;
                if let Some(r) = &reference {
                    validate_oci_ref(input, r)?;
                }
                Ok(ImageRef::OciArchive { file, reference })
            }
            "docker-archive" => {
                let (path, r) = match rest.split_once(':') {
                    Some((p, r)) => (p, Some(r)),
                    None => (rest, None),
                };
                if path.is_empty() {
                    return Err(bad(input, "missing archive path"));
                }
                let reference = match r {
                    None | Some("") => None,
                    Some(r) => match r.strip_prefix('@') {
                        Some(n) => Some(ArchiveRef::Index(
                            n.parse()
                                .map_err(|_| bad(input, format!("invalid index @{n}")))?,
                        )),
                        None => {
                            let d = DockerRef::parse(r, false)?;
                            if d.tag.is_none() || d.digest.is_some() {
                                return Err(bad(
                                    input,
                                    "docker-archive names need NAME:TAG (no digest)",
                                ));
                            }
                            Some(ArchiveRef::Named(d))
                        }
                    },
                };
                Ok(ImageRef::DockerArchive {
                    file: PathBuf::from(path),
                    reference,
                })
            }
            "dir" => {
                if rest.is_empty() {
                    return Err(bad(input, "missing directory"));
                }
                Ok(ImageRef::Dir(PathBuf::from(rest)))
            }
            "store" => Ok(ImageRef::Store(DockerRef::parse(rest, true)?)),
            _ if bare_is_store && !TRANSPORTS.contains(&transport) && !input.contains("://") => {
                // `busybox:1`, `127.0.0.1:5000/x:y` and the like: a store name.
                Ok(ImageRef::Store(DockerRef::parse(input, true)?))
            }
            other => Err(bad(
                input,
                format!(
                    "unknown transport {other:?} (known: {})",
                    TRANSPORTS.join(", ")
                ),
            )),
        }
    }

    pub fn transport(&self) -> &'static str {
        match self {
            ImageRef::Docker(_) => "docker",
            ImageRef::Oci { .. } => "oci",
            ImageRef::OciArchive { .. } => "oci-archive",
            ImageRef::DockerArchive { .. } => "docker-archive",
            ImageRef::Dir(_) => "dir",
            ImageRef::Store(_) => "store",
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Docker(d) => write!(f, "docker://{d}"),
            ImageRef::Oci { dir, reference }
            | ImageRef::OciArchive {
                file: dir,
                reference,
            } => {
                write!(f, "{}:{}", self.transport(), dir.display())?;
                if let Some(r) = reference {
                    write!(f, ":{r}")?;
                }
                Ok(())
            }
            ImageRef::DockerArchive { file, reference } => {
                write!(f, "docker-archive:{}", file.display())?;
                match reference {
                    Some(ArchiveRef::Named(d)) => write!(f, ":{d}"),
                    Some(ArchiveRef::Index(i)) => write!(f, ":@{i}"),
                    None => Ok(()),
                }
            }
            ImageRef::Dir(d) => write!(f, "dir:{}", d.display()),
            ImageRef::Store(d) => write!(f, "store:{d}"),
        }
    }
}

/// `PATH[:REF]` where REF is the part after the last ':' (paths with ':' need a REF).
fn split_path_ref(input: &str, rest: &str) -> Result<(PathBuf, Option<String>), ImageError> {
    let (path, reference) = match rest.rsplit_once(':') {
        Some((p, r)) => (p, (!r.is_empty()).then(|| r.to_string())),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(bad(input, "missing path"));
    }
    Ok((PathBuf::from(path), reference))
}

fn validate_oci_ref(input: &str, r: &str) -> Result<(), ImageError> {
    let ok = r
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:@/+=".contains(c));
    if !ok {
        return Err(bad(input, format!("invalid image reference name {r:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_names() {
        let r = DockerRef::parse("busybox", true).unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = DockerRef::parse("127.0.0.1:5000/a/b:v1", true).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "a/b")
        );
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = DockerRef::parse(&format!("localhost/x@{d}"), true).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.reference(), d);
    }

    #[test]
    fn rejects_malformed() {
        for bad in ["", "UPPER", "a//b", "x:", "x:-bad", "x@sha256:12", "-a"] {
            let e = DockerRef::parse(bad, true).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn parses_transports() {
        assert!(matches!(
            ImageRef::parse("docker://busybox", false),
            Ok(ImageRef::Docker(_))
        ));
        assert_eq!(
            ImageRef::parse("oci:/tmp/l:v1", false).unwrap(),
            ImageRef::Oci {
                dir: "/tmp/l".into(),
                reference: Some("v1".into())
            }
        );
        assert_eq!(
            ImageRef::parse("oci:/tmp/l", false).unwrap(),
            ImageRef::Oci {
                dir: "/tmp/l".into(),
                reference: None
            }
        );
        assert!(matches!(
            ImageRef::parse("docker-archive:/t.tar:busybox:1", false).unwrap(),
            ImageRef::DockerArchive {
                reference: Some(ArchiveRef::Named(_)),
                ..
            }
        ));
        assert!(matches!(
            ImageRef::parse("busybox:1", true),
            Ok(ImageRef::Store(_))
        ));
        assert!(matches!(
            ImageRef::parse("127.0.0.1:5000/x:y", true),
            Ok(ImageRef::Store(_))
        ));
        let e = ImageRef::parse("ftp:foo", false).unwrap_err().to_string();
        assert!(e.contains("unknown transport \"ftp\""), "{e}");
        let e = ImageRef::parse("docker:busybox", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("two slashes"), "{e}");
    }
}
