//! The file layer under the log and the manifest: the real file system, and an in-memory
//! one that can simulate power loss.
//!
//! Every byte the log and manifest write or read goes through [`Fs`], so that tests can
//! swap in [`MemFs`], whose [`MemFs::crash`] keeps only what was made durable: file data
//! up to its last `sync`, and directory entries (creations, renames, removals) up to the
//! last `sync_dir` of their directory. A `kill -9` test cannot catch a missing directory
//! fsync because the kernel keeps the page cache; this layer can.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// A file opened for appending.
pub trait WriteFile: Send + Sync {
    /// Appends all of `buf`.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Makes the data written so far durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
}

/// A file opened for reading at offsets.
pub trait ReadFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A held directory lock; dropping it releases the lock.
pub trait LockGuard: Send + Sync {}

/// The operations the engine needs from a file system.
pub trait Fs: Send + Sync + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// True if the directory exists.
    fn dir_exists(&self, dir: &Path) -> bool;
    /// Creates a new file (failing if it exists) for appending.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>>;
    /// Opens an existing file for reading.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>>;
    /// Names of the entries of a directory, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Renames a file, replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Cuts a file to `len` bytes and makes that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the directory's entries durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive, non-blocking lock on `path` (created if missing);
    /// `Ok(None)` when another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>>;
    /// The whole contents of a sealed (never again written) file: a memory map on the
    /// real file system.
    fn map_sealed(&self, path: &Path) -> io::Result<Arc<dyn crate::mmap::FileBytes>>;
}

/// Reads a whole file through an [`Fs`].
pub fn read_all(file: &dyn ReadFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.len()?).map_err(|_| io::Error::other("file larger than memory"))?;
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        let n = file.read_at(filled as u64, rest)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

// ----- the real file system ---------------------------------------------------------------

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealWriteFile(File);

impl WriteFile for RealWriteFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

struct RealReadFile(File);

impl ReadFile for RealReadFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

struct RealLock(#[allow(dead_code)] File);

impl LockGuard for RealLock {}

impl Fs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn dir_exists(&self, dir: &Path) -> bool {
        dir.is_dir()
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>> {
        let file = std::fs::OpenOptions::new().append(true).create_new(true).open(path)?;
        Ok(Arc::new(RealWriteFile(file)))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        Ok(Arc::new(RealReadFile(File::open(path)?)))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(RealLock(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(err)) => Err(err),
        }
    }
    fn map_sealed(&self, path: &Path) -> io::Result<Arc<dyn crate::mmap::FileBytes>> {
        crate::mmap::map_sealed_file(path)
    }
}

// ----- the in-memory, power-loss-simulating file system ------------------------------------

#[derive(Default)]
struct MemFileData {
    data: Vec<u8>,
    /// The contents as of the last `sync`.
    durable: Vec<u8>,
}

#[derive(Default)]
struct MemFile {
    inner: Mutex<MemFileData>,
}

#[derive(Default, Clone)]
struct MemDir {
    /// Entries as the running program sees them.
    entries: BTreeMap<String, Arc<MemFile>>,
    /// Entries as of the last `sync_dir`.
    durable: BTreeMap<String, Arc<MemFile>>,
}

#[derive(Default)]
struct MemState {
    dirs: BTreeMap<PathBuf, MemDir>,
    locks: HashSet<PathBuf>,
}

/// An in-memory file system that can forget everything not made durable.
///
/// Directories themselves are always durable (the engine creates its directory once);
/// what can be lost are file contents after their last `sync` and directory entries
/// after the directory's last `sync_dir`.
#[derive(Default, Clone)]
pub struct MemFs {
    state: Arc<Mutex<MemState>>,
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_owned();
    Ok((parent, name))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

struct MemWriteFile(Arc<MemFile>);

impl WriteFile for MemWriteFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        self.0.inner.lock().data.extend_from_slice(buf);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        let mut inner = self.0.inner.lock();
        inner.durable = inner.data.clone();
        Ok(())
    }
}

struct MemReadFile(Arc<MemFile>);

impl ReadFile for MemReadFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let inner = self.0.inner.lock();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(inner.data.len());
        let available = inner.data.get(start..).unwrap_or_default();
        let n = available.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), available.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.inner.lock().data.len() as u64)
    }
}

struct MemLock {
    state: Arc<Mutex<MemState>>,
    path: PathBuf,
}

impl LockGuard for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.path);
    }
}

impl MemFs {
    /// An empty in-memory file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// The file system as it would be found after a power loss now: directory entries
    /// as of each directory's last sync, file contents as of each file's last sync plus
    /// a prefix of the unsynced appended bytes chosen by `keep_unsynced(file_len_unsynced)`
    /// (a torn write). Locks are released. `self` is left as it was.
    pub fn crash(&self, mut keep_unsynced: impl FnMut(usize) -> usize) -> MemFs {
        let state = self.state.lock();
        let mut dirs = BTreeMap::new();
        for (path, dir) in &state.dirs {
            let mut entries = BTreeMap::new();
            for (name, file) in &dir.durable {
                let inner = file.inner.lock();
                let mut data = inner.durable.clone();
                if inner.data.starts_with(&inner.durable) {
                    let unsynced = inner.data.get(inner.durable.len()..).unwrap_or_default();
                    let keep = keep_unsynced(unsynced.len()).min(unsynced.len());
                    data.extend_from_slice(unsynced.get(..keep).unwrap_or_default());
                }
                let file = MemFile { inner: Mutex::new(MemFileData { durable: data.clone(), data }) };
                entries.insert(name.clone(), Arc::new(file));
            }
            dirs.insert(path.clone(), MemDir { durable: entries.clone(), entries });
        }
        MemFs { state: Arc::new(Mutex::new(MemState { dirs, locks: HashSet::new() })) }
    }

