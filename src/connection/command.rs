//! [`CommandSpec`]: what to run and where its streams go.

/// Where a command's stdin comes from.
#[derive(Debug, Default)]
pub enum Input {
    /// `/dev/null`.
    #[default]
    Null,
    /// A pipe, available as [`Process::stdin`](super::Process::stdin).
    Piped,
    /// These bytes, then end-of-file. Written while [`Process::wait`](super::Process::wait) runs.
    Bytes(Vec<u8>),
}

/// Where a command's stdout goes.
#[derive(Debug, Default)]
pub enum Output {
    /// Discarded.
    Null,
    /// A pipe, available as [`Process::stdout`](super::Process::stdout).
    #[default]
    Piped,
    /// Appended to this open file.
    File(std::fs::File),
}

/// Where a command's stderr goes.
#[derive(Debug, Default)]
pub enum ErrOutput {
    /// Discarded.
    Null,
    /// A pipe, available as [`Process::stderr`](super::Process::stderr).
    #[default]
    Piped,
    /// Appended to this open file.
    File(std::fs::File),
    /// Interleaved into stdout (same pipe or file).
    ToStdout,
}

/// A command to run on a connection: argv, environment, working directory and stdio.
#[derive(Debug, Default)]
pub struct CommandSpec {
    /// Program and arguments; must not be empty.
    pub argv: Vec<String>,
    /// Environment variables added to (or overriding) the connection's environment.
    pub env: Vec<(String, String)>,
    /// Working directory on the system; relative paths are relative to the connection's
    /// default directory.
    pub cwd: Option<String>,
    /// stdin.
    pub stdin: Input,
    /// stdout.
    pub stdout: Output,
    /// stderr.
    pub stderr: ErrOutput,
}

impl CommandSpec {
    /// A command with stdin from `/dev/null` and stdout/stderr piped.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adds one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds several environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, stdin: Input) -> Self {
        self.stdin = stdin;
        self
    }

    /// Sets stdout.
    pub fn stdout(mut self, stdout: Output) -> Self {
        self.stdout = stdout;
        self
    }

    /// Sets stderr.
    pub fn stderr(mut self, stderr: ErrOutput) -> Self {
        self.stderr = stderr;
        self
    }

    /// Why the OS could not run this command as given, if it could not: an empty argv, a
    /// NUL byte in an argument, an environment value or the working directory (a C string
    /// ends there), an environment variable name that is empty or holds `=` or NUL.
    /// Connections refuse such a command instead of running a changed one.
    ///
    /// ```
    /// use atex::connection::CommandSpec;
    /// assert!(CommandSpec::new(["echo", "ok"]).env("A", "1").invalid().is_none());
    /// assert!(CommandSpec::new(["echo", "a\0b"]).invalid().is_some());
    /// assert!(CommandSpec::new(["true"]).env("A=B", "1").invalid().is_some());
    /// ```
    pub fn invalid(&self) -> Option<String> {
        if self.argv.is_empty() {
            return Some("empty argv".into());
        }
        if let Some(arg) = self.argv.iter().find(|a| a.contains('\0')) {
            return Some(format!("the argument {arg:?} holds a NUL byte"));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains(['=', '\0']) {
                return Some(format!("invalid environment variable name {k:?}"));
            }
            if v.contains('\0') {
                return Some(format!("the value of {k} holds a NUL byte"));
            }
        }
        match &self.cwd {
            Some(dir) if dir.contains('\0') => {
                Some(format!("the working directory {dir:?} holds a NUL byte"))
            }
            _ => None,
        }
    }

    /// The argv quoted for a POSIX shell, for messages and for transports that carry one
    /// command line (SSH).
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes `s` for a POSIX shell (single quotes unless only safe characters are used).
///
/// ```
/// assert_eq!(atex::connection::shell_quote("abc-1.txt"), "abc-1.txt");
/// assert_eq!(atex::connection::shell_quote("it's"), "'it'\\''s'");
/// assert_eq!(atex::connection::shell_quote(""), "''");
/// ```
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
