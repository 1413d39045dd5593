//! Credentials from Docker/Podman auth files and the parsing of `WWW-Authenticate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("credentials {0:?}: expected USER:PASSWORD")]
    Format(String),
}

impl Credentials {
    /// Parses `USER:PASSWORD` as given to `--creds`.
    pub fn parse(s: &str) -> Result<Credentials, CredentialsError> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(CredentialsError::Format(s.chars().take(40).collect())),
        }
    }

    /// Looks the registry up in the auth files a user of Docker or Podman would have:
    /// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. The first file that has an
    /// entry for the host wins. A file that exists but cannot be parsed is an error.
    pub fn from_auth_files(registry: &str) -> Result<Option<Credentials>, CredentialsError> {
        for path in auth_file_candidates() {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Some(c) = lookup(&path, &text, registry)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

fn auth_file_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        out.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR") {
        out.push(Path::new(&p).join("containers/auth.json"));
    }
    if let Some(p) = std::env::var_os("DOCKER_CONFIG") {
        out.push(Path::new(&p).join("config.json"));
    } else if let Some(home) = std::env::var_os("HOME") {
        out.push(Path::new(&home).join(".docker/config.json"));
    }
    out
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

/// The keys under which an auth file may list `registry`.
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v2/"),
        format!("https://{registry}/v1/"),
    ];
    if registry == "docker.io" || registry == "registry-1.docker.io" {
        keys.push("https://index.docker.io/v1/".to_string());
        keys.push("index.docker.io".to_string());
        keys.push("docker.io".to_string());
    }
    keys
}

fn lookup(
    path: &Path,
    text: &str,
    registry: &str,
) -> Result<Option<Credentials>, CredentialsError> {
    let file: AuthFile = serde_json::from_str(text).map_err(|e| CredentialsError::File {
        path: path.to_path_buf(),
        message: format!("not a valid auth file: {e}"),
    })?;
    for key in keys_for(registry) {
        let Some(entry) = file.auths.get(&key) else {
            continue;
        };
        if let Some(auth) = &entry.auth {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| CredentialsError::File {
                    path: path.to_path_buf(),
                    message: format!("auths.{key:?}.auth is not base64: {e}"),
                })?;
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let (u, p) = raw.split_once(':').ok_or_else(|| CredentialsError::File {
                path: path.to_path_buf(),
                message: format!("auths.{key:?}.auth does not decode to USER:PASSWORD"),
            })?;
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }));
        }
        if let Some(t) = &entry.identity_token {
            return Ok(Some(Credentials {
                username: "<token>".to_string(),
                password: t.clone(),
            }));
        }
    }
    Ok(None)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value (`Bearer realm="…",service="…",scope="…"`).
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
    })
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(parse_challenge("Basic realm=\"x\""), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn reads_auth_files() {
        let text = r#"{"auths":{"127.0.0.1:5000":{"auth":"dXNlcjpwYXNz"},
            "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="}}}"#;
        let p = Path::new("config.json");
        let c = lookup(p, text, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pass"));
        let c = lookup(p, text, "docker.io").unwrap().unwrap();
        assert_eq!(c.username, "hub");
        assert!(lookup(p, text, "other:1").unwrap().is_none());
        let err = lookup(p, "{not json", "x").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("config.json: not a valid auth file"));
    }

    #[test]
    fn parses_creds_flag() {
        assert_eq!(Credentials::parse("a:b:c").unwrap().password, "b:c");
        assert!(Credentials::parse("nocolon").is_err());
    }
}