    /// Flips one bit of a file's current (and durable) contents, for damage tests.
    pub fn flip_bit(&self, path: &Path, byte_offset: usize, bit: u8) -> io::Result<()> {
        let file = self.file(path)?;
        let mut inner = file.inner.lock();
        let len = inner.data.len();
        let byte = inner
            .data
            .get_mut(byte_offset)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("offset {byte_offset} past {len}")))?;
        *byte ^= 1 << (bit % 8);
        inner.durable = inner.data.clone();
        Ok(())
    }

    /// The current contents of a file.
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        Ok(self.file(path)?.inner.lock().data.clone())
    }

    fn file(&self, path: &Path) -> io::Result<Arc<MemFile>> {
        let (parent, name) = split(path)?;
        let state = self.state.lock();
        state.dirs.get(&parent).and_then(|dir| dir.entries.get(&name)).cloned().ok_or_else(|| not_found(path))
    }
}

impl Fs for MemFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        for ancestor in dir.ancestors() {
            state.dirs.entry(ancestor.to_path_buf()).or_default();
        }
        Ok(())
    }
    fn dir_exists(&self, dir: &Path) -> bool {
        self.state.lock().dirs.contains_key(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>> {
        let (parent, name) = split(path)?;
        let mut state = self.state.lock();
        let dir = state.dirs.get_mut(&parent).ok_or_else(|| not_found(&parent))?;
        if dir.entries.contains_key(&name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        let file = Arc::new(MemFile::default());
        dir.entries.insert(name, file.clone());
        Ok(Arc::new(MemWriteFile(file)))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn ReadFile>> {
        Ok(Arc::new(MemReadFile(self.file(path)?)))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        let dir = state.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(dir.entries.keys().cloned().collect())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_parent, from_name) = split(from)?;
        let (to_parent, to_name) = split(to)?;
        let mut state = self.state.lock();
        let file = state
            .dirs
            .get_mut(&from_parent)
            .and_then(|dir| dir.entries.remove(&from_name))
            .ok_or_else(|| not_found(from))?;
        let dir = state.dirs.get_mut(&to_parent).ok_or_else(|| not_found(&to_parent))?;
        dir.entries.insert(to_name, file);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let (parent, name) = split(path)?;
        let mut state = self.state.lock();
        state.dirs.get_mut(&parent).and_then(|dir| dir.entries.remove(&name)).map(|_| ()).ok_or_else(|| not_found(path))
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = self.file(path)?;
        let mut inner = file.inner.lock();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        inner.data.truncate(len);
        inner.durable = inner.data.clone();
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        let dir = state.dirs.get_mut(dir).ok_or_else(|| not_found(dir))?;
        dir.durable = dir.entries.clone();
        Ok(())
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let mut state = self.state.lock();
        if !state.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(Box::new(MemLock { state: self.state.clone(), path: path.to_path_buf() })))
    }
    fn map_sealed(&self, path: &Path) -> io::Result<Arc<dyn crate::mmap::FileBytes>> {
        Ok(Arc::new(self.contents(path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_forgets_unsynced_data_and_entries() {
        let fs = MemFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let a = fs.create(&dir.join("a")).unwrap();
        a.append(b"hello").unwrap();
        a.sync().unwrap();
        a.append(b" world").unwrap();
        // The entry of "a" is not durable yet: a crash loses the whole file.
        assert!(fs.crash(|n| n).list(dir).unwrap().is_empty());
        fs.sync_dir(dir).unwrap();
        let after = fs.crash(|_| 0);
        assert_eq!(after.contents(&dir.join("a")).unwrap(), b"hello");
        let torn = fs.crash(|n| n / 2);
        assert_eq!(torn.contents(&dir.join("a")).unwrap(), b"hello wo");
        // A rename is durable only after the directory sync.
        fs.rename(&dir.join("a"), &dir.join("b")).unwrap();
        assert_eq!(fs.crash(|_| 0).list(dir).unwrap(), vec!["a".to_string()]);
        fs.sync_dir(dir).unwrap();
        assert_eq!(fs.crash(|_| 0).list(dir).unwrap(), vec!["b".to_string()]);
    }

    #[test]
    fn locks_are_exclusive_until_dropped() {
        let fs = MemFs::new();
        let guard = fs.try_lock(Path::new("/LOCK")).unwrap();
        assert!(guard.is_some());
        assert!(fs.try_lock(Path::new("/LOCK")).unwrap().is_none());
        drop(guard);
        assert!(fs.try_lock(Path::new("/LOCK")).unwrap().is_some());
    }

    #[test]
    fn real_fs_lock_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let first = RealFs.try_lock(&path).unwrap();
        assert!(first.is_some());
        assert!(RealFs.try_lock(&path).unwrap().is_none());
    }
}
