//! Decompression on a producer thread, handing large buffers to the writing thread.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use crate::compression::{decompress, BUF_SIZE};

/// Buffers queued between the threads (besides the one each side is working on).
pub(crate) const IN_FLIGHT: usize = 6;

pub(crate) enum Msg {
    Data(Vec<u8>),
    /// The current layer's stream is complete.
    End,
    Fail(io::Error),
}

/// Decompresses each layer in turn into `tx`, reusing the buffers that come back on
/// `recycled`. Stops early when the receiving side is gone (it failed).
pub(crate) fn produce<R: Read>(
    layers: impl IntoIterator<Item = R>,
    tx: SyncSender<Msg>,
    recycled: Receiver<Vec<u8>>,
) {
    for r in layers {
        if !produce_one(r, &tx, &recycled) {
            return;
        }
    }
}

fn produce_one<R: Read>(r: R, tx: &SyncSender<Msg>, recycled: &Receiver<Vec<u8>>) -> bool {
    let mut dec = match decompress(r) {
        Ok((_, d)) => d,
        Err(e) => {
            let _ = tx.send(Msg::Fail(e));
            return false;
        }
    };
    loop {
        let mut buf = recycled.try_recv().unwrap_or_default();
        buf.resize(BUF_SIZE, 0);
        let mut n = 0;
        while n < buf.len() {
            match dec.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Msg::Fail(e));
                    return false;
                }
            }
        }
        let full = n == buf.len();
        if n > 0 {
            buf.truncate(n);
            if tx.send(Msg::Data(buf)).is_err() {
                return false;
            }
        }
        if !full {
            return tx.send(Msg::End).is_ok();
        }
    }
}

/// The writing side's view of one layer's decompressed stream.
pub(crate) struct ChunkReader<'a> {
    rx: &'a Receiver<Msg>,
    recycle: &'a Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    end: bool,
    failed: bool,
}

impl<'a> ChunkReader<'a> {
    pub fn new(rx: &'a Receiver<Msg>, recycle: &'a Sender<Vec<u8>>) -> ChunkReader<'a> {
        ChunkReader {
            rx,
            recycle,
            cur: Vec::new(),
            pos: 0,
            end: false,
            failed: false,
        }
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.failed {
            return Err(io::Error::other("decompression failed"));
        }
        while self.pos == self.cur.len() && !self.end {
            match self.rx.recv() {
                Ok(Msg::Data(v)) => {
                    let old = std::mem::replace(&mut self.cur, v);
                    self.pos = 0;
                    if old.capacity() > 0 {
                        let _ = self.recycle.send(old);
                    }
                }
                Ok(Msg::End) => self.end = true,
                Ok(Msg::Fail(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                Err(_) => {
                    self.failed = true;
                    return Err(io::Error::other("decompression thread stopped"));
                }
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.cur.len());
    }
}
