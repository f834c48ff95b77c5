//! A fake ReportPortal following the "Fake server contract" of the ReportPortal spec (§6):
//! v2 reporting (launches, items, multipart logs), v1 reads (launch and item lookups and
//! searches, paged), `/api/info`. It runs on its own thread and runtime, so it serves
//! blocking tests, async tests and `atex` subprocesses alike.
//!
//! * Validation as the contract says: bearer token (401), project (404; 403 for a token
//!   without access), launch in progress, parent in the same launch and open, known type
//!   and status (case-insensitive), parseable times (ISO 8601 or epoch milliseconds),
//!   `endTime >= startTime`, item or launch not finished twice (406), multipart
//!   `json_request_part` with every referenced file present, a request size limit (413).
//! * Everything is recorded ([`RpCall`]: method, path, query, auth, JSON body or multipart
//!   parts with raw bytes, status, fault) and the model can be dumped as a tree
//!   ([`FakeRp::tree`], also `GET /_fake/launches`). Derived checks: launches never
//!   finished, items still in progress when their launch finished, duplicate siblings
//!   without `retry`, finishes attempted twice, peak concurrent requests.
//! * Faults ([`RpFault`]) per method and path glob, for the next N calls or with a
//!   probability: 5xx/4xx (JSON or HTML gateway page, `Retry-After`), slow replies, dropped
//!   connections, commit-then-drop, non-JSON 200.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// The token the fake accepts for [`PROJECT`].
pub const TOKEN: &str = "atex_fake0000000000000000000000000000000000000000000000000000";
/// A token that exists but has no access to [`PROJECT`] (403).
pub const TOKEN_NO_ACCESS: &str = "other_fake111111111111111111111111111111111111";
/// The project.
pub const PROJECT: &str = "atexproject";

const TYPES: [&str; 12] = [
    "suite",
    "story",
    "test",
    "scenario",
    "step",
    "before_class",
    "before_groups",
    "before_method",
    "before_suite",
    "before_test",
    "after_class",
    "after_method",
];
const STATUSES: [&str; 10] = [
    "passed",
    "failed",
    "stopped",
    "skipped",
    "interrupted",
    "cancelled",
    "info",
    "warn",
    "reseted",
    "in_progress",
];

/// What a fault does.
#[derive(Debug, Clone)]
pub enum RpFaultKind {
    /// Answer `status` without any effect (JSON body, or an HTML gateway page).
    Status {
        status: u16,
        html: bool,
        retry_after: Option<String>,
    },
    /// Close the connection without an answer, no effect.
    Drop,
    /// Apply the effect, wait, then answer normally.
    Delay(Duration),
    /// Apply the effect, then close the connection without an answer.
    CommitThenDrop,
    /// Apply the effect, then answer 200 `text/plain`.
    NonJson200,
}

/// A fault rule.
#[derive(Debug, Clone)]
pub struct RpFault {
    pub method: Option<Method>,
    /// Path glob (`*` matches anything).
    pub path: String,
    pub remaining: Option<u32>,
    pub probability: Option<f64>,
    pub kind: RpFaultKind,
}

impl RpFault {
    pub fn new(method: Option<Method>, path: &str, kind: RpFaultKind) -> Self {
        Self {
            method,
            path: path.to_string(),
            remaining: None,
            probability: None,
            kind,
        }
    }

    pub fn status(method: Method, path: &str, status: u16) -> Self {
        Self::new(
            Some(method),
            path,
            RpFaultKind::Status {
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
            RpFaultKind::Status {
                status,
                html: true,
                retry_after: None,
            },
        )
    }

    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }
}

/// Configuration.
#[derive(Debug, Clone)]
pub struct RpFakeConfig {
    /// token -> projects it may use.
    pub tokens: Vec<(String, Vec<String>)>,
    pub projects: Vec<String>,
    /// Largest page size served.
    pub page_limit: usize,
    /// Largest request body (413 above).
    pub max_body: usize,
    /// `/api/info` version.
    pub version: String,
    /// Refuse `endTime < startTime`.
    pub check_end_after_start: bool,
    /// v1 reads do not see entities younger than this (eventual consistency).
    pub read_delay: Duration,
}

