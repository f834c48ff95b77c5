//! Benchmark: atex's in-process SSH against the OpenSSH client, same sshd, same machine.
//!
//! Starts a private sshd on 127.0.0.1 (root needed: it runs in a private mount namespace,
//! see ENVIRONMENT.md §4) and logs in as `atexbench`, a user whose login shell is a plain
//! `/bin/sh` (created when missing). Measures command round-trip latency over one
//! established connection, 16 concurrent commands, and a 100 MB upload, for
//!
//! * atex (`SshConnection`: one TCP connection, a channel per command, SFTP upload);
//! * OpenSSH with a ControlMaster (`ssh -S sock`, `rsync -e 'ssh -S sock'`);
//! * one `ssh` process per command (new TCP connection, key exchange, authentication).
//!
//! Two latencies: `true`, which the OpenSSH side's login shell runs as a builtin while atex
//! starts the program (`exec true`: the command must replace the shell so that its process
//! group and exit status are the command's), and `/bin/true`, a program on both sides.
//! Both are measured in interleaved blocks (20 atex round trips, then 20 through the
//! ControlMaster, ten times over), so that a machine whose speed drifts during the run
//! slows both sides alike.
//!
//! Run: `cargo run --release --example ssh_bench --features ssh`; `-- --quick` runs a few
//! rounds and a 1 MB upload only (a smoke test, not a measurement).
//!
//! Everything it starts ends with it, on success, error or Ctrl-C: the sshd runs in a PID
//! namespace of its own that dies with it (sessions included), and the OpenSSH
//! ControlMaster is a foreground child that is told to exit (`ssh -O exit`) and killed
//! when dropped.

/// With the opt-in feature `mimalloc`, the allocator the `atex` program is then built with.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atex::connection::ssh::{HostKeyPolicy, SshConfig, SshConnection};
use atex::connection::{CommandSpec, Connection, ConnectionExt};
use atex::scope::{Scope, ShutdownOptions};

const USER: &str = "atexbench";
const CONCURRENT: usize = 16;

/// How much to measure.
#[derive(Clone, Copy)]
struct Rounds {
    warmup: usize,
    latency: usize,
    per_process: usize,
    concurrent: usize,
    upload_bytes: usize,
}

/// Round trips per block of the interleaved latency measurement.
const BLOCK: usize = 20;

const FULL: Rounds = Rounds {
    warmup: 10,
    latency: 200,
    per_process: 20,
    concurrent: 10,
    upload_bytes: 100_000_000,
};

