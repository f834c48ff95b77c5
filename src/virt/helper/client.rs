//! [`HelperClient`]: the typed client of `atex virt-helper`, spawned through any
//! [`Connection`].
//!
//! Requests are serialised (one in flight); each reply must name the request's `cmd`. A
//! request whose future was dropped half-way leaves the stream out of step, so every later
//! request fails with [`HelperError::Desync`] instead of reading the wrong reply. When the
//! helper dies, requests fail with [`HelperError::Died`] (with its exit status when known).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::PONG;
use crate::connection::{
    BoxReader, BoxWriter, CommandSpec, Connection, ConnectionError, ErrOutput, Input, Output,
    Process,
};
use crate::scope::Scope;

/// Errors of [`HelperClient`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    /// The helper could not be started.
    #[error("cannot start the helper on {host}: {source}")]
    Spawn {
        /// The host's description.
        host: String,
        /// The cause.
        #[source]
        source: ConnectionError,
    },
    /// The helper is gone (it exited, or the connection to its host broke).
    #[error("the helper on {host} died: {message}")]
    Died {
        /// The host's description.
        host: String,
        /// Its exit status or what broke.
        message: String,
    },
    /// The helper answered `success: false`.
    #[error("helper command '{cmd}' failed: {reply}")]
    Failed {
        /// The command.
        cmd: String,
        /// The helper's message.
        reply: String,
    },
    /// The helper is not (this version of) atex's helper.
    #[error("the program on {host} is not atex-virt-helper v1 (wrong version?): {answer}")]
    WrongVersion {
        /// The host's description.
        host: String,
        /// What it answered to `ping`.
        answer: String,
    },
    /// A reply did not parse or did not match the request.
    #[error("bad reply from the helper on {host}: {message}")]
    Protocol {
        /// The host's description.
        host: String,
        /// What was wrong.
        message: String,
    },
    /// An earlier request was interrupted after it was sent: replies are out of step.
    #[error("an earlier request to the helper on {host} was interrupted; start a new helper")]
    Desync {
        /// The host's description.
        host: String,
    },
    /// Cancelled while waiting for a reply (the helper is then out of step).
    #[error("cancelled")]
    Cancelled,
}

impl HelperError {
    /// Whether the helper said no domain was free (try again later).
    pub fn is_no_domain_free(&self) -> bool {
        matches!(self, HelperError::Failed { reply, .. } if reply == "no domain could be reserved")
    }
}

struct Io {
    process: Process,
    stdin: BoxWriter,
    stdout: BufReader<BoxReader>,
    /// A request was sent and its reply not read.
    in_flight: bool,
    dead: Option<String>,
}

/// A running helper and the session with it. Dropping it ends the helper (its stdin closes
/// and the process is killed), which frees every reservation of the session.
pub struct HelperClient {
    host: String,
    io: tokio::sync::Mutex<Io>,
}

impl std::fmt::Debug for HelperClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperClient")
            .field("host", &self.host)
            .finish()
    }
}

