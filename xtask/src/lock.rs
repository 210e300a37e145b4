//! One xtask at a time per `target/`: builds, images, QEMU runs and logs
//! share fixed paths, and QEMU refuses to boot an image another QEMU holds.
//! Concurrent invocations wait for each other, as cargo does.

use std::fs::File;
use std::os::unix::io::AsRawFd;

use crate::fail;
use crate::layout::Layout;
use crate::process::TaskResult;

/// Holds the lock until dropped.
pub struct TargetLock {
    file: File,
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // SAFETY: the fd belongs to `self.file` and is still open.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

pub fn acquire(layout: &Layout) -> TaskResult<TargetLock> {
    let path = layout.target().join("xtask.lock");
    std::fs::create_dir_all(layout.target())?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| fail!("opening {}: {e}", path.display()))?;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file`; flock only
    // changes the advisory lock state.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        println!("xtask: waiting for another cargo xtask in this tree to finish");
        // SAFETY: as above; this call blocks until the lock is free.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            return Err(fail!(
                "locking {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(TargetLock { file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            root: dir.path().to_path_buf(),
        };
        let first = acquire(&layout).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let l2 = layout.clone();
        let t = std::thread::spawn(move || {
            let _second = acquire(&l2).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
