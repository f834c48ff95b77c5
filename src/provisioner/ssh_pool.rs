//! [`SshHostPool`]: hands out machines the user already has, reached over SSH.
//!
//! Each machine goes to one user at a time. A machine released after
//! [`Remote::mark_destroyed`] (a test broke it), or one that cannot be connected to or fails
//! the optional setup command, is quarantined: never handed out again by this pool.
//!
//! Hosts file (`--provisioner ssh:HOSTS_FILE`): one machine per line,
//! `user@host[:port]` optionally followed by white space and a private key path (relative
//! paths are relative to the file's directory, `~/` is the home directory). `#` starts a
//! comment; blank lines are ignored.
//!
//! ```text
//! # lab machines
//! root@192.0.2.10:22   ~/.ssh/lab_ed25519
//! test@[2001:db8::7]:2222
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Count, ProvisionError, Provisioner, Remote};
use crate::connection::ssh::{SshAuth, SshConfig, SshConnection};
use crate::connection::{CommandSpec, Connection, ConnectionError, ConnectionExt, Process};
use crate::scope::Scope;

/// An error in a hosts file, with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct HostsFileError {
    /// The file (or other source) name.
    pub source_name: String,
    /// 1-based line number (0: the file itself).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn expand_key_path(raw: &str, base: Option<&Path>) -> Option<PathBuf> {
    if let Some(rest) = raw.strip_prefix("~/") {
        return std::env::home_dir().map(|h| h.join(rest));
    }
    let p = PathBuf::from(raw);
    Some(match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p,
    })
}

/// Parses hosts-file text. Every machine starts from `template` (host-key policy,
/// known_hosts, timeouts, default authentication); the line sets user, host and port, and
/// a key path given on the line replaces the template's authentication. `base` resolves
/// relative key paths; `source_name` names the text in errors.
pub fn parse_hosts(
    text: &str,
    source_name: &str,
    base: Option<&Path>,
    template: &SshConfig,
) -> Result<Vec<SshConfig>, HostsFileError> {
    let err = |line: usize, message: String| HostsFileError {
        source_name: source_name.to_string(),
        line,
        message,
    };
    let mut out: Vec<(usize, SshConfig)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let content = match raw.find('#') {
            Some(pos) => &raw[..pos],
            None => raw,
        };
        let mut fields = content.split_whitespace();
        let Some(dest) = fields.next() else { continue };
        let key = fields.next();
        if let Some(extra) = fields.next() {
            return Err(err(
                lineno,
                format!(
                    "unexpected '{extra}' after the key path (expected: user@host[:port] [KEY])"
                ),
            ));
        }
        if !dest.contains('@') {
            return Err(err(
                lineno,
                format!("'{dest}' has no user (expected: user@host[:port] [KEY])"),
            ));
        }
        let parsed = SshConfig::parse_destination(dest)
            .map_err(|e| err(lineno, e.reason.clone()))
            .map_err(|mut e| {
                e.message = format!("'{dest}': {}", e.message);
                e
            })?;
        let mut cfg = template.clone();
        cfg.host = parsed.host;
        cfg.port = parsed.port;
        cfg.user = parsed.user;
        if let Some(key) = key {
            let path = expand_key_path(key, base)
                .ok_or_else(|| err(lineno, format!("cannot expand '{key}': no home directory")))?;
            if !path.is_file() {
                return Err(err(
                    lineno,
                    format!("private key {} does not exist", path.display()),
                ));
            }
            cfg.auth = vec![SshAuth::KeyFile {
                path,
                passphrase: None,
            }];
        }
        if let Some((first, _)) = out
            .iter()
            .find(|(_, c)| c.host == cfg.host && c.port == cfg.port && c.user == cfg.user)
        {
            return Err(err(
                lineno,
                format!("{dest} is listed twice (first on line {first})"),
            ));
        }
        out.push((lineno, cfg));
    }
    if out.is_empty() {
        return Err(err(0, "no machines listed".into()));
    }
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// Reads and parses a hosts file (see [`parse_hosts`]).
pub fn read_hosts_file(
    path: &Path,
    template: &SshConfig,
) -> Result<Vec<SshConfig>, HostsFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| HostsFileError {
        source_name: name.clone(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse_hosts(&text, &name, path.parent(), template)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MachineState {
    Free,
    Preparing,
    Ready,
    InUse,
    Quarantined,
}

struct State {
    machines: Vec<MachineState>,
    ready: VecDeque<(usize, SshConnection)>,
    requested: usize,
    unlimited: bool,
    scope: Option<Scope>,
    stopped: bool,
    handed: Vec<Weak<SshPoolRemote>>,
    /// Why the last machine was quarantined (its connection or setup error).
    last_failure: Option<Arc<ConnectionError>>,
}

/// No machine of the pool can be used; the last machine's failure is the source.
#[derive(Debug, thiserror::Error)]
#[error("every machine is quarantined")]
struct AllQuarantined(#[source] Option<Arc<ConnectionError>>);

struct PoolInner {
    hosts: Vec<SshConfig>,
    setup: Option<Vec<String>>,
    state: Mutex<State>,
    wake: Notify,
}

/// Hands out machines from a fixed list, each to one user at a time (see the
/// [module docs](self)).
///
/// ```no_run
/// use atex::connection::ssh::{HostKeyPolicy, SshConfig};
/// use atex::provisioner::{Count, Provisioner, SshHostPool};
/// use atex::scope::Scope;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let template = SshConfig::new("unused").host_key_policy(HostKeyPolicy::AcceptNew);
/// let pool = SshHostPool::from_hosts_file("hosts.txt".as_ref(), &template)?
///     .with_setup(["sh", "-c", "command -v tar"]);
/// let scope = Scope::root("run");
/// pool.start(&scope).await?;
/// pool.provision(Count::N(1))?;
/// let remote = pool.get_remote().await?;
/// // ... run tests; a broken machine: remote.mark_destroyed();
/// remote.release().await?;
/// pool.stop().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SshHostPool {
    inner: Arc<PoolInner>,
}

impl fmt::Debug for SshHostPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshHostPool")
            .field("hosts", &self.inner.hosts.len())
            .finish()
    }
}

