//! A minimal Bearer-token server for the registry's `auth.token` mode (the "realm flow").
//!
//! It answers `GET /token?service=..&scope=..` (and the OAuth2 `POST /token` form) with a JWT
//! signed ES256 by a key whose self-signed certificate the registry trusts. The JWT header
//! carries the certificate in `x5c`, which is how distribution 2.8 finds the verifying key.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::tools::{require_tool, run};

/// The `issuer` the registry is told to expect.
pub const ISSUER: &str = "testkit-token-issuer";
/// Token lifetime in seconds.
const EXPIRES_IN: u64 = 300;

/// The key pair that signs tokens and the certificate (PEM file) the registry trusts.
struct Signer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    cert_pem_path: PathBuf,
    rng: SystemRandom,
}

impl Signer {
    /// Makes a P-256 key and a self-signed certificate for it with the `openssl` CLI.
    fn create(dir: &Path) -> Signer {
        let openssl = require_tool("openssl");
        let key_path = dir.join("token-signer.key");
        let cert_pem_path = dir.join("token-signer.crt");
        run(Command::new(openssl)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=testkit token signer", "-keyout"])
            .arg(&key_path)
            .arg("-out")
            .arg(&cert_pem_path));
        let pkcs8 = pem_body(&key_path, "PRIVATE KEY");
        let cert_der = pem_body(&cert_pem_path, "CERTIFICATE");
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .unwrap_or_else(|e| panic!("ring rejects the key openssl made: {e}"));
        Signer {
            key,
            cert_der,
            cert_pem_path,
            rng,
        }
    }

    /// A compact JWS (ES256) over `claims`.
    fn sign(&self, claims: &Value) -> String {
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let mut jws = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, jws.as_bytes())
            .expect("ECDSA signing failed");
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        jws
    }

    #[cfg(test)]
    fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        self.key.public_key().as_ref().to_vec()
    }
}

/// The body of the first `-----BEGIN {label}-----` block of a PEM file, decoded.
fn pem_body(path: &Path, label: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body: String = text
        .lines()
        .skip_while(|l| l.trim() != begin)
        .skip(1)
        .take_while(|l| l.trim() != end)
        .collect();
    STANDARD
        .decode(body.trim())
        .unwrap_or_else(|e| panic!("bad PEM block {label} in {}: {e}", path.display()))
}

struct State {
    signer: Signer,
    service: String,
    credentials: Option<(String, String)>,
    requests: AtomicUsize,
    scopes: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A running token server; stops (and joins its thread) on drop.
pub(crate) struct TokenServer {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Starts a token server for `service`; with `credentials`, token requests must carry
    /// them as HTTP basic auth (else 401), without, anyone gets a token.
    pub(crate) fn start(
        dir: &Path,
        service: &str,
        credentials: Option<(String, String)>,
    ) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let addr = listener.local_addr().expect("token server address");
        let state = Arc::new(State {
            signer: Signer::create(dir),
            service: service.to_string(),
            credentials,
            requests: AtomicUsize::new(0),
            scopes: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accept_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("testkit-token-server".into())
            .spawn(move || accept_loop(listener, accept_state))
            .expect("spawn token server thread");
        TokenServer {
            addr,
            state,
            thread: Some(thread),
        }
    }

    pub(crate) fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub(crate) fn cert_path(&self) -> &Path {
        &self.state.signer.cert_pem_path
    }

    pub(crate) fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub(crate) fn scopes(&self) -> Vec<String> {
        self.state.scopes.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let state = Arc::clone(&state);
        // One short-lived thread per connection: a slow client cannot block the others.
        let _ = std::thread::Builder::new()
            .name("testkit-token-conn".into())
            .spawn(move || {
                let _ = handle_connection(stream, &state);
            });
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    body: String,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Request> {
    let mut reader = BufReader::new(stream.take(1 << 20));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let mut authorization = None;
    let mut content_length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.to_string()),
                "content-length" => content_length = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; content_length.min(1 << 16)];
    reader.read_exact(&mut body)?;
    Ok(Request {
        method,
        path,
        query,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn handle_connection(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = read_request(&stream)?;
    let (status, extra_header, body) = respond(&request, state);
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_header}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// Decides the answer: (status line text, extra header lines, JSON body).
fn respond(request: &Request, state: &State) -> (&'static str, String, String) {
    let error = |status, message: &str| {
        let body = json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]});
        (status, String::new(), body.to_string())
    };
    if request.path != "/token" {
        return error("404 Not Found", "no such endpoint");
    }
    // GET carries everything in the query; the OAuth2 POST carries a form body with
    // the credentials in it (grant_type=password) and possibly in the header too.
    let params = match request.method.as_str() {
        "GET" => parse_form(&request.query),
        "POST" => parse_form(&request.body),
        _ => return error("405 Method Not Allowed", "use GET or POST"),
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let presented = request
        .authorization
        .as_deref()
        .and_then(parse_basic)
        .or_else(|| Some((param("username")?, param("password")?)));
    state.requests.fetch_add(1, Ordering::SeqCst);
    let subject = match (&state.credentials, presented) {
        (None, presented) => presented.map(|(u, _)| u).unwrap_or_default(),
        (Some(expected), Some(given)) if *expected == given => given.0,
        (Some(_), _) => {
            let mut response = error("401 Unauthorized", "bad or missing credentials");
            response.1 = "WWW-Authenticate: Basic realm=\"testkit-token\"\r\n".into();
            return response;
        }
    };
    let service = param("service").unwrap_or_else(|| state.service.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string))
        .filter(|s| !s.is_empty())
        .collect();
    state.scopes.lock().unwrap().extend(scopes.iter().cloned());
    let access: Vec<Value> = scopes.iter().filter_map(|s| access_entry(s)).collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970");
    let claims = json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": service,
        "exp": now.as_secs() + EXPIRES_IN,
        "nbf": now.as_secs().saturating_sub(10),
        "iat": now.as_secs(),
        "jti": format!("testkit-{}-{}", state.requests.load(Ordering::SeqCst), now.as_nanos()),
        "access": access,
    });
    let token = state.signer.sign(&claims);
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": EXPIRES_IN,
    });
    ("200 OK", String::new(), body.to_string())
}

/// `repository:name/space:pull,push` → `{"type", "name", "actions"}`, granting everything
/// asked. The type may carry a class (`repository(plugin)`); the name may contain colons.
fn access_entry(scope: &str) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    let kind = kind.split('(').next().unwrap_or(kind);
    Some(json!({"type": kind, "name": name, "actions": actions}))
}

/// `Basic base64(user:pass)` → (user, pass).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// `a=1&b=x%3Ay&b=z` → [(a, 1), (b, x:y), (b, z)] (application/x-www-form-urlencoded).
fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn form_decoding() {
        let form = parse_form("service=reg&scope=repository%3Aa%2Fb%3Apull%2Cpush&x=a+b");
        assert_eq!(form[1].1, "repository:a/b:pull,push");
        assert_eq!(form[2].1, "a b");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn scope_to_access() {
        let entry = access_entry("repository(plugin):host:5000/x:pull").unwrap();
        assert_eq!(
            entry,
            json!({"type": "repository", "name": "host:5000/x", "actions": ["pull"]})
        );
    }

    #[test]
    fn jwt_verifies_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Signer::create(dir.path());
        let jwt = signer.sign(&json!({"sub": "me"}));
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let message = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, signer.public_key())
            .verify(message.as_bytes(), &signature)
            .expect("signature verifies");
    }
}