impl HelperClient {
    /// Starts `argv` (for example `["atex", "virt-helper", "qemu:///system"]`) on `conn`'s
    /// host and checks with `ping` that it is atex's helper. `stderr` receives the helper's
    /// auxiliary stream (virt-install output); [`ErrOutput::Null`] discards it.
    pub async fn spawn(
        conn: &dyn Connection,
        argv: Vec<String>,
        stderr: ErrOutput,
        scope: &Scope,
    ) -> Result<Self, HelperError> {
        let host = conn.describe();
        let spec = CommandSpec::new(argv)
            .stdin(Input::Piped)
            .stdout(Output::Piped)
            .stderr(stderr);
        let mut process = conn
            .spawn(spec, scope)
            .await
            .map_err(|source| HelperError::Spawn {
                host: host.clone(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
            return Err(HelperError::Protocol {
                host,
                message: "the connection gave no stdin/stdout pipes".into(),
            });
        };
        let client = Self {
            host: host.clone(),
            io: tokio::sync::Mutex::new(Io {
                process,
                stdin,
                stdout: BufReader::new(stdout),
                in_flight: false,
                dead: None,
            }),
        };
        match client.request(json!({"cmd": "ping"}), None, scope).await {
            Ok(reply) if reply.get("reply").and_then(Value::as_str) == Some(PONG) => Ok(client),
            Ok(reply) => Err(HelperError::WrongVersion {
                host,
                answer: Value::Object(reply).to_string(),
            }),
            Err(HelperError::Protocol { message, .. }) => Err(HelperError::WrongVersion {
                host,
                answer: message,
            }),
            Err(e) => Err(e),
        }
    }

    /// The helper host's description.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends one request (and `payload` right after its line, for `upload`) and returns the
    /// reply object of a `success: true` answer.
    pub async fn request(
        &self,
        request: Value,
        payload: Option<&[u8]>,
        scope: &Scope,
    ) -> Result<Map<String, Value>, HelperError> {
        let cmd = request
            .get("cmd")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut io = self.io.lock().await;
        if let Some(message) = &io.dead {
            return Err(HelperError::Died {
                host: self.host.clone(),
                message: message.clone(),
            });
        }
        if io.in_flight {
            return Err(HelperError::Desync {
                host: self.host.clone(),
            });
        }
        let mut line = request.to_string().into_bytes();
        line.push(b'\n');
        io.in_flight = true;
        let exchange = async {
            io.stdin.write_all(&line).await?;
            if let Some(p) = payload {
                io.stdin.write_all(p).await?;
            }
            io.stdin.flush().await?;
            let mut answer = String::new();
            io.stdout.read_line(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = match scope.run(exchange).await {
            None => return Err(HelperError::Cancelled),
            Some(Ok(a)) if !a.is_empty() => a,
            Some(res) => {
                let why = match res {
                    Err(e) => format!("{e}"),
                    Ok(_) => "empty response from helper".to_string(),
                };
                let message =
                    match tokio::time::timeout(Duration::from_secs(2), io.process.wait()).await {
                        Ok(Ok(info)) => format!("{why}; it ended with {}", info.status),
                        _ => why,
                    };
                io.dead = Some(message.clone());
                return Err(HelperError::Died {
                    host: self.host.clone(),
                    message,
                });
            }
        };
        io.in_flight = false;
        let reply: Map<String, Value> = match serde_json::from_str::<Value>(&answer) {
            Ok(Value::Object(m)) => m,
            _ => {
                io.in_flight = true;
                return Err(HelperError::Protocol {
                    host: self.host.clone(),
                    message: format!("not a JSON object: {:?}", answer.trim_end()),
                });
            }
        };
        let reply_cmd = reply.get("cmd").and_then(Value::as_str);
        let text = reply
            .get("reply")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if reply_cmd != Some(cmd.as_str()) {
            if reply.get("success") == Some(&Value::Bool(false)) && reply_cmd.is_none() {
                return Err(HelperError::Failed { cmd, reply: text });
            }
            return Err(HelperError::Protocol {
                host: self.host.clone(),
                message: format!("reply for {reply_cmd:?} to request '{cmd}'"),
            });
        }
        match reply.get("success") {
            Some(Value::Bool(true)) => Ok(reply),
            Some(Value::Bool(false)) => Err(HelperError::Failed { cmd, reply: text }),
            _ => Err(HelperError::Protocol {
                host: self.host.clone(),
                message: format!("reply without 'success': {}", answer.trim_end()),
            }),
        }
    }

    fn string(reply: &Map<String, Value>, key: &str, host: &str) -> Result<String, HelperError> {
        reply
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| HelperError::Protocol {
                host: host.to_string(),
                message: format!("reply without '{key}'"),
            })
    }

    /// `setname`: the helper process's name as other sessions see it (15 bytes at most).
    pub async fn set_name(&self, name: &str, scope: &Scope) -> Result<(), HelperError> {
        self.request(json!({"cmd": "setname", "name": name}), None, scope)
            .await
            .map(|_| ())
    }

    /// `reserve`: a persistent domain (matching `filter` in full) now held by this session.
    pub async fn reserve(
        &self,
        filter: Option<&str>,
        scope: &Scope,
    ) -> Result<String, HelperError> {
        let req = match filter {
            Some(f) => json!({"cmd": "reserve", "filter": f}),
            None => json!({"cmd": "reserve"}),
        };
        let reply = self.request(req, None, scope).await?;
        Self::string(&reply, "domain", &self.host)
    }

    /// `release`: drops this session's hold on `domain`.
    pub async fn release(&self, domain: &str, scope: &Scope) -> Result<(), HelperError> {
        self.request(json!({"cmd": "release", "domain": domain}), None, scope)
            .await
            .map(|_| ())
    }

    /// `evict`: frees `domain` whoever holds it. Another session's hold ends with that
    /// session's helper, which is terminated (all its domains are freed); the pid of the
    /// helper that was ended, `None` when the domain was free or held by this session.
    pub async fn evict(&self, domain: &str, scope: &Scope) -> Result<Option<i32>, HelperError> {
        let reply = self
            .request(json!({"cmd": "evict", "domain": domain}), None, scope)
            .await?;
        Ok(reply
            .get("pid")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok()))
    }

    /// `reservations`: every persistent domain and who holds it.
    pub async fn reservations(
        &self,
        scope: &Scope,
    ) -> Result<BTreeMap<String, String>, HelperError> {
        let reply = self
            .request(json!({"cmd": "reservations"}), None, scope)
            .await?;
        let domains = reply
            .get("domains")
            .and_then(Value::as_object)
            .ok_or_else(|| HelperError::Protocol {
                host: self.host.clone(),
                message: "reply without 'domains'".into(),
            })?;
        Ok(domains
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect())
    }

    /// `virsh ARGS` on the host: its combined output, or [`HelperError::Failed`] with it.
    pub async fn virsh(&self, args: &[&str], scope: &Scope) -> Result<String, HelperError> {
        let reply = self
            .request(json!({"cmd": "virsh", "args": args}), None, scope)
            .await?;
        Self::string(&reply, "reply", &self.host)
    }

    /// `upload`: `data` into the session's temporary directory as `name`; its path there.
    pub async fn upload(
        &self,
        name: &str,
        data: &[u8],
        scope: &Scope,
    ) -> Result<String, HelperError> {
        let req = json!({"cmd": "upload", "name": name, "length": data.len()});
        let reply = self.request(req, Some(data), scope).await?;
        Self::string(&reply, "path", &self.host)
    }

    /// `create-volume` in a `dir` pool; the new volume's path.
    pub async fn create_volume(
        &self,
        pool: &str,
        name: &str,
        size: u64,
        format: &str,
        remove_existing: bool,
        scope: &Scope,
    ) -> Result<String, HelperError> {
        let req = json!({"cmd": "create-volume", "pool": pool, "name": name, "size": size,
                         "format": format, "remove_existing": remove_existing});
        let reply = self.request(req, None, scope).await?;
        Self::string(&reply, "path", &self.host)
    }

    /// `copy-volume` of `from` onto `domain`'s volume disk in `pool` (its NVRAM is reset).
    pub async fn copy_volume_to_domain(
        &self,
        pool: &str,
        from: &str,
        domain: &str,
        scope: &Scope,
    ) -> Result<String, HelperError> {
        let req = json!({"cmd": "copy-volume", "pool": pool, "from": from, "to_domain": domain});
        let reply = self.request(req, None, scope).await?;
        Self::string(&reply, "path", &self.host)
    }

    /// `copy-volume` of `from` to volume `to` of `pool` (renamed when `mv`).
    pub async fn copy_volume(
        &self,
        pool: &str,
        from: &str,
        to: &str,
        mv: bool,
        scope: &Scope,
    ) -> Result<String, HelperError> {
        let req = json!({"cmd": "copy-volume", "pool": pool, "from": from, "to": to, "move": mv});
        let reply = self.request(req, None, scope).await?;
        Self::string(&reply, "path", &self.host)
    }

    /// `virt-install ARGS` under a pty on the host (output on the helper's stderr).
    pub async fn virt_install(
        &self,
        args: &[&str],
        destroy_on_error: bool,
        scope: &Scope,
    ) -> Result<(), HelperError> {
        let req =
            json!({"cmd": "virt-install", "args": args, "destroy_on_error": destroy_on_error});
        self.request(req, None, scope).await.map(|_| ())
    }

    /// Ends the session: closes the helper's stdin (it exits, dropping its locks) and waits
    /// for it up to `grace`, then kills it.
    pub async fn close(self, grace: Duration) {
        let mut io = self.io.into_inner();
        let _ = io.stdin.shutdown().await;
        drop(io.stdin);
        if tokio::time::timeout(grace, io.process.wait())
            .await
            .is_err()
        {
            let force = tokio_util::sync::CancellationToken::new();
            force.cancel();
            let _ = io.process.terminate(Duration::ZERO, &force).await;
        }
    }
}