impl Default for RpFakeConfig {
    fn default() -> Self {
        Self {
            tokens: vec![
                (TOKEN.into(), vec![PROJECT.into()]),
                (TOKEN_NO_ACCESS.into(), vec![]),
            ],
            projects: vec![PROJECT.into()],
            page_limit: 300,
            max_body: 32 * 1024 * 1024,
            version: "5.14.0".into(),
            check_end_after_start: true,
            read_delay: Duration::ZERO,
        }
    }
}

/// One part of a multipart request.
#[derive(Debug, Clone, Serialize)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub size: usize,
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// One HTTP call the fake saw.
#[derive(Debug, Clone, Serialize)]
pub struct RpCall {
    /// Seconds since the fake started.
    pub t: f64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub auth: bool,
    pub token: Option<String>,
    pub body: Option<Value>,
    pub parts: Vec<Part>,
    /// `None`: no reply (dropped).
    pub status: Option<u16>,
    pub fault: Option<String>,
}

/// A launch.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchRec {
    pub uuid: String,
    pub id: i64,
    pub number: i64,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
    pub start_micros: i64,
    pub end_micros: Option<i64>,
    /// Times (seconds since start) it was reopened by a rerun.
    pub reruns: Vec<f64>,
    pub finish_attempts: u32,
    /// Items still in progress when it was finished (uuids).
    pub open_at_finish: Vec<String>,
    #[serde(skip)]
    pub created: Instant,
}

/// An item.
#[derive(Debug, Clone, Serialize)]
pub struct ItemRec {
    pub uuid: String,
    pub id: i64,
    pub launch: String,
    pub parent: Option<String>,
    pub item_type: String,
    pub name: String,
    pub has_stats: bool,
    pub retry: bool,
    pub start_micros: i64,
    pub end_micros: Option<i64>,
    pub status: String,
    pub description: Option<String>,
    pub issue: Option<String>,
    pub finish_attempts: u32,
    #[serde(skip)]
    pub created: Instant,
}

/// A log entry.
#[derive(Debug, Clone, Serialize)]
pub struct LogRec {
    pub id: String,
    pub launch: String,
    pub item: String,
    pub level: String,
    pub message: String,
    /// (name, content type, bytes)
    #[serde(skip)]
    pub attachment: Option<(String, Option<String>, Vec<u8>)>,
    pub attachment_name: Option<String>,
}

struct World {
    start: Instant,
    cfg: RpFakeConfig,
    faults: Vec<RpFault>,
    calls: Vec<RpCall>,
    launches: Vec<LaunchRec>,
    items: Vec<ItemRec>,
    logs: Vec<LogRec>,
    next_id: i64,
    rng: u64,
    url: String,
}

