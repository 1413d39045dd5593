//! A streaming tar reader over `BufRead`.
//!
//! Header fields are decoded with the `tar` crate's `Header` (octal and base-256 numbers,
//! ustar prefixes); the stream itself (PAX records, GNU long names, sparse maps) is parsed here
//! so that PAX values may hold any byte (binary `security.capability` xattrs contain
//! newlines), PAX sparse formats are understood, and entry data can be handed out as slices of
//! the input buffer without another copy.

use std::io::{self, BufRead};

use tar::{GnuExtSparseHeader, Header};

const BLOCK: u64 = 512;

/// Largest PAX header or GNU long name accepted (they are read into memory).
const MAX_META: u64 = 16 << 20;

/// Extended attributes: (name, value) pairs.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// Where the data of a sparse file goes: `(offset, length)` regions, in order, stored one after
/// the other in the entry data; everything else up to `real_size` is a hole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SparseMap {
    pub real_size: u64,
    pub regions: Vec<(u64, u64)>,
}

/// One tar member, with its extension headers folded in.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    pub atime: Option<(i64, u32)>,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Xattrs,
    pub sparse: Option<SparseMap>,
}

/// PAX records that apply to an entry.
#[derive(Default, Clone)]
struct Pax {
    records: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Pax {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.records
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Merges `other` over `self`: a key of `other` replaces all of `self`'s records of that
    /// key (an empty value deletes it); repeated keys within `other` are all kept (PAX sparse
    /// 0.0 repeats `GNU.sparse.offset`/`numbytes`).
    fn merge(&mut self, other: &Pax) {
        self.records
            .retain(|(k, _)| !other.records.iter().any(|(k2, _)| k2 == k));
        self.records
            .extend(other.records.iter().filter(|(_, v)| !v.is_empty()).cloned());
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_pax(data: &[u8]) -> io::Result<Pax> {
    let mut records = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // Some writers pad the record area with NULs.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| invalid("malformed PAX record (no length)"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("malformed PAX record length"))?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(invalid("malformed PAX record (bad length)"));
        }
        let kv = &rest[space + 1..len - 1];
        let eq = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| invalid("malformed PAX record (no '=')"))?;
        records.push((kv[..eq].to_vec(), kv[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(Pax { records })
}

fn parse_u64(v: &[u8], what: &str) -> io::Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| invalid(format!("malformed PAX {what}")))
}

/// Parses a PAX time, `[-]seconds[.fraction]`.
pub(crate) fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    if secs.is_empty() && frac.is_empty() {
        return None;
    }
    let secs: i64 = if secs.is_empty() {
        0
    } else {
        secs.parse().ok()?
    };
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    if neg {
        if nanos > 0 {
            Some((-secs - 1, 1_000_000_000 - nanos))
        } else {
            Some((-secs, 0))
        }
    } else {
        Some((secs, nanos))
    }
}

fn strip_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Reads a tar stream entry by entry.
pub(crate) struct TarReader<R: BufRead> {
    r: R,
    /// Unread data bytes of the current entry.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    globals: Pax,
    done: bool,
}

impl<R: BufRead> TarReader<R> {
    pub fn new(r: R) -> TarReader<R> {
        TarReader {
            r,
            remaining: 0,
            padding: 0,
            globals: Pax::default(),
            done: false,
        }
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let buf = self.r.fill_buf()?;
            if buf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive truncated inside an entry",
                ));
            }
            let k = (buf.len() as u64).min(n) as usize;
            self.r.consume(k);
            n -= k as u64;
        }
        Ok(())
    }

    /// Fills `buf` completely; `Ok(false)` when the stream ends before its first byte.
    fn read_block(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            let avail = self.r.fill_buf()?;
            if avail.is_empty() {
                if got == 0 {
                    return Ok(false);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archive truncated inside a header",
                ));
            }
            let k = avail.len().min(buf.len() - got);
            buf[got..got + k].copy_from_slice(&avail[..k]);
            self.r.consume(k);
            got += k;
        }
        Ok(true)
    }

    /// Reads `size` bytes of metadata (PAX records, long names) and the padding after them.
    fn read_meta(&mut self, size: u64) -> io::Result<Vec<u8>> {
        if size > MAX_META {
            return Err(invalid(format!(
                "extension header of {size} bytes is too large"
            )));
        }
        let mut v = vec![0; size as usize];
        if !self.read_block(&mut v)? && size > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive truncated inside an extension header",
            ));
        }
        self.skip(pad(size))?;
        Ok(v)
    }

    /// The next entry, skipping whatever is left of the previous one. `None` at the end of
    /// the archive (a zero block or the end of the stream).
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        let skip = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip(skip)?;

        let mut longname: Option<Vec<u8>> = None;
        let mut longlink: Option<Vec<u8>> = None;
        let mut local: Option<Pax> = None;
        loop {
            let mut block = [0u8; BLOCK as usize];
            if !self.read_block(&mut block)? {
                if longname.is_some() || longlink.is_some() || local.is_some() {
                    return Err(invalid("archive ends after an extension header"));
                }
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            check_checksum(&block)?;
            let header = Header::from_byte_slice(&block);
            let typeflag = block[156];
            let size = u64::try_from(num(&block[124..136])?)
                .map_err(|_| invalid("negative entry size"))?;
            match typeflag {
                b'x' | b'X' => {
                    let pax = parse_pax(&self.read_meta(size)?)?;
                    match &mut local {
                        Some(l) => l.merge(&pax),
                        None => local = Some(pax),
                    }
                }
                b'g' => {
                    let pax = parse_pax(&self.read_meta(size)?)?;
                    self.globals.merge(&pax);
                }
                b'L' => longname = Some(strip_nuls(self.read_meta(size)?)),
                b'K' => longlink = Some(strip_nuls(self.read_meta(size)?)),
                b'V' => {
                    // A volume label: not a file.
                    self.skip(size + pad(size))?;
                }
                b'M' => return Err(invalid("multi-volume archives are not supported")),
                _ => {
                    let mut pax = self.globals.clone();
                    if let Some(l) = &local {
                        pax.merge(l);
                    }
                    return self.build(header, typeflag, size, longname, longlink, &pax);
                }
            }
        }
    }

    fn build(
        &mut self,
        header: &Header,
        typeflag: u8,
        mut size: u64,
        longname: Option<Vec<u8>>,
        longlink: Option<Vec<u8>>,
        pax: &Pax,
    ) -> io::Result<Option<Entry>> {
        let mut path = match (pax.get(b"path"), longname) {
            (Some(p), _) => p.to_vec(),
            (None, Some(p)) => p,
            (None, None) => header.path_bytes().into_owned(),
        };
        let link = match (pax.get(b"linkpath"), longlink) {
            (Some(p), _) => p.to_vec(),
            (None, Some(p)) => p,
            (None, None) => header.link_name_bytes().unwrap_or_default().into_owned(),
        };
        if let Some(s) = pax.get(b"size") {
            size = parse_u64(s, "size")?;
        }
        let kind = match typeflag {
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' | b'D' => Kind::Dir,
            b'6' => Kind::Fifo,
            // Old-style archives mark directories with a trailing slash only.
            b'\0' if path.ends_with(b"/") => Kind::Dir,
            // '0', '7' (contiguous), 'S' (GNU sparse) and, as POSIX asks, unknown types.
            _ => Kind::File,
        };
        // Header-only types carry no data whatever their size field says (as Go's reader,
        // which Docker and containerd use, decides), except GNU dumpdirs whose listing is
        // skipped.
        if matches!(
            typeflag,
            b'1' | b'2' | b'3' | b'4' | b'5' | b'6' | b'\0' | b'0'
        ) && kind != Kind::File
        {
            size = 0;
        }
        let block = header.as_bytes();
        // Some writers include the file type bits in the mode field.
        let mode = (num(&block[100..108])? & 0o7777) as u32;
        let uid = match pax.get(b"uid") {
            Some(v) => parse_u64(v, "uid")?,
            None => id(num(&block[108..116])?, "uid")?,
        };
        let gid = match pax.get(b"gid") {
            Some(v) => parse_u64(v, "gid")?,
            None => id(num(&block[116..124])?, "gid")?,
        };
        let mtime = match pax.get(b"mtime").and_then(parse_pax_time) {
            Some(t) => t,
            None => (num(&block[136..148])?, 0),
        };
        let atime = pax.get(b"atime").and_then(parse_pax_time);
        let (dev_major, dev_minor) = if matches!(kind, Kind::Char | Kind::Block) {
            (dev(num(&block[329..337])?)?, dev(num(&block[337..345])?)?)
        } else {
            (0, 0)
        };
        let xattrs = pax
            .records
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(b"SCHILY.xattr.")
                    .filter(|name| !name.is_empty())
                    .map(|name| (name.to_vec(), v.clone()))
            })
            .collect();

        let mut sparse = None;
        let mut map_in_data = false;
        if kind == Kind::File {
            if typeflag == b'S' {
                sparse = Some(self.gnu_sparse(header, size)?);
            } else if let Some(s) = self.pax_sparse(pax, &mut map_in_data)? {
                sparse = Some(s);
            }
            if sparse.is_some() {
                if let Some(name) = pax.get(b"GNU.sparse.name") {
                    path = name.to_vec();
                }
            }
        }

        self.remaining = size;
        self.padding = pad(size);
        if map_in_data {
            let regions = self.read_sparse_map_from_data()?;
            if let Some(s) = &mut sparse {
                s.regions = regions;
            }
        }
        if let Some(s) = &sparse {
            validate_sparse(s, self.remaining)?;
        }
        Ok(Some(Entry {
            path,
            link,
            kind,
            mode,
            uid,
            gid,
            mtime,
            atime,
            dev_major,
            dev_minor,
            xattrs,
            sparse,
        }))
    }

    /// GNU old sparse: four regions in the header, more in extension blocks after it.
    fn gnu_sparse(&mut self, header: &Header, _size: u64) -> io::Result<SparseMap> {
        let gnu = header
            .as_gnu()
            .ok_or_else(|| invalid("GNU sparse entry without a GNU header"))?;
        let mut regions = Vec::new();
        let mut push = |off: u64, len: u64| regions.push((off, len));
        for s in gnu.sparse.iter() {
            if s.is_empty() {
                break;
            }
            push(s.offset()?, s.length()?);
        }
        let mut extended = gnu.is_extended();
        let mut blocks = 0;
        while extended {
            blocks += 1;
            if blocks > 1 << 16 {
                return Err(invalid("GNU sparse map too long"));
            }
            let mut ext = GnuExtSparseHeader::new();
            if !self.read_block(ext.as_mut_bytes())? {
                return Err(invalid("archive ends inside a GNU sparse map"));
            }
            for s in ext.sparse.iter() {
                if s.is_empty() {
                    break;
                }
                push(s.offset()?, s.length()?);
            }
            extended = ext.is_extended();
        }
        Ok(SparseMap {
            real_size: gnu.real_size()?,
            regions,
        })
    }

    /// PAX sparse formats 0.0 (repeated offset/numbytes), 0.1 (`GNU.sparse.map`) and 1.0 (map
    /// at the start of the data, which the caller reads once the data is positioned).
    fn pax_sparse(&mut self, pax: &Pax, map_in_data: &mut bool) -> io::Result<Option<SparseMap>> {
        let major = pax.get(b"GNU.sparse.major");
        let minor = pax.get(b"GNU.sparse.minor");
        if major == Some(b"1") && minor == Some(b"0") {
            let real = pax
                .get(b"GNU.sparse.realsize")
                .ok_or_else(|| invalid("PAX sparse 1.0 entry without GNU.sparse.realsize"))?;
            *map_in_data = true;
            return Ok(Some(SparseMap {
                real_size: parse_u64(real, "GNU.sparse.realsize")?,
                regions: Vec::new(),
            }));
        }
        if major.is_some() {
            return Err(invalid("unsupported PAX sparse format version"));
        }
        let real = match pax
            .get(b"GNU.sparse.size")
            .or_else(|| pax.get(b"GNU.sparse.realsize"))
        {
            Some(v) => parse_u64(v, "GNU.sparse.size")?,
            None => return Ok(None),
        };
        let mut regions = Vec::new();
        if let Some(map) = pax.get(b"GNU.sparse.map") {
            let nums = map
                .split(|&b| b == b',')
                .filter(|s| !s.is_empty())
                .map(|s| parse_u64(s, "GNU.sparse.map"))
                .collect::<io::Result<Vec<u64>>>()?;
            if nums.len() % 2 != 0 {
                return Err(invalid("odd number of values in GNU.sparse.map"));
            }
            regions.extend(nums.chunks(2).map(|c| (c[0], c[1])));
        } else {
            let mut off = None;
            for (k, v) in &pax.records {
                match k.as_slice() {
                    b"GNU.sparse.offset" => off = Some(parse_u64(v, "GNU.sparse.offset")?),
                    b"GNU.sparse.numbytes" => {
                        let o = off
                            .take()
                            .ok_or_else(|| invalid("GNU.sparse.numbytes without offset"))?;
                        regions.push((o, parse_u64(v, "GNU.sparse.numbytes")?));
                    }
                    _ => {}
                }
            }
        }
        Ok(Some(SparseMap {
            real_size: real,
            regions,
        }))
    }

    /// PAX sparse 1.0: decimal numbers, one a line (count, then offset/length pairs), padded
    /// to a block, at the start of the entry data.
    fn read_sparse_map_from_data(&mut self) -> io::Result<Vec<(u64, u64)>> {
        let mut consumed: u64 = 0;
        let mut line = Vec::new();
        let mut next_number = |this: &mut Self| -> io::Result<u64> {
            line.clear();
            loop {
                let mut b = [0u8; 1];
                if this.remaining == 0 || !this.read_block(&mut b)? {
                    return Err(invalid("truncated PAX sparse map"));
                }
                this.remaining -= 1;
                consumed += 1;
                if b[0] == b'\n' {
                    break;
                }
                if line.len() > 20 {
                    return Err(invalid("malformed PAX sparse map"));
                }
                line.push(b[0]);
            }
            parse_u64(&line, "sparse map")
        };
        let count = next_number(self)?;
        if count > 1 << 24 {
            return Err(invalid("PAX sparse map too long"));
        }
        let mut regions = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let off = next_number(self)?;
            let len = next_number(self)?;
            regions.push((off, len));
        }
        let padding = pad(consumed);
        if padding > self.remaining {
            return Err(invalid("truncated PAX sparse map"));
        }
        self.skip(padding)?;
        self.remaining -= padding;
        Ok(regions)
    }

    /// The next slice of the current entry's data (empty at its end). Call
    /// [`TarReader::consume`] with how much of it was used.
    pub fn data(&mut self) -> io::Result<&[u8]> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let remaining = self.remaining;
        let buf = self.r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive truncated inside an entry",
            ));
        }
        let n = (buf.len() as u64).min(remaining) as usize;
        Ok(&buf[..n])
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n as u64 <= self.remaining);
        self.r.consume(n);
        self.remaining -= n as u64;
    }

    /// Reads and discards the rest of the stream (after the end of the archive), so that
    /// decompression errors in the trailer (a bad CRC) are seen.
    pub fn drain(&mut self) -> io::Result<()> {
        loop {
            let n = self.r.fill_buf()?.len();
            if n == 0 {
                return Ok(());
            }
            self.r.consume(n);
        }
    }
}

