//! Connection settings: destination, authentication, host-key policy and timeouts.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// What to do with the server's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// The key must already be in the known_hosts file; unknown and changed keys are refused.
    #[default]
    Strict,
    /// Unknown hosts are trusted on first use and their key is appended to the known_hosts
    /// file; changed keys are refused.
    AcceptNew,
    /// Any key is accepted and nothing is recorded. Only for throwaway machines.
    Insecure,
}

impl HostKeyPolicy {
    /// The name used on the command line (`strict`, `accept-new`, `insecure`).
    pub fn as_str(&self) -> &'static str {
        match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
            HostKeyPolicy::Insecure => "insecure",
        }
    }
}

impl fmt::Display for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`HostKeyPolicy::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown host key policy '{0}' (expected strict, accept-new or insecure)")]
pub struct ParsePolicyError(pub String);

impl FromStr for HostKeyPolicy {
    type Err = ParsePolicyError;

    /// Parses `strict`, `accept-new` or `insecure` (OpenSSH's `yes`, `accept-new` and `no`
    /// are accepted as synonyms).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strict" | "yes" => Ok(HostKeyPolicy::Strict),
            "accept-new" | "accept_new" | "acceptnew" => Ok(HostKeyPolicy::AcceptNew),
            "insecure" | "no" | "off" => Ok(HostKeyPolicy::Insecure),
            _ => Err(ParsePolicyError(s.to_string())),
        }
    }
}

/// One way to authenticate, tried in the order given.
#[derive(Clone)]
pub enum SshAuth {
    /// A private key file (OpenSSH or PEM format; ed25519, RSA or ECDSA).
    KeyFile {
        /// Path of the private key.
        path: PathBuf,
        /// Passphrase of an encrypted key.
        passphrase: Option<String>,
    },
    /// Every identity of the ssh-agent at `$SSH_AUTH_SOCK`.
    Agent,
    /// Every identity of the ssh-agent listening on this socket.
    AgentSocket(PathBuf),
    /// A password.
    Password(String),
}

impl fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshAuth::KeyFile { path, .. } => write!(f, "KeyFile({})", path.display()),
            SshAuth::Agent => f.write_str("Agent"),
            SshAuth::AgentSocket(p) => write!(f, "AgentSocket({})", p.display()),
            SshAuth::Password(_) => f.write_str("Password(***)"),
        }
    }
}

impl fmt::Display for SshAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SshAuth::KeyFile { path, .. } => write!(f, "key {}", path.display()),
            SshAuth::Agent => f.write_str("ssh-agent"),
            SshAuth::AgentSocket(p) => write!(f, "ssh-agent at {}", p.display()),
            SshAuth::Password(_) => f.write_str("password"),
        }
    }
}

/// Default keepalive interval: with [`DEFAULT_KEEPALIVE_MAX`] a dead peer is detected
/// after at most 60 s.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Default number of unanswered keepalives tolerated before the connection is declared dead.
pub const DEFAULT_KEEPALIVE_MAX: usize = 3;
/// Default time limit for TCP connect, key exchange and authentication.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time limit of [`Connection::reconnect`](crate::connection::Connection::reconnect).
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything needed to reach one SSH server.
///
/// ```
/// use std::time::Duration;
/// use atex::connection::ssh::{HostKeyPolicy, SshConfig};
///
/// let cfg = SshConfig::parse_destination("root@192.0.2.7:2222")
///     .unwrap()
///     .key_file("/home/me/.ssh/id_ed25519")
///     .host_key_policy(HostKeyPolicy::AcceptNew)
///     .known_hosts("/tmp/known_hosts")
///     .keepalive(Duration::from_secs(5), 2);
/// assert_eq!(cfg.port, 2222);
/// assert_eq!(cfg.dead_peer_bound(), Duration::from_secs(15));
/// ```
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User to log in as.
    pub user: String,
    /// Authentication methods in order; empty means the agent (when `$SSH_AUTH_SOCK` is
    /// set), then `~/.ssh/id_ed25519`, `id_ecdsa` and `id_rsa` when they exist.
    pub auth: Vec<SshAuth>,
    /// Host-key policy.
    pub host_key_policy: HostKeyPolicy,
    /// known_hosts file; `None` means `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Time limit for TCP connect, key exchange and authentication together.
    pub connect_timeout: Duration,
    /// Send a keepalive after this long without traffic from the server.
    pub keepalive_interval: Duration,
    /// Declare the peer dead after this many unanswered keepalives.
    pub keepalive_max: usize,
    /// Time limit of [`Connection::reconnect`](crate::connection::Connection::reconnect)
    /// (the scope's cancellation ends it earlier).
    pub reconnect_timeout: Duration,
    /// Reach the host through this jump host (one hop, like OpenSSH's `ProxyJump`).
    pub jump_host: Option<Box<SshConfig>>,
}

