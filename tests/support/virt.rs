//! Test harness: a private libvirt for the VM tests (ENVIRONMENT.md §6).
//!
//! [`VirtHost::start`]: `qemu:///session` run by the unprivileged [`TEST_USER`]: `virtlogd`
//! and `libvirtd --timeout 0` started here with their own `XDG_*` directories under a
//! temporary directory (so nothing of the system's libvirt is used or changed).
//!
//! [`VirtHost::start_system`]: `qemu:///system`, the privileged daemon run as root (QEMU
//! then runs as `libvirt-qemu`, images are relabelled for it): `virtlogd` and `libvirtd`
//! in their own mount and PID namespaces (`unshare`), where private directories under a
//! temporary directory are bind-mounted over `/run/libvirt`, `/var/lib/libvirt`,
//! `/var/cache/libvirt`, `/var/log/libvirt` and `/etc/libvirt`: no systemd is needed, the
//! machine's libvirt state is neither used nor changed, and several such daemons can run
//! at once. `catatonit` is the namespace's first process: it reaps the QEMU processes
//! libvirtd daemonizes (libvirtd waits until a killed QEMU is gone, and an unreaped one
//! never is). Killing it ends the daemons and any QEMU left.
//!
//! Both have a `dir` storage pool `atex` and the test guest of `scripts/vm-guest.sh`
//! defined as the shut-off origin domain [`ORIGIN`]. Clients (root, through
//! `LocalConnection`) reach them with `qemu:///session?socket=…` or
//! `qemu:///system?socket=…`. Dropping the [`VirtHost`] destroys every domain, stops the
//! daemons and kills any QEMU process still running from its directories.
//!
//! Needs root, libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients,
//! qemu-system-x86, qemu-utils and util-linux `setpriv`/`unshare` (scripts/run-tests.sh
//! installs them).

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::sshd::{TEST_USER, ensure_test_user};

/// Name of the origin domain.
pub const ORIGIN: &str = "origin";
/// Name of the overlay pool.
pub const POOL: &str = "atex";

/// The built guest: kernel, initramfs, root image, origin XML and the client key.
pub struct Guest {
    pub dir: PathBuf,
}

impl Guest {
    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn host_key_pub(&self) -> String {
        std::fs::read_to_string(self.dir.join("host_key.pub"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn origin_xml(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("origin.xml"))
            .unwrap()
            .replace("@NAME@", name)
    }
}

/// Builds (or reuses the cached) test guest once per test process.
pub fn guest() -> &'static Guest {
    static GUEST: OnceLock<Guest> = OnceLock::new();
    GUEST.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/vm-guest.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/vm-guest.sh");
        assert!(
            out.status.success(),
            "scripts/vm-guest.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = PathBuf::from(stdout.lines().last().expect("guest dir").trim());
        Guest { dir }
    })
}

fn uid_gid(user: &str) -> (String, String) {
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).arg(user).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    (id("-u"), id("-g"))
}

/// A private libvirtd (and virtlogd): the session daemon of [`TEST_USER`] or a system
/// daemon run by root.
pub struct VirtHost {
    pub dir: tempfile::TempDir,
    pub uri: String,
    /// The user the daemon runs as.
    pub user: String,
    /// Whether this is the privileged `qemu:///system` daemon.
    pub system: bool,
    /// Where the origin's kernel, initramfs and image are.
    pub origin_dir: PathBuf,
    libvirtd: Option<Child>,
    virtlogd: Option<Child>,
}

