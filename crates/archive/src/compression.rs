//! Compression detection, decompressing readers and compressing writers.

use std::io::{self, BufRead, BufReader, Read, Write};

/// Size of the read-side buffers (compressed input, decompressed output).
pub(crate) const BUF_SIZE: usize = 256 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognises a stream from its first bytes (at least 4 for zstd, 2 for gzip); anything
    /// else is taken as uncompressed.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else if magic.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// `"none"`, `"gzip"` or `"zstd"` (the suffix used in OCI media types, `none` aside).
    pub fn as_str(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fills the reader's buffer until it holds at least `n` bytes or the stream ends, without
/// consuming anything. `BufReader` only refills when empty, so the few bytes are peeked by
/// reading them out and chaining them back in front.
fn sniff<'a, R: Read + 'a>(r: R) -> io::Result<(Compression, Box<dyn BufRead + 'a>)> {
    let mut r = BufReader::with_capacity(BUF_SIZE, r);
    let mut head = Vec::with_capacity(4);
    while head.len() < 4 {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let take = buf.len().min(4 - head.len());
        head.extend_from_slice(&buf[..take]);
        r.consume(take);
    }
    let c = Compression::detect(&head);
    let input: Box<dyn BufRead + 'a> = if head.is_empty() {
        Box::new(r)
    } else {
        Box::new(io::Cursor::new(head).chain(r))
    };
    Ok((c, input))
}

/// Wraps `input` (positioned at the start of the stream) in a decoder for `c`.
fn decoder<'a>(c: Compression, input: Box<dyn BufRead + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input)?;
            // Accept frames written with `--long` (windows up to 2 GiB).
            d.window_log_max(31)?;
            Box::new(d)
        }
    })
}

/// Wraps a reader, sniffing gzip/zstd magic, returning a decompressing reader (or the bytes
/// as they are when the stream is not compressed).
pub fn decompress<'a>(r: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let (c, input) = sniff(r)?;
    Ok((c, decoder(c, input)?))
}

/// Like [`decompress`], but buffered: the unpacker reads the tar stream through this.
pub(crate) fn decompress_buffered<'a>(
    r: impl Read + 'a,
) -> io::Result<(Compression, Box<dyn BufRead + 'a>)> {
    let (c, input) = sniff(r)?;
    Ok(match c {
        Compression::None => (c, input),
        _ => (
            c,
            Box::new(BufReader::with_capacity(BUF_SIZE, decoder(c, input)?)),
        ),
    })
}

/// A compressing writer. Call [`Compressor::finish`] to write the trailer and get the inner
/// writer back; dropping it instead leaves the stream truncated.
pub enum Compressor<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// A compressing writer with the default level (gzip 6, zstd 3).
pub fn compress<W: Write>(w: W, c: Compression) -> io::Result<Compressor<W>> {
    compress_level(w, c, None)
}

/// A compressing writer with a chosen level (gzip 0–9, zstd 1–22; `None` for the default).
/// Output is deterministic for a given input and level (the gzip header carries no time or
/// name).
pub fn compress_level<W: Write>(
    w: W,
    c: Compression,
    level: Option<u32>,
) -> io::Result<Compressor<W>> {
    Ok(match c {
        Compression::None => Compressor::None(w),
        Compression::Gzip => {
            let level = flate2::Compression::new(level.unwrap_or(6).min(9));
            Compressor::Gzip(flate2::GzBuilder::new().write(w, level))
        }
        Compression::Zstd => {
            let level = level.map(|l| l.min(22) as i32).unwrap_or(3);
            Compressor::Zstd(zstd::stream::write::Encoder::new(w, level)?)
        }
    })
}

impl<W: Write> Compressor<W> {
    pub fn compression(&self) -> Compression {
        match self {
            Compressor::None(_) => Compression::None,
            Compressor::Gzip(_) => Compression::Gzip,
            Compressor::Zstd(_) => Compression::Zstd,
        }
    }

    /// Flushes the compressor's trailer and returns the inner writer (not flushed itself).
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.write_all(buf),
            Compressor::Gzip(e) => e.write_all(buf),
            Compressor::Zstd(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(c: Compression) {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut w = compress(Vec::new(), c).unwrap();
        w.write_all(&data).unwrap();
        let packed = w.finish().unwrap();
        assert_eq!(Compression::detect(&packed), c);
        let (got, mut r) = decompress(&packed[..]).unwrap();
        assert_eq!(got, c);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn roundtrips() {
        roundtrip(Compression::None);
        roundtrip(Compression::Gzip);
        roundtrip(Compression::Zstd);
    }

    #[test]
    fn detects_short_and_empty_streams() {
        assert_eq!(Compression::detect(b""), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        assert_eq!(Compression::detect(&[0x1f, 0x8b]), Compression::Gzip);
        let (c, mut r) = decompress(&b"x"[..]).unwrap();
        assert_eq!(c, Compression::None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"x");
        let (c, _) = decompress(&b""[..]).unwrap();
        assert_eq!(c, Compression::None);
    }

    #[test]
    fn concatenated_gzip_members() {
        let mut all = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut w = compress(Vec::new(), Compression::Gzip).unwrap();
            w.write_all(part).unwrap();
            all.extend(w.finish().unwrap());
        }
        let (_, mut r) = decompress(&all[..]).unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
    }

    #[test]
    fn gzip_is_deterministic() {
        let a = {
            let mut w = compress(Vec::new(), Compression::Gzip).unwrap();
            w.write_all(b"same").unwrap();
            w.finish().unwrap()
        };
        let b = {
            let mut w = compress(Vec::new(), Compression::Gzip).unwrap();
            w.write_all(b"same").unwrap();
            w.finish().unwrap()
        };
        assert_eq!(a, b);
    }
}