impl SshHostPool {
    /// A pool of these machines.
    pub fn new(hosts: Vec<SshConfig>) -> Self {
        let n = hosts.len();
        Self {
            inner: Arc::new(PoolInner {
                hosts,
                setup: None,
                state: Mutex::new(State {
                    machines: vec![MachineState::Free; n],
                    ready: VecDeque::new(),
                    requested: 0,
                    unlimited: false,
                    scope: None,
                    stopped: false,
                    handed: Vec::new(),
                    last_failure: None,
                }),
                wake: Notify::new(),
            }),
        }
    }

    /// A pool of the machines in a hosts file (see [`read_hosts_file`]).
    pub fn from_hosts_file(path: &Path, template: &SshConfig) -> Result<Self, HostsFileError> {
        Ok(Self::new(read_hosts_file(path, template)?))
    }

    /// Runs `argv` on every machine before handing it out; a machine where it fails is
    /// quarantined. Call before [`start`](Provisioner::start).
    pub fn with_setup<I, S>(self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let setup = Some(argv.into_iter().map(Into::into).collect());
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.setup = setup;
                Self {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => {
                tracing::warn!("with_setup called on a shared pool; ignored");
                Self { inner }
            }
        }
    }

    /// The machines and whether each is quarantined.
    pub fn quarantined(&self) -> Vec<(String, bool)> {
        let st = self.lock();
        self.inner
            .hosts
            .iter()
            .zip(st.machines.iter())
            .map(|(h, s)| (h.destination(), *s == MachineState::Quarantined))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock()
    }
}

