//! The body of `POST /v0.1/requests`.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

/// The environment variable that carries a request's idempotency marker.
///
/// Variables are returned by `GET /v0.1/requests` (unlike secrets), so the client can find
/// a request it created even when the create reply was lost. On the guest the variable is
/// exported to the test, which ignores it.
pub const MARKER_VARIABLE: &str = "ATEX_REQUEST_KEY";

/// The reserve test upstream uses to hold a machine.
pub const RESERVE_TEST_URL: &str = "https://gitlab.com/testing-farm/tests";
/// Git ref of [`RESERVE_TEST_URL`].
pub const RESERVE_TEST_REF: &str = "main";
/// The reserve test's FMF name.
pub const RESERVE_TEST_NAME: &str = "/testing-farm/reserve";

/// A fresh random marker: 32 hex digits grouped like a UUID.
pub fn new_marker() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let word = |salt: u64| {
        // `RandomState` is seeded from the OS once per process and varies per instance.
        let mut h = std::hash::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u64(n);
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.finish()
    };
    let (a, b) = (word(1), word(2));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// One test environment of a request: where and on what the test runs.
///
/// `Debug` shows secret names, never their values.
#[derive(Clone, Default)]
pub struct Environment {
    arch: String,
    compose: Option<String>,
    pool: Option<String>,
    hardware: Option<Value>,
    kickstart: BTreeMap<String, String>,
    variables: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    artifacts: Vec<Value>,
    tags: BTreeMap<String, String>,
    ingress: Vec<Value>,
    skip_guest_setup: bool,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("arch", &self.arch)
            .field("compose", &self.compose)
            .field("pool", &self.pool)
            .field("hardware", &self.hardware)
            .field("kickstart", &self.kickstart)
            .field("variables", &self.variables)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("artifacts", &self.artifacts)
            .field("tags", &self.tags)
            .field("ingress", &self.ingress)
            .field("skip_guest_setup", &self.skip_guest_setup)
            .finish()
    }
}

impl Environment {
    /// An environment on `arch` (`x86_64`, `aarch64`, `s390x`, `ppc64le`).
    pub fn new(arch: impl Into<String>) -> Self {
        Self {
            arch: arch.into(),
            ..Self::default()
        }
    }

    /// `os.compose`.
    pub fn compose(mut self, compose: impl Into<String>) -> Self {
        self.compose = Some(compose.into());
        self
    }

    /// `pool` (Testing Farm picks one when unset).
    pub fn pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = Some(pool.into());
        self
    }

    /// `hardware`: a tmt hardware-requirement tree, e.g. `{"memory": ">= 8 GiB"}`.
    pub fn hardware(mut self, hardware: Value) -> Self {
        self.hardware = Some(hardware);
        self
    }

    /// One `kickstart` key (`pre-install`, `post-install`, `script`, `metadata`, …).
    pub fn kickstart(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.kickstart.insert(key.into(), value.into());
        self
    }

    /// One environment variable (visible through the API).
    pub fn variable(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.insert(key.into(), value.into());
        self
    }

    /// One secret (not returned by the API, never shown by `Debug`).
    pub fn secret(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.secrets.insert(key.into(), value.into());
        self
    }

    /// One artifact to install, e.g. `{"type": "fedora-koji-build", "id": "123"}`.
    pub fn artifact(mut self, artifact: Value) -> Self {
        self.artifacts.push(artifact);
        self
    }

    /// One provisioning tag (`settings.provisioning.tags`).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// An ingress rule allowing everything from `cidr` (needed on the public ranch so that
    /// the client can reach the guest).
    pub fn ingress_from(mut self, cidr: impl Into<String>) -> Self {
        self.ingress.push(json!({
            "type": "ingress", "protocol": "-1", "cidr": cidr.into(),
            "port_min": 0, "port_max": 65535
        }));
        self
    }

    /// `settings.pipeline.skip_guest_setup`.
    pub fn skip_guest_setup(mut self, skip: bool) -> Self {
        self.skip_guest_setup = skip;
        self
    }

    fn to_json(&self, marker: &str) -> Value {
        let mut env = Map::new();
        env.insert("arch".into(), json!(self.arch));
        if let Some(c) = &self.compose {
            env.insert("os".into(), json!({ "compose": c }));
        }
        if let Some(p) = &self.pool {
            env.insert("pool".into(), json!(p));
        }
        if let Some(h) = &self.hardware {
            env.insert("hardware".into(), h.clone());
        }
        if !self.kickstart.is_empty() {
            env.insert("kickstart".into(), json!(self.kickstart));
        }
        let mut variables = self.variables.clone();
        variables.insert(MARKER_VARIABLE.into(), marker.into());
        env.insert("variables".into(), json!(variables));
        if !self.secrets.is_empty() {
            env.insert("secrets".into(), json!(self.secrets));
        }
        if !self.artifacts.is_empty() {
            env.insert("artifacts".into(), Value::Array(self.artifacts.clone()));
        }
        let mut settings = Map::new();
        let mut provisioning = Map::new();
        if !self.tags.is_empty() {
            provisioning.insert("tags".into(), json!(self.tags));
        }
        if !self.ingress.is_empty() {
            provisioning.insert(
                "security_group_rules_ingress".into(),
                Value::Array(self.ingress.clone()),
            );
        }
        if !provisioning.is_empty() {
            settings.insert("provisioning".into(), Value::Object(provisioning));
        }
        if self.skip_guest_setup {
            settings.insert("pipeline".into(), json!({"skip_guest_setup": true}));
        }
        if !settings.is_empty() {
            env.insert("settings".into(), Value::Object(settings));
        }
        Value::Object(env)
    }
}

