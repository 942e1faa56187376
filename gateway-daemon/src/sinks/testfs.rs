//! A small tmpfs for tests that need a really full file system (ENOSPC from the kernel, not a
//! made-up error). Mounting needs root or CAP_SYS_ADMIN; callers say what they check instead
//! when it cannot be had.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test support: a failure here is a failed test"
)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`1m`, `256k`), or `None` when this process may not mount.
    pub(crate) fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with one file (until the kernel says ENOSPC); returns its path.
    pub(crate) fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                return path;
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Whether this process runs as root (then a tmpfs must mount).
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