impl SshConfig {
    /// Settings for `host` on port 22 as `root`, with the defaults above.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: 22,
            user: "root".into(),
            auth: Vec::new(),
            host_key_policy: HostKeyPolicy::Strict,
            known_hosts: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_max: DEFAULT_KEEPALIVE_MAX,
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            jump_host: None,
        }
    }

    /// Parses `[user@]host[:port]`; an IPv6 address goes in brackets (`root@[::1]:22`).
    pub fn parse_destination(dest: &str) -> Result<Self, DestinationError> {
        let bad = |why: &str| DestinationError {
            destination: dest.to_string(),
            reason: why.to_string(),
        };
        let (user, rest) = match dest.rsplit_once('@') {
            Some(("", _)) => return Err(bad("empty user name before '@'")),
            Some((u, r)) => (Some(u), r),
            None => (None, dest),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let Some((h, after)) = inner.split_once(']') else {
                return Err(bad("missing ']' after an IPv6 address"));
            };
            match after {
                "" => (h, None),
                p if p.starts_with(':') => (h, Some(&p[1..])),
                _ => return Err(bad("unexpected text after ']'")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => return Err(bad("an IPv6 address must be written in brackets")),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host name"));
        }
        if host.chars().any(char::is_whitespace) {
            return Err(bad("white space in the host name"));
        }
        let mut cfg = SshConfig::new(host);
        if let Some(p) = port {
            cfg.port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("invalid port '{p}'")))?;
        }
        if let Some(u) = user {
            cfg.user = u.to_string();
        }
        Ok(cfg)
    }

    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Adds an unencrypted private key file.
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.auth.push(SshAuth::KeyFile {
            path: path.into(),
            passphrase: None,
        });
        self
    }

    /// Adds an encrypted private key file with its passphrase.
    pub fn key_file_with_passphrase(
        mut self,
        path: impl Into<PathBuf>,
        passphrase: impl Into<String>,
    ) -> Self {
        self.auth.push(SshAuth::KeyFile {
            path: path.into(),
            passphrase: Some(passphrase.into()),
        });
        self
    }

    /// Adds the ssh-agent.
    pub fn agent(mut self) -> Self {
        self.auth.push(SshAuth::Agent);
        self
    }

    /// Adds the ssh-agent listening on `socket`.
    pub fn agent_socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.auth.push(SshAuth::AgentSocket(socket.into()));
        self
    }

    /// Adds password authentication.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.auth.push(SshAuth::Password(password.into()));
        self
    }

    /// Sets the host-key policy.
    pub fn host_key_policy(mut self, policy: HostKeyPolicy) -> Self {
        self.host_key_policy = policy;
        self
    }

    /// Sets the known_hosts file.
    pub fn known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts = Some(path.into());
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the keepalive interval and the number of unanswered keepalives tolerated; a
    /// dead peer is detected after at most `interval * (max + 1)`. `max == 0` disables
    /// dead-peer detection (keepalives are still sent).
    pub fn keepalive(mut self, interval: Duration, max: usize) -> Self {
        self.keepalive_interval = interval;
        self.keepalive_max = max;
        self
    }

    /// Sets the reconnect time limit.
    pub fn reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.reconnect_timeout = timeout;
        self
    }

    /// Reaches the host through `jump` (one hop).
    pub fn jump_host(mut self, jump: SshConfig) -> Self {
        self.jump_host = Some(Box::new(jump));
        self
    }

    /// The longest time a dead peer (a cut network) can go unnoticed.
    pub fn dead_peer_bound(&self) -> Duration {
        if self.keepalive_max == 0 {
            return Duration::MAX;
        }
        let n = u32::try_from(self.keepalive_max.saturating_add(1)).unwrap_or(u32::MAX);
        self.keepalive_interval.saturating_mul(n)
    }

    /// `user@host:port`, for messages.
    pub fn destination(&self) -> String {
        if self.host.contains(':') {
            format!("{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            format!("{}@{}:{}", self.user, self.host, self.port)
        }
    }

    /// The known_hosts file in effect.
    pub fn known_hosts_path(&self) -> Option<PathBuf> {
        self.known_hosts
            .clone()
            .or_else(|| std::env::home_dir().map(|h| h.join(".ssh").join("known_hosts")))
    }

    /// The authentication methods in effect (see [`auth`](Self::auth)).
    pub(crate) fn effective_auth(&self) -> Vec<SshAuth> {
        if !self.auth.is_empty() {
            return self.auth.clone();
        }
        let mut auth = Vec::new();
        if std::env::var_os("SSH_AUTH_SOCK").is_some() {
            auth.push(SshAuth::Agent);
        }
        if let Some(home) = std::env::home_dir() {
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let path = home.join(".ssh").join(name);
                if path.is_file() {
                    auth.push(SshAuth::KeyFile {
                        path,
                        passphrase: None,
                    });
                }
            }
        }
        auth
    }
}

/// Error of [`SshConfig::parse_destination`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SSH destination '{destination}': {reason}")]
pub struct DestinationError {
    /// The text given.
    pub destination: String,
    /// What is wrong with it.
    pub reason: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn policy_from_str() {
        assert_eq!("strict".parse(), Ok(HostKeyPolicy::Strict));
        assert_eq!("accept-new".parse(), Ok(HostKeyPolicy::AcceptNew));
        assert_eq!("Insecure".parse(), Ok(HostKeyPolicy::Insecure));
        assert!("maybe".parse::<HostKeyPolicy>().is_err());
        for p in [
            HostKeyPolicy::Strict,
            HostKeyPolicy::AcceptNew,
            HostKeyPolicy::Insecure,
        ] {
            assert_eq!(p.to_string().parse(), Ok(p));
        }
    }

    #[test]
    fn destinations() {
        let c = SshConfig::parse_destination("alice@example.org:2200").unwrap();
        assert_eq!(
            (c.user.as_str(), c.host.as_str(), c.port),
            ("alice", "example.org", 2200)
        );
        let c = SshConfig::parse_destination("example.org").unwrap();
        assert_eq!((c.user.as_str(), c.port), ("root", 22));
        let c = SshConfig::parse_destination("bob@[::1]:23").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 23));
        assert_eq!(c.destination(), "bob@[::1]:23");
        assert!(SshConfig::parse_destination("a@b:0").is_err());
        assert!(SshConfig::parse_destination("a@b:x").is_err());
        assert!(SshConfig::parse_destination("@b").is_err());
        assert!(SshConfig::parse_destination("a@:22").is_err());
        assert!(SshConfig::parse_destination("::1").is_err());
    }
}