impl World {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn uuid(&mut self) -> String {
        self.next_id += 1;
        let a = self.random_u64();
        let b = self.random_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            a as u16 & 0xfff,
            (b >> 48) as u16 & 0xfff,
            b & 0xffff_ffff_ffff
        )
    }

    fn random_u64(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn match_fault(&mut self, method: &Method, path: &str) -> Option<RpFaultKind> {
        for i in 0..self.faults.len() {
            let f = &self.faults[i];
            if f.method.as_ref().is_some_and(|m| m != method) || !glob(&f.path, path) {
                continue;
            }
            if f.remaining == Some(0) {
                continue;
            }
            if let Some(p) = f.probability
                && (self.random_u64() >> 11) as f64 / (1u64 << 53) as f64 >= p
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

    fn launch(&mut self, uuid: &str) -> Option<&mut LaunchRec> {
        self.launches.iter_mut().find(|l| l.uuid == uuid)
    }

    fn item(&mut self, uuid: &str) -> Option<&mut ItemRec> {
        self.items.iter_mut().find(|i| i.uuid == uuid)
    }

    fn visible(&self, created: Instant) -> bool {
        created.elapsed() >= self.cfg.read_delay
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

/// ISO 8601 (with or without zone) or epoch milliseconds -> micros.
fn parse_time(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().ok().map(|ms| ms * 1000)
        }
        Value::Number(n) => n.as_i64().map(|ms| ms * 1000),
        Value::String(s) => atex::timestamp::Timestamp::parse(s)
            .ok()
            .map(|t| t.as_micros()),
        _ => None,
    }
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

fn error(status: u16, code: i64, msg: &str) -> Resp {
    json_resp(status, &json!({"errorCode": code, "message": msg}))
}

fn html_resp(status: u16) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "text/html")
        .body(Full::new(Bytes::from(format!(
            "<html><body><h1>{status} Bad Gateway</h1></body></html>"
        ))))
        .unwrap()
}

/// The fake server. Stopped on drop.
pub struct FakeRp {
    url: String,
    world: Arc<Mutex<World>>,
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRp {
    pub fn start() -> Self {
        Self::start_with(RpFakeConfig::default())
    }

    pub fn start_with(cfg: RpFakeConfig) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", std_listener.local_addr().expect("addr"));
        let world = Arc::new(Mutex::new(World {
            start: Instant::now(),
            cfg,
            faults: Vec::new(),
            calls: Vec::new(),
            launches: Vec::new(),
            items: Vec::new(),
            logs: Vec::new(),
            next_id: 1000,
            rng: 0x2545_f491_4f6c_dd1d,
            url: url.clone(),
        }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (w, a, p) = (world.clone(), active.clone(), peak.clone());
        let thread = std::thread::Builder::new()
            .name("fake-rp".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(serve(w, a, p, std_listener, rx));
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("thread");
        Self {
            url,
            world,
            active,
            peak,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://127.0.0.1:PORT` (the server root).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn configure(&self, f: impl FnOnce(&mut RpFakeConfig)) {
        f(&mut self.world().cfg);
    }

    pub fn add_fault(&self, fault: RpFault) {
        self.world().faults.push(fault);
    }

    pub fn calls(&self) -> Vec<RpCall> {
        self.world().calls.clone()
    }

    /// Calls with this method whose path matches the glob.
    pub fn calls_to(&self, method: &str, path: &str) -> Vec<RpCall> {
        self.world()
            .calls
            .iter()
            .filter(|c| c.method == method && glob(path, &c.path))
            .cloned()
            .collect()
    }

    pub fn launches(&self) -> Vec<LaunchRec> {
        self.world().launches.clone()
    }

    pub fn items(&self) -> Vec<ItemRec> {
        self.world().items.clone()
    }

    pub fn logs(&self) -> Vec<LogRec> {
        self.world().logs.clone()
    }

    /// Items of `launch` under `parent` (`None`: root items), in creation order.
    pub fn children(&self, launch: &str, parent: Option<&str>) -> Vec<ItemRec> {
        self.world()
            .items
            .iter()
            .filter(|i| i.launch == launch && i.parent.as_deref() == parent)
            .cloned()
            .collect()
    }

    /// Logs of one item, in order.
    pub fn logs_of(&self, item: &str) -> Vec<LogRec> {
        self.world()
            .logs
            .iter()
            .filter(|l| l.item == item)
            .cloned()
            .collect()
    }

    /// The model as a tree: launches, their items (nested) with logs.
    pub fn tree(&self) -> Value {
        tree(&self.world())
    }

    /// Launches never finished.
    pub fn unfinished_launches(&self) -> Vec<String> {
        self.world()
            .launches
            .iter()
            .filter(|l| l.end_micros.is_none())
            .map(|l| l.uuid.clone())
            .collect()
    }

    /// Items (uuid, type, name) still in progress when their launch finished.
    pub fn open_at_finish(&self) -> Vec<(String, String, String)> {
        let w = self.world();
        w.launches
            .iter()
            .flat_map(|l| l.open_at_finish.clone())
            .filter_map(|u| {
                w.items
                    .iter()
                    .find(|i| i.uuid == u)
                    .map(|i| (u.clone(), i.item_type.clone(), i.name.clone()))
            })
            .collect()
    }

    /// Sibling items with the same name where a later one has no `retry` flag (a
    /// retried POST that created a second item): (launch, parent, name).
    pub fn duplicate_siblings(&self) -> Vec<(String, Option<String>, String)> {
        let w = self.world();
        let mut seen: HashMap<(String, Option<String>, String), usize> = HashMap::new();
        let mut out = Vec::new();
        for i in &w.items {
            let key = (i.launch.clone(), i.parent.clone(), i.name.clone());
            let n = seen.entry(key.clone()).or_default();
            if *n > 0 && !i.retry {
                out.push(key);
            }
            *n += 1;
        }
        out
    }

    /// Items and launches whose finish was attempted more than once.
    pub fn double_finishes(&self) -> Vec<String> {
        let w = self.world();
        w.items
            .iter()
            .filter(|i| i.finish_attempts > 1)
            .map(|i| i.uuid.clone())
            .chain(
                w.launches
                    .iter()
                    .filter(|l| l.finish_attempts > 1)
                    .map(|l| l.uuid.clone()),
            )
            .collect()
    }

    /// The most requests served at once.
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Creates a launch directly (as another client would).
    pub fn seed_launch(&self, name: &str) -> String {
        let mut w = self.world();
        let uuid = w.uuid();
        let id = w.next_id;
        let number = w.launches.iter().filter(|l| l.name == name).count() as i64 + 1;
        w.launches.push(LaunchRec {
            uuid: uuid.clone(),
            id,
            number,
            name: name.into(),
            description: None,
            status: "IN_PROGRESS".into(),
            start_micros: 0,
            end_micros: None,
            reruns: vec![],
            finish_attempts: 0,
            open_at_finish: vec![],
            created: Instant::now(),
        });
        uuid
    }
}

impl Drop for FakeRp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tree(w: &World) -> Value {
    fn item_json(w: &World, i: &ItemRec) -> Value {
        let children: Vec<Value> = w
            .items
            .iter()
            .filter(|c| c.parent.as_deref() == Some(&i.uuid))
            .map(|c| item_json(w, c))
            .collect();
        let logs: Vec<Value> = w
            .logs
            .iter()
            .filter(|l| l.item == i.uuid)
            .map(|l| json!({"level": l.level, "message": l.message, "attachment": l.attachment_name}))
            .collect();
        json!({"type": i.item_type, "name": i.name, "hasStats": i.has_stats, "retry": i.retry,
               "status": i.status, "description": i.description, "issue": i.issue,
               "start": i.start_micros, "end": i.end_micros, "logs": logs, "children": children})
    }
    let launches: Vec<Value> = w
        .launches
        .iter()
        .map(|l| {
            let roots: Vec<Value> = w
                .items
                .iter()
                .filter(|i| i.launch == l.uuid && i.parent.is_none())
                .map(|i| item_json(w, i))
                .collect();
            json!({"uuid": l.uuid, "name": l.name, "status": l.status, "number": l.number,
                   "reruns": l.reruns, "end": l.end_micros, "items": roots})
        })
        .collect();
    json!(launches)
}

async fn serve(
    world: Arc<Mutex<World>>,
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    listener: std::net::TcpListener,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (world, active, peak) = (world.clone(), active.clone(), peak.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (world, active, peak) = (world.clone(), active.clone(), peak.clone());
                        async move {
                            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            let r = handle(world, req).await;
                            active.fetch_sub(1, Ordering::SeqCst);
                            r
                        }
                    });
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

/// Splits a multipart body.
fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    let delim = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut pos = find(body, &delim, 0)? + delim.len();
    loop {
        if body[pos..].starts_with(b"--") {
            return Some(parts);
        }
        pos += 2; // CRLF after the delimiter
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let next = find(body, &[b"\r\n".as_slice(), &delim].concat(), data_start)?;
        let data = body[data_start..next].to_vec();
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            size: data.len(),
            data,
        };
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':')?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for p in v.split(';').map(str::trim) {
                        if let Some(n) = p.strip_prefix("name=") {
                            part.name = n.trim_matches('"').to_string();
                        } else if let Some(f) = p.strip_prefix("filename=") {
                            part.filename = Some(f.trim_matches('"').to_string());
                        }
                    }
                }
                "content-type" => part.content_type = Some(v.trim().to_string()),
                _ => {}
            }
        }
        parts.push(part);
        pos = next + 2 + delim.len();
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

async fn handle(world: Arc<Mutex<World>>, req: Request<Incoming>) -> Result<Resp, Dropped> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header("authorization");
    let content_type = header("content-type").unwrap_or_default();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path.starts_with("/_fake/") {
        let w = lock(&world);
        return Ok(match path.as_str() {
            "/_fake/launches" => json_resp(200, &tree(&w)),
            "/_fake/calls" => json_resp(200, &serde_json::to_value(&w.calls).unwrap()),
            _ => error(404, 4040, "no such control endpoint"),
        });
    }
    let token = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_string);
    let (body_json, parts) = if content_type.starts_with("multipart/form-data") {
        (
            None,
            parse_multipart(&content_type, &body).unwrap_or_default(),
        )
    } else if body.is_empty() {
        (None, Vec::new())
    } else {
        (
            Some(
                serde_json::from_slice(&body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
            ),
            Vec::new(),
        )
    };
    let fault = lock(&world).match_fault(&method, &path);
    let call = RpCall {
        t: lock(&world).now(),
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        auth: authorization.is_some(),
        token: token.clone(),
        body: body_json.clone(),
        parts: parts.clone(),
        status: None,
        fault: fault.as_ref().map(|f| format!("{f:?}")),
    };
    let record = |status: Option<u16>| {
        let mut c = call.clone();
        c.status = status;
        lock(&world).calls.push(c);
    };
    match &fault {
        Some(RpFaultKind::Status {
            status,
            html,
            retry_after,
        }) => {
            record(Some(*status));
            let mut resp = if *html {
                html_resp(*status)
            } else {
                error(*status, 5000, "injected failure")
            };
            if let Some(ra) = retry_after {
                resp.headers_mut()
                    .insert("retry-after", ra.parse().unwrap());
            }
            return Ok(resp);
        }
        Some(RpFaultKind::Drop) => {
            record(None);
            return Err(Dropped);
        }
        _ => {}
    }
    let resp = {
        let mut w = lock(&world);
        if body.len() > w.cfg.max_body {
            error(413, 4130, "Request is too large")
        } else {
            api(
                &mut w,
                &method,
                &path,
                &query,
                token.as_deref(),
                body_json,
                &parts,
            )
        }
    };
    match fault {
        Some(RpFaultKind::Delay(d)) => {
            record(Some(resp.status().as_u16()));
            tokio::time::sleep(d).await;
            Ok(resp)
        }
        Some(RpFaultKind::CommitThenDrop) => {
            record(None);
            Err(Dropped)
        }
        Some(RpFaultKind::NonJson200) => {
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

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn paged(w: &World, all: Vec<Value>, q: &[(String, String)]) -> Resp {
    let get = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let size = get("page.size")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, w.cfg.page_limit);
    let page = get("page.page")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = all.len();
    let content: Vec<Value> = all.into_iter().skip((page - 1) * size).take(size).collect();
    json_resp(
        200,
        &json!({"content": content, "page": {"number": page, "size": size,
                 "totalElements": total, "totalPages": total.div_ceil(size)}}),
    )
}

fn launch_json(l: &LaunchRec) -> Value {
    json!({"id": l.id, "uuid": l.uuid, "name": l.name, "number": l.number, "status": l.status,
           "description": l.description, "mode": "DEFAULT", "startTime": l.start_micros / 1000,
           "endTime": l.end_micros.map(|m| m / 1000)})
}

fn item_json(w: &World, i: &ItemRec) -> Value {
    let launch_id = w.launches.iter().find(|l| l.uuid == i.launch).map(|l| l.id);
    let parent_id = i
        .parent
        .as_ref()
        .and_then(|p| w.items.iter().find(|x| &x.uuid == p))
        .map(|p| p.id);
    let has_children = w.items.iter().any(|c| c.parent.as_deref() == Some(&i.uuid));
    json!({"id": i.id, "uuid": i.uuid, "name": i.name, "type": i.item_type.to_uppercase(),
           "status": i.status, "launchId": launch_id, "parent": parent_id,
           "hasChildren": has_children, "hasStats": i.has_stats,
           "issue": i.issue.as_ref().map(|l| json!({"issueType": l}))})
}

#[allow(clippy::too_many_arguments)]
fn api(
    w: &mut World,
    method: &Method,
    path: &str,
    query: &str,
    token: Option<&str>,
    body: Option<Value>,
    parts: &[Part],
) -> Resp {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.as_slice() == ["api", "info"] {
        return json_resp(200, &json!({"build": {"version": w.cfg.version}}));
    }
    let Some(token) = token else {
        return json_resp(
            401,
            &json!({"error": "unauthorized", "error_description": "Full authentication is required"}),
        );
    };
    let Some((_, projects)) = w.cfg.tokens.iter().find(|(t, _)| t == token).cloned() else {
        return json_resp(
            401,
            &json!({"error": "invalid_token", "error_description": "Invalid access token"}),
        );
    };
    let (version, project, rest) = match segs.as_slice() {
        ["api", v @ ("v1" | "v2"), p, rest @ ..] => (*v, *p, rest),
        _ => return error(404, 4040, "Not found"),
    };
    if !w.cfg.projects.iter().any(|p| p == project) {
        return error(404, 4041, &format!("Project '{project}' not found."));
    }
    if !projects.iter().any(|p| p == project) {
        return error(403, 4003, "You do not have enough permissions.");
    }
    let b = body.unwrap_or(Value::Null);
    let q = query_pairs(query);
    match (version, method.clone(), rest) {
        ("v2", Method::POST, ["launch"]) => {
            if b.get("rerun").and_then(Value::as_bool) == Some(true) {
                let of = b.get("rerunOf").and_then(Value::as_str).unwrap_or("");
                let t = w.now();
                let Some(l) = w.launch(of) else {
                    return error(
                        404,
                        4041,
                        &format!("Launch '{of}' not found. Did you use correct Launch ID?"),
                    );
                };
                l.status = "IN_PROGRESS".into();
                l.end_micros = None;
                l.reruns.push(t);
                let r = json!({"id": l.uuid, "number": l.number});
                return json_resp(201, &r);
            }
            let Some(name) = b
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return error(
                    400,
                    4001,
                    "Incorrect Request. [Field 'name' should not be null]",
                );
            };
            let Some(start) = parse_time(b.get("startTime")) else {
                return error(
                    400,
                    4001,
                    "Incorrect Request. [Field 'startTime' should not be null]",
                );
            };
            let uuid = w.uuid();
            let id = w.next_id;
            let number = w.launches.iter().filter(|l| l.name == name).count() as i64 + 1;
            w.launches.push(LaunchRec {
                uuid: uuid.clone(),
                id,
                number,
                name: name.into(),
                description: b
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                status: "IN_PROGRESS".into(),
                start_micros: start,
                end_micros: None,
                reruns: vec![],
                finish_attempts: 0,
                open_at_finish: vec![],
                created: Instant::now(),
            });
            json_resp(201, &json!({"id": uuid, "number": number}))
        }
        ("v2", Method::PUT, ["launch", uuid, "finish"]) => {
            let Some(end) = parse_time(b.get("endTime")) else {
                return error(
                    400,
                    4001,
                    "Incorrect Request. [Field 'endTime' should not be null]",
                );
            };
            let url = w.url.clone();
            let uuid = uuid.to_string();
            let Some(l) = w.launch(&uuid) else {
                return error(
                    404,
                    4041,
                    &format!("Launch '{uuid}' not found. Did you use correct Launch ID?"),
                );
            };
            l.finish_attempts += 1;
            if l.end_micros.is_some() {
                return error(
                    406,
                    4062,
                    &format!("Launch with ID = '{uuid}' is already finished."),
                );
            }
            let (id, number) = (l.id, l.number);
            let mut open = Vec::new();
            let mut failed = false;
            for i in w.items.iter_mut().filter(|i| i.launch == uuid) {
                if i.end_micros.is_none() {
                    open.push(i.uuid.clone());
                    i.end_micros = Some(end);
                    i.status = "INTERRUPTED".into();
                }
                if i.has_stats
                    && i.item_type == "step"
                    && matches!(i.status.as_str(), "FAILED" | "INTERRUPTED")
                {
                    failed = true;
                }
            }
            let l = w.launch(&uuid).expect("launch");
            l.end_micros = Some(end);
            l.status = if failed { "FAILED" } else { "PASSED" }.into();
            l.open_at_finish.extend(open);
            json_resp(
                200,
                &json!({"id": uuid, "number": number,
                        "link": format!("{url}/ui/#{project}/launches/all/{id}")}),
            )
        }
        ("v2", Method::POST, ["item", parent @ ..]) if parent.len() <= 1 => {
            let launch = b
                .get("launchUuid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            match w.launch(&launch) {
                None => return error(404, 4041, &format!("Launch '{launch}' not found.")),
                Some(l) if l.end_micros.is_some() => {
                    return error(
                        406,
                        4062,
                        &format!("Launch '{launch}' is already finished."),
                    );
                }
                _ => {}
            }
            let parent = parent.first().map(|p| p.to_string());
            if let Some(p) = &parent {
                match w.items.iter().find(|i| &i.uuid == p) {
                    None => return error(404, 4042, &format!("Parent item '{p}' not found.")),
                    Some(i) if i.launch != launch => {
                        return error(400, 4001, "Parent item belongs to another launch.");
                    }
                    Some(i) if i.end_micros.is_some() => {
                        return error(
                            406,
                            4063,
                            &format!("Parent item '{p}' is already finished."),
                        );
                    }
                    _ => {}
                }
            }
            let ty = b
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            if !TYPES.contains(&ty.as_str()) {
                return error(
                    400,
                    4001,
                    &format!("Incorrect Request. [unknown type '{ty}']"),
                );
            }
            let Some(name) = b
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return error(
                    400,
                    4001,
                    "Incorrect Request. [Field 'name' should not be null]",
                );
            };
            let Some(start) = parse_time(b.get("startTime")) else {
                return error(
                    400,
                    4001,
                    "Incorrect Request. [Field 'startTime' is not valid]",
                );
            };
            let uuid = w.uuid();
            let id = w.next_id;
            w.items.push(ItemRec {
                uuid: uuid.clone(),
                id,
                launch,
                parent,
                item_type: ty,
                name: name.into(),
                has_stats: b.get("hasStats").and_then(Value::as_bool).unwrap_or(true),
                retry: b.get("retry").and_then(Value::as_bool).unwrap_or(false),
                start_micros: start,
                end_micros: None,
                status: "IN_PROGRESS".into(),
                description: None,
                issue: None,
                finish_attempts: 0,
                created: Instant::now(),
            });
            json_resp(201, &json!({"id": uuid}))
        }
        ("v2", Method::PUT, ["item", uuid]) => {
            let uuid = uuid.to_string();
            let launch = b
                .get("launchUuid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if w.launch(&launch).is_none() {
                return error(404, 4041, &format!("Launch '{launch}' not found."));
            }
            let status = b
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            if !STATUSES.contains(&status.as_str()) {
                return error(
                    400,
                    4001,
                    &format!("Incorrect Request. [unknown status '{status}']"),
                );
            }
            let Some(end) = parse_time(b.get("endTime")) else {
                return error(
                    400,
                    4001,
                    "Incorrect Request. [Field 'endTime' is not valid]",
                );
            };
            let check = w.cfg.check_end_after_start;
            let Some(i) = w.item(&uuid) else {
                return error(404, 4042, &format!("Test Item '{uuid}' not found."));
            };
            i.finish_attempts += 1;
            if i.launch != launch {
                return error(400, 4001, "Item belongs to another launch.");
            }
            if i.end_micros.is_some() {
                return error(
                    406,
                    4064,
                    &format!("Test item '{uuid}' is already finished."),
                );
            }
            if check && end < i.start_micros {
                return error(400, 4001, "Finish time is earlier than start time.");
            }
            i.end_micros = Some(end);
            i.status = status.to_uppercase();
            i.description = b
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string);
            if i.status == "FAILED" || (i.status == "SKIPPED" && b.get("issue").is_none()) {
                i.issue = Some("ti001".into());
            }
            json_resp(
                200,
                &json!({"message": format!("TestItem with ID = '{uuid}' successfully finished.")}),
            )
        }
        ("v2", Method::POST, ["log"] | ["log", "entry"]) => {
            let entries: Vec<Value> = if parts.is_empty() {
                match b {
                    Value::Object(_) => vec![b],
                    _ => return error(400, 4001, "Incorrect Request. [log entry expected]"),
                }
            } else {
                let Some(jp) = parts.iter().find(|p| p.name == "json_request_part") else {
                    return error(
                        400,
                        4001,
                        "Incorrect Request. [json_request_part is missing]",
                    );
                };
                match serde_json::from_slice::<Value>(&jp.data) {
                    Ok(Value::Array(a)) => a,
                    _ => {
                        return error(
                            400,
                            4001,
                            "Incorrect Request. [json_request_part must be a JSON array]",
                        );
                    }
                }
            };
            let mut responses = Vec::new();
            for e in entries {
                let launch = e
                    .get("launchUuid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let item = e
                    .get("itemUuid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if w.launch(&launch).is_none() || w.item(&item).is_none() {
                    responses.push(json!({"message": "launch or item not found"}));
                    continue;
                }
                if parse_time(e.get("time")).is_none() {
                    responses.push(json!({"message": "bad time"}));
                    continue;
                }
                let file = e
                    .pointer("/file/name")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let attachment = match &file {
                    None => None,
                    Some(f) => match parts.iter().find(|p| p.filename.as_deref() == Some(f)) {
                        Some(p) => Some((f.clone(), p.content_type.clone(), p.data.clone())),
                        None => {
                            return error(
                                400,
                                4001,
                                &format!("Incorrect Request. [file '{f}' is missing]"),
                            );
                        }
                    },
                };
                let id = w.uuid();
                w.logs.push(LogRec {
                    id: id.clone(),
                    launch,
                    item,
                    level: e
                        .get("level")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    message: e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    attachment_name: file,
                    attachment,
                });
                responses.push(json!({"id": id}));
            }
            json_resp(201, &json!({"responses": responses}))
        }
        ("v1", Method::GET, ["launch", "uuid", uuid]) => {
            match w
                .launches
                .iter()
                .find(|l| l.uuid == *uuid && w.visible(l.created))
            {
                Some(l) => json_resp(200, &launch_json(l)),
                None => error(
                    404,
                    4041,
                    &format!("Launch '{uuid}' not found. Did you use correct Launch ID?"),
                ),
            }
        }
        ("v1", Method::GET, ["launch"]) => {
            let mut all: Vec<&LaunchRec> =
                w.launches.iter().filter(|l| w.visible(l.created)).collect();
            if q.iter()
                .any(|(k, v)| k == "page.sort" && v.starts_with("startTime") && v.ends_with("desc"))
            {
                all.reverse();
            }
            let all = all.into_iter().map(launch_json).collect();
            paged(w, all, &q)
        }
        ("v1", Method::GET, ["item", "uuid", uuid]) => {
            match w
                .items
                .iter()
                .find(|i| i.uuid == *uuid && w.visible(i.created))
            {
                Some(i) => json_resp(200, &item_json(w, i)),
                None => error(404, 4042, &format!("Test Item '{uuid}' not found.")),
            }
        }
        ("v1", Method::GET, ["item"]) => {
            let get = |k: &str| q.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
            let Some(launch_id) = get("filter.eq.launchId") else {
                return error(400, 4001, "Incorrect Request. [launch filter is required]");
            };
            let launch = w
                .launches
                .iter()
                .find(|l| l.id.to_string() == launch_id)
                .map(|l| l.uuid.clone());
            let parent = get("filter.eq.parentId");
            let ty = get("filter.eq.type").map(|t| t.to_ascii_lowercase());
            let name = get("filter.eq.name");
            let statuses: Option<Vec<String>> = get("filter.in.status").map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_ascii_uppercase())
                    .collect()
            });
            let issues: Option<Vec<String>> = get("filter.in.issueType")
                .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
            let all: Vec<Value> = w
                .items
                .iter()
                .filter(|i| Some(&i.launch) == launch.as_ref() && w.visible(i.created))
                .filter(|i| {
                    parent.as_ref().is_none_or(|p| {
                        i.parent
                            .as_ref()
                            .and_then(|u| w.items.iter().find(|x| &x.uuid == u))
                            .is_some_and(|x| x.id.to_string() == *p)
                    })
                })
                .filter(|i| ty.as_ref().is_none_or(|t| &i.item_type == t))
                .filter(|i| name.as_ref().is_none_or(|n| &i.name == n))
                .filter(|i| statuses.as_ref().is_none_or(|s| s.contains(&i.status)))
                .filter(|i| {
                    issues
                        .as_ref()
                        .is_none_or(|s| i.issue.as_ref().is_some_and(|x| s.contains(x)))
                })
                .map(|i| item_json(w, i))
                .collect();
            paged(w, all, &q)
        }
        _ => error(404, 4040, &format!("No handler for {method} {path}")),
    }
}
