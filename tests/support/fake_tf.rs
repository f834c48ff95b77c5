//! A fake Testing Farm: the API and the artifacts file server on one port, following the
//! "Fake server contract" of the Testing Farm spec (§8). It runs on its own thread and
//! runtime, so it serves blocking tests, async tests and `atex` subprocesses alike.
//!
//! * Requests follow a [`Script`] of steps (states, `pipeline.log` lines, SSH key
//!   installation into a real sshd's `authorized_keys`, external cancellation), then stay
//!   `running` until cancelled, the pipeline timeout or the reservation duration
//!   (`minute` real time per fake minute).
//! * Everything is recorded: each HTTP call ([`CallRecord`]), each request with its full
//!   body, state history, decoded SSH keys and DELETEs ([`RequestRecord`]).
//!   [`FakeTf::alive`] lists the requests alive and never released; [`FakeTf::orphans`] the
//!   ones whose create reply was never delivered and that nobody found or cancelled.
//! * Faults ([`Fault`]) per method and path pattern, for the next N calls or with a
//!   probability: 5xx (JSON or HTML), 429 with `Retry-After`, slow or hanging replies,
//!   dropped connections (before or after committing), non-JSON 200, token echo.
//! * A control plane under `/_fake/` offers the same over HTTP.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// A valid token of the `public` ranch.
pub const TOKEN: &str = "fake-public-token-5f3c9a17d2e8b604";
/// A valid token of the `redhat` ranch (another user).
pub const TOKEN_REDHAT: &str = "fake-redhat-token-0b9d4e7a61c25f38";
/// A token the fake answers with 401 "Token has expired".
pub const TOKEN_EXPIRED: &str = "fake-expired-token-77aa01";

/// A token the fake knows.
#[derive(Debug, Clone)]
pub struct FakeToken {
    pub token: String,
    pub id: String,
    pub name: String,
    pub ranch: String,
    pub user_id: String,
    pub user_name: String,
    pub expired: bool,
}

/// Where a request's machine is (the "Guest is ready" line).
#[derive(Debug, Clone)]
pub struct Guest {
    pub user: String,
    pub host: String,
}

/// One step of a request's life.
#[derive(Debug, Clone)]
pub enum Step {
    /// Wait this long.
    Wait(Duration),
    /// Move to this state (`running` publishes the artifacts).
    State(&'static str),
    /// Append a pipeline.log line; `{ts}`, `{id}`, `{user}`, `{host}`, `{arch}`, `{compose}`,
    /// `{guest_id}` are replaced.
    Log(String),
    /// Add a note (level, message).
    Note(&'static str, String),
    /// Append the request's decoded SSH keys to the configured `authorized_keys` file.
    InstallKeys,
    /// Cancelled by Testing Farm itself (no client DELETE).
    ExternalCancel,
}

/// The steps every request of the fake follows.
#[derive(Debug, Clone)]
pub struct Script(pub Vec<Step>);

fn log(line: &str) -> Step {
    Step::Log(format!("[{{ts}}] [+] {line}"))
}

impl Script {
    /// new (0.1 s) → queued (0.5 s) → running, then the reservation log lines and the key
    /// installation; stays running.
    pub fn reservation() -> Self {
        let mut s = Self::until_running(Duration::from_millis(100), Duration::from_millis(500));
        s.0.extend(Self::guest_lines(true, true, true));
        s
    }

    /// Like [`reservation`](Self::reservation) with other queueing times.
    pub fn reservation_after(new_for: Duration, queued_for: Duration) -> Self {
        let mut s = Self::until_running(new_for, queued_for);
        s.0.extend(Self::guest_lines(true, true, true));
        s
    }

    fn until_running(new_for: Duration, queued_for: Duration) -> Self {
        Self(vec![
            Step::Wait(new_for),
            Step::State("queued"),
            Step::Wait(queued_for),
            Step::State("running"),
        ])
    }

    fn guest_lines(ready: bool, tests: bool, keys: bool) -> Vec<Step> {
        let mut v = vec![
            log("[testing-farm-request] Request {id} is running"),
            Step::Wait(Duration::from_millis(20)),
            log("[artemis] Guest is being provisioned"),
            Step::Wait(Duration::from_millis(20)),
        ];
        if ready {
            v.push(log(
                "[artemis] Guest is ready: ArtemisGuest({guest_id}, {user}@{host}, arch={arch}, compose={compose})",
            ));
            v.push(log("[pre-artifact-installation] no artifacts to install"));
            if tests {
                v.push(log("[tmt] starting tests execution"));
                if keys {
                    v.push(Step::InstallKeys);
                }
                v.push(log("[tmt] execute task #1"));
            }
        }
        v
    }

    /// Nothing happens: the request stays `new` (drive it with [`FakeTf::set_state`]).
    pub fn manual() -> Self {
        Self(Vec::new())
    }

    /// Queued forever (no capacity).
    pub fn stuck_queued() -> Self {
        Self(vec![
            Step::Wait(Duration::from_millis(50)),
            Step::State("queued"),
        ])
    }

    /// Goes to `error` from `from` (`new`, `queued` or `running`) after `after`, with a note
    /// and the log line `Result of testing: ERROR`.
    pub fn error_from(from: &'static str, after: Duration) -> Self {
        let mut v = Vec::new();
        if from != "new" {
            v.push(Step::Wait(Duration::from_millis(50)));
            v.push(Step::State("queued"));
        }
        if from == "running" {
            v.push(Step::Wait(Duration::from_millis(50)));
            v.push(Step::State("running"));
            v.push(log("[artemis] Guest is being provisioned"));
        }
        v.push(Step::Wait(after));
        v.push(Step::Note("error", "Guest provisioning failed".into()));
        if from == "running" {
            v.push(log("Result of testing: ERROR"));
        }
        v.push(Step::State("error"));
        Self(v)
    }

    /// Running, then cancelled by Testing Farm after `after`.
    pub fn externally_cancelled(after: Duration) -> Self {
        let mut s = Self::until_running(Duration::from_millis(50), Duration::from_millis(50));
        s.0.push(Step::Wait(after));
        s.0.push(Step::ExternalCancel);
        s
    }

    /// Running forever without a "Guest is ready" line.
    pub fn guest_never_ready() -> Self {
        let mut s = Self::until_running(Duration::from_millis(50), Duration::from_millis(50));
        s.0.extend(Self::guest_lines(false, false, false));
        s
    }

    /// The guest line but never "starting tests execution".
    pub fn tests_never_start() -> Self {
        let mut s = Self::until_running(Duration::from_millis(50), Duration::from_millis(50));
        s.0.extend(Self::guest_lines(true, false, false));
        s
    }

    /// Every line, but the SSH key is never installed.
    pub fn keys_never_installed() -> Self {
        let mut s = Self::until_running(Duration::from_millis(50), Duration::from_millis(50));
        s.0.extend(Self::guest_lines(true, true, false));
        s
    }
}

/// What a fault does to a matching call.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// Answer with `status` at once, no effect. JSON body, or an HTML gateway page.
    Status {
        status: u16,
        html: bool,
        retry_after: Option<String>,
    },
    /// Close the connection without a reply, no effect.
    Drop,
    /// Never answer (until the client gives up).
    Hang,
    /// Apply the effect, then wait this long before the normal reply.
    Delay(Duration),
    /// Apply the effect, then close the connection without a reply.
    CommitThenDrop,
    /// Apply the effect, then answer with this status (an HTML gateway page).
    CommitThenStatus(u16),
    /// Apply the effect, then answer 200 with `text/plain`.
    NonJson200,
    /// Answer `status` with a JSON body echoing the request's `Authorization` header.
    EchoAuth(u16),
}

/// A fault rule.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `None`: any method.
    pub method: Option<Method>,
    /// Path glob (`*` matches anything, also `/`).
    pub path: String,
    /// For the next N matching calls (`None`: all).
    pub remaining: Option<u32>,
    /// With this probability per matching call (`None`: always).
    pub probability: Option<f64>,
    pub kind: FaultKind,
}

