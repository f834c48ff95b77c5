//! Test harness: a private OpenSSH `sshd` as a child process (ENVIRONMENT.md §4), and a
//! "host" in its own network namespace (§5). Needs root, `openssh-server`,
//! `openssh-client` (ssh-keygen), `iproute2` and util-linux `unshare`.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use atex::connection::ssh::{HostKeyPolicy, SshConfig};

/// The unprivileged user the tests log in as; its login shell is a plain `/bin/sh`.
pub const TEST_USER: &str = "atexbench";

static USER_LOCK: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes sure [`TEST_USER`] exists with `/bin/sh` and an unlocked (key-only) account.
pub fn ensure_test_user() {
    let _g = USER_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if run(Command::new("id").arg("-u").arg(TEST_USER)).is_err() {
        let _ = run(Command::new("useradd").args(["-m", "-s", "/bin/sh", TEST_USER]));
    }
    // `useradd` leaves the account locked; sshd with UsePAM=no refuses locked accounts.
    let _ = run(Command::new("usermod").args(["-p", "*", TEST_USER]));
}

/// Reserves a free TCP port on 127.0.0.1 (racy but retried by the caller).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Keys and config shared by an sshd and its clients.
pub struct SshdFiles {
    pub dir: tempfile::TempDir,
    pub host_key: PathBuf,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    /// Whether sshd offers the SFTP subsystem.
    pub sftp: bool,
    /// sshd's MaxSessions (channels per connection).
    pub max_sessions: u32,
    /// Shell commands run as root in sshd's private mount namespace before it starts
    /// (`mount -t tmpfs tmpfs /usr/share/x` hides a directory from its sessions).
    pub setup: String,
}

impl SshdFiles {
    pub fn new() -> Self {
        ensure_test_user();
        let dir = tempfile::Builder::new()
            .prefix("atex-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        // sshd opens authorized_keys as the target user: keep the directory traversable.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let host_key = d.join("host_ed25519");
        let client_key = d.join("id_ed25519");
        for key in [&host_key, &client_key] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "atex-test", "-f"])
                .arg(key))
            .expect("ssh-keygen");
        }
        let pubkey = std::fs::read_to_string(client_key.with_extension("pub")).expect("pub");
        for user in ["root", TEST_USER] {
            let ak = d.join(format!("authorized_keys.{user}"));
            std::fs::write(&ak, &pubkey).expect("authorized_keys");
            let _ = run(Command::new("chown").arg(user).arg(&ak));
        }
        let known_hosts = d.join("known_hosts");
        Self {
            dir,
            host_key,
            client_key,
            known_hosts,
            sftp: true,
            max_sessions: 200,
            setup: String::new(),
        }
    }

    pub fn host_pub(&self) -> String {
        std::fs::read_to_string(self.host_key.with_extension("pub"))
            .expect("host pub")
            .trim()
            .to_string()
    }

    /// Writes a known_hosts file trusting this sshd at `host:port`.
    pub fn pin(&self, host: &str, port: u16) {
        let name = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        let mut parts = self.host_pub();
        // Drop the comment: "type base64 comment".
        let fields: Vec<&str> = parts.split_whitespace().take(2).collect();
        parts = fields.join(" ");
        std::fs::write(&self.known_hosts, format!("{name} {parts}\n")).expect("known_hosts");
    }

    fn write_config(&self, name: &str, port: u16, listen: &str) -> PathBuf {
        let d = self.dir.path();
        let cfg = format!(
            "Port {port}\nListenAddress {listen}\nHostKey {}\nPidFile none\n\
             AuthorizedKeysFile {}/authorized_keys.%u\nStrictModes no\n\
             PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             {}AllowTcpForwarding yes\n\
             MaxSessions {}\nMaxStartups 100:30:200\nLogLevel VERBOSE\n",
            self.host_key.display(),
            d.display(),
            if self.sftp {
                "Subsystem sftp /usr/lib/openssh/sftp-server\n"
            } else {
                ""
            },
            self.max_sessions
        );
        let path = d.join(name);
        std::fs::write(&path, cfg).expect("sshd_config");
        path
    }
}

fn wait_listening(child: &mut Child, log: &Path) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Server listening") {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited with {status}: {text}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("sshd did not start listening within 10 s".into())
}

/// Runs sshd in its private mount namespace: its own `/run`, and an empty `/root`, so that
/// root's sessions do not run this machine's root dotfiles (here `~/.bashrc` runs `pyenv
/// rehash`, which waits 60 s on a lock that a killed session left behind).
const SSHD_WRAPPER: &str = "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && mount -t tmpfs -o mode=0700 tmpfs /root && exec /usr/sbin/sshd -D -e -f \"$0\"";

/// [`SSHD_WRAPPER`] after `setup` (shell commands, may be empty).
fn sshd_wrapper(setup: &str) -> String {
    if setup.is_empty() {
        SSHD_WRAPPER.to_string()
    } else {
        format!("{{ {setup}\n}} && {SSHD_WRAPPER}")
    }
}

/// A private sshd on 127.0.0.1, killed on drop.
pub struct Sshd {
    pub files: SshdFiles,
    pub port: u16,
    child: Child,
    log: PathBuf,
}

