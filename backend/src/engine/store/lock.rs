//! Advisory whole-file locks that interoperate with linuxkit.
//!
//! linuxkit (since PRs #4132/#4136/#4147) takes a classic `fcntl` write lock on
//! `<cache>/.lock` around reads and writes of `index.json`. Classic `fcntl`
//! locks belong to the process, so two threads would not exclude each other;
//! Linux's open-file-description (OFD) locks conflict with classic ones *and*
//! between separate opens in one process, so they serve both needs.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::StoreError;

/// A held lock; released when dropped (closing the file releases it).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Shared (read) or exclusive (write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once.
    Shared,
    /// One holder, no shared holders.
    Exclusive,
}

impl FileLock {
    /// Blocks until the lock on `path` (created if needed) is held.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(StoreError::io("opening lock file", path))?;
        sys::lock(&file, mode).map_err(StoreError::io("locking", path))?;
        Ok(Self { _file: file })
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    use super::LockMode;

    pub fn lock(file: &File, mode: LockMode) -> io::Result<()> {
        let l_type = match mode {
            LockMode::Shared => libc::F_RDLCK,
            LockMode::Exclusive => libc::F_WRLCK,
        };
        // SAFETY: `flock` is a plain C struct for which all-zero is valid
        // (OFD locks require l_pid == 0); fields are then set explicitly.
        let mut request: libc::flock = unsafe { std::mem::zeroed() };
        request.l_type = l_type as libc::c_short;
        request.l_whence = libc::SEEK_SET as libc::c_short;
        request.l_start = 0;
        request.l_len = 0;
        loop {
            // SAFETY: the fd is open for the duration of the call and
            // `request` is a valid, initialised `flock`.
            let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLKW, &request) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::fs::File;
    use std::io;

    use super::LockMode;

    pub fn lock(file: &File, mode: LockMode) -> io::Result<()> {
        match mode {
            LockMode::Shared => file.lock_shared(),
            LockMode::Exclusive => file.lock(),
        }
        .map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn exclusive_excludes_other_threads() {
        let dir = std::env::temp_dir().join(format!("kiln-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".lock");
        let held = FileLock::acquire(&path, LockMode::Exclusive).unwrap();
        let got = Arc::new(AtomicBool::new(false));
        let t = {
            let got = got.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let _l = FileLock::acquire(&path, LockMode::Shared).unwrap();
                got.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !got.load(Ordering::SeqCst),
            "shared lock granted while exclusive held"
        );
        drop(held);
        t.join().unwrap();
        assert!(got.load(Ordering::SeqCst));
        let _a = FileLock::acquire(&path, LockMode::Shared).unwrap();
        let _b = FileLock::acquire(&path, LockMode::Shared).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
