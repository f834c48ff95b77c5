//! Processes a container left on this machine after `podman rm`: found in `/proc`, killed.
//!
//! A `podman run` killed while it creates the container (a cancelled creation) has already
//! started conmon (which daemonises, so it is outside the client's process group) and
//! `runc init` under it, but never recorded conmon in podman's database: `podman rm -f`
//! then removes the container and leaves both running, waiting forever. They are found by
//! the container's name (conmon's `-n NAME`, any podman client naming it) and every
//! descendant of such a process, stopped (so that none forks a new one unseen), and killed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long processes of a removed container get to exit by themselves.
const GRACE: Duration = Duration::from_secs(2);

/// A live process: its parent and arguments.
struct Proc {
    ppid: i32,
    args: Vec<Vec<u8>>,
}

/// Live (not zombie) processes of this machine, except this one.
fn snapshot() -> HashMap<i32, Proc> {
    let mut procs = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return procs;
    };
    let me = std::process::id() as i32;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..." — comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let Some(ppid) = fields.next().and_then(|f| f.parse::<i32>().ok()) else {
            continue;
        };
        if state == "Z" || state == "X" {
            continue;
        }
        let args = std::fs::read(entry.path().join("cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect()
            })
            .unwrap_or_default();
        procs.insert(pid, Proc { ppid, args });
    }
    procs
}

/// PIDs of the processes naming one of `names` as an argument, and of their descendants.
fn of_containers(names: &[&str]) -> HashSet<i32> {
    let procs = snapshot();
    let mut found: HashSet<i32> = procs
        .iter()
        .filter(|(_, p)| {
            p.args.iter().any(|a| {
                names.iter().any(|n| {
                    a.as_slice() == n.as_bytes()
                        || a.strip_prefix(b"--name=".as_slice()) == Some(n.as_bytes())
                })
            })
        })
        .map(|(pid, _)| *pid)
        .collect();
    loop {
        let before = found.len();
        for (pid, p) in &procs {
            if found.contains(&p.ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// Stops, then kills every process of the containers `names` on this machine (see the
/// module documentation); returns how many it killed. Processes are first given
/// [`GRACE`] to exit by themselves (conmon of a container `podman rm` just removed exits
/// on its own).
pub(crate) async fn kill_leftover_processes(names: &[&str]) -> usize {
    if names.is_empty() {
        return 0;
    }
    let deadline = tokio::time::Instant::now() + GRACE;
    loop {
        if of_containers(names).is_empty() {
            return 0;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Freeze the trees until no new process appears in them, then kill them all.
    let mut stopped: HashSet<i32> = HashSet::new();
    for _ in 0..20 {
        let now = of_containers(names);
        let new: Vec<i32> = now.difference(&stopped).copied().collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            stopped.insert(pid);
        }
    }
    for pid in &stopped {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    tracing::warn!(containers = ?names, killed = stopped.len(),
        "killed processes of removed containers (conmon, runc init of a cancelled creation)");
    stopped.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A process naming a made-up container, with a child, is found and killed; the
    /// parent is reaped here, the child by the test's subreaper-less init (it is gone
    /// from `of_containers` either way once dead).
    #[tokio::test]
    async fn a_process_naming_the_container_and_its_child_are_killed() {
        let name = format!("atex-unit-{}", std::process::id());
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 600 & wait", "sh", "-n", &name])
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while of_containers(&[&name]).len() < 2 {
            assert!(start.elapsed() < Duration::from_secs(10), "never saw them");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(of_containers(&["atex-unit-other"]).is_empty());
        let killed = kill_leftover_processes(&[&name]).await;
        assert_eq!(killed, 2);
        let _ = child.wait();
        let start = std::time::Instant::now();
        while !of_containers(&[&name]).is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10), "still alive");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
