//! Messages between the runtime and the processes it forks: newline-delimited JSON over
//! close-on-exec pipes, so that nothing of them reaches the container's program.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Msg {
    /// From the intermediate process: the container init's pid (host namespace).
    Pid(i32),
    /// From the container init: set up, waiting for `start`.
    Ready,
    /// From either child: what went wrong.
    Error(String),
    /// From the runtime: carry on (the child is in its cgroup).
    Go,
    /// From the runtime to the container init: the state JSON, for its hooks.
    State(String),
}

pub struct Sender(File);
pub struct Receiver(BufReader<File>);

pub fn pipe() -> Result<(Receiver, Sender)> {
    let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| RuntimeError::io("creating a pipe")(e.into()))?;
    Ok((
        Receiver(BufReader::new(File::from(r))),
        Sender(File::from(w)),
    ))
}

impl Sender {
    pub fn send(&mut self, m: &Msg) -> Result<()> {
        let mut line = serde_json::to_vec(m).expect("messages serialise");
        line.push(b'\n');
        self.0
            .write_all(&line)
            .map_err(RuntimeError::io("sending to the container init"))
    }
}

impl Receiver {
    /// The next message; `None` when the other side closed the pipe.
    pub fn recv(&mut self) -> Result<Option<Msg>> {
        let mut line = String::new();
        let n = self
            .0
            .read_line(&mut line)
            .map_err(RuntimeError::io("reading from the container init"))?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| RuntimeError::Init(format!("bad message from the container init: {e}")))
    }
}
