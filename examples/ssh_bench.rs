//! Benchmark: atex's in-process SSH against the OpenSSH client, same sshd, same machine.
//!
//! Starts a private sshd on 127.0.0.1 (root needed: it runs in a private mount namespace,
//! see ENVIRONMENT.md §4) and logs in as `atexbench`, a user whose login shell is a plain
//! `/bin/sh` (created when missing). Measures command round-trip latency (`true`) over
//! one established connection, 16 concurrent commands, and a 100 MB upload, for
//!
//! * atex (`SshConnection`: one TCP connection, a channel per command, SFTP upload);
//! * OpenSSH with a ControlMaster (`ssh -S sock`, `rsync -e 'ssh -S sock'`);
//! * one `ssh` process per command (new TCP connection, key exchange, authentication).
//!
//! Run: `cargo run --release --example ssh_bench --features ssh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atex::connection::ssh::{HostKeyPolicy, SshConfig, SshConnection};
use atex::connection::{CommandSpec, Connection, ConnectionExt};
use atex::scope::Scope;

const USER: &str = "atexbench";
const LATENCY_ROUNDS: usize = 200;
const PER_PROCESS_ROUNDS: usize = 20;
const CONCURRENT: usize = 16;
const CONCURRENT_ROUNDS: usize = 10;
const UPLOAD_BYTES: usize = 100_000_000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn sh(cmd: &mut Command) -> Result<String, BoxError> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct Sshd {
    child: std::process::Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sshd(dir: &Path) -> Result<Sshd, BoxError> {
    if sh(Command::new("id").arg(USER)).is_err() {
        sh(Command::new("useradd").args(["-m", "-s", "/bin/sh", USER]))?;
    }
    sh(Command::new("usermod").args(["-p", "*", USER]))?;
    for key in ["host_ed25519", "id_ed25519"] {
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(key)))?;
    }
    let ak = dir.join(format!("authorized_keys.{USER}"));
    std::fs::copy(dir.join("id_ed25519.pub"), &ak)?;
    sh(Command::new("chown").arg(USER).arg(&ak))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = dir.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile none\n\
             AuthorizedKeysFile {d}/authorized_keys.%u\nStrictModes no\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\nMaxSessions 100\nMaxStartups 100:30:200\n",
            d = dir.display()
        ),
    )?;
    let log = std::fs::File::create(dir.join("sshd.log"))?;
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c",
            "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && exec /usr/sbin/sshd -D -e -f \"$0\""])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()?;
    let sshd = Sshd { child, port };
    let start = Instant::now();
    while !std::fs::read_to_string(dir.join("sshd.log"))?.contains("Server listening") {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("sshd did not start".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let host_pub = std::fs::read_to_string(dir.join("host_ed25519.pub"))?;
    let fields: Vec<&str> = host_pub.split_whitespace().take(2).collect();
    std::fs::write(
        dir.join("known_hosts"),
        format!("[127.0.0.1]:{port} {}\n", fields.join(" ")),
    )?;
    Ok(sshd)
}

fn ssh_base(dir: &Path, port: u16) -> Vec<String> {
    vec![
        "-p".into(),
        port.to_string(),
        "-i".into(),
        dir.join("id_ed25519").display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", dir.join("known_hosts").display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "LogLevel=ERROR".into(),
    ]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

struct Figures {
    latency: Duration,
    concurrent: Duration,
    upload: Duration,
}

async fn bench_atex(dir: &Path, port: u16, big: &Path) -> Result<Figures, BoxError> {
    let scope = Scope::root("bench");
    let cfg = SshConfig::new("127.0.0.1")
        .port(port)
        .user(USER)
        .key_file(dir.join("id_ed25519"))
        .host_key_policy(HostKeyPolicy::Strict)
        .known_hosts(dir.join("known_hosts"));
    let conn = SshConnection::connect(cfg).await?;
    for _ in 0..10 {
        conn.check(CommandSpec::new(["true"]), &scope).await?;
    }
    let mut lat = Vec::new();
    for _ in 0..LATENCY_ROUNDS {
        let t = Instant::now();
        conn.check(CommandSpec::new(["true"]), &scope).await?;
        lat.push(t.elapsed());
    }
    let mut conc = Vec::new();
    for _ in 0..CONCURRENT_ROUNDS {
        let t = Instant::now();
        let runs = (0..CONCURRENT).map(|_| conn.check(CommandSpec::new(["true"]), &scope));
        for r in futures::future::join_all(runs).await {
            r?;
        }
        conc.push(t.elapsed());
    }
    let remote = format!("/tmp/atex-bench-{}/upload.bin", std::process::id());
    let t = Instant::now();
    conn.upload(big, &remote).await?;
    let upload = t.elapsed();
    conn.check(
        CommandSpec::new([
            "rm",
            "-rf",
            Path::new(&remote)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
                .as_str(),
        ]),
        &scope,
    )
    .await?;
    conn.disconnect().await;
    Ok(Figures {
        latency: median(lat),
        concurrent: median(conc),
        upload,
    })
}

fn bench_controlmaster(dir: &Path, port: u16, big: &Path) -> Result<Figures, BoxError> {
    let sock = dir.join("cm.sock");
    let mut base = ssh_base(dir, port);
    base.extend(["-o".into(), format!("ControlPath={}", sock.display())]);
    let dest = format!("{USER}@127.0.0.1");
    sh(Command::new("ssh")
        .args(&base)
        .args([
            "-o",
            "ControlMaster=yes",
            "-o",
            "ControlPersist=yes",
            "-f",
            "-N",
        ])
        .arg(&dest))?;
    let run = |n: usize| -> Result<Vec<Duration>, BoxError> {
        let mut v = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            sh(Command::new("ssh").args(&base).arg(&dest).arg("true"))?;
            v.push(t.elapsed());
        }
        Ok(v)
    };
    run(10)?;
    let lat = run(LATENCY_ROUNDS)?;
    let mut conc = Vec::new();
    for _ in 0..CONCURRENT_ROUNDS {
        let t = Instant::now();
        let children: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                Command::new("ssh")
                    .args(&base)
                    .arg(&dest)
                    .arg("true")
                    .stdin(Stdio::null())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for mut c in children {
            c.wait()?;
        }
        conc.push(t.elapsed());
    }
    let e = format!(
        "ssh {}",
        base.iter()
            .map(|a| atex::connection::shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let remote_dir = format!("/tmp/atex-bench-rsync-{}", std::process::id());
    sh(Command::new("ssh")
        .args(&base)
        .arg(&dest)
        .arg(format!("mkdir -p {remote_dir}")))?;
    let t = Instant::now();
    sh(Command::new("rsync")
        .args(["-a", "-e", &e])
        .arg(big)
        .arg(format!("{dest}:{remote_dir}/upload.bin")))?;
    let upload = t.elapsed();
    sh(Command::new("ssh")
        .args(&base)
        .arg(&dest)
        .arg(format!("rm -rf {remote_dir}")))?;
    let _ = sh(Command::new("ssh")
        .args(&base)
        .args(["-O", "exit"])
        .arg(&dest));
    Ok(Figures {
        latency: median(lat),
        concurrent: median(conc),
        upload,
    })
}

fn bench_per_process(dir: &Path, port: u16) -> Result<Duration, BoxError> {
    let base = ssh_base(dir, port);
    let dest = format!("{USER}@127.0.0.1");
    let mut v = Vec::new();
    for _ in 0..PER_PROCESS_ROUNDS {
        let t = Instant::now();
        sh(Command::new("ssh").args(&base).arg(&dest).arg("true"))?;
        v.push(t.elapsed());
    }
    Ok(median(v))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let tmp = tempfile::Builder::new()
        .prefix("atex-ssh-bench-")
        .tempdir()?;
    let dir: PathBuf = tmp.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let sshd = start_sshd(&dir)?;
    let big = dir.join("big.bin");
    sh(Command::new("sh").arg("-c").arg(format!(
        "head -c {UPLOAD_BYTES} /dev/urandom > '{}'",
        big.display()
    )))?;

    let atex = bench_atex(&dir, sshd.port, &big).await?;
    let cm = bench_controlmaster(&dir, sshd.port, &big)?;
    let single = bench_per_process(&dir, sshd.port)?;

    println!("ssh benchmark (user {USER}, login shell /bin/sh, sshd on 127.0.0.1)");
    println!(
        "{:<44} {:>12} {:>14} {:>14}",
        "", "atex", "ControlMaster", "ssh/command"
    );
    println!(
        "{:<44} {:>10.2}ms {:>12.2}ms {:>12.2}ms",
        "round trip `true` (median)",
        ms(atex.latency),
        ms(cm.latency),
        ms(single)
    );
    println!(
        "{:<44} {:>10.2}ms {:>12.2}ms {:>14}",
        format!("{CONCURRENT} concurrent `true` (median batch)"),
        ms(atex.concurrent),
        ms(cm.concurrent),
        "-"
    );
    println!(
        "{:<44} {:>11.3}s {:>13.3}s {:>14}",
        "upload 100 MB (atex SFTP vs rsync over CM)",
        atex.upload.as_secs_f64(),
        cm.upload.as_secs_f64(),
        "-"
    );
    println!();
    println!(
        "latency ratio, ControlMaster / atex:     {:.1}x",
        cm.latency.as_secs_f64() / atex.latency.as_secs_f64()
    );
    println!(
        "latency ratio, ssh per command / atex:   {:.1}x",
        single.as_secs_f64() / atex.latency.as_secs_f64()
    );
    println!(
        "16 concurrent ratio, ControlMaster / atex: {:.1}x",
        cm.concurrent.as_secs_f64() / atex.concurrent.as_secs_f64()
    );
    println!(
        "upload ratio, rsync over CM / atex:      {:.2}x",
        cm.upload.as_secs_f64() / atex.upload.as_secs_f64()
    );
    drop(sshd);
    Ok(())
}
