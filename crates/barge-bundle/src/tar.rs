//! A small sans-IO ustar codec: encode headers for the entries a bundle holds, parse them back.
//!
//! Only what bundles need: regular files and directories, mtime 0, uid/gid 0,
//! mode 0644/0755. Names longer than 100 bytes use a PAX `path` record; sizes of
//! 8 GiB and more use the base-256 size encoding that GNU tar and Go read.
//! Parsing refuses every other entry type (links, devices, FIFOs) outright.

use crate::BundleError;

pub const BLOCK: usize = 512;
/// The largest PAX extended header barge reads.
const MAX_PAX: u64 = 64 * 1024;

/// The bytes of padding that follow `size` bytes of entry data.
pub fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// The two zero blocks that end an archive.
pub fn end_of_archive() -> [u8; 2 * BLOCK] {
    [0; 2 * BLOCK]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// The header block(s) for one entry. A name over 100 bytes gets a PAX header first.
pub fn encode_header(name: &str, size: u64, kind: Kind) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK * 3);
    let short_name = if name.len() > 100 {
        let record = pax_record("path", name);
        let pax_name = "PaxHeaders/long";
        out.extend_from_slice(&header_block(pax_name, record.len() as u64, b'x', 0o644));
        out.extend_from_slice(&record);
        out.resize(out.len() + padding(record.len() as u64), 0);
        // The ustar name field then holds a truncated fallback, as tar does.
        &name[name.len() - 100..]
    } else {
        name
    };
    let (flag, mode) = match kind {
        Kind::File => (b'0', 0o644),
        Kind::Dir => (b'5', 0o755),
    };
    out.extend_from_slice(&header_block(short_name, size, flag, mode));
    out
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    // "<len> key=value\n" where len counts itself.
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while (len.to_string().len() + body.len()) != len {
        len = len.to_string().len() + body.len();
    }
    format!("{len}{body}").into_bytes()
}

fn header_block(name: &str, size: u64, flag: u8, mode: u32) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size < 0o777_7777_7777 {
        octal(&mut h[124..136], size);
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[136..148], 0);
    h[156] = flag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
}

/// One entry as parsed from the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub kind: Kind,
}

/// What the reader must do after feeding a header block.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The block was a zero block: the archive ends (check the second one).
    End,
    /// A PAX header: read `size` bytes plus padding and pass them to [`Headers::feed_pax`].
    Pax { size: u64 },
    /// A complete entry: its data (`size` bytes plus padding) follows.
    Entry(Entry),
}

/// Parses header blocks one at a time, carrying PAX overrides to the next entry.
#[derive(Debug, Default)]
pub struct Headers {
    pax_path: Option<String>,
    pax_size: Option<u64>,
}

impl Headers {
    pub fn feed(&mut self, block: &[u8; BLOCK]) -> Result<Step, BundleError> {
        if block.iter().all(|&b| b == 0) {
            return Ok(Step::End);
        }
        check_checksum(block)?;
        let raw_name = field_str(&block[0..100]);
        let prefix = if &block[257..262] == b"ustar" { field_str(&block[345..500]) } else { String::new() };
        let mut name = if prefix.is_empty() { raw_name } else { format!("{prefix}/{raw_name}") };
        let mut size = parse_size(&block[124..136]).ok_or_else(|| invalid(&name, "unreadable size field"))?;
        let flag = block[156];
        if flag == b'x' {
            if size > MAX_PAX {
                return Err(invalid(&name, "PAX header too large"));
            }
            return Ok(Step::Pax { size });
        }
        if let Some(p) = self.pax_path.take() {
            name = p;
        }
        if let Some(s) = self.pax_size.take() {
            size = s;
        }
        let kind = match flag {
            b'0' | 0 => Kind::File,
            b'5' => Kind::Dir,
            b'1' => return Err(unsafe_entry(&name, "hard link")),
            b'2' => return Err(unsafe_entry(&name, "symbolic link")),
            b'3' | b'4' => return Err(unsafe_entry(&name, "device node")),
            b'6' => return Err(unsafe_entry(&name, "FIFO")),
            other => return Err(unsafe_entry(&name, &format!("entry type {:?}", other as char))),
        };
        check_name(&name)?;
        Ok(Step::Entry(Entry { name, size, kind }))
    }

    pub fn feed_pax(&mut self, data: &[u8]) -> Result<(), BundleError> {
        let mut rest = data;
        while !rest.is_empty() {
            let sp = rest.iter().position(|&b| b == b' ').ok_or_else(|| invalid("PAX", "bad record"))?;
            let len: usize = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .filter(|&l| l > sp + 1 && l <= rest.len())
                .ok_or_else(|| invalid("PAX", "bad record length"))?;
            let rec = std::str::from_utf8(&rest[sp + 1..len - 1]).map_err(|_| invalid("PAX", "record not UTF-8"))?;
            let (k, v) = rec.split_once('=').ok_or_else(|| invalid("PAX", "record without '='"))?;
            match k {
                "path" => self.pax_path = Some(v.to_string()),
                "size" => self.pax_size = Some(v.parse().map_err(|_| invalid("PAX", "bad size"))?),
                "linkpath" => return Err(unsafe_entry(v, "link in PAX header")),
                _ => {}
            }
            rest = &rest[len..];
        }
        Ok(())
    }
}

