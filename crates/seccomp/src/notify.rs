//! Handing a user-notification listener to the seccomp agent at `listenerPath`.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use crate::error::Error;

/// Connects to the agent's unix stream socket at `path` (`linux.seccomp.listenerPath`) and
/// sends `state_json` with `listener` attached as `SCM_RIGHTS`, as runc does.
///
/// `state_json` is the OCI container process state (runtime-spec `ContainerProcessState`:
/// `ociVersion`, `fds` = `["seccompFd"]` naming the one descriptor, `pid`, `metadata` =
/// `listenerMetadata`, and `state`); oci-spec's `ContainerProcessState` serialises to it.
/// The descriptor travels with the first byte; the rest of a long message follows.
pub fn send_listener(path: &Path, listener: &impl AsFd, state_json: &str) -> Result<(), Error> {
    let err = |what| {
        move |source: rustix::io::Errno| Error::Listener {
            path: path.to_path_buf(),
            what,
            source: source.into(),
        }
    };
    if state_json.is_empty() {
        return Err(Error::Listener {
            path: path.to_path_buf(),
            what: "the container state",
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "is empty"),
        });
    }
    let addr = SocketAddrUnix::new(path).map_err(err("socket address"))?;
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(err("socket"))?;
    rustix::net::connect(&socket, &addr).map_err(err("connect"))?;

    let fds: [BorrowedFd<'_>; 1] = [listener.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Error::Listener {
            path: path.to_path_buf(),
            what: "SCM_RIGHTS",
            source: std::io::Error::other("control buffer too small"),
        });
    }
    let bytes = state_json.as_bytes();
    let mut sent = rustix::net::sendmsg(
        &socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(err("sendmsg"))?;
    while sent < bytes.len() {
        sent +=
            rustix::net::send(&socket, &bytes[sent..], SendFlags::NOSIGNAL).map_err(err("send"))?;
    }
    Ok(())
}