impl Sshd {
    pub fn start() -> Self {
        let files = SshdFiles::new();
        Self::start_with(files)
    }

    pub fn start_with(files: SshdFiles) -> Self {
        let mut last = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let cfg = files.write_config("sshd_config", port, "127.0.0.1");
            let log = files.dir.path().join(format!("sshd-{attempt}.log"));
            let logf = std::fs::File::create(&log).expect("log");
            let mut child = Command::new("unshare")
                .args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    &sshd_wrapper(&files.setup),
                ])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .expect("spawn sshd");
            match wait_listening(&mut child, &log) {
                Ok(()) => {
                    files.pin("127.0.0.1", port);
                    return Self {
                        files,
                        port,
                        child,
                        log,
                    };
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = e;
                }
            }
        }
        panic!("could not start sshd: {last}");
    }

    /// Client settings: the test user, the client key, strict policy with a pinned key,
    /// and a short connect timeout.
    pub fn config(&self) -> SshConfig {
        SshConfig::new("127.0.0.1")
            .port(self.port)
            .user(TEST_USER)
            .key_file(&self.files.client_key)
            .host_key_policy(HostKeyPolicy::Strict)
            .known_hosts(&self.files.known_hosts)
            .connect_timeout(Duration::from_secs(10))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Pids of the direct children of `pid` (from /proc).
fn children_of(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_string()) else {
                continue;
            };
            let ppid = rest
                .split_whitespace()
                .nth(1)
                .and_then(|x| x.parse::<u32>().ok());
            if ppid == Some(pid) {
                out.push(p);
            }
        }
    }
    out
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions outlive the listener: end this sshd's per-connection processes too.
        for child in children_of(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A "host" in a network namespace with its own IP, running sshd on port 22 in its own PID
/// namespace (killing it == power-off). Everything is removed on drop.
pub struct NetnsHost {
    pub files: SshdFiles,
    pub ns: String,
    pub veth_host: String,
    pub host_ip: String,
    pub ip: String,
    child: Option<Child>,
    log: PathBuf,
}

impl NetnsHost {
    pub fn start() -> Self {
        let n = NS_COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}{}", pid % 100_000, n);
        let ns = format!("atex-t{tag}");
        let veth_host = format!("ax{tag}h");
        let veth_ns = format!("ax{tag}g");
        assert!(veth_host.len() <= 15);
        // One /30 per host, in the benchmarking range 198.18.0.0/15, spread by pid.
        let third = 64 + (pid % 128);
        let fourth = (n % 64) * 4;
        let host_ip = format!("198.18.{third}.{}", fourth + 1);
        let ip = format!("198.18.{third}.{}", fourth + 2);
        let files = SshdFiles::new();
        let log = files.dir.path().join("sshd-ns.log");
        let mut me = Self {
            files,
            ns: ns.clone(),
            veth_host: veth_host.clone(),
            host_ip: host_ip.clone(),
            ip: ip.clone(),
            child: None,
            log,
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), ns.clone()],
            vec![
                "link".into(),
                "add".into(),
                veth_host.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                veth_ns.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                veth_ns.clone(),
                "netns".into(),
                ns.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("{host_ip}/30"),
                "dev".into(),
                veth_host.clone(),
            ],
            vec!["link".into(), "set".into(), veth_host.clone(), "up".into()],
            vec![
                "-n".into(),
                ns.clone(),
                "addr".into(),
                "add".into(),
                format!("{ip}/30"),
                "dev".into(),
                veth_ns.clone(),
            ],
            vec![
                "-n".into(),
                ns.clone(),
                "link".into(),
                "set".into(),
                veth_ns.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                ns.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for step in steps {
            run(Command::new("ip").args(&step)).expect("ip setup");
        }
        me.files.pin(&ip, 22);
        me.start_sshd();
        me
    }

    /// Starts (or restarts) the host's sshd.
    pub fn start_sshd(&mut self) {
        let cfg = self.files.write_config("sshd_config.ns", 22, &self.ip);
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let before = std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("Server listening")
            .count();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--propagation",
                "private",
                "--mount-proc",
                "sh",
                "-c",
                &sshd_wrapper(&self.files.setup),
            ])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn netns sshd");
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.matches("Server listening").count() > before {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("netns sshd exited with {st}: {text}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "netns sshd did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    /// Hard power-off: kills the PID namespace (sshd, sessions and commands).
    pub fn power_off(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Cuts the link (packets silently dropped from now on).
    pub fn cut(&self) {
        run(Command::new("ip").args(["link", "set", &self.veth_host, "down"])).expect("link down");
    }

    /// Restores the link.
    pub fn restore(&self) {
        run(Command::new("ip").args(["link", "set", &self.veth_host, "up"])).expect("link up");
    }

    pub fn config(&self) -> SshConfig {
        SshConfig::new(self.ip.clone())
            .user(TEST_USER)
            .key_file(&self.files.client_key)
            .host_key_policy(HostKeyPolicy::Strict)
            .known_hosts(&self.files.known_hosts)
            .connect_timeout(Duration::from_secs(3))
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        self.power_off();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth_host])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}
