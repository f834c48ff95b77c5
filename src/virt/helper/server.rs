//! The helper program's side: one session, one JSON request per line on stdin, one reply
//! per line on stdout (see the [module docs](super) for the commands).
//!
//! The session lives as long as its stdin: when the client goes away (its SSH connection
//! dropped, it was killed) stdin ends, the helper exits and the kernel drops its lock files'
//! locks, which frees its reservations. The session's temporary directory (uploads) is
//! removed on exit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::locks::{Holder, Locks};
use super::{MAX_LINE, PONG};
use crate::connection::LocalConnection;
use crate::scope::Scope;
use crate::virt::virsh::Virsh;

/// Settings of a helper session.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// libvirt URI for virsh and virt-install (their default when `None`).
    pub uri: Option<String>,
    /// Directory of the lock files; default `~/.atex-virt-helper` for a user with a home,
    /// else `/var/lib/atex-virt-helper`.
    pub state_dir: Option<PathBuf>,
}

/// Errors that end a session (reply-level failures never do).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Reading requests or writing replies failed.
    #[error("helper I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The default state directory.
pub fn default_state_dir() -> PathBuf {
    let root = nix::unistd::Uid::effective().is_root();
    match std::env::var_os("HOME") {
        Some(home) if !root && !home.is_empty() && Path::new(&home).is_dir() => {
            Path::new(&home).join(".atex-virt-helper")
        }
        _ => PathBuf::from("/var/lib/atex-virt-helper"),
    }
}

/// Serves the process's stdin/stdout (stderr for virt-install output) until stdin ends.
pub async fn serve_stdio(options: ServerOptions, scope: &Scope) -> Result<(), ServeError> {
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let stdout = tokio::io::stdout();
    let stderr = tokio::io::stderr();
    serve(stdin, stdout, stderr, options, scope).await
}

struct Session {
    virsh: Virsh,
    uri: Option<String>,
    locks: Locks,
    tmp: tempfile::TempDir,
    scope: Scope,
}

fn fail(reply: impl Into<String>) -> Result<Map<String, Value>, String> {
    Err(reply.into())
}

/// Serves requests from `input` with replies to `output` until `input` ends.
pub async fn serve<R, W, E>(
    mut input: R,
    mut output: W,
    mut aux: E,
    options: ServerOptions,
    scope: &Scope,
) -> Result<(), ServeError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin + Send,
{
    let state = options.state_dir.clone().unwrap_or_else(default_state_dir);
    let locks = Locks::new(&state.join("locks"))?;
    let tmp = tempfile::Builder::new()
        .prefix("atex-virt-helper-")
        .tempdir_in(Path::new("/var/tmp"))
        .or_else(|_| tempfile::tempdir())?;
    let mut session = Session {
        virsh: Virsh::new(Arc::new(LocalConnection::new()), options.uri.clone()),
        uri: options.uri,
        locks,
        tmp,
        scope: scope.clone(),
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match scope
            .run(
                (&mut input)
                    .take(MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut line),
            )
            .await
        {
            None => break,
            Some(r) => r?,
        };
        if n == 0 {
            break;
        }
        let reply = if line.len() > MAX_LINE && !line.ends_with(b"\n") {
            // Skip the rest of the oversized line.
            let mut rest = Vec::new();
            input.read_until(b'\n', &mut rest).await?;
            json!({"success": false, "reply": format!("request line longer than {MAX_LINE} bytes")})
        } else {
            match session.handle(&line, &mut input, &mut aux).await {
                Some(r) => r,
                // Early EOF in an upload: no reply, the session ends.
                None => break,
            }
        };
        let mut text = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
        text.push(b'\n');
        output.write_all(&text).await?;
        output.flush().await?;
    }
    Ok(())
}