impl Fault {
    pub fn new(method: Option<Method>, path: &str, kind: FaultKind) -> Self {
        Self {
            method,
            path: path.to_string(),
            remaining: None,
            probability: None,
            kind,
        }
    }

    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    pub fn status(method: Method, path: &str, status: u16) -> Self {
        Self::new(
            Some(method),
            path,
            FaultKind::Status {
                status,
                html: false,
                retry_after: None,
            },
        )
    }

    pub fn html(method: Method, path: &str, status: u16) -> Self {
        Self::new(
            Some(method),
            path,
            FaultKind::Status {
                status,
                html: true,
                retry_after: None,
            },
        )
    }

    pub fn too_many(method: Method, path: &str, retry_after: Option<&str>) -> Self {
        Self::new(
            Some(method),
            path,
            FaultKind::Status {
                status: 429,
                html: false,
                retry_after: retry_after.map(str::to_string),
            },
        )
    }
}

/// The fake's configuration.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub tokens: Vec<FakeToken>,
    /// (ranch, name, type)
    pub composes: Vec<(String, String, String)>,
    pub script: Script,
    /// Round-robin pool of guests.
    pub guests: Vec<Guest>,
    /// Where [`Step::InstallKeys`] appends the decoded keys.
    pub authorized_keys: Option<PathBuf>,
    /// DELETE: `cancel-requested` → `canceled` after this long.
    pub cancel_delay: Duration,
    /// pipeline.log answers `log_race_status` for this long after `running`.
    pub log_race: Duration,
    pub log_race_status: u16,
    /// pipeline.log ignores `Range` (always 200 with the whole file).
    pub ignore_range: bool,
    /// Real time of one fake minute (pipeline timeout, reservation duration).
    pub minute: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        let tok =
            |token: &str, id: &str, name: &str, ranch: &str, uid: &str, uname: &str, expired| {
                FakeToken {
                    token: token.into(),
                    id: id.into(),
                    name: name.into(),
                    ranch: ranch.into(),
                    user_id: uid.into(),
                    user_name: uname.into(),
                    expired,
                }
            };
        let c = |r: &str, n: &str, t: &str| (r.to_string(), n.to_string(), t.to_string());
        Self {
            tokens: vec![
                tok(
                    TOKEN,
                    "8c1f7d4e-5a0b-4c7e-9a55-2f3f7d0b9e11",
                    "ci-token",
                    "public",
                    "0b7a6f2c-1e2d-4c3b-8a9f-7e6d5c4b3a21",
                    "jdoe",
                    false,
                ),
                tok(
                    TOKEN_REDHAT,
                    "1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5",
                    "rh-token",
                    "redhat",
                    "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
                    "rhuser",
                    false,
                ),
                tok(
                    TOKEN_EXPIRED,
                    "00000000-0000-4000-8000-000000000000",
                    "old",
                    "public",
                    "0b7a6f2c-1e2d-4c3b-8a9f-7e6d5c4b3a21",
                    "jdoe",
                    true,
                ),
            ],
            composes: vec![
                c("public", "CentOS-Stream-9", "compose"),
                c("public", "CentOS-Stream-10", "compose"),
                c("public", "Fedora-42", "compose"),
                c("public", "Fedora-Rawhide", "compose"),
                c("public", "^Fedora-Rawhide-[0-9]{8}\\.n\\.[0-9]+$", "regex"),
                c("redhat", "RHEL-9.6.0-Nightly", "compose"),
                c("redhat", "CentOS-Stream-9", "compose"),
            ],
            script: Script::reservation(),
            guests: vec![Guest {
                user: "root".into(),
                host: "127.0.0.1".into(),
            }],
            authorized_keys: None,
            cancel_delay: Duration::ZERO,
            log_race: Duration::ZERO,
            log_race_status: 404,
            ignore_range: false,
            minute: Duration::from_secs(1),
        }
    }
}

