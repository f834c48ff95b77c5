//! Copying and moving directory trees with modes and symlinks kept (the `cp -a` subset the
//! library needs). Blocking functions: call them from `spawn_blocking`.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

/// Copies `src` (a file, symlink or directory) to `dst`. Directories are merged into an
/// existing `dst`; files and symlinks replace an existing `dst`. Modes are kept; symlinks are
/// copied as symlinks (never followed); other special files are skipped.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src)?;
        if fs::symlink_metadata(dst).is_ok() {
            remove_any(dst)?;
        }
        symlink(target, dst)
    } else if ft.is_dir() {
        match fs::symlink_metadata(dst) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                remove_any(dst)?;
                fs::create_dir(dst)?;
            }
            Err(_) => fs::create_dir(dst)?,
        }
        for entry in fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.permissions().mode()))
    } else if ft.is_file() {
        if let Ok(m) = fs::symlink_metadata(dst)
            && (m.file_type().is_symlink() || m.is_dir())
        {
            remove_any(dst)?;
        }
        fs::copy(src, dst)?;
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.permissions().mode()))
    } else {
        tracing::debug!(path = %src.display(), "skipping special file");
        Ok(())
    }
}

/// Moves `src` to `dst` (whose parent must exist): a rename when possible, otherwise a copy
/// followed by removal of `src` (across filesystems). `dst` must not exist.
pub fn move_tree(src: &Path, dst: &Path) -> io::Result<()> {
    if fs::symlink_metadata(dst).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", dst.display()),
        ));
    }
    match fs::rename(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {
            if let Err(e) = copy_tree(src, dst) {
                let _ = remove_any(dst);
                return Err(e);
            }
            remove_any(src)
        }
        Err(e) => Err(e),
    }
}

/// Removes a file, symlink or whole directory tree.
pub fn remove_any(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Whether `dir` is missing or an empty directory.
pub fn is_empty_dir(dir: &Path) -> io::Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_keeps_modes_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("sub/run.sh"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("sub/run.sh", src.join("link")).unwrap();
        let dst = tmp.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let mode = fs::metadata(dst.join("sub/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("sub/run.sh")
        );
        let moved = tmp.path().join("moved");
        move_tree(&dst, &moved).unwrap();
        assert!(!dst.exists());
        assert!(moved.join("sub/run.sh").exists());
        assert!(move_tree(&src, &moved).is_err());
    }
}