/// A numeric header field: octal text (NULs and spaces around it ignored, empty meaning 0)
/// or, with the high bit of the first byte set, big-endian two's-complement binary.
fn num(field: &[u8]) -> io::Result<i64> {
    if field[0] & 0x80 != 0 {
        let negative = field[0] & 0x40 != 0;
        let mut v: i128 = if negative { -1 } else { 0 };
        for (i, &b) in field.iter().enumerate() {
            let b = if i == 0 {
                b & 0x7f | if negative { 0x80 } else { 0 }
            } else {
                b
            };
            v = (v << 8) | i128::from(b);
            if v > i128::from(i64::MAX) || v < i128::from(i64::MIN) {
                return Err(invalid("numeric header field out of range"));
            }
        }
        return Ok(v as i64);
    }
    let text = field
        .iter()
        .position(|&b| b == 0)
        .map_or(field, |end| &field[..end]);
    let text = std::str::from_utf8(text)
        .map_err(|_| invalid("malformed numeric header field"))?
        .trim_matches(' ');
    if text.is_empty() {
        return Ok(0);
    }
    i64::from_str_radix(text, 8).map_err(|_| invalid("malformed numeric header field"))
}

fn id(v: i64, what: &str) -> io::Result<u64> {
    u64::try_from(v).map_err(|_| invalid(format!("negative {what}")))
}