/// One HTTP call the fake saw.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// Seconds since the fake started.
    pub t: f64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub auth: bool,
    /// The bearer token, if one was sent.
    pub token: Option<String>,
    /// The raw `Authorization` header, if any.
    pub authorization: Option<String>,
    pub range: Option<String>,
    pub body: Option<Value>,
    /// `None`: no reply (dropped or hung).
    pub status: Option<u16>,
    pub fault: Option<String>,
}

/// A request the fake created.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub id: String,
    pub token: String,
    pub token_id: String,
    pub user_id: String,
    pub ranch: String,
    /// The full original body, secrets included.
    pub body: Value,
    pub state: String,
    /// (state, seconds since the fake started)
    pub history: Vec<(String, f64)>,
    pub keys: Vec<String>,
    pub delete_count: u32,
    /// (seconds, status) of the first DELETE.
    pub first_delete: Option<(f64, u16)>,
    pub released: bool,
    pub reply_delivered: bool,
    pub found_by_search: bool,
    pub created_micros: i64,
    pub updated_micros: i64,
    #[serde(skip)]
    pub running_since: Option<Instant>,
    pub notes: Vec<(String, String)>,
    pub log: String,
    pub guest: Option<(String, String)>,
    pub guest_id: String,
    /// GETs of this request.
    pub polls: u32,
}

impl RequestRecord {
    fn alive(&self) -> bool {
        matches!(self.state.as_str(), "new" | "queued" | "running")
    }
}

struct World {
    start: Instant,
    cfg: FakeConfig,
    faults: Vec<Fault>,
    calls: Vec<CallRecord>,
    requests: Vec<RequestRecord>,
    rng: u64,
    guest_next: usize,
    peak_alive: HashMap<String, usize>,
    url: String,
}

impl World {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn find(&mut self, id: &str) -> Option<&mut RequestRecord> {
        self.requests.iter_mut().find(|r| r.id == id)
    }

    fn set_state(&mut self, id: &str, state: &str) {
        let t = self.now();
        let Some(r) = self.requests.iter_mut().find(|r| r.id == id) else {
            return;
        };
        if r.state == state {
            return;
        }
        r.state = state.to_string();
        r.history.push((state.to_string(), t));
        r.updated_micros = now_micros();
        if state == "running" && r.running_since.is_none() {
            r.running_since = Some(Instant::now());
        }
        if matches!(state, "cancel-requested" | "canceled") {
            r.released = true;
        }
        let token = r.token.clone();
        let alive = self
            .requests
            .iter()
            .filter(|r| r.token == token && r.alive() && !r.released)
            .count();
        let peak = self.peak_alive.entry(token).or_default();
        *peak = (*peak).max(alive);
    }

    fn next_random(&mut self) -> f64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn match_fault(&mut self, method: &Method, path: &str) -> Option<FaultKind> {
        for i in 0..self.faults.len() {
            let f = &self.faults[i];
            if f.method.as_ref().is_some_and(|m| m != method) || !glob(&f.path, path) {
                continue;
            }
            if f.remaining == Some(0) {
                continue;
            }
            if let Some(p) = f.probability
                && self.next_random() >= p
            {
                continue;
            }
            let f = &mut self.faults[i];
            if let Some(n) = f.remaining.as_mut() {
                *n -= 1;
            }
            return Some(f.kind.clone());
        }
        None
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Naive UTC ISO 8601 with microseconds.
pub fn iso(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Parses the naive forms the API accepts (`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.ffffff]`);
/// a zone suffix is refused, as by the real service.
pub fn parse_naive(s: &str) -> Option<i64> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut micros = days * 86_400_000_000;
    if let Some(t) = time {
        let (hms, frac) = match t.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        let parts: Vec<&str> = hms.split(':').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        let h: i64 = parts[0].parse().ok()?;
        let mi: i64 = parts[1].parse().ok()?;
        let se: i64 = parts[2].parse().ok()?;
        micros += (h * 3600 + mi * 60 + se) * 1_000_000;
        if let Some(f) = frac {
            if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let padded = format!("{f:0<6}");
            micros += padded.parse::<i64>().ok()?;
        }
    }
    Some(micros)
}

type Resp = Response<Full<Bytes>>;

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fake")
    }
}

impl std::error::Error for Dropped {}

