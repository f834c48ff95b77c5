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

/// Renames `src` to `dest` unless `dest` exists (an `AlreadyExists` error, also for an
/// empty directory, which a plain rename would replace). One `renameat2(RENAME_NOREPLACE)`,
/// atomic; on a file system without that flag, a check before the rename.
pub fn rename_no_replace(src: &Path, dest: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, src, CWD, dest, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
            if fs::symlink_metadata(dest).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(src, dest)
        }
        Err(e) => Err(e.into()),
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

    #[test]
    fn rename_no_replace_refuses_anything_in_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("f"), "data").unwrap();
        let empty_dir = tmp.path().join("empty");
        fs::create_dir(&empty_dir).unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        for obstacle in [&empty_dir, &file] {
            let err = rename_no_replace(&src, obstacle).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{obstacle:?}");
        }
        assert_eq!(fs::read(src.join("f")).unwrap(), b"data");
        assert_eq!(fs::read(&file).unwrap(), b"x");
        let missing_parent = tmp.path().join("no/such/dir");
        let err = rename_no_replace(&src, &missing_parent).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let dest = tmp.path().join("dest");
        rename_no_replace(&src, &dest).unwrap();
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"data");
        assert!(!src.exists());
    }
}