fn dev(v: i64) -> io::Result<u32> {
    u32::try_from(v).map_err(|_| invalid("device number out of range"))
}

fn pad(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn check_checksum(block: &[u8; 512]) -> io::Result<()> {
    let field = &block[148..156];
    let text: Vec<u8> = field
        .iter()
        .copied()
        .filter(|&b| b != 0 && b != b' ')
        .collect();
    let want = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 8).ok())
        .ok_or_else(|| invalid("malformed header checksum"))?;
    let mut unsigned: u32 = 0;
    let mut signed: i32 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    if want == unsigned || want as i32 == signed {
        Ok(())
    } else {
        Err(invalid("header checksum mismatch (not a tar archive?)"))
    }
}

fn validate_sparse(s: &SparseMap, stored: u64) -> io::Result<()> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in &s.regions {
        if off < end {
            return Err(invalid("sparse map regions overlap or are out of order"));
        }
        end = off
            .checked_add(len)
            .filter(|&e| e <= s.real_size)
            .ok_or_else(|| invalid("sparse map region beyond the file size"))?;
        total += len;
    }
    if total != stored {
        return Err(invalid(format!(
            "sparse map lists {total} bytes of data but the entry holds {stored}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_values_may_hold_newlines() {
        let mut rec = Vec::new();
        let value = b"a\nb\n20 path=../../etc/x\n";
        let body_len = " SCHILY.xattr.user.x=".len() + value.len() + 1;
        let total = body_len + (body_len + 2).to_string().len();
        rec.extend_from_slice(format!("{total} SCHILY.xattr.user.x=").as_bytes());
        rec.extend_from_slice(value);
        rec.push(b'\n');
        let pax = parse_pax(&rec).unwrap();
        assert_eq!(pax.records.len(), 1);
        assert_eq!(pax.get(b"SCHILY.xattr.user.x"), Some(&value[..]));
        assert_eq!(pax.get(b"path"), None);
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1234"), Some((1234, 0)));
        assert_eq!(parse_pax_time(b"1234.5"), Some((1234, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.0000000019"), Some((1, 1)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"-3"), Some((-3, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b""), None);
    }

    #[test]
    fn malformed_pax_is_an_error() {
        assert!(parse_pax(b"99 path=x\n").is_err());
        assert!(parse_pax(b"path=x\n").is_err());
        assert!(parse_pax(b"10 pathx\n").is_err());
    }
}
