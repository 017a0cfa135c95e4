//! sha256 for barge's verify: one stream, or two independent streams hashed at once.
//!
//! [`State`] is a sha256 chaining value and the bytes it has taken, always at
//! a 64-byte boundary; the caller keeps the last partial block and hands it to
//! [`State::finish`]. [`update_two`] advances two states over equal lengths:
//! on x86_64 with SHA-NI (detected at run time) the two are compressed
//! interleaved in one thread, which keeps the SHA unit busy where one stream
//! leaves it waiting; elsewhere it is two single streams through `sha2`.
#![deny(unsafe_code)]
// Libraries report through return values; only the CLI prints.
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[cfg(target_arch = "x86_64")]
mod shani;

use sha2::digest::generic_array::GenericArray;

/// sha256's initial chaining value (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// One sha256 stream between blocks: the chaining value and the bytes so far.
#[derive(Debug, Clone)]
pub struct State {
    h: [u32; 8],
    len: u64,
}

impl Default for State {
    fn default() -> State {
        State::new()
    }
}

impl State {
    pub fn new() -> State {
        State { h: H0, len: 0 }
    }

    /// The bytes hashed so far (a multiple of 64).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hash `data`, whole 64-byte blocks. Panics if its length is not a multiple of 64.
    pub fn update_blocks(&mut self, data: &[u8]) {
        assert!(data.len().is_multiple_of(64), "update_blocks takes whole 64-byte blocks, not {} bytes", data.len());
        compress(&mut self.h, data);
        self.len += data.len() as u64;
    }

