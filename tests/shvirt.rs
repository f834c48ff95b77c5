//! The shared VM host provisioner for real: two persistent domains with volume disks in a
//! `dir` pool and forwarded SSH ports on a private libvirt, an image volume, atex's helper
//! run as the libvirt user. The provisioner and remote conformance suites; two runs sharing
//! the host through their own helpers never get the same domain, and killing one run's
//! client (`atex shvirt reserve`, SIGKILL) hands its domain to the other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atex::connection::{CommandSpec, ConnectionExt, LocalConnection};
use atex::provisioner::{Count, Provisioner, SharedVirtConfig, SharedVirtProvisioner};
use atex::scope::{Scope, ShutdownOptions};
use atex::testing::conformance::provisioner::{self, ProvisionerTarget};
use atex::testing::conformance::remote;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::virt::{VirtHost, guest};

const SHARED_POOL: &str = "shared";
const IMAGE: &str = "image.img";

/// A VM host with persistent domains `shared-1`, `shared-2` (volume disks in pool
/// [`SHARED_POOL`], SSH forwarded from distinct ports) and the image volume [`IMAGE`].
struct SharedHost {
    host: VirtHost,
    state: PathBuf,
}

fn chown(host: &VirtHost, path: &std::path::Path) {
    let ok = Command::new("chown")
        .arg("-R")
        .arg(format!("{0}:{0}", host.user))
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

impl SharedHost {
    fn start(first_port: u16) -> Self {
        let host = VirtHost::start();
        let dir = host.dir.path().join("shared");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(guest().dir.join("root.img"), dir.join(IMAGE)).unwrap();
        for i in 1..=2 {
            let f = std::fs::File::create(dir.join(format!("shared-{i}.img"))).unwrap();
            f.set_len(96 << 20).unwrap();
        }
        let state = host.dir.path().join("helper-state");
        std::fs::create_dir_all(&state).unwrap();
        chown(&host, &dir);
        chown(&host, &state);
        host.virsh(&[
            "pool-define-as",
            SHARED_POOL,
            "dir",
            "--target",
            dir.to_str().unwrap(),
        ]);
        host.virsh(&["pool-start", SHARED_POOL]);
        for i in 1..=2u16 {
            let name = format!("shared-{i}");
            let xml = shared_domain_xml(&name, first_port + i - 1);
            let path = host.dir.path().join(format!("{name}.xml"));
            std::fs::write(&path, xml).unwrap();
            host.virsh(&["define", path.to_str().unwrap()]);
        }
        Self { host, state }
    }

    /// The helper's command line: run as the libvirt user (it writes the domains'
    /// disks), with that user's directories.
    fn helper(&self) -> Vec<String> {
        let d = self.host.dir.path();
        let id = |flag: &str| {
            let out = Command::new("id")
                .arg(flag)
                .arg(&self.host.user)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        vec![
            "setpriv".into(),
            format!("--reuid={}", id("-u")),
            format!("--regid={}", id("-g")),
            "--init-groups".into(),
            "--".into(),
            "env".into(),
            format!("HOME={}", d.join("data").display()),
            format!("XDG_RUNTIME_DIR={}", d.join("run").display()),
            format!("XDG_CONFIG_HOME={}", d.join("config").display()),
            format!("XDG_CACHE_HOME={}", d.join("cache").display()),
            support::built_binary("atex").to_string_lossy().into_owned(),
            "virt-helper".into(),
            "--state-dir".into(),
            self.state.to_string_lossy().into_owned(),
            self.host.uri.clone(),
        ]
    }

    fn config(&self, max: usize, name: &str) -> SharedVirtConfig {
        let mut cfg = SharedVirtConfig::new(self.helper(), IMAGE, guest().key(), "127.0.0.1");
        cfg.pool = SHARED_POOL.into();
        cfg.filter = Some("shared-.*".into());
        cfg.reserve_delay = Duration::from_millis(300);
        cfg.boot_timeout = Duration::from_secs(240);
        cfg.reserve_name = Some(name.into());
        cfg.max_remotes = max;
        cfg
    }

    fn provisioner(&self, max: usize, name: &str) -> Arc<dyn Provisioner> {
        Arc::new(SharedVirtProvisioner::new(
            Arc::new(LocalConnection::new()),
            self.config(max, name),
        ))
    }

    fn running(&self) -> Vec<String> {
        self.host
            .virsh(&["list", "--name"])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// The origin's XML as a persistent domain: a volume disk, SSH forwarded from `port`.
fn shared_domain_xml(name: &str, port: u16) -> String {
    let xml = guest().origin_xml(name);
    let disk_start = xml.find("<disk type='file'").unwrap();
    let disk_end = xml[disk_start..].find("</disk>").unwrap() + disk_start + "</disk>".len();
    let iface_start = xml.find("<interface type='user'>").unwrap();
    let iface_end =
        xml[iface_start..].find("</interface>").unwrap() + iface_start + "</interface>".len();
    let disk = format!(
        "<disk type='volume' device='disk'><driver name='qemu' type='raw'/>\
         <source pool='{SHARED_POOL}' volume='{name}.img'/><target dev='vda' bus='virtio'/></disk>"
    );
    let mut out = String::new();
    out.push_str(&xml[..disk_start]);
    out.push_str(&disk);
    out.push_str(&xml[disk_end..iface_start]);
    out.push_str(&xml[iface_end..]);
    let net = format!(
        "<qemu:commandline><qemu:arg value='-netdev'/>\
         <qemu:arg value='user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22'/>\
         <qemu:arg value='-device'/><qemu:arg value='e1000,netdev=n0,romfile=,bus=pci.0,addr=0x1e,autonegotiation=off'/>\
         </qemu:commandline></domain>"
    );
    out.replace("</domain>", &net).replacen(
        "<domain type='qemu'>",
        "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>",
        1,
    )
}

/// A conformance target on its own host (ports from `first_port`). Every check boots
/// fresh domains, the cancel-safety check nine one after another: generous deadlines
/// under TCG on a shared machine.
fn target(first_port: u16, scope: &Scope) -> (Arc<SharedHost>, ProvisionerTarget) {
    let shared = Arc::new(SharedHost::start(first_port));
    let (a, b) = (shared.clone(), shared.clone());
    let target = ProvisionerTarget::new(move || a.provisioner(2, "conf"), scope)
        .limited(move || b.provisioner(1, "conf1"))
        .capacity(2)
        .reuses_systems(true)
        .deadline(Duration::from_secs(1800));
    (shared, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_virt_provisioner_conforms() {
    let scope = Scope::root("conformance");
    let (shared, target) = target(22100, &scope);
    provisioner::all(&target).await.assert_passed();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    assert_eq!(shared.running(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_virt_remotes_conform() {
    let scope = Scope::root("conformance");
    let (shared, target) = target(22150, &scope);
    remote::all(&target).await.assert_passed();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    assert_eq!(shared.running(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_share_the_host_and_a_killed_client_frees_its_domain() {
    let shared = SharedHost::start(22200);
    let scope = Scope::root("shared");
    // Run A: `atex shvirt reserve` holds one domain.
    let helper = shared.helper().join(" ");
    let atex = support::built_binary("atex");
    let mut a = Command::new(&atex)
        .args(["shvirt", "local", "--helper", &helper, "reserve", IMAGE])
        .args([
            "--pool",
            SHARED_POOL,
            "--filter",
            "shared-.*",
            "--name",
            "run-a",
        ])
        .arg("--key")
        .arg(guest().key())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(a.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("reserve printed no ssh command")
            .unwrap();
        if line.trim_start().starts_with("ssh ") {
            break;
        }
    }
    let out = Command::new(&atex)
        .args(["shvirt", "local", "--helper", &helper, "reservations"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let held_by_a: Vec<&str> = listing
        .lines()
        .filter(|l| l.ends_with("\trun-a"))
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(held_by_a.len(), 1, "{listing}");
    let domain_a = held_by_a[0].to_string();

    // Run B asks for two: it gets the other domain, and waits for a second.
    let b = shared.provisioner(2, "run-b");
    b.start(&scope).await.unwrap();
    b.provision(Count::N(2)).unwrap();
    let first = b.get_remote().await.unwrap();
    let out = first
        .check(CommandSpec::new(["hostname"]), &scope)
        .await
        .unwrap();
    assert!(!out.stdout.is_empty());
    assert_eq!(shared.running().len(), 2, "{:?}", shared.running());
    assert!(b.try_get_remote().unwrap().is_none());

    // A's client dies: its helper's stdin ends, its lock goes, B gets A's domain (shut off,
    // re-imaged, booted again).
    kill(Pid::from_raw(a.id() as i32), Signal::SIGKILL).unwrap();
    let _ = a.wait();
    let started = Instant::now();
    let second = tokio::time::timeout(Duration::from_secs(300), b.get_remote())
        .await
        .expect("B never got the freed domain")
        .unwrap();
    eprintln!("freed domain handed over in {:?}", started.elapsed());
    assert_ne!(first.describe(), second.describe());
    second
        .check(CommandSpec::new(["true"]), &scope)
        .await
        .unwrap();
    let out = Command::new(&atex)
        .args(["shvirt", "local", "--helper", &helper, "reservations"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listing.contains(&format!("{domain_a}\trun-b")), "{listing}");
    b.stop().await.unwrap();
    assert!(first.is_released() && second.is_released());
    assert_eq!(shared.running(), Vec::<String>::new());
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}