fn check_checksum(block: &[u8; BLOCK]) -> Result<(), BundleError> {
    let stored = field_str(&block[148..156]);
    let stored = u32::from_str_radix(stored.trim(), 8)
        .map_err(|_| invalid(&field_str(&block[..100]), "bad header checksum field"))?;
    let sum: u32 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { b' ' as u32 } else { b as u32 }).sum();
    if sum != stored {
        return Err(BundleError::Corrupt(format!("tar header of {:?} has a wrong checksum", field_str(&block[..100]))));
    }
    Ok(())
}

fn field_str(f: &[u8]) -> String {
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from_utf8_lossy(&f[..end]).into_owned()
}

fn parse_size(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        if f[0] != 0x80 || f[1..4].iter().any(|&b| b != 0) {
            return None;
        }
        return Some(u64::from_be_bytes(f[4..12].try_into().ok()?));
    }
    let s = field_str(f);
    let s = s.trim_matches(|c| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Refuse names that could escape the directory they are unpacked into.
fn check_name(name: &str) -> Result<(), BundleError> {
    if name.is_empty() {
        return Err(unsafe_entry(name, "empty name"));
    }
    if name.starts_with('/') || name.contains('\\') || name.as_bytes().get(1) == Some(&b':') {
        return Err(unsafe_entry(name, "absolute path"));
    }
    if name.split('/').any(|c| c == "..") {
        return Err(unsafe_entry(name, "path with '..'"));
    }
    Ok(())
}

fn unsafe_entry(name: &str, why: &str) -> BundleError {
    BundleError::UnsafeEntry { name: name.chars().take(200).collect(), why: why.to_string() }
}

fn invalid(name: &str, why: &str) -> BundleError {
    BundleError::Corrupt(format!("tar entry {:?}: {why}", name.chars().take(200).collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(mut bytes: &[u8]) -> Result<Vec<Entry>, BundleError> {
        let mut h = Headers::default();
        let mut out = vec![];
        loop {
            let block: [u8; BLOCK] = bytes[..BLOCK].try_into().unwrap();
            bytes = &bytes[BLOCK..];
            match h.feed(&block)? {
                Step::End => return Ok(out),
                Step::Pax { size } => {
                    let n = size as usize;
                    h.feed_pax(&bytes[..n])?;
                    bytes = &bytes[n + padding(size)..];
                }
                Step::Entry(e) => {
                    let n = e.size as usize;
                    bytes = &bytes[n + padding(e.size)..];
                    out.push(e);
                }
            }
        }
    }

    #[test]
    fn round_trips_short_long_and_huge() {
        let long = format!("blobs/sha512/{}", "a".repeat(128));
        let mut ar = encode_header("oci-layout", 3, Kind::File);
        ar.extend_from_slice(b"abc");
        ar.resize(ar.len() + padding(3), 0);
        ar.extend(encode_header("blobs/", 0, Kind::Dir));
        ar.extend(encode_header(&long, 0, Kind::File));
        let huge = encode_header("big", 9 << 30, Kind::File);
        ar.extend(end_of_archive());
        let entries = parse_all(&ar).unwrap();
        assert_eq!(entries[0], Entry { name: "oci-layout".into(), size: 3, kind: Kind::File });
        assert_eq!(entries[1].kind, Kind::Dir);
        assert_eq!(entries[2].name, long);
        let mut h = Headers::default();
        match h.feed(huge[..BLOCK].try_into().unwrap()).unwrap() {
            Step::Entry(e) => assert_eq!(e.size, 9 << 30),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_unsafe_entries() {
        for name in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
            let mut h = Headers::default();
            let block: [u8; BLOCK] = header_block(name, 0, b'0', 0o644);
            assert!(matches!(h.feed(&block), Err(BundleError::UnsafeEntry { .. })), "{name}");
        }
        for flag in [b'1', b'2', b'3', b'4', b'6'] {
            let mut h = Headers::default();
            let block = header_block("x", 0, flag, 0o644);
            assert!(matches!(h.feed(&block), Err(BundleError::UnsafeEntry { .. })));
        }
        let mut block = header_block("x", 0, b'0', 0o644);
        block[5] ^= 1;
        assert!(matches!(Headers::default().feed(&block), Err(BundleError::Corrupt(_))));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", &"x".repeat(95));
        let s = String::from_utf8(r.clone()).unwrap();
        let n: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(n, r.len());
    }
}
