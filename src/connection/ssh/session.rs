//! One authenticated SSH session: TCP (or a jump host's tunnel), key exchange, host-key
//! check, authentication, keepalives.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};

use super::config::{HostKeyPolicy, SshAuth, SshConfig};
use super::error::{SessionEnd, SshError};

/// The handler's error: a protocol error, or a host key we refused (with the reason).
#[derive(Debug)]
pub(crate) enum ClientError {
    Russh(russh::Error),
    HostKey(Box<SshError>),
}

impl From<russh::Error> for ClientError {
    fn from(e: russh::Error) -> Self {
        ClientError::Russh(e)
    }
}

/// Why a session ended, as seen by the handler.
pub(crate) type EndReason = Arc<Mutex<Option<Arc<SessionEnd>>>>;

pub(crate) struct Client {
    target: String,
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    known_hosts: Option<PathBuf>,
    end_reason: EndReason,
}

impl Client {
    fn check_key(&self, key: &PublicKey) -> Result<bool, ClientError> {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let algorithm = key.algorithm().to_string();
        if self.policy == HostKeyPolicy::Insecure {
            tracing::debug!(target_host = %self.target, %fingerprint, "host key accepted without check (insecure policy)");
            return Ok(true);
        }
        let Some(path) = self.known_hosts.clone() else {
            return Err(ClientError::HostKey(Box::new(SshError::NoKnownHosts {
                target: self.target.clone(),
            })));
        };
        let kh_err = |action: &'static str, source: russh::keys::Error| {
            ClientError::HostKey(Box::new(SshError::KnownHosts {
                target: self.target.clone(),
                path: path.display().to_string(),
                action,
                source,
            }))
        };
        match russh::keys::check_known_hosts_path(&self.host, self.port, key, &path) {
            Ok(true) => Ok(true),
            Ok(false) if self.policy == HostKeyPolicy::AcceptNew => {
                russh::keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, &path)
                    .map_err(|e| kh_err("update", e))?;
                tracing::info!(target_host = %self.target, %fingerprint, known_hosts = %path.display(),
                    "new host key recorded (accept-new)");
                Ok(true)
            }
            Ok(false) => Err(ClientError::HostKey(Box::new(SshError::HostKeyUnknown {
                target: self.target.clone(),
                algorithm,
                fingerprint,
                path: path.display().to_string(),
            }))),
            Err(russh::keys::Error::KeyChanged { line }) => {
                Err(ClientError::HostKey(Box::new(SshError::HostKeyMismatch {
                    target: self.target.clone(),
                    algorithm,
                    fingerprint,
                    path: path.display().to_string(),
                    line,
                })))
            }
            Err(e) => Err(kh_err("read", e)),
        }
    }
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.check_key(key),
            PublicKeyOrCertificate::Certificate(cert) => {
                // No CA support: check the certified key itself against known_hosts.
                let key = PublicKey::new(cert.public_key().clone(), "");
                self.check_key(&key)
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        // The reason is kept (typed) for the errors of the commands that were running.
        // Nobody awaits what this returns once the session was established (russh passes
        // the error here instead), so the error is taken, not returned.
        let end = match reason {
            client::DisconnectReason::ReceivedDisconnect(info) => {
                SessionEnd::ByServer(info.message)
            }
            client::DisconnectReason::Error(ClientError::Russh(russh::Error::KeepaliveTimeout)) => {
                SessionEnd::KeepaliveTimeout
            }
            client::DisconnectReason::Error(ClientError::Russh(e)) => SessionEnd::Protocol(e),
            client::DisconnectReason::Error(ClientError::HostKey(e)) => SessionEnd::HostKey(*e),
        };
        tracing::debug!(target_host = %self.target, reason = %crate::error::chain(&end), "SSH session ended");
        if let Ok(mut r) = self.end_reason.lock() {
            r.get_or_insert(Arc::new(end));
        }
        Ok(())
    }
}

/// An authenticated session; channels are opened on it concurrently.
pub(crate) struct Session {
    pub(crate) handle: client::Handle<Client>,
    pub(crate) target: String,
    end_reason: EndReason,
    /// The SFTP subsystem, opened on first use (`None`: the server does not offer it).
    pub(crate) sftp: tokio::sync::OnceCell<Option<Arc<russh_sftp::client::SftpSession>>>,
    /// Exec channels currently open (commands running).
    pub(crate) open_commands: std::sync::atomic::AtomicUsize,
    /// Signalled whenever a command's channel closes (a slot frees up on servers that
    /// limit channels per connection, like OpenSSH's `MaxSessions`).
    pub(crate) command_closed: tokio::sync::Notify,
    /// Channels per connection the server allows, learned from its first refusal
    /// (0: unknown). Commands use at most one less, keeping a slot for kill requests.
    pub(crate) channel_limit: std::sync::atomic::AtomicUsize,
    /// Keeps the jump host's session alive while this one uses its tunnel.
    _jump: Option<Arc<Session>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.target)
            .field("closed", &self.handle.is_closed())
            .finish()
    }
}