impl PoolInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn describe(&self) -> String {
        format!("ssh-pool({} machines)", self.hosts.len())
    }

    /// Starts preparing free machines for outstanding requests.
    fn pump(self: &Arc<Self>) {
        let mut st = self.lock();
        let Some(scope) = st.scope.clone() else {
            return;
        };
        if st.stopped {
            return;
        }
        while st.unlimited || st.requested > 0 {
            let Some(index) = st.machines.iter().position(|m| *m == MachineState::Free) else {
                break;
            };
            st.machines[index] = MachineState::Preparing;
            if !st.unlimited {
                st.requested -= 1;
            }
            let me = self.clone();
            let task_scope = scope.clone();
            scope.spawn("ssh-pool-prepare", async move {
                me.prepare(index, &task_scope).await;
            });
        }
    }

    async fn prepare(self: Arc<Self>, index: usize, scope: &Scope) {
        let Some(cfg) = self.hosts.get(index).cloned() else {
            return;
        };
        let dest = cfg.destination();
        let result = async {
            let conn = SshConnection::connect(cfg).await?;
            if let Some(argv) = &self.setup {
                conn.check(CommandSpec::new(argv.clone()), scope)
                    .await
                    .map_err(|e| ConnectionError::Io {
                        context: format!("setup on {dest}"),
                        source: std::io::Error::other(e),
                    })?;
            }
            Ok::<_, ConnectionError>(conn)
        };
        let result = scope.run(result).await;
        let leftover = {
            let mut st = self.lock();
            match result {
                Some(Ok(conn)) if !st.stopped => {
                    st.machines[index] = MachineState::Ready;
                    st.ready.push_back((index, conn));
                    None
                }
                Some(Ok(conn)) => {
                    st.machines[index] = MachineState::Free;
                    Some(conn)
                }
                Some(Err(e)) => {
                    tracing::error!(machine = %dest, error = %crate::error::chain(&e), "machine unusable; quarantined");
                    st.last_failure = Some(Arc::new(e));
                    st.machines[index] = MachineState::Quarantined;
                    if !st.unlimited {
                        st.requested += 1;
                    }
                    None
                }
                None => {
                    st.machines[index] = MachineState::Free;
                    None
                }
            }
        };
        if let Some(conn) = leftover {
            conn.disconnect().await;
            return;
        }
        self.pump();
        self.wake.notify_waiters();
    }

    /// Takes a ready machine, or says why there will be none.
    fn take_ready(self: &Arc<Self>) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        let mut st = self.lock();
        if st.stopped || st.scope.is_none() {
            return Err(ProvisionError::Stopped(self.describe()));
        }
        if let Some((index, conn)) = st.ready.pop_front() {
            st.machines[index] = MachineState::InUse;
            let remote = Arc::new(SshPoolRemote {
                conn,
                index,
                pool: self.clone(),
                released: AtomicBool::new(false),
                destroyed: AtomicBool::new(false),
            });
            st.handed.retain(|w| w.strong_count() > 0);
            st.handed.push(Arc::downgrade(&remote));
            return Ok(Some(remote));
        }
        if st.machines.iter().all(|m| *m == MachineState::Quarantined) {
            return Err(ProvisionError::failed(
                self.describe(),
                AllQuarantined(st.last_failure.clone()),
            ));
        }
        Ok(None)
    }

    fn give_back(self: &Arc<Self>, index: usize, destroyed: bool) {
        {
            let mut st = self.lock();
            if let Some(m) = st.machines.get_mut(index) {
                *m = if destroyed {
                    MachineState::Quarantined
                } else {
                    MachineState::Free
                };
            }
        }
        if destroyed {
            tracing::warn!(machine = %self.hosts.get(index).map(|h| h.destination()).unwrap_or_default(),
                "machine released as destroyed; quarantined");
        }
        self.pump();
        self.wake.notify_waiters();
    }
}

#[async_trait]
impl Provisioner for SshHostPool {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn start(&self, scope: &Scope) -> Result<(), ProvisionError> {
        {
            let mut st = self.lock();
            st.scope = Some(scope.child("ssh-pool"));
            st.stopped = false;
        }
        self.inner.pump();
        Ok(())
    }

    fn provision(&self, count: Count) -> Result<(), ProvisionError> {
        {
            let mut st = self.lock();
            if st.stopped {
                return Err(ProvisionError::Stopped(self.describe()));
            }
            match count {
                Count::N(n) => st.requested = st.requested.saturating_add(n),
                Count::Unlimited => st.unlimited = true,
            }
        }
        self.inner.pump();
        Ok(())
    }

    async fn get_remote(&self) -> Result<Arc<dyn Remote>, ProvisionError> {
        loop {
            let notified = self.inner.wake.notified();
            if let Some(remote) = self.inner.take_ready()? {
                return Ok(remote);
            }
            notified.await;
        }
    }

    fn try_get_remote(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        self.inner.take_ready()
    }

    fn clear(&self) {
        let mut st = self.lock();
        st.requested = 0;
        st.unlimited = false;
    }

