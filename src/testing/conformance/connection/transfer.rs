//! Tree and file transfers: contents, modes, symlinks, merging, errors.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::MIB;
use super::target::ConnectionTarget;
use crate::testing::conformance::{CheckResult, Context, Violation, ensure, pattern};

/// One entry of a tree, for comparisons.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

fn read_tree(root: &Path) -> Result<Vec<(PathBuf, Entry)>, Violation> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Entry)>) -> std::io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let rel = rel.join(name);
            let path = root.join(&rel);
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.push((rel, Entry::Link(std::fs::read_link(&path)?)));
            } else if meta.is_dir() {
                out.push((rel.clone(), Entry::Dir(mode)));
                walk(root, &rel, out)?;
            } else {
                out.push((rel, Entry::File(mode, std::fs::read(&path)?)));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out).context(format!("reading {}", root.display()))?;
    Ok(out)
}

/// Writes the tree the transfer checks send: nested directories, modes, an executable, an
/// empty file and directory, binary data, relative and dangling symlinks.
fn write_tree(root: &Path) -> Result<(), Violation> {
    let build = || -> std::io::Result<()> {
        let mode =
            |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::create_dir_all(root.join("deep/er/est"))?;
        std::fs::create_dir_all(root.join("empty"))?;
        std::fs::write(root.join("bin/run.sh"), b"#!/bin/sh\necho ran\n")?;
        mode(&root.join("bin/run.sh"), 0o750)?;
        std::fs::write(root.join("deep/er/est/data.bin"), pattern(3 * MIB + 17, 4))?;
        std::fs::write(root.join("private.txt"), b"secret\n")?;
        mode(&root.join("private.txt"), 0o600)?;
        std::fs::write(root.join("zero"), b"")?;
        std::fs::write(root.join("name with spaces 'and' quotes"), b"x\n")?;
        std::os::unix::fs::symlink("bin/run.sh", root.join("link"))?;
        std::os::unix::fs::symlink("/atex/nonexistent/target", root.join("dangling"))?;
        mode(&root.join("deep/er"), 0o750)?;
        Ok(())
    };
    build().context(format!("writing a local tree in {}", root.display()))
}

/// Directory trees go up and come back with contents, modes, empty files and directories
/// and symlinks (relative and dangling) kept; an uploaded directory is merged into an
/// existing one; the uploaded executable runs on the system.
pub async fn transfer_tree(t: &ConnectionTarget) -> CheckResult {
    let local = tempfile::tempdir().context("a local temporary directory")?;
    let src = local.path().join("src");
    write_tree(&src)?;
    let remote = t.path("tree");
    t.conn
        .upload(&src, &remote)
        .await
        .context(format!("uploading a tree to {remote}"))?;
    let out = t
        .sh("cd \"$1\" && ./bin/run.sh && cat ./link", &[&remote])
        .await?;
    ensure!(
        out == b"ran\n#!/bin/sh\necho ran\n",
        "the uploaded executable and its symlink gave {:?}",
        String::from_utf8_lossy(&out)
    );
    // Merged into an existing directory.
    let extra = local.path().join("extra");
    std::fs::create_dir_all(extra.join("bin")).context("writing a local tree")?;
    std::fs::write(extra.join("bin/more.txt"), b"more\n").context("writing a local tree")?;
    t.conn
        .upload(&extra, &remote)
        .await
        .context(format!("uploading a second tree into {remote}"))?;
    let back = local.path().join("back");
    t.conn
        .download(&remote, &back)
        .await
        .context(format!("downloading {remote}"))?;
    std::fs::remove_file(back.join("bin/more.txt")).map_err(|_| {
        Violation::new("a tree uploaded into an existing directory was not merged into it")
    })?;
    let (sent, got) = (read_tree(&src)?, read_tree(&back)?);
    if sent != got {
        let mut diff = String::new();
        for (path, entry) in &sent {
            match got.iter().find(|(p, _)| p == path) {
                None => {
                    let _ = write!(diff, "\n  {} is missing", path.display());
                }
                Some((_, e)) if e != entry => {
                    let _ = write!(diff, "\n  {} differs: {}", path.display(), brief(entry, e));
                }
                _ => {}
            }
        }
        for (path, _) in got
            .iter()
            .filter(|(p, _)| !sent.iter().any(|(q, _)| q == p))
        {
            let _ = write!(diff, "\n  {} appeared", path.display());
        }
        return Err(Violation(format!("the tree came back changed:{diff}")));
    }
    Ok(())
}

fn brief(sent: &Entry, got: &Entry) -> String {
    let show = |e: &Entry| match e {
        Entry::Dir(m) => format!("directory {m:o}"),
        Entry::File(m, data) => format!("file {m:o}, {} bytes", data.len()),
        Entry::Link(target) => format!("symlink to {}", target.display()),
    };
    format!("sent {}, got {}", show(sent), show(got))
}

/// A single file goes to a new nested path (parents created) with its mode, and comes back
/// to a new nested local path.
pub async fn transfer_file(t: &ConnectionTarget) -> CheckResult {
    let local = tempfile::tempdir().context("a local temporary directory")?;
    let file = local.path().join("tool.sh");
    std::fs::write(&file, b"#!/bin/sh\necho tool\n").context("writing a local file")?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o750)).context("chmod")?;
    let remote = t.path("new/nested/tool.sh");
    t.conn
        .upload(&file, &remote)
        .await
        .context(format!("uploading a file to {remote}"))?;
    let out = t.sh("\"$1\"", &[&remote]).await?;
    ensure!(
        out == b"tool\n",
        "the uploaded file ran as {:?}",
        String::from_utf8_lossy(&out)
    );
    let back = local.path().join("a/b/tool.sh");
    t.conn
        .download(&remote, &back)
        .await
        .context(format!("downloading {remote}"))?;
    let meta = std::fs::metadata(&back).context("the downloaded file")?;
    let data = std::fs::read(&back).context("the downloaded file")?;
    ensure!(
        data == b"#!/bin/sh\necho tool\n" && meta.permissions().mode() & 0o777 == 0o750,
        "the file came back as {:?} with mode {:o}",
        String::from_utf8_lossy(&data),
        meta.permissions().mode() & 0o777
    );
    Ok(())
}

/// Transfers of missing files fail with an error that names them, and create nothing.
pub async fn transfer_errors(t: &ConnectionTarget) -> CheckResult {
    let local = tempfile::tempdir().context("a local temporary directory")?;
    let missing_local = local.path().join("atex-missing-source");
    let target = t.path("never");
    let err = t.conn.upload(&missing_local, &target).await;
    match err {
        Ok(()) => return Err(Violation::new("uploading a missing local file succeeded")),
        Err(e) => ensure!(
            e.to_string().contains("atex-missing-source"),
            "the upload error does not name the missing file: {e}"
        ),
    }
    let missing_remote = t.path("atex-missing-remote");
    let dest = local.path().join("dest");
    match t.conn.download(&missing_remote, &dest).await {
        Ok(()) => {
            return Err(Violation::new(
                "downloading a missing remote file succeeded",
            ));
        }
        Err(e) => ensure!(
            e.to_string().contains("atex-missing-remote"),
            "the download error does not name the missing file: {e}"
        ),
    }
    ensure!(!dest.exists(), "a failed download left {}", dest.display());
    let left = t
        .sh(
            "if [ -e \"$1\" ] || [ -L \"$1\" ]; then echo exists; fi",
            &[&target],
        )
        .await?;
    ensure!(left.is_empty(), "a failed upload created {target}");
    Ok(())
}