fn json_resp(status: u16, body: &Value) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn html_resp(status: u16) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "text/html")
        .body(Full::new(Bytes::from(format!(
            "<html><head><title>{status}</title></head><body><h1>{status} Bad Gateway</h1></body></html>"
        ))))
        .unwrap()
}

fn message(status: u16, msg: &str) -> Resp {
    json_resp(status, &json!({ "message": msg }))
}

/// The fake server. Stopped on drop.
pub struct FakeTf {
    url: String,
    world: Arc<Mutex<World>>,
    handle: tokio::runtime::Handle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeTf {
    pub fn start() -> Self {
        Self::start_with(FakeConfig::default())
    }

    pub fn start_with(cfg: FakeConfig) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", std_listener.local_addr().expect("addr"));
        let world = Arc::new(Mutex::new(World {
            start: Instant::now(),
            cfg,
            faults: Vec::new(),
            calls: Vec::new(),
            requests: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            guest_next: 0,
            peak_alive: HashMap::new(),
            url: url.clone(),
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (htx, hrx) = std::sync::mpsc::channel();
        let w = world.clone();
        let thread = std::thread::Builder::new()
            .name("fake-tf".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                htx.send(rt.handle().clone()).expect("handle");
                rt.block_on(serve(w, std_listener, rx));
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("thread");
        let handle = hrx.recv().expect("runtime handle");
        Self {
            url,
            world,
            handle,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://127.0.0.1:PORT` (the API root, no version).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn set_script(&self, script: Script) {
        self.world().cfg.script = script;
    }

    pub fn configure(&self, f: impl FnOnce(&mut FakeConfig)) {
        f(&mut self.world().cfg);
    }

    pub fn add_fault(&self, fault: Fault) {
        self.world().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.world().faults.clear();
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        self.world().calls.clone()
    }

    /// Calls with this method whose path matches the glob.
    pub fn calls_to(&self, method: &str, path: &str) -> Vec<CallRecord> {
        self.world()
            .calls
            .iter()
            .filter(|c| c.method == method && glob(path, &c.path))
            .cloned()
            .collect()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.world().requests.clone()
    }

    pub fn request(&self, id: &str) -> Option<RequestRecord> {
        self.world().requests.iter().find(|r| r.id == id).cloned()
    }

    /// Ids alive (new/queued/running) and never released.
    pub fn alive(&self) -> Vec<String> {
        self.world()
            .requests
            .iter()
            .filter(|r| r.alive() && !r.released)
            .map(|r| r.id.clone())
            .collect()
    }

    /// Created by a POST whose reply was not delivered, never DELETEd nor found.
    pub fn orphans(&self) -> Vec<String> {
        self.world()
            .requests
            .iter()
            .filter(|r| !r.reply_delivered && r.delete_count == 0 && !r.found_by_search)
            .map(|r| r.id.clone())
            .collect()
    }

    pub fn peak_alive(&self, token: &str) -> usize {
        self.world().peak_alive.get(token).copied().unwrap_or(0)
    }

    pub fn set_state(&self, id: &str, state: &'static str) {
        self.world().set_state(id, state);
    }

    pub fn append_log(&self, id: &str, line: &str) {
        if let Some(r) = self.world().find(id) {
            r.log.push_str(line);
            r.log.push('\n');
        }
    }

    /// Forgets the recorded calls (requests stay).
    pub fn reset_calls(&self) {
        self.world().calls.clear();
    }

    pub fn reset(&self) {
        let mut w = self.world();
        w.calls.clear();
        w.requests.clear();
        w.faults.clear();
        w.peak_alive.clear();
    }

    /// Waits (up to `limit`) until `pred` holds on the recorded requests.
    pub fn wait_until(&self, what: &str, limit: Duration, pred: impl Fn(&[RequestRecord]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if pred(&self.world().requests) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fake Testing Farm: timed out waiting for {what}; requests: {:#?}",
                self.requests()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The runtime serving the fake (to spawn helpers next to it).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for FakeTf {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    world: Arc<Mutex<World>>,
    listener: std::net::TcpListener,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let world = world.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(world.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

fn lock(world: &Arc<Mutex<World>>) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|p| p.into_inner())
}

async fn handle(world: Arc<Mutex<World>>, req: Request<Incoming>) -> Result<Resp, Dropped> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path.starts_with("/_fake/") {
        return Ok(control(&world, &method, &path, &body));
    }
    let token = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string);
    let body_json: Option<Value> = if body.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        )
    };
    let fault = lock(&world).match_fault(&method, &path);
    let call = CallRecord {
        t: lock(&world).now(),
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        auth: authorization.is_some(),
        token: token.clone(),
        authorization: authorization.clone(),
        range: range.clone(),
        body: body_json.clone(),
        status: None,
        fault: fault.as_ref().map(|f| format!("{f:?}")),
    };
    let record = |status: Option<u16>| {
        let mut c = call.clone();
        c.status = status;
        lock(&world).calls.push(c);
    };
    // Faults that replace the call entirely.
    match &fault {
        Some(FaultKind::Status {
            status,
            html,
            retry_after,
        }) => {
            record(Some(*status));
            let mut resp = if *html {
                html_resp(*status)
            } else {
                message(*status, "injected failure")
            };
            if let Some(ra) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", ra.parse().unwrap());
            }
            return Ok(resp);
        }
        Some(FaultKind::Drop) => {
            record(None);
            return Err(Dropped);
        }
        Some(FaultKind::Hang) => {
            record(None);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Err(Dropped);
        }
        Some(FaultKind::EchoAuth(status)) => {
            record(Some(*status));
            return Ok(json_resp(
                *status,
                &json!({"message": format!("bad header: {}", authorization.unwrap_or_default())}),
            ));
        }
        _ => {}
    }
    let resp = api(
        &world,
        &method,
        &path,
        &query,
        token.as_deref(),
        range.as_deref(),
        body_json,
    );
    let created_id = (method == Method::POST && path == "/v0.1/requests" && resp.status() == 200)
        .then(|| {
            let w = lock(&world);
            w.requests.last().map(|r| r.id.clone())
        })
        .flatten();
    let undelivered = |world: &Arc<Mutex<World>>| {
        if let Some(id) = &created_id
            && let Some(r) = lock(world).find(id)
        {
            r.reply_delivered = false;
        }
    };
    match fault {
        Some(FaultKind::Delay(d)) => {
            record(Some(resp.status().as_u16()));
            tokio::time::sleep(d).await;
            Ok(resp)
        }
        Some(FaultKind::CommitThenDrop) => {
            undelivered(&world);
            record(None);
            Err(Dropped)
        }
        Some(FaultKind::CommitThenStatus(status)) => {
            undelivered(&world);
            record(Some(status));
            Ok(html_resp(status))
        }
        Some(FaultKind::NonJson200) => {
            undelivered(&world);
            record(Some(200));
            Ok(Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from_static(b"OK")))
                .unwrap())
        }
        _ => {
            record(Some(resp.status().as_u16()));
            Ok(resp)
        }
    }
}

/// The caller's token record, or the 401 reply.
fn authenticate(w: &World, token: Option<&str>) -> Result<FakeToken, Resp> {
    let Some(token) = token else {
        return Err(message(401, "Missing API key"));
    };
    match w.cfg.tokens.iter().find(|t| t.token == token) {
        Some(t) if t.expired => Err(message(401, "Token has expired")),
        Some(t) => Ok(t.clone()),
        None => Err(message(401, "Invalid API key")),
    }
}

fn redact(env: &Value) -> Value {
    let mut env = env.clone();
    if let Some(secrets) = env.get_mut("secrets").and_then(Value::as_object_mut) {
        for v in secrets.values_mut() {
            *v = json!("*****");
        }
    }
    env
}

fn view(w: &World, r: &RequestRecord) -> Value {
    let envs: Vec<Value> = r
        .body
        .get("environments")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(redact).collect())
        .unwrap_or_default();
    let finished = matches!(r.state.as_str(), "complete" | "error");
    json!({
        "id": r.id,
        "user_id": r.user_id,
        "token_id": r.token_id,
        "state": r.state,
        "test": r.body.get("test").cloned().unwrap_or(Value::Null),
        "environments_requested": envs,
        "settings": r.body.get("settings").cloned().unwrap_or(Value::Null),
        "notes": if r.notes.is_empty() { Value::Null } else {
            Value::Array(r.notes.iter().map(|(l, m)| json!({"level": l, "message": m})).collect())
        },
        "result": if finished {
            json!({"overall": if r.state == "complete" { "passed" } else { "error" }, "summary": null})
        } else { Value::Null },
        "run": if r.running_since.is_some() {
            json!({"artifacts": format!("{}/artifacts/{}", w.url, r.id), "console": null, "stages": null})
        } else { Value::Null },
        "queued_time": null,
        "run_time": null,
        "created": iso(r.created_micros),
        "updated": iso(r.updated_micros),
    })
}

fn known_arch(a: &str) -> bool {
    matches!(a, "x86_64" | "aarch64" | "s390x" | "ppc64le")
}

/// Validates a create body; returns the decoded SSH keys.
fn validate(w: &World, ranch: &str, body: &Value) -> Result<Vec<String>, Resp> {
    let Some(obj) = body.as_object() else {
        return Err(json_resp(
            422,
            &json!({"detail": [{"msg": "body must be an object"}]}),
        ));
    };
    let test = obj.get("test").and_then(Value::as_object);
    let kinds = test
        .map(|t| {
            ["fmf", "tmt", "sti", "script"]
                .iter()
                .filter(|k| t.get(**k).is_some_and(|v| !v.is_null()))
                .count()
        })
        .unwrap_or(0);
    if kinds != 1 {
        return Err(message(422, "Test section has more than one type."));
    }
    let Some(envs) = obj
        .get("environments")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    else {
        return Err(json_resp(
            422,
            &json!({"detail": [{"msg": "environments must be a non-empty list"}]}),
        ));
    };
    let mut keys = Vec::new();
    for env in envs {
        let arch = env.get("arch").and_then(Value::as_str).unwrap_or("");
        if !known_arch(arch) {
            return Err(message(400, &format!("Unknown architecture '{arch}'")));
        }
        if let Some(compose) = env.get("os").and_then(|o| o.get("compose")) {
            let Some(compose) = compose.as_str() else {
                return Err(json_resp(
                    422,
                    &json!({"detail": [{"msg": "os.compose must be a string"}]}),
                ));
            };
            let known = w.cfg.composes.iter().any(|(r, n, t)| {
                r == ranch
                    && match t.as_str() {
                        "regex" => regex::Regex::new(n).is_ok_and(|re| re.is_match(compose)),
                        _ => n == compose,
                    }
            });
            if !known {
                return Err(message(
                    400,
                    &format!("Compose '{compose}' is not supported"),
                ));
            }
        }
        if let Some(k) = env
            .get("secrets")
            .and_then(|s| s.get("TF_RESERVATION_AUTHORIZED_KEYS_BASE64"))
        {
            let decoded = k
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .and_then(|b| String::from_utf8(b).ok());
            let Some(text) = decoded else {
                return Err(message(
                    400,
                    "TF_RESERVATION_AUTHORIZED_KEYS_BASE64 is not valid base64",
                ));
            };
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let valid = !lines.is_empty()
                && lines.iter().all(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() >= 2
                        && (f[0].starts_with("ssh-")
                            || f[0].starts_with("ecdsa-")
                            || f[0].starts_with("sk-"))
                });
            if !valid {
                return Err(message(
                    400,
                    "TF_RESERVATION_AUTHORIZED_KEYS_BASE64 holds no OpenSSH public key",
                ));
            }
            keys.extend(lines.iter().map(|l| l.to_string()));
        }
    }
    if let Some(t) = obj
        .get("settings")
        .and_then(|s| s.get("pipeline"))
        .and_then(|p| p.get("timeout"))
        && t.as_u64().is_none_or(|t| t == 0)
    {
        return Err(json_resp(
            422,
            &json!({"detail": [{"msg": "settings.pipeline.timeout must be a positive integer"}]}),
        ));
    }
    Ok(keys)
}

