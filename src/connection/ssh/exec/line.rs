//! The command line sent with `exec`.

use super::channel::ChannelError;
use crate::connection::{CommandSpec, ErrOutput, Input, Output, shell_quote};

/// Builds the line sent with `exec`. The login shell runs it; the command replaces the
/// shell (`exec`), so its exit status and signal are the command's.
///
/// OpenSSH's sshd already makes the session's shell a session and process group leader;
/// when the shell is not one (another server), the command is re-run under `setsid` so
/// that it leads its own group either way. The group id is printed first so that the
/// client can signal the whole tree (`kill -- -PGID`) over another channel.
///
/// The shell tells whether it leads its group with one builtin call, `kill -0 -$$`: a
/// process group with the shell's pid as its id exists only while the shell leads it (a
/// group's id is its creator's pid, and a pid is not reused while a group holds it).
/// Reading `/proc/$$/stat` instead costs a `read` system call per byte in dash, about
/// 0.3 ms of every command on a 2-core machine.
pub(super) fn remote_command_line(cmd: &CommandSpec) -> Result<String, ChannelError> {
    if let Some(why) = cmd.invalid() {
        return Err(ChannelError::InvalidCommand(why));
    }
    let mut inner = String::from("printf 'ATEX-PGID %s\\n' \"$$\"; ");
    if let Some(dir) = &cmd.cwd {
        inner.push_str("cd ");
        inner.push_str(&shell_quote(dir));
        inner.push_str(" && ");
    }
    inner.push_str("exec ");
    if !cmd.env.is_empty() {
        inner.push_str("env ");
        for (k, v) in &cmd.env {
            inner.push_str(&shell_quote(&format!("{k}={v}")));
            inner.push(' ');
        }
    }
    inner.push_str(&cmd.display());
    if matches!(cmd.stdin, Input::Null) {
        inner.push_str(" </dev/null");
    }
    if matches!(cmd.stdout, Output::Null) {
        inner.push_str(" >/dev/null");
    }
    match cmd.stderr {
        ErrOutput::Null => inner.push_str(" 2>/dev/null"),
        ErrOutput::ToStdout => inner.push_str(" 2>&1"),
        _ => {}
    }
    Ok(format!(
        "if kill -0 -$$ 2>/dev/null; then {inner}; else exec setsid /bin/sh -c {}; fi",
        shell_quote(&inner)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn command_line_quotes_and_redirects() {
        let cmd = CommandSpec::new(["echo", "a b", "it's"])
            .env("X", "1 2")
            .cwd("/tmp/d d")
            .stderr(ErrOutput::ToStdout);
        let line = remote_command_line(&cmd).unwrap();
        assert!(
            line.contains(
                "cd '/tmp/d d' && exec env 'X=1 2' echo 'a b' 'it'\\''s' </dev/null 2>&1"
            ),
            "{line}"
        );
        assert!(remote_command_line(&CommandSpec::new(Vec::<String>::new())).is_err());
        assert!(remote_command_line(&CommandSpec::new(["true"]).env("A=B", "c")).is_err());
    }

    #[test]
    fn command_line_runs_locally() {
        // The wrapper works in a plain POSIX shell that is not a group leader (setsid path).
        let cmd = CommandSpec::new(["sh", "-c", "echo \"$X:$PWD\""])
            .env("X", "v")
            .cwd("/");
        let line = remote_command_line(&cmd).unwrap();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("ATEX-PGID "));
        assert_eq!(lines.next(), Some("v:/"));
    }

    /// Runs the wrapper with `shell`, as a group leader (`setsid`, as OpenSSH starts it) or
    /// not, and returns the printed group id with the command's own pid and group id.
    fn run_wrapper(shell: &[&str], leader: bool) -> (String, String, String) {
        // The command prints its pid and its process group (field 5 of /proc/PID/stat).
        let cmd = CommandSpec::new(["sh", "-c", "echo $$; cut -d' ' -f5 /proc/$$/stat"]);
        let line = remote_command_line(&cmd).unwrap();
        let mut argv: Vec<&str> = if leader { vec!["setsid"] } else { Vec::new() };
        argv.extend_from_slice(shell);
        let out = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let pgid = header
            .strip_prefix("ATEX-PGID ")
            .unwrap_or(header)
            .to_string();
        let pid = lines.next().unwrap_or_default().to_string();
        let group = lines.next().unwrap_or_default().to_string();
        (pgid, pid, group)
    }

    #[test]
    fn the_command_leads_the_printed_group_in_every_shell() {
        let mut shells: Vec<Vec<&str>> = vec![vec!["/bin/sh"]];
        if Path::new("/bin/bash").exists() {
            shells.push(vec!["/bin/bash"]);
        }
        if Path::new("/bin/busybox").exists() {
            shells.push(vec!["/bin/busybox", "sh"]);
        }
        for shell in &shells {
            for leader in [true, false] {
                let (pgid, pid, group) = run_wrapper(shell, leader);
                assert!(
                    pgid.parse::<i32>().is_ok(),
                    "{shell:?} leader={leader}: {pgid:?}"
                );
                // The command replaced the shell that printed the id and leads that group.
                assert_eq!(pid, pgid, "{shell:?} leader={leader}");
                assert_eq!(group, pgid, "{shell:?} leader={leader}");
            }
        }
    }
}