impl Session {
    /// Whether the session is gone (disconnected, keepalive timeout, …).
    pub(crate) fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Why the session ended, if it did.
    pub(crate) fn end_reason(&self) -> Arc<SessionEnd> {
        self.end_reason
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_else(|| Arc::new(SessionEnd::Closed))
    }

    /// Connects and authenticates within `cfg.connect_timeout`.
    pub(crate) async fn establish(cfg: &SshConfig) -> Result<Arc<Session>, SshError> {
        let target = cfg.destination();
        match tokio::time::timeout(cfg.connect_timeout, Self::establish_inner(cfg)).await {
            Ok(res) => res,
            Err(_) => Err(SshError::Timeout {
                target,
                after: cfg.connect_timeout,
            }),
        }
    }

    fn client_config(cfg: &SshConfig) -> Arc<client::Config> {
        Arc::new(client::Config {
            keepalive_interval: Some(cfg.keepalive_interval),
            keepalive_max: cfg.keepalive_max,
            inactivity_timeout: None,
            nodelay: true,
            // Bigger windows and per-channel buffers: throughput for transfers.
            window_size: 8 * 1024 * 1024,
            channel_buffer_size: 256,
            ..Default::default()
        })
    }

    async fn establish_inner(cfg: &SshConfig) -> Result<Arc<Session>, SshError> {
        let target = cfg.destination();
        let end_reason: EndReason = Arc::new(Mutex::new(None));
        let handler = Client {
            target: target.clone(),
            host: cfg.host.clone(),
            port: cfg.port,
            policy: cfg.host_key_policy,
            known_hosts: cfg.known_hosts_path(),
            end_reason: end_reason.clone(),
        };
        let config = Self::client_config(cfg);
        let map_client_err = |e: ClientError| match e {
            ClientError::HostKey(e) => *e,
            ClientError::Russh(russh::Error::IO(source)) => SshError::Connect {
                target: target.clone(),
                source,
            },
            ClientError::Russh(source) => SshError::Protocol {
                target: target.clone(),
                source,
            },
        };
        let (mut handle, jump) = match &cfg.jump_host {
            None => {
                let addr = (cfg.host.as_str(), cfg.port);
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|source| SshError::Connect {
                        target: target.clone(),
                        source,
                    })?;
                let _ = stream.set_nodelay(true);
                let handle = client::connect_stream(config, stream, handler)
                    .await
                    .map_err(map_client_err)?;
                (handle, None)
            }
            Some(jump_cfg) => {
                let jump = Box::pin(Session::establish_inner(jump_cfg)).await?;
                let channel = jump
                    .handle
                    .channel_open_direct_tcpip(
                        cfg.host.clone(),
                        u32::from(cfg.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|source| SshError::Jump {
                        target: target.clone(),
                        jump: jump.target.clone(),
                        source,
                    })?;
                let handle = client::connect_stream(config, ChannelIo::new(channel), handler)
                    .await
                    .map_err(map_client_err)?;
                (handle, Some(jump))
            }
        };
        authenticate(&mut handle, cfg, &target).await?;
        tracing::debug!(target_host = %target, "SSH session established");
        Ok(Arc::new(Session {
            handle,
            target,
            end_reason,
            sftp: tokio::sync::OnceCell::new(),
            open_commands: std::sync::atomic::AtomicUsize::new(0),
            command_closed: tokio::sync::Notify::new(),
            channel_limit: std::sync::atomic::AtomicUsize::new(0),
            _jump: jump,
        }))
    }