fn new_uuid(w: &mut World) -> String {
    let a = (w.next_random() * u64::MAX as f64) as u64 ^ now_micros() as u64;
    let b = (w.next_random() * u64::MAX as f64) as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

#[allow(clippy::too_many_arguments)]
fn api(
    world: &Arc<Mutex<World>>,
    method: &Method,
    path: &str,
    query: &str,
    token: Option<&str>,
    range: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut w = lock(world);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["v0.1", "about"]) => json_resp(200, &json!({"app_version": "fake"})),
        (Method::GET, ["v0.1", "whoami"]) => match authenticate(&w, token) {
            Ok(t) => json_resp(
                200,
                &json!({
                    "token": {"id": t.id, "name": t.name, "ranch": t.ranch, "role": "user", "enabled": true},
                    "user": {"id": t.user_id, "name": t.user_name, "enabled": true}
                }),
            ),
            Err(r) => r,
        },
        (Method::GET, ["v0.2", "composes", ranch]) => {
            let list: Vec<Value> = w
                .cfg
                .composes
                .iter()
                .filter(|(r, _, _)| r == ranch)
                .map(|(_, n, t)| json!({"name": n, "type": t}))
                .collect();
            if list.is_empty() {
                message(404, "No such ranch")
            } else {
                json_resp(200, &json!({ "composes": list }))
            }
        }
        (Method::POST, ["v0.1", "requests"]) => {
            let t = match authenticate(&w, token) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let Some(body) = body.filter(Value::is_object) else {
                return json_resp(
                    422,
                    &json!({"detail": [{"msg": "body must be a JSON object"}]}),
                );
            };
            let keys = match validate(&w, &t.ranch, &body) {
                Ok(k) => k,
                Err(r) => return r,
            };
            let id = new_uuid(&mut w);
            let guest_id = new_uuid(&mut w);
            let guest = if w.cfg.guests.is_empty() {
                None
            } else {
                let g = w.cfg.guests[w.guest_next % w.cfg.guests.len()].clone();
                w.guest_next += 1;
                Some((g.user, g.host))
            };
            let now = now_micros();
            let t_rel = w.now();
            let record = RequestRecord {
                id: id.clone(),
                token: t.token.clone(),
                token_id: t.id.clone(),
                user_id: t.user_id.clone(),
                ranch: t.ranch.clone(),
                body: body.clone(),
                state: "new".into(),
                history: vec![("new".into(), t_rel)],
                keys,
                delete_count: 0,
                first_delete: None,
                released: false,
                reply_delivered: true,
                found_by_search: false,
                created_micros: now,
                updated_micros: now,
                running_since: None,
                notes: Vec::new(),
                log: String::new(),
                guest,
                guest_id,
                polls: 0,
            };
            w.requests.push(record);
            let alive = w
                .requests
                .iter()
                .filter(|r| r.token == t.token && r.alive() && !r.released)
                .count();
            let peak = w.peak_alive.entry(t.token.clone()).or_default();
            *peak = (*peak).max(alive);
            let script = w.cfg.script.clone();
            let minute = w.cfg.minute;
            drop(w);
            tokio::spawn(drive(world.clone(), id.clone(), script, minute));
            let envs: Vec<Value> = body
                .get("environments")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(redact).collect())
                .unwrap_or_default();
            json_resp(
                200,
                &json!({
                    "id": id, "state": "new", "test": body.get("test"), "environments": envs,
                    "notification": null, "created": iso(now), "updated": iso(now)
                }),
            )
        }
        (Method::GET, ["v0.1", "requests", id]) => {
            let Some(r) = w.find(id) else {
                return json_resp(404, &json!({"code": 404, "message": "No such entity"}));
            };
            r.polls += 1;
            let r = r.clone();
            json_resp(200, &view(&w, &r))
        }
        (Method::DELETE, ["v0.1", "requests", id]) => {
            let t = match authenticate(&w, token) {
                Ok(t) => t,
                Err(r) => return r,
            };
            let now = w.now();
            let cancel_delay = w.cfg.cancel_delay;
            let Some(r) = w.find(id) else {
                return json_resp(404, &json!({"code": 404, "message": "No such entity"}));
            };
            let status = if r.token != t.token {
                403
            } else {
                match r.state.as_str() {
                    "complete" | "error" => 409,
                    "cancel-requested" | "canceled" => 204,
                    _ => 200,
                }
            };
            r.delete_count += 1;
            if r.first_delete.is_none() {
                r.first_delete = Some((now, status));
            }
            if matches!(status, 200 | 204) {
                r.released = true;
            }
            match status {
                403 => message(403, "Not allowed to cancel this request"),
                409 => message(409, "Request already finished"),
                204 => Response::builder()
                    .status(204)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
                _ => {
                    r.log
                        .push_str("[testing-farm-request] Cancelling pipeline\n");
                    let id = id.to_string();
                    w.set_state(&id, "cancel-requested");
                    let r = w.requests.iter().find(|r| r.id == id).cloned().unwrap();
                    let reply = view(&w, &r);
                    drop(w);
                    let world = world.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(cancel_delay).await;
                        lock(&world).set_state(&id, "canceled");
                    });
                    json_resp(200, &reply)
                }
            }
        }
        (Method::GET, ["v0.1", "requests"]) => {
            let q: HashMap<String, String> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect();
            let Some(state) = q.get("state") else {
                return message(400, "Query parameter 'state' is required");
            };
            let bound = |k: &str| -> Result<Option<i64>, Resp> {
                match q.get(k) {
                    None => Ok(None),
                    Some(v) => parse_naive(v)
                        .map(Some)
                        .ok_or_else(|| message(400, &format!("Invalid '{k}': {v}"))),
                }
            };
            let (after, before) = match (bound("created_after"), bound("created_before")) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(r), _) | (_, Err(r)) => return r,
            };
            let caller = token.and_then(|t| w.cfg.tokens.iter().find(|x| x.token == t).cloned());
            let mut out = Vec::new();
            let mut found = Vec::new();
            for r in &w.requests {
                if &r.state != state
                    || q.get("token_id").is_some_and(|x| *x != r.token_id)
                    || q.get("user_id").is_some_and(|x| *x != r.user_id)
                    || q.get("ranch").is_some_and(|x| *x != r.ranch)
                    || after.is_some_and(|a| r.created_micros < a)
                    || before.is_some_and(|b| r.created_micros >= b)
                {
                    continue;
                }
                if caller.as_ref().is_some_and(|c| c.token == r.token) {
                    found.push(r.id.clone());
                }
                out.push(view(&w, r));
            }
            for id in found {
                if let Some(r) = w.find(&id) {
                    r.found_by_search = true;
                }
            }
            json_resp(200, &Value::Array(out))
        }
        (Method::GET | Method::HEAD, ["artifacts", id, "pipeline.log"]) => {
            let race = w.cfg.log_race;
            let race_status = w.cfg.log_race_status;
            let ignore_range = w.cfg.ignore_range;
            let Some(r) = w.find(id) else {
                return plain(404, b"not found".to_vec());
            };
            let published = r.running_since.is_some_and(|t| t.elapsed() >= race);
            if !published {
                return plain(race_status, b"not found".to_vec());
            }
            let data = r.log.as_bytes().to_vec();
            let len = data.len();
            if *method == Method::HEAD {
                return Response::builder()
                    .status(200)
                    .header("content-type", "text/plain")
                    .header("content-length", len)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
            }
            let from = range
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<usize>().ok());
            match from {
                Some(n) if !ignore_range => {
                    if n >= len {
                        Response::builder()
                            .status(416)
                            .header("content-range", format!("bytes */{len}"))
                            .body(Full::new(Bytes::new()))
                            .unwrap()
                    } else {
                        Response::builder()
                            .status(206)
                            .header("content-type", "text/plain")
                            .header("content-range", format!("bytes {n}-{}/{len}", len - 1))
                            .body(Full::new(Bytes::from(data[n..].to_vec())))
                            .unwrap()
                    }
                }
                _ => plain(200, data),
            }
        }
        _ => message(404, "Not found"),
    }
}

