//! [`TestingFarmProvisioner`]: machines reserved from Testing Farm (features `testingfarm`
//! and `ssh`).
//!
//! Testing Farm has no "give me a machine" call: each remote is a request running
//! upstream's *reserve* test, which keeps the machine and installs our SSH public key
//! (sent as the `TF_RESERVATION_AUTHORIZED_KEYS_BASE64` secret). One remote is made this
//! way (see [`Creator::task`](crate::provisioner::Creator::task)):
//!
//! 1. a [`CleanupGuard`] that cancels the request is armed, and
//!    the request is written to the [journal](crate::testingfarm::journal) (`pending`,
//!    then `created`), **before** the POST can create anything; the POST runs in a
//!    shielded task that a cancelled creation (Ctrl-C, [`clear`](crate::provisioner::Provisioner::clear),
//!    [`stop`](crate::provisioner::Provisioner::stop)) still gives a few seconds to
//!    return the id to the guard; a POST whose outcome stays unknown (a lost reply, an
//!    outage) is found by its idempotency marker and cancelled;
//! 2. the request is polled (at the client's
//!    [`poll_interval`](crate::testingfarm::ClientBuilder::poll_interval)) until it runs;
//! 3. `pipeline.log` is read with HTTP `Range` until the line `Guest is ready:
//!    ArtemisGuest(..., USER@HOST, arch=...)` and then `starting tests execution`;
//! 4. SSH logins to `USER@HOST` port 22 with our key are tried every
//!    [`probe_interval`](TestingFarmProvisionerBuilder::probe_interval) until one succeeds
//!    (the reserve test installs the key late); the request must stay alive meanwhile.
//!
//! Steps 2–4 have [`ready_timeout`](TestingFarmProvisionerBuilder::ready_timeout). A
//! reservation that fails after its request was created (the request went to `error`, was
//! cancelled by Testing Farm, the guest never came) is cancelled and another one is made,
//! at most [`max_retries`](TestingFarmProvisionerBuilder::max_retries) times per
//! provisioner; a refused create (unknown compose, bad token) fails the provisioner at once.
//!
//! At most [`max_remotes`](TestingFarmProvisionerBuilder::max_remotes) requests exist at
//! once (queued, being set up or handed out); releasing a remote cancels its request and
//! lets the next reservation start at once. The remote's
//! [`describe`](crate::connection::Connection::describe) names its request.
//!
//! # Key and network
//!
//! By default a fresh ed25519 key pair is made per provisioner in a private temporary
//! directory (removed with the provisioner); [`ssh_key`](TestingFarmProvisionerBuilder::ssh_key)
//! uses a given pair (`KEY` and `KEY.pub`). The public key's comment is replaced by
//! `foo@bar`. Guests' host keys are not checked (they are new machines). On the `public`
//! ranch Testing Farm needs an ingress rule for our address:
//! [`source_host`](TestingFarmProvisionerBuilder::source_host) gives it, otherwise the
//! public IPv4 address is looked up at `https://ifconfig.me` (then `https://ifconfig.co`).
//!
//! ```no_run
//! use atex::provisioner::{Count, Provisioner, Remote};
//! use atex::provisioner::testingfarm::TestingFarmProvisioner;
//! use atex::scope::Scope;
//! use atex::testingfarm::Client;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scope = Scope::root("run");
//! let tf = TestingFarmProvisioner::builder(Client::from_env()?, "Fedora-42")
//!     .arch("x86_64")
//!     .max_remotes(2)
//!     .journal(".atex-tf-journal")
//!     .build();
//! tf.start(&scope).await?;
//! tf.provision(Count::N(1))?;
//! let remote = tf.get_remote().await?;
//! // ... run tests ...
//! remote.release().await?; // cancels the request
//! tf.stop().await?;
//! # Ok(()) }
//! ```

mod connection;
mod guest;
mod ingress;
mod key;
mod reserve;
mod settings;

pub use connection::TestingFarmConnection;
pub use guest::{GuestAddress, GuestScanner};
pub use key::{AUTHORIZED_KEYS_SECRET, GuestKey, KeyError};
pub use reserve::ReserveError;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{Creator, LeasedRemote, Ledger, LedgerProvisioner, ProvisionError};
use crate::guard::CleanupGuard;
use crate::scope::Scope;
use crate::testingfarm::{Client, DEFAULT_JOURNAL, Journal, Request};
use settings::Settings;