/// A request to submit with [`Client::create`](super::Client::create).
///
/// Every request carries a random idempotency marker (in each environment's
/// [`MARKER_VARIABLE`]) so that the client can recognise it after a lost reply.
#[derive(Debug, Clone)]
pub struct NewRequest {
    test: Value,
    environments: Vec<Environment>,
    timeout_minutes: Option<u32>,
    marker: String,
}

impl NewRequest {
    /// A request running the FMF (tmt) plan or test `name` from git `url` at `git_ref`.
    pub fn fmf(
        url: impl Into<String>,
        git_ref: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            test: json!({"fmf": {"url": url.into(), "ref": git_ref.into(), "path": ".",
                                 "name": name.into()}}),
            environments: Vec::new(),
            timeout_minutes: None,
            marker: new_marker(),
        }
    }

    /// Upstream's reservation request: the reserve test on `compose`/`arch`, not on a spot
    /// instance (`ArtemisUseSpot: "false"`). Add the SSH key secret
    /// (`TF_RESERVATION_AUTHORIZED_KEYS_BASE64`) with [`Environment::secret`] through
    /// [`map_environments`](Self::map_environments) or build the environment yourself.
    pub fn reserve(compose: impl Into<String>, arch: impl Into<String>) -> Self {
        Self::fmf(RESERVE_TEST_URL, RESERVE_TEST_REF, RESERVE_TEST_NAME).environment(
            Environment::new(arch)
                .compose(compose)
                .tag("ArtemisUseSpot", "false"),
        )
    }

    /// Adds an environment.
    pub fn environment(mut self, env: Environment) -> Self {
        self.environments.push(env);
        self
    }

    /// Changes every environment.
    pub fn map_environments(mut self, f: impl Fn(Environment) -> Environment) -> Self {
        self.environments = self.environments.into_iter().map(f).collect();
        self
    }

    /// `settings.pipeline.timeout` in minutes (counted from `running`).
    pub fn timeout_minutes(mut self, minutes: u32) -> Self {
        self.timeout_minutes = Some(minutes);
        self
    }

    /// Uses a given marker instead of a random one (e.g. one already written to a journal).
    pub fn with_marker(mut self, marker: impl Into<String>) -> Self {
        self.marker = marker.into();
        self
    }

    /// The idempotency marker.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// The JSON body.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("test".into(), self.test.clone());
        body.insert(
            "environments".into(),
            Value::Array(
                self.environments
                    .iter()
                    .map(|e| e.to_json(&self.marker))
                    .collect(),
            ),
        );
        if let Some(t) = self.timeout_minutes {
            body.insert("settings".into(), json!({"pipeline": {"timeout": t}}));
        }
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_body_has_the_documented_shape() {
        let req = NewRequest::reserve("CentOS-Stream-9", "x86_64")
            .map_environments(|e| {
                e.secret("TF_RESERVATION_AUTHORIZED_KEYS_BASE64", "a2V5")
                    .pool("p1")
                    .ingress_from("203.0.113.7/32")
                    .skip_guest_setup(true)
            })
            .timeout_minutes(720)
            .with_marker("m-1");
        let body = req.to_json();
        assert_eq!(body["test"]["fmf"]["name"], "/testing-farm/reserve");
        assert_eq!(body["test"]["fmf"]["path"], ".");
        let env = &body["environments"][0];
        assert_eq!(env["arch"], "x86_64");
        assert_eq!(env["os"]["compose"], "CentOS-Stream-9");
        assert_eq!(env["pool"], "p1");
        assert_eq!(env["variables"][MARKER_VARIABLE], "m-1");
        assert_eq!(
            env["secrets"]["TF_RESERVATION_AUTHORIZED_KEYS_BASE64"],
            "a2V5"
        );
        assert_eq!(
            env["settings"]["provisioning"]["tags"]["ArtemisUseSpot"],
            "false"
        );
        assert_eq!(
            env["settings"]["provisioning"]["security_group_rules_ingress"][0]["cidr"],
            "203.0.113.7/32"
        );
        assert_eq!(env["settings"]["pipeline"]["skip_guest_setup"], true);
        assert_eq!(body["settings"]["pipeline"]["timeout"], 720);
        let debug = format!("{req:?}");
        assert!(!debug.contains("a2V5"), "{debug}");
        assert!(debug.contains("TF_RESERVATION_AUTHORIZED_KEYS_BASE64"));
    }

    #[test]
    fn markers_are_unique() {
        let set: std::collections::HashSet<String> = (0..1000).map(|_| new_marker()).collect();
        assert_eq!(set.len(), 1000);
        assert_eq!(new_marker().len(), 36);
    }
}
