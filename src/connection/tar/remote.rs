//! The remote side of a tar transfer: the command lines that unpack an upload and pack a
//! download.

use crate::connection::shell_quote;

/// The command that unpacks an upload of `local` (a directory when `is_dir`) to `remote`,
/// and the name of the archive's root entry.
pub(crate) fn extract_command(remote: &str, is_dir: bool) -> (String, String) {
    let (dir, root_name) = if is_dir {
        (remote.to_string(), ".".to_string())
    } else {
        remote_parent_and_name(remote)
    };
    let line = format!(
        "mkdir -p -- {d} && exec tar -x -o -p -f - -C {d}",
        d = shell_quote(&dir)
    );
    (line, root_name)
}

/// The command that packs `remote` (a directory when `is_dir`) into a tar stream on its
/// stdout, and for a single file the name of its entry.
pub(crate) fn create_command(remote: &str, is_dir: bool) -> (String, Option<String>) {
    let (parent, name) = remote_parent_and_name(remote);
    if is_dir {
        (
            format!("cd {} && exec tar -c -f - .", shell_quote(remote)),
            None,
        )
    } else {
        let line = format!(
            "cd {p} && exec tar -c -f - -- {n}",
            p = shell_quote(&parent),
            n = shell_quote(&name)
        );
        (line, Some(name))
    }
}

/// The command that exits 0 when `remote` is a directory (not a symlink to one).
pub(crate) fn is_dir_command(remote: &str) -> String {
    let r = shell_quote(remote);
    format!("[ -d {r} ] && [ ! -L {r} ]")
}

/// The parent directory and the last component of a remote path.
fn remote_parent_and_name(remote: &str) -> (String, String) {
    let trimmed = remote.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", name)) => ("/".into(), name.into()),
        Some((parent, name)) => (parent.into(), name.into()),
        None => (".".into(), trimmed.into()),
    }
}