const QUICK: Rounds = Rounds {
    warmup: 1,
    latency: 5,
    per_process: 2,
    concurrent: 2,
    upload_bytes: 1_000_000,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error of starting `cmd`, naming the program (a bare "No such file or directory"
/// does not say what is missing).
fn spawn_error(cmd: &Command, e: std::io::Error) -> BoxError {
    format!("cannot run `{}`: {e}", cmd.get_program().to_string_lossy()).into()
}

fn sh(cmd: &mut Command) -> Result<String, BoxError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(cmd, e))?;
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

/// The private sshd. It runs as PID 1 of its own PID namespace, whose `unshare` parent is
/// `child`: killing `child` ends the namespace, every session with it.
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

/// An OpenSSH ControlMaster running in the foreground as our child. Dropping it asks it to
/// exit (`ssh -O exit`), then kills it and reaps it.
struct ControlMaster {
    child: std::process::Child,
    base: Vec<String>,
    dest: String,
}

impl ControlMaster {
    /// Starts the master and waits (up to 10 s) until it accepts clients.
    fn start(base: &[String], dest: &str) -> Result<Self, BoxError> {
        let mut cmd = Command::new("ssh");
        cmd.args(base)
            .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-N"])
            .arg(dest)
            .stdin(Stdio::null());
        let child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
        let mut master = Self {
            child,
            base: base.to_vec(),
            dest: dest.to_string(),
        };
        let start = Instant::now();
        loop {
            if let Some(status) = master.child.try_wait()? {
                return Err(format!("the ssh ControlMaster exited with {status}").into());
            }
            let mut check = master.control(["-O", "check"]);
            let ready = check
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| spawn_error(&check, e))?
                .success();
            if ready {
                return Ok(master);
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("the ssh ControlMaster did not come up within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `program` through the master `n` times; the wall time of each.
    fn round_trips(&self, program: &str, n: usize) -> Result<Vec<Duration>, BoxError> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            sh(&mut self.remote(program))?;
            v.push(t.elapsed());
        }
        Ok(v)
    }

    /// An `ssh` running `command` on the server through the master.
    fn remote(&self, command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(&self.base)
            .arg(&self.dest)
            .arg(command)
            .stdin(Stdio::null());
        cmd
    }

    /// An `ssh` command talking to the master.
    fn control<const N: usize>(&self, args: [&str; N]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(&self.base)
            .args(args)
            .arg(&self.dest)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for ControlMaster {
    fn drop(&mut self) {
        let _ = self
            .control(["-O", "exit"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
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
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc", "--mount", "--propagation", "private", "sh", "-c",
            "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && exec /usr/sbin/sshd -D -e -f \"$0\""])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stderr(log);
    let child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
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
    latency_program: Duration,
    concurrent: Duration,
    upload: Duration,
}

/// Connects atex and measures it; the latencies interleaved with `cm`'s, whose share is
/// returned second (`true`, `/bin/true`).
async fn bench_atex(
    dir: &Path,
    port: u16,
    big: &Path,
    rounds: Rounds,
    cm: &ControlMaster,
    scope: &Scope,
) -> Result<(Figures, (Duration, Duration)), BoxError> {
    let cfg = SshConfig::new("127.0.0.1")
        .port(port)
        .user(USER)
        .key_file(dir.join("id_ed25519"))
        .host_key_policy(HostKeyPolicy::Strict)
        .known_hosts(dir.join("known_hosts"));
    let conn = SshConnection::connect(cfg).await?;
    let res = measure_atex(&conn, big, rounds, cm, scope).await;
    conn.disconnect().await;
    res
}

/// `n` round trips of `program` over atex's connection; the wall time of each.
async fn atex_round_trips(
    conn: &SshConnection,
    program: &str,
    n: usize,
    scope: &Scope,
) -> Result<Vec<Duration>, BoxError> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        conn.check(CommandSpec::new([program]), scope).await?;
        v.push(t.elapsed());
    }
    Ok(v)
}

async fn measure_atex(
    conn: &SshConnection,
    big: &Path,
    rounds: Rounds,
    cm: &ControlMaster,
    scope: &Scope,
) -> Result<(Figures, (Duration, Duration)), BoxError> {
    atex_round_trips(conn, "true", rounds.warmup, scope).await?;
    cm.round_trips("true", rounds.warmup)?;
    // Interleaved blocks: both sides see the same machine.
    let (mut lat, mut lat_program, mut cm_lat, mut cm_lat_program) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut left = rounds.latency;
    while left > 0 {
        let n = left.min(BLOCK);
        left -= n;
        lat.extend(atex_round_trips(conn, "true", n, scope).await?);
        cm_lat.extend(cm.round_trips("true", n)?);
        lat_program.extend(atex_round_trips(conn, "/bin/true", n, scope).await?);
        cm_lat_program.extend(cm.round_trips("/bin/true", n)?);
    }
    let mut conc = Vec::new();
    for _ in 0..rounds.concurrent {
        let t = Instant::now();
        let runs = (0..CONCURRENT).map(|_| conn.check(CommandSpec::new(["true"]), scope));
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
        scope,
    )
    .await?;
    Ok((
        Figures {
            latency: median(lat),
            latency_program: median(lat_program),
            concurrent: median(conc),
            upload,
        },
        (median(cm_lat), median(cm_lat_program)),
    ))
}

/// Starts the ControlMaster (ended, with its session on the sshd side, when dropped).
fn start_controlmaster(dir: &Path, port: u16) -> Result<ControlMaster, BoxError> {
    let sock = dir.join("cm.sock");
    let mut base = ssh_base(dir, port);
    base.extend(["-o".into(), format!("ControlPath={}", sock.display())]);
    ControlMaster::start(&base, &format!("{USER}@127.0.0.1"))
}

/// The ControlMaster's concurrent commands and upload; `latency` is what the interleaved
/// measurement found.
fn bench_controlmaster(
    cm: &ControlMaster,
    big: &Path,
    rounds: Rounds,
    latency: (Duration, Duration),
) -> Result<Figures, BoxError> {
    let (base, dest) = (&*cm.base, &*cm.dest);
    let mut conc = Vec::new();
    for _ in 0..rounds.concurrent {
        let t = Instant::now();
        let mut children = Vec::new();
        for _ in 0..CONCURRENT {
            let mut cmd = cm.remote("true");
            children.push(KillOnDrop(cmd.spawn().map_err(|e| spawn_error(&cmd, e))?));
        }
        for mut c in children {
            c.0.wait()?;
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
    sh(&mut cm.remote(&format!("mkdir -p {remote_dir}")))?;
    let t = Instant::now();
    sh(Command::new("rsync")
        .args(["-a", "-e", &e])
        .arg(big)
        .arg(format!("{dest}:{remote_dir}/upload.bin")))?;
    let upload = t.elapsed();
    sh(&mut cm.remote(&format!("rm -rf {remote_dir}")))?;
    Ok(Figures {
        latency: latency.0,
        latency_program: latency.1,
        concurrent: median(conc),
        upload,
    })
}

fn bench_per_process(dir: &Path, port: u16, rounds: Rounds) -> Result<Duration, BoxError> {
    let base = ssh_base(dir, port);
    let dest = format!("{USER}@127.0.0.1");
    let mut v = Vec::new();
    for _ in 0..rounds.per_process {
        let t = Instant::now();
        sh(Command::new("ssh").args(&base).arg(&dest).arg("true"))?;
        v.push(t.elapsed());
    }
    Ok(median(v))
}

/// A child killed and reaped when dropped (an early return while others still run).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let rounds = match std::env::args().nth(1).as_deref() {
        None => FULL,
        Some("--quick") => QUICK,
        Some(other) => return Err(format!("unknown argument {other:?} (expected --quick)").into()),
    };
    let tmp = tempfile::Builder::new()
        .prefix("atex-ssh-bench-")
        .tempdir()?;
    let dir: PathBuf = tmp.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let sshd = start_sshd(&dir)?;
    let big = dir.join("big.bin");
    sh(Command::new("sh").arg("-c").arg(format!(
        "head -c {} /dev/urandom > '{}'",
        rounds.upload_bytes,
        big.display()
    )))?;

    let master = start_controlmaster(&dir, sshd.port)?;
    let scope = Scope::root("bench");
    let atex = bench_atex(&dir, sshd.port, &big, rounds, &master, &scope).await;
    // Whatever happened, every command and cleanup of the atex part ends here.
    let report = scope.shutdown(ShutdownOptions::default()).await;
    if !report.is_clean() {
        return Err(format!("atex left work behind: {report:?}").into());
    }
    let (atex, cm_latency) = atex?;
    let cm = bench_controlmaster(&master, &big, rounds, cm_latency)?;
    let single = bench_per_process(&dir, sshd.port, rounds)?;

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
        "round trip `/bin/true` (median)",
        ms(atex.latency_program),
        ms(cm.latency_program),
        "-"
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
        format!(
            "upload {} MB (atex SFTP vs rsync over CM)",
            rounds.upload_bytes / 1_000_000
        ),
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
        "latency ratio /bin/true, ControlMaster / atex: {:.1}x",
        cm.latency_program.as_secs_f64() / atex.latency_program.as_secs_f64()
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
    drop(master);
    drop(sshd);
    Ok(())
}
