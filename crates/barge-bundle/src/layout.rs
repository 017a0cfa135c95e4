//! `Layout`: where every byte of a plain bundle lies, computed from its catalog before any is written (pure).
//!
//! Every blob's size is in the catalog, so every tar header, every blob's
//! offset and the bundle's size are known in advance. An exporter can then
//! write the blobs in any order, each at its own offset, and the result is
//! the same bytes as writing [`Catalog::plan`] in sequence.

use crate::catalog::{Catalog, Planned};
use crate::tar::{encode_header, end_of_archive, padding, Kind};

/// One stretch of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Bytes known now: headers, small files, padding, the end-of-archive blocks.
    Bytes(Vec<u8>),
    /// The content of `catalog.blobs[i]` (manifests included).
    Blob(usize),
}

/// A stretch and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub part: Part,
}

/// A plain bundle's pieces in order, without gaps, and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub pieces: Vec<Piece>,
    pub size: u64,
}

impl Layout {
    /// The layout of the bundle [`Catalog::plan`] describes: adjacent known
    /// bytes (a blob's padding, the next header) are joined into one piece.
    pub fn of(catalog: &Catalog) -> Layout {
        let mut pieces = Vec::new();
        let mut known: Vec<u8> = Vec::new();
        let mut at = 0u64;
        for entry in catalog.plan() {
            match entry {
                Planned::Dir(name) => known.extend(encode_header(&name, 0, Kind::Dir)),
                Planned::File { name, bytes } => {
                    known.extend(encode_header(name, bytes.len() as u64, Kind::File));
                    known.extend(&bytes);
                    known.resize(known.len() + padding(bytes.len() as u64), 0);
                }
                Planned::Blob(i) => {
                    let b = &catalog.blobs[i];
                    known.extend(encode_header(&b.digest.layout_path(), b.size, Kind::File));
                    let len = known.len() as u64;
                    pieces.push(Piece { offset: at, part: Part::Bytes(std::mem::take(&mut known)) });
                    at += len;
                    pieces.push(Piece { offset: at, part: Part::Blob(i) });
                    at += b.size;
                    known.resize(padding(b.size), 0);
                }
            }
        }
        known.extend(end_of_archive());
        let len = known.len() as u64;
        pieces.push(Piece { offset: at, part: Part::Bytes(known) });
        Layout { pieces, size: at + len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge;

    /// The pieces, filled with each blob's content, are exactly the bytes of
    /// the bundle written in sequence: a multi-platform index, and one image.
    #[test]
    fn the_pieces_are_the_sequential_bundle() {
        for forged in [forge::multi(&["linux/amd64", "linux/arm64/v8"]), forge::image(None), forge::index()] {
            let layout = Layout::of(&forged.catalog);
            let mut out: Vec<u8> = Vec::new();
            for p in &layout.pieces {
                assert_eq!(p.offset, out.len() as u64, "no gap, no overlap");
                match &p.part {
                    Part::Bytes(b) => out.extend(b),
                    Part::Blob(i) => {
                        let d = &forged.catalog.blobs[*i].digest;
                        out.extend(&forged.blobs.iter().find(|(x, _)| x == d).expect("content").1);
                    }
                }
            }
            assert_eq!(layout.size, out.len() as u64);
            assert_eq!(out, forged.bundle(&[]));
        }
    }
}