fn plain(status: u16, body: Vec<u8>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn fill(template: &str, r: &RequestRecord) -> String {
    let env = r
        .body
        .get("environments")
        .and_then(|e| e.get(0))
        .cloned()
        .unwrap_or(Value::Null);
    let arch = env.get("arch").and_then(Value::as_str).unwrap_or("x86_64");
    let compose = env
        .get("os")
        .and_then(|o| o.get("compose"))
        .and_then(Value::as_str)
        .unwrap_or("container");
    let (user, host) = r
        .guest
        .clone()
        .unwrap_or(("root".into(), "127.0.0.1".into()));
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        % 86_400;
    template
        .replace(
            "{ts}",
            &format!(
                "{:02}:{:02}:{:02}",
                secs / 3600,
                (secs / 60) % 60,
                secs % 60
            ),
        )
        .replace("{id}", &r.id)
        .replace("{user}", &user)
        .replace("{host}", &host)
        .replace("{arch}", arch)
        .replace("{compose}", compose)
        .replace("{guest_id}", &r.guest_id)
}

/// Runs a request's script, then its timers.
async fn drive(world: Arc<Mutex<World>>, id: String, script: Script, minute: Duration) {
    for step in script.0 {
        if let Step::Wait(d) = step {
            tokio::time::sleep(d).await;
            continue;
        }
        let mut w = lock(&world);
        let keys_file = w.cfg.authorized_keys.clone();
        let cancel_delay = w.cfg.cancel_delay;
        let Some(r) = w.find(&id) else { return };
        if !r.alive() {
            return;
        }
        match step {
            Step::Wait(_) => {}
            Step::State(s) => {
                w.set_state(&id, s);
                if s == "running" {
                    let timers = timers_of(
                        w.find(&id).map(|r| r.body.clone()).unwrap_or_default(),
                        minute,
                    );
                    if !timers.is_empty() {
                        tokio::spawn(run_timers(world.clone(), id.clone(), timers));
                    }
                }
            }
            Step::Log(line) => {
                let text = fill(&line, r);
                r.log.push_str(&text);
                r.log.push('\n');
            }
            Step::Note(level, msg) => r.notes.push((level.to_string(), msg)),
            Step::InstallKeys => {
                if let Some(path) = keys_file {
                    let mut text = r.keys.join("\n");
                    text.push('\n');
                    use std::io::Write as _;
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .expect("authorized_keys");
                    f.write_all(text.as_bytes()).expect("write keys");
                }
            }
            Step::ExternalCancel => {
                r.log
                    .push_str("[testing-farm-request] Cancelling pipeline\n");
                w.set_state(&id, "cancel-requested");
                let world = world.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(cancel_delay).await;
                    lock(&world).set_state(&id, "canceled");
                });
                return;
            }
        }
    }
}