    /// The digest of everything hashed plus `tail`, the last partial block
    /// (shorter than 64 bytes; panics otherwise).
    pub fn finish(mut self, tail: &[u8]) -> [u8; 32] {
        assert!(tail.len() < 64, "finish takes less than a block, not {} bytes", tail.len());
        let bits = (self.len + tail.len() as u64) * 8;
        let mut last = [0u8; 128];
        last[..tail.len()].copy_from_slice(tail);
        last[tail.len()] = 0x80;
        let n = if tail.len() < 56 { 64 } else { 128 };
        last[n - 8..n].copy_from_slice(&bits.to_be_bytes());
        compress(&mut self.h, &last[..n]);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.h) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// Advance `a` over `da` and `b` over `db`: equal lengths, whole 64-byte
/// blocks (panics otherwise: a caller's mistake). Interleaved SHA-NI when the
/// CPU has it, else one after the other.
pub fn update_two(a: &mut State, da: &[u8], b: &mut State, db: &[u8]) {
    assert!(
        da.len() == db.len() && da.len().is_multiple_of(64),
        "update_two takes equal whole blocks, not {} and {} bytes",
        da.len(),
        db.len()
    );
    #[cfg(target_arch = "x86_64")]
    if let Some(ni) = shani::ShaNi::detect().filter(|_| !fallback::forced()) {
        ni.two(&mut a.h, da, &mut b.h, db);
        a.len += da.len() as u64;
        b.len += db.len() as u64;
        return;
    }
    a.update_blocks(da);
    b.update_blocks(db);
}

/// Whether [`update_two`] runs interleaved SHA-NI on this machine.
pub fn interleaved() -> bool {
    #[cfg(target_arch = "x86_64")]
    return shani::ShaNi::detect().is_some() && !fallback::forced();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Blocks copied at a time into `sha2::compress256`'s block type.
const BATCH: usize = 16;

/// `data`'s whole blocks through `sha2::compress256` (which picks SHA-NI,
/// ARMv8 or portable code itself), a few blocks at a time.
fn compress(h: &mut [u32; 8], data: &[u8]) {
    let mut blocks = [GenericArray::default(); BATCH];
    for chunk in data.chunks(64 * BATCH) {
        let n = chunk.len() / 64;
        for (block, bytes) in blocks.iter_mut().zip(chunk.chunks_exact(64)) {
            block.copy_from_slice(bytes);
        }
        sha2::compress256(h, &blocks[..n]);
    }
}

/// Tests can make [`update_two`] take the two-single-streams path on this thread.
mod fallback {
    #[cfg(test)]
    thread_local!(static FORCED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });

    #[cfg(test)]
    pub(crate) fn force(on: bool) {
        FORCED.with(|f| f.set(on));
    }

    #[cfg(test)]
    pub(crate) fn forced() -> bool {
        FORCED.with(|f| f.get())
    }

    #[cfg(not(test))]
    #[inline(always)]
    pub(crate) fn forced() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    /// xorshift64*: deterministic test data and lengths, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    const EDGES: [usize; 12] = [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129];

    fn lengths(rng: &mut Rng) -> Vec<usize> {
        let mut v = EDGES.to_vec();
        v.extend((0..60).map(|_| rng.below(10_000)));
        v
    }

    fn expected(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    /// `data` hashed one stream at a time, whole blocks in random pieces.
    fn one(data: &[u8], rng: &mut Rng) -> [u8; 32] {
        let whole = data.len() / 64 * 64;
        let mut s = State::new();
        let mut at = 0;
        while at < whole {
            let n = (rng.below(40) * 64).min(whole - at);
            s.update_blocks(&data[at..at + n]);
            at += n;
        }
        assert_eq!(s.len(), whole as u64);
        s.finish(&data[whole..])
    }

    /// Two inputs hashed together, in random equal pieces while both have
    /// whole blocks left, the longer one's rest alone: as verify reads lanes.
    fn pair(a: &[u8], b: &[u8], rng: &mut Rng) -> ([u8; 32], [u8; 32]) {
        let (wa, wb) = (a.len() / 64 * 64, b.len() / 64 * 64);
        let (mut sa, mut sb) = (State::new(), State::new());
        let mut at = 0;
        while at < wa.min(wb) {
            let n = (rng.below(40) * 64).min(wa.min(wb) - at);
            update_two(&mut sa, &a[at..at + n], &mut sb, &b[at..at + n]);
            at += n;
        }
        sa.update_blocks(&a[at..wa]);
        sb.update_blocks(&b[at..wb]);
        (sa.finish(&a[wa..]), sb.finish(&b[wb..]))
    }

    fn check_pairs(force_fallback: bool) {
        fallback::force(force_fallback);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ force_fallback as u64);
        let lens = lengths(&mut rng);
        for (i, &la) in lens.iter().enumerate() {
            let lb = lens[(i * 7 + 3) % lens.len()];
            let (a, b) = (rng.bytes(la), rng.bytes(lb));
            assert_eq!(pair(&a, &b, &mut rng), (expected(&a), expected(&b)), "lengths {la} and {lb}");
        }
        // Every edge length against every other.
        for &la in &EDGES {
            for &lb in &EDGES {
                let (a, b) = (rng.bytes(la), rng.bytes(lb));
                assert_eq!(pair(&a, &b, &mut rng), (expected(&a), expected(&b)), "lengths {la} and {lb}");
            }
        }
        fallback::force(false);
    }

    #[test]
    fn one_stream_matches_sha2_for_any_length_and_chunking() {
        let mut rng = Rng(1);
        for len in lengths(&mut rng) {
            let data = rng.bytes(len);
            assert_eq!(one(&data, &mut rng), expected(&data), "length {len}");
        }
    }

    #[test]
    fn two_streams_match_sha2_on_this_cpu() {
        check_pairs(false);
    }

    #[test]
    fn two_streams_match_sha2_through_the_fallback() {
        check_pairs(true);
    }

    #[test]
    fn the_fallback_is_forced_only_on_its_thread() {
        fallback::force(true);
        assert!(!interleaved());
        let elsewhere = std::thread::spawn(interleaved).join().unwrap();
        fallback::force(false);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(elsewhere, std::is_x86_feature_detected!("sha"));
        let _ = elsewhere;
    }

    #[test]
    #[should_panic(expected = "equal whole blocks")]
    fn unequal_lengths_are_a_programming_error() {
        update_two(&mut State::new(), &[0; 64], &mut State::new(), &[0; 128]);
    }

    #[test]
    #[should_panic(expected = "less than a block")]
    fn a_whole_block_is_not_a_tail() {
        State::new().finish(&[0; 64]);
    }
}