impl Session {
    /// One request: `Some(reply)`, or `None` when the session must end without a reply.
    async fn handle<R, E>(&mut self, line: &[u8], input: &mut R, aux: &mut E) -> Option<Value>
    where
        R: AsyncBufRead + Unpin,
        E: AsyncWrite + Unpin + Send,
    {
        let request: Map<String, Value> = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Some(json!({"success": false, "reply": "request is not a JSON object"}));
            }
            Err(e) => {
                return Some(json!({"success": false, "reply": format!("invalid JSON: {e}")}));
            }
        };
        let Some(cmd) = request
            .get("cmd")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Some(json!({"success": false, "reply": "missing 'cmd'"}));
        };
        let mut args = request;
        args.remove("cmd");
        let mut reply = Map::new();
        reply.insert("cmd".into(), Value::String(cmd.clone()));
        let outcome = match cmd.as_str() {
            "ping" => self.ping(&mut args, &mut reply),
            "setname" => self.setname(&mut args, &mut reply),
            "virsh" => self.cmd_virsh(&mut args, &mut reply).await,
            "reserve" => self.reserve(&mut args, &mut reply).await,
            "release" => self.release(&mut args, &mut reply),
            "evict" => self.evict(&mut args, &mut reply).await,
            "reservations" => self.reservations(&mut args, &mut reply).await,
            "upload" => match self.upload(&mut args, &mut reply, input).await {
                Some(r) => r,
                None => return None,
            },
            "create-volume" => self.create_volume(&mut args, &mut reply).await,
            "copy-volume" => self.copy_volume(&mut args, &mut reply).await,
            "virt-install" => self.virt_install(&mut args, &mut reply, aux).await,
            other => Err(format!("invalid cmd: '{other}'")),
        };
        let (success, text) = match outcome {
            Ok(extra) => {
                let text = extra
                    .get("reply")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                for (k, v) in extra {
                    if k != "reply" {
                        reply.insert(k, v);
                    }
                }
                (true, text)
            }
            Err(text) => (false, text),
        };
        reply.insert("success".into(), Value::Bool(success));
        reply.insert("reply".into(), Value::String(text));
        Some(Value::Object(reply))
    }

    fn ping(
        &mut self,
        args: &mut Map<String, Value>,
        _reply: &mut Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        no_leftovers("ping", args)?;
        let mut m = Map::new();
        m.insert("reply".into(), Value::String(PONG.into()));
        Ok(m)
    }

    fn setname(
        &mut self,
        args: &mut Map<String, Value>,
        reply: &mut Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let name = take_str("setname", args, reply, "name")?;
        no_leftovers("setname", args)?;
        if name.is_empty() {
            return fail("name must not be empty");
        }
        let mut short: String = name.chars().take(15).collect();
        while short.len() > 15 {
            short.pop();
        }
        let cname =
            std::ffi::CString::new(short).map_err(|_| "name contains a NUL byte".to_string())?;
        nix::sys::prctl::set_name(&cname).map_err(|e| format!("prctl: {e}"))?;
        Ok(Map::new())
    }

    async fn cmd_virsh(
        &mut self,
        args: &mut Map<String, Value>,
        reply: &mut Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let argv = take_str_list("virsh", args, reply, "args")?;
        no_leftovers("virsh", args)?;
        let (ok, text) = self.virsh_combined(&argv).await?;
        let mut m = Map::new();
        m.insert("reply".into(), Value::String(text.clone()));
        if ok { Ok(m) } else { Err(text) }
    }

    /// `virsh -q [-c URI] ARGS` with stdout and stderr combined.
    async fn virsh_combined(&self, args: &[String]) -> Result<(bool, String), String> {
        let mut cmd = tokio::process::Command::new("virsh");
        cmd.arg("-q");
        if let Some(uri) = &self.uri {
            cmd.arg("-c").arg(uri);
        }
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = match self.scope.run(cmd.output()).await {
            None => return Err("cancelled".into()),
            Some(Ok(o)) => o,
            Some(Err(e)) => return Err(format!("cannot run virsh: {e}")),
        };
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    async fn reserve(
        &mut self,
        args: &mut Map<String, Value>,
        reply: &mut Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let filter = match args.remove("filter") {
            None | Some(Value::Null) => None,
            Some(Value::String(f)) => {
                reply.insert("filter".into(), Value::String(f.clone()));
                Some(f)
            }
            Some(_) => return fail("invalid argument for cmd 'reserve': filter must be a string"),
        };
        no_leftovers("reserve", args)?;
        let all = self
            .virsh
            .list(true, true, &self.scope)
            .await
            .map_err(|e| e.to_string())?;
        if all.is_empty() {
            return fail("no persistent domains found");
        }
        let mut candidates = match filter {
            Some(f) => {
                let re = regex::Regex::new(&format!("^(?:{f})$"))
                    .map_err(|e| format!("invalid filter: {e}"))?;
                let c: Vec<String> = all.into_iter().filter(|d| re.is_match(d)).collect();
                if c.is_empty() {
                    return fail("no domain matches the filter");
                }
                c
            }
            None => all,
        };
        candidates.retain(|d| !self.locks.holds(d));
        shuffle(&mut candidates);
        for d in candidates {
            match self.locks.try_lock(&d) {
                Ok(true) => {
                    let mut m = Map::new();
                    m.insert("domain".into(), Value::String(d));
                    return Ok(m);
                }
                Ok(false) => continue,
                Err(e) => return Err(format!("locking {d}: {e}")),
            }
        }
        fail("no domain could be reserved")
    }

    fn release(
        &mut self,
        args: &mut Map<String, Value>,
        reply: &mut Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let domain = take_str("release", args, reply, "domain")?;
        no_leftovers("release", args)?;
        if self.locks.unlock(&domain) {
            Ok(Map::new())
        } else {
            fail("domain not locked")
        }
    }

    /// `evict {domain}`: ends another session's hold on `domain` by terminating the helper
    /// that holds it (SIGTERM, SIGKILL after [`EVICT_GRACE`]), which frees every domain of
    /// that session. Only a process whose command line names `virt-helper` is signalled.
    /// `pid` in the reply names the helper that was ended; a free domain is a success
    /// without `pid`, and this session's own hold is simply dropped.
    async fn evict(
        &mut self,
        args: &mut Map<String, Value>,
        reply: &mut Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let domain = take_str("evict", args, reply, "domain")?;
        no_leftovers("evict", args)?;
        let holder = |locks: &Locks| {
            locks
                .holder(&domain)
                .map_err(|e| format!("lock of {domain}: {e}"))
        };
        let mut m = Map::new();
        let pid = match holder(&self.locks)? {
            Holder::Free => {
                m.insert("reply".into(), Value::String("(free)".into()));
                return Ok(m);
            }
            Holder::Us => {
                self.locks.unlock(&domain);
                m.insert("reply".into(), Value::String("(reserved for us)".into()));
                return Ok(m);
            }
            Holder::Other { pid, .. } => pid,
        };
        if !is_virt_helper(pid) {
            return fail(format!(
                "{domain} is held by pid {pid}, which is not an atex virt-helper; not signalled"
            ));
        }
        let target = nix::unistd::Pid::from_raw(pid);
        let still_held =
            |locks: &Locks| matches!(holder(locks), Ok(Holder::Other { pid: p, .. }) if p == pid);
        for (signal, wait) in [
            (nix::sys::signal::Signal::SIGTERM, EVICT_GRACE),
            (nix::sys::signal::Signal::SIGKILL, EVICT_GRACE),
        ] {
            match nix::sys::signal::kill(target, signal) {
                Ok(()) => {}
                Err(nix::errno::Errno::ESRCH) => break,
                Err(e) => return fail(format!("signalling pid {pid} ({signal}): {e}")),
            }
            let deadline = tokio::time::Instant::now() + wait;
            while still_held(&self.locks) && tokio::time::Instant::now() < deadline {
                if self
                    .scope
                    .run(tokio::time::sleep(Duration::from_millis(20)))
                    .await
                    .is_none()
                {
                    return fail("cancelled");
                }
            }
            if !still_held(&self.locks) {
                break;
            }
        }
        if still_held(&self.locks) {
            return fail(format!("pid {pid} still holds {domain}"));
        }
        m.insert("pid".into(), Value::from(pid));
        Ok(m)
    }

    async fn reservations(
        &mut self,
        args: &mut Map<String, Value>,
        _reply: &mut Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        no_leftovers("reservations", args)?;
        let all = self
            .virsh
            .list(true, true, &self.scope)
            .await
            .map_err(|e| e.to_string())?;
        let mut domains = Map::new();
        for d in all {
            let holder = self
                .locks
                .holder(&d)
                .map_err(|e| format!("lock of {d}: {e}"))?;
            domains.insert(d, Value::String(holder.describe()));
        }
        let mut m = Map::new();
        m.insert("domains".into(), Value::Object(domains));
        Ok(m)
    }

    /// `None`: the input ended before `length` bytes arrived (no reply, session ends).
    async fn upload<R: AsyncBufRead + Unpin>(
        &mut self,
        args: &mut Map<String, Value>,
        reply: &mut Map<String, Value>,
        input: &mut R,
    ) -> Option<Result<Map<String, Value>, String>> {
        let name = match take_str("upload", args, reply, "name") {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let length = match args.remove("length").and_then(|v| v.as_u64()) {
            Some(l) => {
                reply.insert("length".into(), json!(l));
                l
            }
            None => return Some(Err("missing argument for cmd 'upload': length".into())),
        };
        // The data follows in any case: read it before deciding anything else.
        let path = self.tmp.path().join(name.replace('/', "_"));
        let mut data = (&mut *input).take(length);
        let mut file =
            match (!name.contains('/') && !name.is_empty() && name != "." && name != "..")
                .then(|| std::fs::File::create(&path))
            {
                Some(Ok(f)) => Some(tokio::fs::File::from_std(f)),
                _ => None,
            };
        let copied = match &mut file {
            Some(f) => tokio::io::copy(&mut data, f).await.ok()?,
            None => tokio::io::copy(&mut data, &mut tokio::io::sink())
                .await
                .ok()?,
        };
        if copied < length {
            return None;
        }
        if let Err(e) = no_leftovers("upload", args) {
            return Some(Err(e));
        }
        if file.is_none() {
            return Some(Err(format!(
                "invalid file name {name:?}: must be a plain name without '/'"
            )));
        }
        let mut m = Map::new();
        m.insert(
            "path".into(),
            Value::String(path.to_string_lossy().into_owned()),
        );
        Some(Ok(m))
    }

    /// The directory of a `dir` pool.
    async fn pool_dir(&self, pool: &str) -> Result<PathBuf, String> {
        let xml = self
            .virsh
            .run(&["pool-dumpxml", "--pool", pool], &self.scope)
            .await
            .map_err(|e| e.to_string())?;
        let root = crate::virt::domain::parse(pool, &xml).map_err(|e| e.to_string())?;
        if root.attributes.get("type").map(String::as_str) != Some("dir") {
            return Err(format!("pool {pool} is not of type 'dir'"));
        }
        root.get_child("target")
            .and_then(|t| t.get_child("path"))
            .and_then(|p| p.get_text())
            .map(|p| PathBuf::from(p.trim()))
            .ok_or_else(|| format!("pool {pool} has no target path"))
    }

    async fn pool_refresh(&self, pool: &str) -> Result<(), String> {
        for attempt in 0..10 {
            match self
                .virsh
                .run(&["pool-refresh", "--pool", pool], &self.scope)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if attempt < 9
                        && e.message()
                            .is_some_and(|m| m.contains("asynchronous jobs running")) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    async fn create_volume(
        &mut self,
        args: &mut Map<String, Value>,
        reply: &mut Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let pool = take_str("create-volume", args, reply, "pool")?;
        let name = take_str("create-volume", args, reply, "name")?;
        let size = match args.remove("size") {
            Some(Value::Number(n)) if n.as_u64().is_some() => {
                reply.insert("size".into(), Value::Number(n.clone()));
                n.as_u64().unwrap_or(0)
            }
            Some(_) => {
                return fail(
                    "invalid argument for cmd 'create-volume': size must be a number of bytes",
                );
            }
            None => return fail("missing argument for cmd 'create-volume': size"),
        };
        let format = take_str("create-volume", args, reply, "format")?;
        let remove_existing = take_bool(args, reply, "remove_existing");
        no_leftovers("create-volume", args)?;
        if name.contains('/') || name.is_empty() {
            return fail(format!("invalid volume name {name:?}"));
        }
        let dir = self.pool_dir(&pool).await?;
        let path = dir.join(&name);
        if path.exists() {
            if !remove_existing {
                return fail(format!("{} already exists", path.display()));
            }
            std::fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
        }
        match format.as_str() {
            "raw" => {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| format!("creating {}: {e}", path.display()))?;
                f.set_len(size)
                    .map_err(|e| format!("sizing {}: {e}", path.display()))?;
            }
            "qcow2" => {
                let out = tokio::process::Command::new("qemu-img")
                    .args([
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-o",
                        "preallocation=metadata",
                        "--",
                    ])
                    .arg(&path)
                    .arg(size.to_string())
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .map_err(|e| format!("cannot run qemu-img: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "qemu-img create failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
            other => return fail(format!("unsupported format '{other}' (raw or qcow2)")),
        }
        self.pool_refresh(&pool).await?;
        let mut m = Map::new();
        m.insert(
            "path".into(),
            Value::String(path.to_string_lossy().into_owned()),
        );
        Ok(m)
    }

    async fn copy_volume(
        &mut self,
        args: &mut Map<String, Value>,
        reply: &mut Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let pool = take_str("copy-volume", args, reply, "pool")?;
        let from = take_str("copy-volume", args, reply, "from")?;
        let to = opt_str(args, reply, "to")?;
        let to_domain = opt_str(args, reply, "to_domain")?;
        let mv = take_bool(args, reply, "move");
        no_leftovers("copy-volume", args)?;
        let dir = self.pool_dir(&pool).await?;
        let src = PathBuf::from(
            self.virsh
                .vol_path(&pool, &from, &self.scope)
                .await
                .map_err(|e| e.to_string())?,
        );
        let (dest, nvram) = match (to, to_domain) {
            (Some(to), None) => {
                if to.contains('/') || to.is_empty() {
                    return fail(format!("invalid volume name {to:?}"));
                }
                (dir.join(to), None)
            }
            (None, Some(domain)) => self.domain_volume(&domain, &pool, &dir).await?,
            _ => return fail("exactly one of 'to' and 'to_domain' is needed"),
        };
        if dest.parent() != Some(dir.as_path()) {
            return fail(format!("{} is not in pool {pool}", dest.display()));
        }
        if mv {
            std::fs::rename(&src, &dest)
                .map_err(|e| format!("moving {} to {}: {e}", src.display(), dest.display()))?;
        } else {
            let tmp = dir.join(format!(
                ".{}.atex-tmp",
                dest.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            let out = tokio::process::Command::new("cp")
                .args(["-f", "--reflink=auto", "--"])
                .arg(&src)
                .arg(&tmp)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .map_err(|e| format!("cannot run cp: {e}"))?;
            if !out.status.success() {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!(
                    "cp failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            std::fs::rename(&tmp, &dest)
                .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), dest.display()))?;
        }
        if let Some(nvram) = nvram {
            let _ = std::fs::remove_file(nvram);
        }
        self.pool_refresh(&pool).await?;
        let mut m = Map::new();
        m.insert(
            "path".into(),
            Value::String(dest.to_string_lossy().into_owned()),
        );
        Ok(m)
    }

    /// The path of `domain`'s volume disk in `pool`, and its NVRAM file if any.
    async fn domain_volume(
        &self,
        domain: &str,
        pool: &str,
        dir: &Path,
    ) -> Result<(PathBuf, Option<PathBuf>), String> {
        let xml = self
            .virsh
            .dumpxml(domain, true, &self.scope)
            .await
            .map_err(|e| e.to_string())?;
        let root = crate::virt::domain::parse(domain, &xml).map_err(|e| e.to_string())?;
        let nvram = root
            .get_child("os")
            .and_then(|os| os.get_child("nvram"))
            .and_then(|n| n.get_text())
            .map(|t| PathBuf::from(t.trim()))
            .filter(|p| !p.as_os_str().is_empty());
        let devices = root.get_child("devices").ok_or("domain has no devices")?;
        for disk in devices
            .children
            .iter()
            .filter_map(|n| n.as_element())
            .filter(|e| e.name == "disk")
        {
            if disk.attributes.get("type").map(String::as_str) != Some("volume") {
                continue;
            }
            let Some(src) = disk.get_child("source") else {
                continue;
            };
            if src.attributes.get("pool").map(String::as_str) == Some(pool)
                && let Some(vol) = src.attributes.get("volume")
            {
                return Ok((dir.join(vol), nvram));
            }
        }
        Err(format!("domain {domain} has no volume disk in pool {pool}"))
    }

    async fn virt_install<E: AsyncWrite + Unpin + Send>(
        &mut self,
        args: &mut Map<String, Value>,
        reply: &mut Map<String, Value>,
        aux: &mut E,
    ) -> Result<Map<String, Value>, String> {
        let argv = take_str_list("virt-install", args, reply, "args")?;
        let destroy_on_error = take_bool(args, reply, "destroy_on_error");
        no_leftovers("virt-install", args)?;
        let name = domain_name_arg(&argv);
        if destroy_on_error && name.is_none() {
            return fail("destroy_on_error needs -n/--name in args");
        }
        let mut full = Vec::new();
        if let Some(uri) = &self.uri {
            full.push("--connect".to_string());
            full.push(uri.clone());
        }
        full.extend(argv);
        let result = super::pty::run_relayed("virt-install", &full, aux, &self.scope).await;
        let outcome = match result {
            Ok(0) => Ok(Map::new()),
            Ok(code) => Err(format!("virt-install exited with {code}")),
            Err(e) => Err(e),
        };
        if outcome.is_err()
            && destroy_on_error
            && let Some(name) = name
        {
            let _ = self.virsh.destroy(&name, &self.scope).await;
        }
        outcome
    }
}

/// The value of `-n`/`--name` in virt-install arguments.
fn domain_name_arg(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-n" || a == "--name" {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--name=") {
            return Some(v.to_string());
        }
    }
    None
}

fn shuffle(v: &mut [String]) {
    use std::hash::{BuildHasher, Hasher};
    for i in (1..v.len()).rev() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        let j = (h.finish() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// How long `evict` waits for the holder to go after each signal.
const EVICT_GRACE: Duration = Duration::from_secs(5);

/// Whether `pid` runs `atex virt-helper` (its command line has a `virt-helper` word).
fn is_virt_helper(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .any(|word| word == b"virt-helper" || word.ends_with(b"/atex-virt-helper"))
    })
}

fn take_str(
    cmd: &str,
    args: &mut Map<String, Value>,
    reply: &mut Map<String, Value>,
    key: &str,
) -> Result<String, String> {
    match args.remove(key) {
        Some(Value::String(s)) => {
            reply.insert(key.into(), Value::String(s.clone()));
            Ok(s)
        }
        Some(_) => Err(format!(
            "invalid argument for cmd '{cmd}': {key} must be a string"
        )),
        None => Err(format!("missing argument for cmd '{cmd}': {key}")),
    }
}

fn opt_str(
    args: &mut Map<String, Value>,
    reply: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<String>, String> {
    match args.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            reply.insert(key.into(), Value::String(s.clone()));
            Ok(Some(s))
        }
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn take_bool(args: &mut Map<String, Value>, reply: &mut Map<String, Value>, key: &str) -> bool {
    match args.remove(key) {
        Some(Value::Bool(b)) => {
            reply.insert(key.into(), Value::Bool(b));
            b
        }
        _ => false,
    }
}

fn take_str_list(
    cmd: &str,
    args: &mut Map<String, Value>,
    reply: &mut Map<String, Value>,
    key: &str,
) -> Result<Vec<String>, String> {
    match args.remove(key) {
        Some(Value::Array(items)) => {
            let list: Option<Vec<String>> = items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect();
            let list = list.ok_or_else(|| {
                format!("invalid argument for cmd '{cmd}': {key} must be a list of strings")
            })?;
            reply.insert(key.into(), Value::Array(items));
            Ok(list)
        }
        Some(_) => Err(format!(
            "invalid argument for cmd '{cmd}': {key} must be a list of strings"
        )),
        None => Err(format!("missing argument for cmd '{cmd}': {key}")),
    }
}

fn no_leftovers(cmd: &str, args: &Map<String, Value>) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "leftover arguments for cmd '{cmd}': {}",
            serde_json::to_string(args).unwrap_or_default()
        ))
    }
}
