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
        "{{ read -r _atex </proc/$$/stat; }} 2>/dev/null; set -- ${{_atex##*)}}; \
         if [ \"${{3:-}}\" = \"$$\" ]; then {inner}; else exec setsid /bin/sh -c {}; fi",
        shell_quote(&inner)
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