    async fn stop(&self) -> Result<(), ProvisionError> {
        let (handed, ready, scope) = {
            let mut st = self.lock();
            st.stopped = true;
            st.requested = 0;
            st.unlimited = false;
            let ready: Vec<_> = st.ready.drain(..).collect();
            for (i, _) in &ready {
                st.machines[*i] = MachineState::Free;
            }
            let handed: Vec<_> = st.handed.drain(..).filter_map(|w| w.upgrade()).collect();
            (handed, ready, st.scope.take())
        };
        self.inner.wake.notify_waiters();
        if let Some(scope) = scope {
            scope.cancel();
        }
        for (_, conn) in ready {
            conn.disconnect().await;
        }
        let mut first_error = None;
        for remote in handed {
            if let Err(e) = remote.release().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A machine of an [`SshHostPool`], in use by one holder until released.
pub struct SshPoolRemote {
    conn: SshConnection,
    index: usize,
    pool: Arc<PoolInner>,
    released: AtomicBool,
    destroyed: AtomicBool,
}

impl fmt::Debug for SshPoolRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshPoolRemote")
            .field("conn", &self.conn)
            .field("destroyed", &self.destroyed.load(Ordering::SeqCst))
            .finish()
    }
}

impl SshPoolRemote {
    /// The underlying connection (for [`SshConnection::forward`] and the like).
    pub fn connection(&self) -> &SshConnection {
        &self.conn
    }
}

impl Drop for SshPoolRemote {
    fn drop(&mut self) {
        // Dropped without release: the machine goes back (in memory only, nothing outside).
        if !self.released.swap(true, Ordering::SeqCst) {
            self.pool
                .give_back(self.index, self.destroyed.load(Ordering::SeqCst));
        }
    }
}

#[async_trait]
impl Connection for SshPoolRemote {
    fn describe(&self) -> String {
        self.conn.describe()
    }

    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        if self.is_released() {
            return Err(ConnectionError::released(self.describe()));
        }
        self.conn.spawn(cmd, scope).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        if self.is_released() {
            return Err(ConnectionError::released(self.describe()));
        }
        self.conn.upload(local, remote).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        if self.is_released() {
            return Err(ConnectionError::released(self.describe()));
        }
        self.conn.download(remote, local).await
    }

    async fn reconnect(&self, scope: &Scope) -> Result<(), ConnectionError> {
        self.conn.reconnect(scope).await
    }

    async fn disconnect(&self) {
        self.conn.disconnect().await
    }
}

#[async_trait]
impl Remote for SshPoolRemote {
    async fn release(&self) -> Result<(), ProvisionError> {
        if self.released.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.conn.disconnect().await;
        self.pool
            .give_back(self.index, self.destroyed.load(Ordering::SeqCst));
        Ok(())
    }

    fn is_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }

    fn mark_destroyed(&self) {
        self.destroyed.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_parsing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k1"), "key").unwrap();
        let text =
            "# lab\n\nroot@192.0.2.10:2222   k1  # first\n  test@[2001:db8::7]\nalice@h.example\n";
        let t = SshConfig::new("x").port(2);
        let hosts = parse_hosts(text, "hosts", Some(dir.path()), &t).unwrap();
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0].destination(), "root@192.0.2.10:2222");
        assert!(
            matches!(&hosts[0].auth[..], [SshAuth::KeyFile { path, .. }] if path == &dir.path().join("k1"))
        );
        assert_eq!(hosts[1].destination(), "test@[2001:db8::7]:22");
        assert_eq!(hosts[2].port, 22);

        let e = parse_hosts("\n\nroot@h:99999\n", "hosts", None, &t).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.to_string()
                .starts_with("hosts:3: 'root@h:99999': invalid port"),
            "{e}"
        );
        let e = parse_hosts("h.example\n", "f", None, &t).unwrap_err();
        assert_eq!((e.line, e.message.contains("no user")), (1, true));
        let e = parse_hosts("a@b k1 extra\n", "f", Some(dir.path()), &t).unwrap_err();
        assert!(e.to_string().contains("f:1: unexpected 'extra'"), "{e}");
        let e = parse_hosts("a@b /nonexistent/key\n", "f", None, &t).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = parse_hosts("a@b\n# c\na@b:22\n", "f", None, &t).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("first on line 1"), "{e}");
        let e = parse_hosts("# nothing\n", "f", None, &t).unwrap_err();
        assert!(e.message.contains("no machines"));
    }
}
