//! The zstd rule for bundles: one frame, a window of at most 16 MiB, nothing after it; checked from the frame header.
//!
//! A compressed bundle is exactly one zstd frame whose content is the tar
//! archive (then only zeros), and the file ends where the frame ends. The
//! window a frame asks for is what a decoder must hold in memory, so barge
//! refuses one larger than [`MAX_WINDOW`] before it decodes a byte, and writes
//! its own bundles well within it.

use crate::BundleError;

/// The first bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// `log2` of the largest window barge decodes.
pub const MAX_WINDOW_LOG: u32 = 24;
/// The largest window barge decodes (16 MiB); memory stays bounded whatever the input.
pub const MAX_WINDOW: u64 = 1 << MAX_WINDOW_LOG;
/// Bytes of a frame header barge needs to see: magic, descriptor, window, dictionary id and content size at most.
pub const HEADER_MAX: usize = 4 + 1 + 1 + 4 + 8;

/// The window size a zstd frame header declares (`head` is the start of the
/// frame, at least [`HEADER_MAX`] bytes unless the file is shorter).
pub fn window_size(head: &[u8]) -> Result<u64, BundleError> {
    let short = || BundleError::Truncated("zstd stream: the frame header is incomplete".into());
    if !head.starts_with(&ZSTD_MAGIC) {
        return Err(BundleError::Corrupt("zstd stream: not a zstd frame".into()));
    }
    let fhd = *head.get(4).ok_or_else(short)?;
    let single_segment = fhd & 0x20 != 0;
    if fhd & 0x08 != 0 {
        return Err(BundleError::Corrupt("zstd stream: the frame header sets a reserved bit".into()));
    }
    if !single_segment {
        let wd = *head.get(5).ok_or_else(short)?;
        let log = 10 + u64::from(wd >> 3);
        let base = 1u64 << log;
        return Ok(base + (base / 8) * u64::from(wd & 7));
    }
    // Single segment: the window is the content size.
    let dict_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs_len = [1usize, 2, 4, 8][usize::from(fhd >> 6)];
    let at = 5 + dict_len;
    let field = head.get(at..at + fcs_len).ok_or_else(short)?;
    let mut v = [0u8; 8];
    v[..fcs_len].copy_from_slice(field);
    let size = u64::from_le_bytes(v);
    Ok(if fcs_len == 2 { size + 256 } else { size })
}

/// Refuse a frame whose window is larger than barge decodes. A header cut
/// short by the first read is left to the decoder, whose window limit is set too.
pub fn check_window(head: &[u8]) -> Result<(), BundleError> {
    let w = match window_size(head) {
        Err(BundleError::Truncated(_)) if head.len() < HEADER_MAX => return Ok(()),
        r => r?,
    };
    if w > MAX_WINDOW {
        return Err(BundleError::Corrupt(format!(
            "zstd stream: the bundle is compressed with a {} MiB zstd window; barge reads windows up to {} MiB \
             to keep memory bounded: recompress it without --long (or with --long={MAX_WINDOW_LOG} at most)",
            w >> 20,
            MAX_WINDOW >> 20
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressed(level: i32, long: Option<u32>, len: usize) -> Vec<u8> {
        let data = vec![7u8; len];
        let mut enc = zstd::stream::Encoder::new(Vec::new(), level).unwrap();
        if let Some(l) = long {
            enc.long_distance_matching(true).unwrap();
            enc.window_log(l).unwrap();
        }
        std::io::Write::write_all(&mut enc, &data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn reads_the_window_zstd_wrote() {
        // Size known up front: a single-segment frame whose window is its content size.
        assert_eq!(window_size(&zstd::bulk::compress(&[7u8; 1000], 3).unwrap()).unwrap(), 1000);
        assert_eq!(window_size(&compressed(3, None, 1000)).unwrap(), 1 << 21);
        let big = compressed(3, Some(27), 3 << 20);
        assert_eq!(window_size(&big).unwrap(), 1 << 27);
        assert!(check_window(&big).unwrap_err().to_string().contains("128 MiB zstd window"));
        let ok = compressed(3, Some(MAX_WINDOW_LOG), 3 << 20);
        assert!(window_size(&ok).unwrap() <= MAX_WINDOW);
        check_window(&ok).unwrap();
    }

    #[test]
    fn refuses_short_or_foreign_headers() {
        assert!(window_size(&ZSTD_MAGIC).is_err());
        assert!(window_size(b"ustar").is_err());
        assert!(window_size(&[0x28, 0xB5, 0x2F, 0xFD, 0x08, 0]).is_err());
    }
}
