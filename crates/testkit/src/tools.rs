//! Finding the peer tools the interop tests drive, and running them loudly.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Tool name → the Debian package that ships it.
const PACKAGES: &[(&str, &str)] = &[
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("docker-registry", "docker-registry"),
    ("podman", "podman"),
    ("busybox", "busybox-static"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("jq", "jq"),
];

/// The Debian package that provides `tool`, if the table knows it.
pub fn debian_package(tool: &str) -> Option<&'static str> {
    PACKAGES.iter().find(|(t, _)| *t == tool).map(|(_, p)| *p)
}

/// Looks `name` up on `$PATH` (plus the sbin directories), without panicking.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The full path of `name`; panics naming the Debian package to install if it is missing.
pub fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        let package = debian_package(name).unwrap_or(name);
        panic!(
            "{name} not found: install Debian package {package} (the README's test command does)"
        )
    })
}

/// Runs `cmd` to completion and returns its stdout (lossy UTF-8). On failure to start or a
/// non-zero exit it panics with the full command line, the status, stdout and stderr.
pub fn run(cmd: &mut Command) -> String {
    let output = run_output(cmd);
    if !output.status.success() {
        panic!("{}", describe_failure(cmd, &output));
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `cmd` to completion and returns its `Output` whatever the exit status (it panics only
/// if the command cannot be started). Useful for commands that are expected to fail.
pub fn run_output(cmd: &mut Command) -> Output {
    cmd.stdin(std::process::Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", command_line(cmd)))
}

/// A readable report of a finished command: command line, status, stdout and stderr.
pub fn describe_failure(cmd: &Command, output: &Output) -> String {
    format!(
        "command failed: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        command_line(cmd),
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end(),
    )
}

/// The command as a shell-like line (environment overrides and working directory included).
pub fn command_line(cmd: &Command) -> String {
    let mut parts = Vec::new();
    if let Some(dir) = cmd.get_current_dir() {
        parts.push(format!("(cd {} &&)", quote(dir.as_os_str())));
    }
    for (key, value) in cmd.get_envs() {
        let key = key.to_string_lossy();
        match value {
            Some(v) => parts.push(format!("{key}={}", quote(v))),
            None => parts.push(format!("-u {key}")),
        }
    }
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes() {
        let mut cmd = Command::new("echo");
        cmd.arg("a b").arg("it's").arg("plain");
        assert_eq!(command_line(&cmd), r"echo 'a b' 'it'\''s' plain");
    }

    #[test]
    #[should_panic(expected = "definitely-not-a-tool not found: install Debian package")]
    fn missing_tool_names_package() {
        require_tool("definitely-not-a-tool");
    }

    #[test]
    #[should_panic(expected = "status: exit status: 3")]
    fn run_reports_failure() {
        run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
    }
}
