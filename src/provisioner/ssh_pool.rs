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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{
    CreateContext, CreateError, Creator, Lease, LeasedRemote, Ledger, LedgerHandle,
    LedgerProvisioner, ProvisionError,
};
#[cfg(doc)]
use super::{Provisioner, Remote};
use crate::connection::ssh::{SshAuth, SshConfig, SshConnection};
use crate::connection::{CommandSpec, ConnectionError, ConnectionExt};
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
    /// Being prepared, ready, or handed out.
    Claimed,
    Quarantined,
}

/// The machines and their states, shared by the pool, its creations and its remotes.
struct Machines {
    hosts: Vec<SshConfig>,
    setup: Option<Vec<String>>,
    states: Mutex<Vec<MachineState>>,
    /// Why the last machine was quarantined (its connection or setup error).
    last_failure: Mutex<Option<Arc<ConnectionError>>>,
}

/// No machine of the pool can be used; the last machine's failure is the source.
#[derive(Debug, thiserror::Error)]
#[error("every machine is quarantined")]
struct AllQuarantined(#[source] Option<Arc<ConnectionError>>);

impl Machines {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<MachineState>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn describe(&self) -> String {
        format!("ssh-pool({} machines)", self.hosts.len())
    }

    /// Claims a free machine.
    fn claim(self: &Arc<Self>) -> Option<Claim> {
        let mut states = self.lock();
        let index = states.iter().position(|m| *m == MachineState::Free)?;
        states[index] = MachineState::Claimed;
        Some(Claim {
            machines: self.clone(),
            index,
            settled: false,
        })
    }

    fn destination(&self, index: usize) -> String {
        self.hosts
            .get(index)
            .map(|h| h.destination())
            .unwrap_or_default()
    }

    /// Connects to a claimed machine and runs the setup command.
    async fn prepare(&self, index: usize, scope: &Scope) -> Result<SshConnection, ConnectionError> {
        let Some(cfg) = self.hosts.get(index).cloned() else {
            return Err(ConnectionError::disconnected(
                format!("machine {index}"),
                None,
                "no such machine in the pool",
            ));
        };
        let dest = cfg.destination();
        let conn = SshConnection::connect(cfg).await?;
        if let Some(argv) = &self.setup {
            conn.check(CommandSpec::new(argv.clone()), scope)
                .await
                .map_err(|e| ConnectionError::Io {
                    context: format!("setup on {dest}"),
                    source: std::io::Error::other(e),
                })?;
        }
        Ok(conn)
    }

    /// Makes one remote: claims a free machine and prepares it. A machine that cannot be
    /// prepared is quarantined and the request is tried on another one.
    async fn create(
        self: Arc<Self>,
        cx: CreateContext,
    ) -> Result<Lease<SshConnection>, CreateError> {
        let Some(mut claim) = self.claim() else {
            return Err(CreateError::Failed(ProvisionError::failed(
                self.describe(),
                "no free machine",
            )));
        };
        match self.prepare(claim.index, cx.scope()).await {
            Ok(conn) => {
                let ledger = cx.ledger().clone();
                Ok(Lease::new(conn)
                    .on_release(move |destroyed| claim.give_back(destroyed, &ledger)))
            }
            Err(e) => {
                tracing::error!(machine = %self.destination(claim.index),
                    error = %crate::error::chain(&e), "machine unusable; quarantined");
                let e = Arc::new(e);
                if let Ok(mut last) = self.last_failure.lock() {
                    *last = Some(e.clone());
                }
                if claim.quarantine(cx.ledger()) {
                    Err(CreateError::Failed(ProvisionError::failed(
                        self.describe(),
                        AllQuarantined(Some(e)),
                    )))
                } else {
                    Err(CreateError::Retry)
                }
            }
        }
    }
}

/// One machine claimed from the pool; goes back free when dropped unsettled (a creation
/// that was cancelled).
struct Claim {
    machines: Arc<Machines>,
    index: usize,
    settled: bool,
}

impl Claim {
    /// The machine goes back to the pool, or into quarantine if `destroyed`.
    fn give_back(mut self, destroyed: bool, ledger: &LedgerHandle) {
        if destroyed {
            tracing::warn!(machine = %self.machines.destination(self.index),
                "machine released as destroyed; quarantined");
            self.quarantine(ledger);
        } else {
            self.settle(MachineState::Free);
        }
    }

    /// Quarantines the machine for good; returns whether every machine is quarantined now
    /// (the pool then fails).
    fn quarantine(&mut self, ledger: &LedgerHandle) -> bool {
        let all = self.settle(MachineState::Quarantined);
        ledger.retire(1);
        if all {
            let last = self
                .machines
                .last_failure
                .lock()
                .ok()
                .and_then(|last| last.clone());
            ledger.fail(AllQuarantined(last));
        }
        all
    }

    /// Sets the machine's state; returns whether every machine is quarantined.
    fn settle(&mut self, state: MachineState) -> bool {
        self.settled = true;
        let mut states = self.machines.lock();
        if let Some(m) = states.get_mut(self.index) {
            *m = state;
        }
        states.iter().all(|m| *m == MachineState::Quarantined)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(MachineState::Free);
        }
    }
}

/// A machine of an [`SshHostPool`], in use by one holder until released
/// (`remote.connection()` is the [`SshConnection`], for [`SshConnection::forward`] and the
/// like).
pub type SshPoolRemote = LeasedRemote<SshConnection>;

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
    machines: Arc<Machines>,
    ledger: Ledger<SshConnection>,
}

impl fmt::Debug for SshHostPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshHostPool")
            .field("hosts", &self.machines.hosts.len())
            .field("ledger", &self.ledger)
            .finish()
    }
}

impl SshHostPool {
    /// A pool of these machines.
    pub fn new(hosts: Vec<SshConfig>) -> Self {
        Self::build(hosts, None)
    }

    fn build(hosts: Vec<SshConfig>, setup: Option<Vec<String>>) -> Self {
        let n = hosts.len();
        let machines = Arc::new(Machines {
            hosts,
            setup,
            states: Mutex::new(vec![MachineState::Free; n]),
            last_failure: Mutex::new(None),
        });
        let for_creations = machines.clone();
        let creator = Creator::task(move |cx| for_creations.clone().create(cx));
        Self {
            ledger: Ledger::new(machines.describe(), Some(n), creator),
            machines,
        }
    }

    /// A pool of the machines in a hosts file (see [`read_hosts_file`]).
    pub fn from_hosts_file(path: &Path, template: &SshConfig) -> Result<Self, HostsFileError> {
        Ok(Self::new(read_hosts_file(path, template)?))
    }

    /// Runs `argv` on every machine before handing it out; a machine where it fails is
    /// quarantined. Returns a new pool (with all machines free): call it before
    /// [`start`](Provisioner::start).
    pub fn with_setup<I, S>(self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let setup = Some(argv.into_iter().map(Into::into).collect());
        Self::build(self.machines.hosts.clone(), setup)
    }

    /// The machines and whether each is quarantined.
    pub fn quarantined(&self) -> Vec<(String, bool)> {
        let states = self.machines.lock();
        self.machines
            .hosts
            .iter()
            .zip(states.iter())
            .map(|(h, s)| (h.destination(), *s == MachineState::Quarantined))
            .collect()
    }
}

impl LedgerProvisioner for SshHostPool {
    type Conn = SshConnection;

    fn ledger(&self) -> &Ledger<SshConnection> {
        &self.ledger
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