    /// Sends a disconnect message (best effort).
    pub(crate) async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

async fn authenticate(
    handle: &mut client::Handle<Client>,
    cfg: &SshConfig,
    target: &str,
) -> Result<(), SshError> {
    let methods = cfg.effective_auth();
    if methods.is_empty() {
        return Err(SshError::Auth {
            target: target.to_string(),
            user: cfg.user.clone(),
            tried: "nothing (no key, agent or password configured)".into(),
        });
    }
    let proto = |source: russh::Error| SshError::Protocol {
        target: target.to_string(),
        source,
    };
    let mut tried = Vec::new();
    for method in methods {
        match &method {
            SshAuth::KeyFile { path, passphrase } => {
                let key = russh::keys::load_secret_key(path, passphrase.as_deref()).map_err(
                    |source| SshError::Key {
                        target: target.to_string(),
                        path: path.display().to_string(),
                        source,
                    },
                )?;
                let hash = if key.algorithm().is_rsa() {
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(proto)?
                        .flatten()
                } else {
                    None
                };
                let res = handle
                    .authenticate_publickey(
                        cfg.user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
                    .map_err(proto)?;
                if res.success() {
                    return Ok(());
                }
            }
            SshAuth::Agent | SshAuth::AgentSocket(_) => {
                let agent = match &method {
                    SshAuth::AgentSocket(path) => {
                        russh::keys::agent::client::AgentClient::connect_uds(path)
                            .await
                            .map(|a| a.dynamic())
                    }
                    _ => russh::keys::agent::client::AgentClient::connect_env()
                        .await
                        .map(|a| a.dynamic()),
                };
                match agent {
                    Ok(mut agent) => {
                        if try_agent(handle, cfg, target, &mut agent).await? {
                            return Ok(());
                        }
                    }
                    Err(e) => {
                        tracing::debug!(target_host = %target, error = %crate::error::chain(&e), "no ssh-agent");
                    }
                }
            }
            SshAuth::Password(pw) => {
                let res = handle
                    .authenticate_password(cfg.user.clone(), pw.clone())
                    .await
                    .map_err(proto)?;
                if res.success() {
                    return Ok(());
                }
            }
        }
        tried.push(method.to_string());
    }
    Err(SshError::Auth {
        target: target.to_string(),
        user: cfg.user.clone(),
        tried: tried.join(", "),
    })
}

/// Tries every identity of an agent; true when one was accepted.
async fn try_agent<S>(
    handle: &mut client::Handle<Client>,
    cfg: &SshConfig,
    target: &str,
    agent: &mut russh::keys::agent::client::AgentClient<S>,
) -> Result<bool, SshError>
where
    S: russh::keys::agent::client::AgentStream + Send + Unpin + 'static,
{
    let proto = |source: russh::Error| SshError::Protocol {
        target: target.to_string(),
        source,
    };
    let identities = agent.request_identities().await.unwrap_or_default();
    for identity in identities {
        let key = identity.public_key().into_owned();
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(proto)?
                .flatten()
        } else {
            None
        };
        match handle
            .authenticate_publickey_with(cfg.user.clone(), key, hash, agent)
            .await
        {
            Ok(res) if res.success() => return Ok(true),
            Ok(_) => {}
            Err(e) => tracing::debug!(target_host = %target, error = ?e, "agent signing failed"),
        }
    }
    Ok(false)
}

type NextMsg = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (russh::ChannelReadHalf, Option<russh::ChannelMsg>)>
            + Send,
    >,
>;

/// A channel as a byte stream (`AsyncRead + AsyncWrite`), like russh's
/// `Channel::into_stream` but without its close-on-drop, which spawns a task and panics
/// when dropped outside a Tokio runtime. Whoever owns it closes the channel explicitly
/// (or the whole session goes away with its channels).
pub(crate) struct ChannelIo {
    read: Option<russh::ChannelReadHalf>,
    next: Option<NextMsg>,
    buf: bytes::Bytes,
    eof: bool,
    tx: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    write: russh::ChannelWriteHalf<client::Msg>,
}

impl ChannelIo {
    pub(crate) fn new(channel: russh::Channel<client::Msg>) -> Self {
        let (read, write) = channel.split();
        Self {
            read: Some(read),
            next: None,
            buf: bytes::Bytes::new(),
            eof: false,
            tx: Box::pin(write.make_writer()),
            write,
        }
    }

    /// Sends EOF and closes the channel.
    pub(crate) async fn close(self) {
        let Self { write, .. } = self;
        let _ = write.eof().await;
        let _ = write.close().await;
    }
}

impl tokio::io::AsyncRead for ChannelIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        loop {
            if !self.buf.is_empty() {
                let n = self.buf.len().min(out.remaining());
                let chunk = self.buf.split_to(n);
                out.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                return Poll::Ready(Ok(()));
            }
            if self.next.is_none() {
                let Some(mut read) = self.read.take() else {
                    self.eof = true;
                    continue;
                };
                self.next = Some(Box::pin(async move {
                    let msg = read.wait().await;
                    (read, msg)
                }));
            }
            let Some(next) = self.next.as_mut() else {
                continue;
            };
            let (read, msg) = match next.as_mut().poll(cx) {
                Poll::Ready(r) => r,
                Poll::Pending => return Poll::Pending,
            };
            self.next = None;
            self.read = Some(read);
            match msg {
                Some(russh::ChannelMsg::Data { data }) => self.buf = data,
                Some(russh::ChannelMsg::Eof | russh::ChannelMsg::Close) | None => self.eof = true,
                Some(_) => {}
            }
        }
    }
}

impl tokio::io::AsyncWrite for ChannelIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.tx.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.tx.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.tx.as_mut().poll_shutdown(cx)
    }
}
