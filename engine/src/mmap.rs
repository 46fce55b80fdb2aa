//! Memory maps of sealed segment files: the engine's only `unsafe` code.
//!
//! A map is sound only while nobody changes the file underneath it. spanstore never
//! opens a sealed segment for writing again (it is written under a temporary name,
//! fsynced and renamed into place) and removes it only by unlinking, which leaves an
//! existing map intact. Another program truncating or rewriting the file would break
//! that promise; as with every mmap-based store (ripgrep's `MmapChoice::auto` says the
//! same), we cannot defend against it, and readers still check every checksum.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Bytes of a whole file, mapped or read into memory.
pub trait FileBytes: Send + Sync {
    /// The bytes.
    fn bytes(&self) -> &[u8];
}

struct Mapped(memmap2::Mmap);

impl FileBytes for Mapped {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FileBytes for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Maps a sealed file read-only. Empty files are returned as an empty vector (mapping
/// zero bytes is an error on some systems).
pub fn map_sealed_file(path: &Path) -> io::Result<Arc<dyn FileBytes>> {
    let file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(Arc::new(Vec::new()));
    }
    // SAFETY: the file is a sealed segment: fsynced and renamed into place, never
    // opened for writing again, and removed only by unlinking, so the mapped bytes do
    // not change while the map lives (see the module documentation).
    let map = unsafe { memmap2::Mmap::map(&file) }?;
    Ok(Arc::new(Mapped(map)))
}
