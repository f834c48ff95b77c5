//! Transient clones of a real origin domain on a private libvirt (QEMU TCG): boot, SSH,
//! a real reboot, destroy; cancellation and drop mid-boot leave nothing behind; leftovers
//! of a "killed" run are found and removed by `atex virt cleanup`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use atex::connection::{CommandSpec, Connection, ConnectionExt, LocalConnection};
use atex::scope::{Scope, ShutdownOptions};
use atex::virt::domain::{CloneSpec, InstanceMetadata, NetworkBackend, OriginTemplate};
use atex::virt::{CloneConfig, CloneFactory, NetworkChoice, Virsh, VirtError};
use support::virt::{ORIGIN, POOL, VirtHost, guest};

fn factory_config(run: &str) -> CloneConfig {
    let mut cfg = CloneConfig::new(ORIGIN, POOL, run, guest().key());
    cfg.isolated = true;
    cfg.boot_timeout = Duration::from_secs(240);
    cfg
}

async fn factory(host: &VirtHost, run: &str, scope: &Scope) -> CloneFactory {
    let virsh = Virsh::new(Arc::new(LocalConnection::new()), Some(host.uri.clone()));
    CloneFactory::prepare(virsh, factory_config(run), scope)
        .await
        .expect("prepare")
}

async fn sh(conn: &dyn Connection, script: &str, scope: &Scope) -> String {
    conn.check(CommandSpec::new(["sh", "-c", script]), scope)
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
        .stdout_lossy()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_boots_runs_reboots_for_real_and_is_destroyed() {
    let host = VirtHost::start();
    let scope = Scope::root("virt");
    let factory = factory(&host, "boot", &scope).await;
    // passt is installed (scripts/run-tests.sh), so the first clone tries it; libvirt 9.0
    // rejects the passt backend, and the factory falls back to user networking at once.
    assert_eq!(
        factory.network(),
        NetworkBackend::Passt,
        "the passt program is on this machine: passt must be tried first"
    );
    let vm = factory.create(&scope).await.expect("create");
    assert_eq!(factory.network(), NetworkBackend::UserHostfwd);
    let rejection = factory
        .passt_rejection()
        .expect("libvirt's rejection is kept");
    assert!(rejection.contains("passt"), "{rejection}");
    let xml = host.virsh(&["dumpxml", vm.name()]);
    assert!(xml.contains("hostfwd=tcp:127.0.0.1:"), "{xml}");
    assert!(vm.name().starts_with("atex-boot-"), "{}", vm.name());
    assert!(host.domains().contains(&vm.name().to_string()));
    assert_eq!(host.volumes(), vec![vm.volume().to_string()]);
    let conn = vm.connection().clone();
    let out = sh(
        &conn,
        "uname -r; bash -c 'echo bash $BASH_VERSION' | cut -c1-4",
        &scope,
    )
    .await;
    assert!(out.contains("amd64") && out.contains("bash"), "{out}");
    // The origin's image is never written: the clone writes into its overlay.
    let boot1 = sh(
        &conn,
        "echo kept > /var/tmp/mark; sync; cat /proc/sys/kernel/random/boot_id",
        &scope,
    )
    .await;

    // A real reboot: the guest goes down, the connection drops, reconnect brings it back.
    let _ = conn
        .output(
            CommandSpec::new(["sh", "-c", "(sleep 1; reboot) >/dev/null 2>&1 &"]),
            &scope,
        )
        .await;
    let gone = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Wait for the old system to be gone (its boot id unreadable or changed).
        match conn
            .output(
                CommandSpec::new(["cat", "/proc/sys/kernel/random/boot_id"]),
                &scope,
            )
            .await
        {
            Ok(o) if o.stdout_lossy() == boot1 => {}
            _ => break,
        }
        assert!(
            tokio::time::Instant::now() < gone,
            "the guest never went down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    conn.reconnect(&scope)
        .await
        .expect("reconnect after reboot");
    let after = sh(
        &conn,
        "cat /var/tmp/mark; cat /proc/sys/kernel/random/boot_id",
        &scope,
    )
    .await;
    assert!(after.starts_with("kept\n"), "{after}");
    assert_ne!(
        after.trim_start_matches("kept\n"),
        boot1,
        "no reboot happened"
    );
    assert!(
        host.domains().contains(&vm.name().to_string()),
        "the domain must survive a guest reboot"
    );

    vm.destroy().await.expect("destroy");
    host.assert_clean(&[ORIGIN]);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_or_drop_mid_boot_leaves_nothing() {
    let host = VirtHost::start();
    let root = Scope::root("virt");
    let factory = Arc::new(factory(&host, "cancel", &root).await);

    // Cancellation (what Ctrl-C does) while the guest boots.
    let child = root.child("provision");
    let f = factory.clone();
    let c = child.clone();
    let task = child.spawn("create", async move { f.create(&c).await });
    host.wait_until(Duration::from_secs(60), "the domain to start", || {
        host.domains().iter().any(|d| d.starts_with("atex-cancel-"))
    });
    child.cancel();
    let res = task.await.unwrap();
    assert!(matches!(res, Err(VirtError::Cancelled)), "{res:?}");

    // Dropping the future mid-boot (an aborted task) hands the cleanup to the reaper.
    let f = factory.clone();
    let r = root.clone();
    let task = root.spawn("create", async move { f.create(&r).await });
    host.wait_until(
        Duration::from_secs(60),
        "the second domain to start",
        || {
            host.domains()
                .iter()
                .filter(|d| d.starts_with("atex-cancel-"))
                .count()
                == 1
                && !host.qemu_processes().is_empty()
        },
    );
    task.abort();
    let _ = task.await;

    let report = root.shutdown(ShutdownOptions::default()).await;
    assert!(report.is_clean(), "{report:?}");
    host.assert_clean(&[ORIGIN]);
}

/// What a run killed with SIGKILL leaves: a running clone with atex metadata and its
/// overlay, made here with the same XML a clone gets.
fn leave_a_killed_clone(host: &VirtHost, run: &str, start: bool) -> String {
    let name = format!("atex-{run}-0badc0de");
    let volume = format!("{name}.qcow2");
    let backing = guest().dir.join("root.img");
    host.create_overlay(&volume);
    if start {
        let origin = host.virsh(&["dumpxml", "--inactive", ORIGIN]);
        let template = OriginTemplate::parse(ORIGIN, &origin).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let xml = template.clone_xml(&CloneSpec {
            name: name.clone(),
            overlay: host.pool_dir().join(&volume).to_string_lossy().into_owned(),
            backing: backing.to_string_lossy().into_owned(),
            listen: "127.0.0.1".into(),
            port,
            network: NetworkBackend::UserHostfwd,
            isolated: true,
            nic_model: "e1000".into(),
            metadata: InstanceMetadata {
                run: run.into(),
                origin: ORIGIN.into(),
                pool: POOL.into(),
                volume: volume.clone(),
                port,
            },
        });
        let path = host.dir.path().join(format!("{name}.xml"));
        std::fs::write(&path, xml).unwrap();
        host.virsh(&["create", path.to_str().unwrap()]);
    }
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virt_cleanup_removes_what_a_killed_run_left() {
    let host = VirtHost::start();
    let root = Scope::root("virt");
    let killed = leave_a_killed_clone(&host, "killed", true);
    // Another run's overlay whose domain never started.
    leave_a_killed_clone(&host, "other", false);
    assert!(host.domains().contains(&killed));
    let atex = support::built_binary("atex");
    // `--run killed` leaves the other run's overlay alone.
    let out = std::process::Command::new(&atex)
        .args([
            "virt",
            "cleanup",
            "--connect",
            &host.uri,
            "--pool",
            POOL,
            "--run",
            "killed",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&killed), "{stdout}");
    assert_eq!(
        host.volumes(),
        vec!["atex-other-0badc0de.qcow2".to_string()]
    );
    let out = std::process::Command::new(&atex)
        .args(["virt", "cleanup", "--connect", &host.uri, "--pool", POOL])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    host.assert_clean(&[ORIGIN]);
    // An unknown origin is named in the error.
    let virsh = Virsh::new(Arc::new(LocalConnection::new()), Some(host.uri.clone()));
    let err = CloneFactory::prepare(
        virsh,
        CloneConfig::new("nope", POOL, "x", guest().key()),
        &root,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, VirtError::UnknownOrigin { .. }), "{err:?}");
    assert!(err.to_string().contains("'nope'"), "{err}");
    // passt asked for explicitly, on a libvirt that rejects it: a typed error at once (no
    // retries on other ports), nothing left.
    let virsh = Virsh::new(Arc::new(LocalConnection::new()), Some(host.uri.clone()));
    let mut cfg = factory_config("passt");
    cfg.network = NetworkChoice::Passt;
    let factory = CloneFactory::prepare(virsh, cfg, &root).await.unwrap();
    assert_eq!(factory.network(), NetworkBackend::Passt);
    let err = factory.create(&root).await.unwrap_err();
    assert!(matches!(err, VirtError::PasstRejected { .. }), "{err:?}");
    assert!(err.to_string().contains("passt"), "{err}");
    // The half-made clone's guard ran (in the scope's reaper).
    assert!(root.shutdown(ShutdownOptions::default()).await.is_clean());
    host.assert_clean(&[ORIGIN]);
}