/// (delay from running, final state, note)
fn timers_of(body: Value, minute: Duration) -> Vec<(Duration, &'static str, Option<&'static str>)> {
    let mut t = Vec::new();
    if let Some(m) = body
        .get("settings")
        .and_then(|s| s.get("pipeline"))
        .and_then(|p| p.get("timeout"))
        .and_then(Value::as_u64)
    {
        t.push((minute * m as u32, "error", Some("Pipeline timeout")));
    }
    if let Some(m) = body
        .get("environments")
        .and_then(|e| e.get(0))
        .and_then(|e| e.get("variables"))
        .and_then(|v| v.get("TF_RESERVATION_DURATION"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<u32>().ok())
    {
        t.push((minute * m, "complete", None));
    }
    t.sort_by_key(|x| x.0);
    t
}

async fn run_timers(
    world: Arc<Mutex<World>>,
    id: String,
    timers: Vec<(Duration, &'static str, Option<&'static str>)>,
) {
    let Some((after, state, note)) = timers.into_iter().next() else {
        return;
    };
    tokio::time::sleep(after).await;
    let mut w = lock(&world);
    let Some(r) = w.find(&id) else { return };
    if !r.alive() {
        return;
    }
    if let Some(n) = note {
        r.notes.push(("error".into(), n.into()));
    }
    w.set_state(&id, state);
}

fn control(world: &Arc<Mutex<World>>, method: &Method, path: &str, body: &[u8]) -> Resp {
    let mut w = lock(world);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["_fake", "calls"]) => {
            json_resp(200, &serde_json::to_value(&w.calls).unwrap())
        }
        (Method::GET, ["_fake", "requests"]) => {
            json_resp(200, &serde_json::to_value(&w.requests).unwrap())
        }
        (Method::GET, ["_fake", "alive"]) => {
            let ids: Vec<&String> = w
                .requests
                .iter()
                .filter(|r| r.alive() && !r.released)
                .map(|r| &r.id)
                .collect();
            json_resp(200, &json!(ids))
        }
        (Method::GET, ["_fake", "orphans"]) => {
            let ids: Vec<&String> = w
                .requests
                .iter()
                .filter(|r| !r.reply_delivered && r.delete_count == 0 && !r.found_by_search)
                .map(|r| &r.id)
                .collect();
            json_resp(200, &json!(ids))
        }
        (Method::GET, ["_fake", "counters"]) => {
            let mut posts: HashMap<String, u32> = HashMap::new();
            for c in &w.calls {
                if c.method == "POST" && c.path == "/v0.1/requests" {
                    *posts
                        .entry(c.token.clone().unwrap_or_default())
                        .or_default() += 1;
                }
            }
            let polls: HashMap<&String, u32> =
                w.requests.iter().map(|r| (&r.id, r.polls)).collect();
            json_resp(
                200,
                &json!({"posts": posts, "peak_alive": w.peak_alive, "polls": polls}),
            )
        }
        (Method::POST, ["_fake", "reset"]) => {
            w.calls.clear();
            w.requests.clear();
            w.faults.clear();
            w.peak_alive.clear();
            json_resp(200, &json!({}))
        }
        (Method::POST, ["_fake", "requests", id, what]) => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let id = id.to_string();
            if w.find(&id).is_none() {
                return message(404, "No such entity");
            }
            match *what {
                "state" => {
                    let Some(s) = v.get("state").and_then(Value::as_str) else {
                        return message(400, "state missing");
                    };
                    let s: &'static str = match s {
                        "new" => "new",
                        "queued" => "queued",
                        "running" => "running",
                        "complete" => "complete",
                        "error" => "error",
                        "cancel-requested" => "cancel-requested",
                        "canceled" => "canceled",
                        _ => return message(400, "unknown state"),
                    };
                    w.set_state(&id, s);
                    json_resp(200, &json!({}))
                }
                "log" => {
                    let line = v
                        .get("line")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if let Some(r) = w.find(&id) {
                        r.log.push_str(&line);
                        r.log.push('\n');
                    }
                    json_resp(200, &json!({}))
                }
                _ => message(404, "Not found"),
            }
        }
        _ => message(404, "Not found"),
    }
}