/// The most requests one provisioner holds at once (as upstream).
pub const MAX_REMOTES_CAP: usize = 50;

/// A guest of a [`TestingFarmProvisioner`] (`remote.connection()` is the
/// [`TestingFarmConnection`]).
pub type TestingFarmRemote = LeasedRemote<TestingFarmConnection>;

/// Builds a [`TestingFarmProvisioner`].
#[derive(Debug)]
pub struct TestingFarmProvisionerBuilder {
    client: Client,
    compose: String,
    arch: String,
    pool: Option<String>,
    hardware: Option<Value>,
    timeout_minutes: Option<u32>,
    source_host: Option<String>,
    journal: PathBuf,
    ssh_key: Option<PathBuf>,
    guest_port: u16,
    ready_timeout: Duration,
    probe_interval: Duration,
    max_remotes: usize,
    max_retries: u32,
}

impl TestingFarmProvisionerBuilder {
    /// The architecture (default `x86_64`).
    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arch = arch.into();
        self
    }

    /// The Testing Farm pool (default: Testing Farm chooses).
    pub fn pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = Some(pool.into());
        self
    }

    /// The tmt hardware requirements, e.g. `{"memory": ">= 8 GiB"}`.
    pub fn hardware(mut self, hardware: Value) -> Self {
        self.hardware = Some(hardware);
        self
    }

    /// The request's pipeline timeout in minutes (default 60, as upstream): the longest a
    /// machine is held.
    pub fn timeout_minutes(mut self, minutes: u32) -> Self {
        self.timeout_minutes = Some(minutes.max(1));
        self
    }

    /// At most this many requests at once (default 3, at most [`MAX_REMOTES_CAP`]).
    pub fn max_remotes(mut self, n: usize) -> Self {
        self.max_remotes = n.clamp(1, MAX_REMOTES_CAP);
        self
    }

    /// Reservations made again after a failure, over the provisioner's life (default 10).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The journal file of outstanding requests (default `.atex-tf-journal` in the working
    /// directory); `atex tf cleanup FILE` cancels what a killed run left in it.
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = path.into();
        self
    }

    /// Log in with this private key (`KEY.pub` next to it is sent to the guests) instead
    /// of a generated one.
    pub fn ssh_key(mut self, private_key: impl Into<PathBuf>) -> Self {
        self.ssh_key = Some(private_key.into());
        self
    }

    /// The CIDR of the ingress rule on the `public` ranch (default: our public IPv4
    /// address, looked up).
    pub fn source_host(mut self, cidr: impl Into<String>) -> Self {
        self.source_host = Some(cidr.into());
        self
    }

    /// The guests' SSH port (default 22, as Testing Farm; another port only for a proxy or
    /// a test double).
    pub fn guest_port(mut self, port: u16) -> Self {
        self.guest_port = port;
        self
    }

    /// How long a reservation may take from its create to the first login (default
    /// 60 minutes); then it is cancelled and counts as failed.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Time between SSH login attempts while the key is not installed yet (default 1 s).
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// The provisioner.
    pub fn build(self) -> TestingFarmProvisioner {
        let settings = Arc::new(Settings {
            client: self.client,
            compose: self.compose,
            arch: self.arch,
            pool: self.pool,
            hardware: self.hardware,
            timeout_minutes: self.timeout_minutes,
            source_host: self.source_host,
            journal: Journal::new(self.journal),
            ssh_key: self.ssh_key,
            guest_port: self.guest_port,
            ready_timeout: self.ready_timeout,
            probe_interval: self.probe_interval,
            max_remotes: self.max_remotes,
            retries_left: AtomicU32::new(self.max_retries),
            setup: Mutex::new(None),
        });
        let for_creations = settings.clone();
        let creator = Creator::task(move |cx| reserve::create(for_creations.clone(), cx));
        TestingFarmProvisioner {
            ledger: Ledger::new(settings.describe(), Some(settings.max_remotes), creator),
            settings,
        }
    }
}

/// Hands out machines reserved from Testing Farm (see the [module docs](self)).
#[derive(Clone)]
pub struct TestingFarmProvisioner {
    settings: Arc<Settings>,
    ledger: Ledger<TestingFarmConnection>,
}

impl fmt::Debug for TestingFarmProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestingFarmProvisioner")
            .field("compose", &self.settings.compose)
            .field("arch", &self.settings.arch)
            .field("max_remotes", &self.settings.max_remotes)
            .field("ledger", &self.ledger)
            .finish()
    }
}