/// State directories of a privileged libvirt, each replaced by a private one.
const SYSTEM_DIRS: [(&str, &str); 5] = [
    ("run", "/run/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("cache", "/var/cache/libvirt"),
    ("log", "/var/log/libvirt"),
    ("etc", "/etc/libvirt"),
];

impl VirtHost {
    /// Starts a root `qemu:///system` libvirtd in its own namespaces (see the module
    /// docs), creates the pool and defines [`ORIGIN`] from a copy of the guest's files.
    pub fn start_system() -> Self {
        let g = guest();
        let dir = tempfile::Builder::new()
            .prefix("atex-virt-sys-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        // QEMU runs as libvirt-qemu: the paths to its files must be traversable.
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        for (sub, target) in SYSTEM_DIRS {
            std::fs::create_dir_all(d.join(sub)).unwrap();
            std::fs::create_dir_all(target).unwrap();
        }
        for sub in ["pool", "guest"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // The origin's files, as an administrator keeps them (owned by root): the guest
        // cache stays untouched by libvirt's relabelling.
        for e in std::fs::read_dir(&g.dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if ["vmlinux", "vmlinuz", "initrd.gz", "root.img"].contains(&name.as_str()) {
                std::fs::copy(e.path(), d.join("guest").join(&name)).unwrap();
            }
        }
        let mut script = String::from("set -e\n");
        for (sub, target) in SYSTEM_DIRS {
            script.push_str(&format!(
                "mount --bind '{}' '{target}'\n",
                d.join(sub).display()
            ));
        }
        script.push_str(&format!(
            "/usr/sbin/virtlogd --pid-file '{0}/virtlogd.pid' 2>'{0}/virtlogd.log' &\n\
             exec /usr/sbin/libvirtd --pid-file '{0}/libvirtd.pid' 2>'{0}/libvirtd.log'\n",
            d.display()
        ));
        let ns = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "--",
                "catatonit",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("unshare.log")).unwrap())
            .spawn()
            .expect("spawn unshare");
        let sock = d.join("run/libvirt-sock");
        let host = Self {
            uri: format!("qemu:///system?socket={}", sock.display()),
            origin_dir: d.join("guest"),
            dir,
            user: "root".into(),
            system: true,
            libvirtd: Some(ns),
            virtlogd: None,
        };
        host.finish_start(&sock);
        host
    }

    /// Starts the daemons, creates the pool and defines [`ORIGIN`].
    pub fn start() -> Self {
        ensure_test_user();
        guest();
        let dir = tempfile::Builder::new()
            .prefix("atex-virt-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        for sub in ["run", "config", "cache", "data", "pool"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let (uid, gid) = uid_gid(TEST_USER);
        let chown = Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(d)
            .status()
            .unwrap();
        assert!(chown.success());
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            d.join("run"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let spawn = |program: &str, args: &[&str], log: &str| -> Child {
            let logf = std::fs::File::create(d.join(log)).unwrap();
            Command::new("setpriv")
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--init-groups")
                .arg("--")
                .arg(program)
                .args(args)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("HOME", d.join("data"))
                .env("XDG_RUNTIME_DIR", d.join("run"))
                .env("XDG_CONFIG_HOME", d.join("config"))
                .env("XDG_CACHE_HOME", d.join("cache"))
                .env("XDG_DATA_HOME", d.join("data"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
        };
        let virtlogd = spawn("/usr/sbin/virtlogd", &[], "virtlogd.log");
        let logsock = d.join("run/libvirt/virtlogd-sock");
        wait_for(&logsock, Duration::from_secs(10), "virtlogd socket");
        let libvirtd = spawn("/usr/sbin/libvirtd", &["--timeout", "0"], "libvirtd.log");
        let sock = d.join("run/libvirt/libvirt-sock");
        let host = Self {
            uri: format!("qemu:///session?socket={}", sock.display()),
            dir,
            user: TEST_USER.to_string(),
            system: false,
            origin_dir: guest().dir.clone(),
            libvirtd: Some(libvirtd),
            virtlogd: Some(virtlogd),
        };
        host.finish_start(&sock);
        host
    }

    /// Waits for the daemon, creates the pool and defines [`ORIGIN`].
    fn finish_start(&self, sock: &Path) {
        let host = self;
        wait_for(sock, Duration::from_secs(20), "libvirtd socket");
        // The socket exists a moment before the daemon answers.
        let deadline = Instant::now() + Duration::from_secs(20);
        while host.virsh_status(&["list"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "libvirtd never answered: {}",
                host.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let pool_dir = host.pool_dir();
        host.virsh(&[
            "pool-define-as",
            POOL,
            "dir",
            "--target",
            pool_dir.to_str().unwrap(),
        ]);
        host.virsh(&["pool-start", POOL]);
        host.define_origin(ORIGIN);
    }

    /// Defines another shut-off copy of the guest named `name`.
    pub fn define_origin(&self, name: &str) {
        let xml = guest().origin_xml(name).replace(
            guest().dir.to_str().unwrap(),
            self.origin_dir.to_str().unwrap(),
        );
        let path = self.dir.path().join(format!("{name}.xml"));
        std::fs::write(&path, xml).unwrap();
        self.virsh(&["define", path.to_str().unwrap()]);
    }

    pub fn pool_dir(&self) -> PathBuf {
        self.dir.path().join("pool")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("libvirtd.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.path().join("unshare.log")).unwrap_or_default()
    }

    /// `virsh -q -c URI ARGS`: stdout, or the combined output as the error.
    pub fn virsh_status(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("virsh")
            .arg("-q")
            .arg("-c")
            .arg(&self.uri)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "virsh {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub fn virsh(&self, args: &[&str]) -> String {
        self.virsh_status(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates overlay volume `name` over the guest's image, as a clone gets.
    pub fn create_overlay(&self, name: &str) {
        let backing = self.origin_dir.join("root.img");
        let xml = atex::virt::transient::overlay_volume_xml(
            name,
            96 << 20,
            backing.to_str().unwrap(),
            "raw",
        );
        let path = self.dir.path().join(format!("{name}.xml"));
        std::fs::write(&path, xml).unwrap();
        self.virsh(&["vol-create", POOL, path.to_str().unwrap()]);
    }

    /// Names of all domains (running or not).
    pub fn domains(&self) -> Vec<String> {
        self.virsh(&["list", "--all", "--name"])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Names of the volumes of the pool (refreshed first).
    pub fn volumes(&self) -> Vec<String> {
        self.virsh(&["pool-refresh", POOL]);
        self.virsh(&["vol-list", "--pool", POOL])
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }

    /// Files in the pool directory.
    pub fn pool_files(&self) -> Vec<String> {
        std::fs::read_dir(self.pool_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// PIDs of QEMU processes of this host (their command line names its directories).
    pub fn qemu_processes(&self) -> Vec<i32> {
        let needle = self.dir.path().to_string_lossy().into_owned();
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("qemu-system") && cmdline.contains(&needle) {
                found.push(pid);
            }
        }
        found
    }

    /// The user id a process runs as.
    pub fn process_uid(pid: i32) -> Option<u32> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// Waits up to `limit` until `cond` holds, panicking with `what` otherwise.
    pub fn wait_until(&self, limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asserts that no domain but the origins, no volume and no QEMU process is left.
    pub fn assert_clean(&self, origins: &[&str]) {
        let left: Vec<String> = self
            .domains()
            .into_iter()
            .filter(|d| !origins.contains(&d.as_str()))
            .collect();
        assert!(left.is_empty(), "domains left: {left:?}");
        let vols = self.volumes();
        assert!(vols.is_empty(), "volumes left: {vols:?}");
        let files = self.pool_files();
        assert!(files.is_empty(), "files left in the pool: {files:?}");
        // QEMU ends a moment after `virsh destroy` returns.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = self.qemu_processes();
            if procs.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "QEMU processes left: {procs:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn wait_for(path: &Path, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what} did not appear at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for VirtHost {
    fn drop(&mut self) {
        if let Ok(out) = self.virsh_status(&["list", "--name"]) {
            for d in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
                let _ = self.virsh_status(&["destroy", d]);
            }
        }
        if self.system {
            // `unshare` ignores SIGTERM; killing it kills the namespace's first process
            // (catatonit, --kill-child), and with it everything in the namespace.
            if let Some(mut ns) = self.libvirtd.take() {
                let _ = ns.kill();
                let _ = ns.wait();
            }
        }
        stop(&mut self.libvirtd);
        stop(&mut self.virtlogd);
        for pid in self.qemu_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