impl TestingFarmProvisioner {
    /// A builder for machines of `compose`, reserved through `client`.
    ///
    /// Give a client without a graceful cancellation token: the provisioner ties its
    /// calls to the scope it is started in, and clean-up calls (cancelling requests) must
    /// outlive a graceful cancellation.
    pub fn builder(client: Client, compose: impl Into<String>) -> TestingFarmProvisionerBuilder {
        TestingFarmProvisionerBuilder {
            client,
            compose: compose.into(),
            arch: "x86_64".into(),
            pool: None,
            hardware: None,
            timeout_minutes: Some(60),
            source_host: None,
            journal: PathBuf::from(DEFAULT_JOURNAL),
            ssh_key: None,
            guest_port: 22,
            ready_timeout: Duration::from_secs(3600),
            probe_interval: Duration::from_secs(1),
            max_remotes: 3,
            max_retries: 10,
        }
    }

    /// The journal file.
    pub fn journal_path(&self) -> &std::path::Path {
        self.settings.journal.path()
    }

    /// The private key used to log in (known once started).
    pub fn private_key(&self) -> Option<PathBuf> {
        self.settings
            .setup()
            .map(|s| s.key.private_path().to_path_buf())
    }
}

#[async_trait::async_trait]
impl LedgerProvisioner for TestingFarmProvisioner {
    type Conn = TestingFarmConnection;

    fn ledger(&self) -> &Ledger<TestingFarmConnection> {
        &self.ledger
    }

    async fn before_start(&self, scope: &Scope) -> Result<(), ProvisionError> {
        let setup = self.settings.prepare(scope).await?;
        *self
            .settings
            .setup
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(setup));
        Ok(())
    }
}

/// One reservation outside a provisioner (what `atex tf reserve` holds): submit, wait for
/// the guest, log in once to prove the key works.
#[derive(Debug)]
pub struct Reservation {
    /// The guard that cancels the request (release it to cancel).
    pub guard: CleanupGuard,
    /// The request.
    pub request: Request,
    /// `user@host:port` of the guest.
    pub destination: String,
    /// The guest's user and address.
    pub guest: GuestAddress,
    /// The key that logs in.
    pub private_key: PathBuf,
    /// The provisioner whose settings made it (keeps a generated key alive).
    _owner: TestingFarmProvisioner,
}

impl TestingFarmProvisioner {
    /// Makes one reservation with this provisioner's settings, outside its ledger (for
    /// holding a machine by hand, as `atex tf reserve`). The request is cancelled when the
    /// returned guard is released or dropped, and on any failure.
    pub async fn reserve_one(&self, scope: &Scope) -> Result<Reservation, ProvisionError> {
        let fail = |e: ReserveError| ProvisionError::failed(self.describe_self(), e);
        let setup = self.settings.prepare(scope).await?;
        let setup = Arc::new(setup);
        *self
            .settings
            .setup
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(setup.clone());
        let (guard, mut request) = reserve::submit(&self.settings, &setup, scope)
            .await
            .map_err(fail)?;
        let mut stage = "queued";
        let waited = tokio::time::timeout(
            self.settings.ready_timeout,
            reserve::wait_for_guest(&self.settings, &setup, scope, &mut request, &mut stage),
        )
        .await;
        let failure = match waited {
            Ok(Ok((ssh, destination))) => {
                use crate::connection::Connection as _;
                ssh.disconnect().await;
                let info = destination.clone();
                let (user, rest) = info.split_once('@').unwrap_or(("root", info.as_str()));
                let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
                return Ok(Reservation {
                    guard,
                    request,
                    guest: GuestAddress {
                        user: user.to_string(),
                        host: host.trim_matches(['[', ']']).to_string(),
                    },
                    destination,
                    private_key: setup.key.private_path().to_path_buf(),
                    _owner: self.clone(),
                });
            }
            Ok(Err(e)) => e,
            Err(_) => ReserveError::NotReady {
                request: request.id().to_string(),
                timeout: self.settings.ready_timeout,
                stage,
            },
        };
        if let Err(e) = guard.release().await {
            tracing::error!(error = %crate::error::chain(&e), "cannot cancel a failed reservation");
        }
        Err(fail(failure))
    }

    fn describe_self(&self) -> String {
        self.settings.describe()
    }

    /// The guests' SSH port.
    pub fn guest_port(&self) -> u16 {
        self.settings.guest_port
    }
}
