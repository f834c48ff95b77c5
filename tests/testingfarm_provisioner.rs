//! The Testing Farm provisioner against the fake Testing Farm, whose guest is a real sshd
//! on port 22 of a network-namespace host: the conformance suite, the request it sends,
//! fault modes and cancellation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use atex::connection::{CommandSpec, ConnectionExt};
use atex::provisioner::testingfarm::TestingFarmProvisioner;
use atex::provisioner::{Count, Provisioner};
use atex::scope::{Scope, ShutdownOptions};
use atex::testing::conformance::provisioner::{self, ProvisionerTarget};
use atex::testing::conformance::remote;
use atex::testingfarm::{Client, ClientBuilder, Journal, RetryPolicy};
use base64::Engine as _;
use hyper::Method;
use support::fake_tf::{FakeConfig, FakeTf, Fault, FaultKind, Guest, Script, TOKEN, TOKEN_REDHAT};
use support::sshd::NetnsHost;

/// The fake Testing Farm, its guest, and a directory for journals.
struct Lab {
    fake: FakeTf,
    host: NetnsHost,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        let host = NetnsHost::start();
        let fake = FakeTf::start_with(FakeConfig {
            guests: vec![Guest {
                user: "root".into(),
                host: host.ip.clone(),
            }],
            authorized_keys: Some(host.files.dir.path().join("authorized_keys.root")),
            // Real minutes: no request times out during a test.
            minute: Duration::from_secs(60),
            ..FakeConfig::default()
        });
        Self {
            fake,
            host,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn client(&self, token: &str) -> Client {
        ClientBuilder::new()
            .url(self.fake.url())
            .token(token)
            .retry(RetryPolicy {
                max_retries: 5,
                backoff_factor: Duration::from_millis(20),
                backoff_max: Duration::from_millis(100),
                retry_after_max: Duration::from_secs(2),
            })
            .request_timeout(Duration::from_secs(5))
            .poll_interval(Duration::from_millis(50))
            .build()
            .unwrap()
    }

    fn journal(&self) -> std::path::PathBuf {
        self.dir.path().join("journal")
    }

    fn builder(
        &self,
        compose: &str,
    ) -> atex::provisioner::testingfarm::TestingFarmProvisionerBuilder {
        TestingFarmProvisioner::builder(self.client(TOKEN_REDHAT), compose)
            .journal(self.journal())
            .probe_interval(Duration::from_millis(100))
            .ready_timeout(Duration::from_secs(30))
    }

    /// Nothing alive, nothing orphaned, nothing outstanding in the journal.
    fn assert_clean(&self) {
        assert!(
            self.fake.alive().is_empty(),
            "alive: {:?}",
            self.fake.alive()
        );
        assert!(
            self.fake.orphans().is_empty(),
            "orphans: {:?}",
            self.fake.orphans()
        );
        let left = Journal::new(self.journal()).outstanding().unwrap();
        assert!(left.is_empty(), "journal: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_farm_provisioner_conforms() {
    let lab = Arc::new(Lab::new());
    let scope = Scope::root("t");
    let (a, b) = (lab.clone(), lab.clone());
    let target = ProvisionerTarget::new(
        move || Arc::new(a.builder("CentOS-Stream-9").max_remotes(3).build()),
        &scope,
    )
    .limited(move || Arc::new(b.builder("CentOS-Stream-9").max_remotes(1).build()))
    .capacity(3)
    .deadline(Duration::from_secs(90));
    provisioner::all(&target).await.assert_passed();
    remote::all(&target).await.assert_passed();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    lab.assert_clean();
    let requests = lab.fake.requests();
    assert!(requests.len() >= 10, "{} requests", requests.len());
    for r in &requests {
        assert_eq!(
            r.delete_count, 1,
            "request {} deleted {} times",
            r.id, r.delete_count
        );
    }
    assert!(lab.fake.peak_alive(TOKEN_REDHAT) <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_carries_our_key_and_settings_and_release_cancels_it() {
    let lab = Lab::new();
    let scope = Scope::root("t");
    // The public ranch: an ingress rule for the given source address.
    let tf = TestingFarmProvisioner::builder(lab.client(TOKEN), "Fedora-42")
        .arch("aarch64")
        .pool("pool-7")
        .hardware(serde_json::json!({"memory": ">= 8 GiB"}))
        .timeout_minutes(90)
        .source_host("203.0.113.7/32")
        .journal(lab.journal())
        .probe_interval(Duration::from_millis(100))
        .build();
    tf.start(&scope).await.unwrap();
    tf.provision(Count::N(1)).unwrap();
    let remote = tf.get_remote().await.unwrap();
    let out = remote
        .output(
            CommandSpec::new(["sh", "-c", "id -un; hostname -I"]),
            &scope,
        )
        .await
        .unwrap();
    let text = out.stdout_lossy();
    assert!(text.starts_with("root\n"), "{text}");
    assert!(text.contains(&lab.host.ip), "{text}");
    let requests = lab.fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert!(remote.describe().contains(&r.id), "{}", remote.describe());
    let env = &r.body["environments"][0];
    assert_eq!(env["arch"], "aarch64");
    assert_eq!(env["os"]["compose"], "Fedora-42");
    assert_eq!(env["pool"], "pool-7");
    assert_eq!(env["hardware"]["memory"], ">= 8 GiB");
    assert_eq!(r.body["settings"]["pipeline"]["timeout"], 90);
    assert_eq!(
        env["settings"]["provisioning"]["security_group_rules_ingress"][0]["cidr"],
        "203.0.113.7/32"
    );
    assert_eq!(
        env["settings"]["provisioning"]["tags"]["ArtemisUseSpot"],
        "false"
    );
    // One key line, comment replaced, and it is the key we log in with.
    let secret = env["secrets"]["TF_RESERVATION_AUTHORIZED_KEYS_BASE64"]
        .as_str()
        .unwrap();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(secret)
            .unwrap(),
    )
    .unwrap();
    assert!(
        decoded.starts_with("ssh-ed25519 ") && decoded.ends_with(" foo@bar\n"),
        "{decoded}"
    );
    let key = tf.private_key().unwrap();
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    assert_eq!(public, decoded);
    // The journal holds the request while it lives.
    let outstanding = Journal::new(lab.journal()).outstanding().unwrap();
    assert_eq!(outstanding.requests, vec![r.id.clone()]);
    remote.release().await.unwrap();
    let r = lab.fake.request(&r.id).unwrap();
    assert_eq!(r.delete_count, 1);
    lab.assert_clean();
    tf.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    // The generated key is gone with the provisioner.
    drop(tf);
    assert!(!key.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_api_failures_are_retried_without_duplicate_reservations() {
    let lab = Lab::new();
    let scope = Scope::root("t");
    let post = |kind| Fault::new(Some(Method::POST), "/v0.1/requests", kind).times(1);
    lab.fake
        .add_fault(Fault::html(Method::POST, "/v0.1/requests", 503).times(1));
    lab.fake
        .add_fault(Fault::too_many(Method::POST, "/v0.1/requests", Some("1")).times(1));
    lab.fake.add_fault(post(FaultKind::CommitThenDrop));
    lab.fake
        .add_fault(Fault::html(Method::GET, "/v0.1/requests/*", 502).times(2));
    lab.fake
        .add_fault(Fault::status(Method::DELETE, "/v0.1/requests/*", 500).times(2));
    let tf = lab.builder("CentOS-Stream-9").max_retries(0).build();
    tf.start(&scope).await.unwrap();
    tf.provision(Count::N(1)).unwrap();
    let remote = tf.get_remote().await.unwrap();
    remote
        .check(CommandSpec::new(["true"]), &scope)
        .await
        .unwrap();
    remote.release().await.unwrap();
    tf.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    assert_eq!(
        lab.fake.requests().len(),
        1,
        "a duplicate reservation was made"
    );
    let delete_statuses: Vec<_> = lab
        .fake
        .calls_to("DELETE", "/v0.1/requests/*")
        .iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(delete_statuses, [Some(500), Some(500), Some(200)]);
    lab.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_fails_is_cancelled_and_replaced() {
    let lab = Lab::new();
    let scope = Scope::root("t");
    lab.fake
        .set_script(Script::error_from("queued", Duration::from_millis(200)));
    let tf = lab.builder("CentOS-Stream-9").max_retries(3).build();
    tf.start(&scope).await.unwrap();
    tf.provision(Count::N(1)).unwrap();
    lab.fake
        .wait_until("a first request", Duration::from_secs(20), |rs| {
            !rs.is_empty()
        });
    lab.fake.set_script(Script::reservation());
    let remote = tf.get_remote().await.unwrap();
    remote
        .check(CommandSpec::new(["true"]), &scope)
        .await
        .unwrap();
    let requests = lab.fake.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].state, "error");
    tf.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    lab.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_out_with_a_clear_error() {
    let lab = Lab::new();
    let scope = Scope::root("t");
    lab.fake
        .set_script(Script::error_from("running", Duration::from_millis(100)));
    let tf = lab.builder("CentOS-Stream-9").max_retries(2).build();
    tf.start(&scope).await.unwrap();
    tf.provision(Count::N(1)).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), tf.get_remote())
        .await
        .expect("get_remote hung")
        .unwrap_err();
    let text = format!("{:#}", atex::error::chain(&err));
    assert!(text.contains("ended with state 'error'"), "{text}");
    assert!(text.contains("Guest provisioning failed"), "{text}");
    assert_eq!(lab.fake.requests().len(), 3);
    tf.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    lab.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_never_ready_times_out_and_cancels() {
    for script in [
        Script::guest_never_ready(),
        Script::tests_never_start(),
        Script::keys_never_installed(),
        Script::stuck_queued(),
    ] {
        let lab = Lab::new();
        let scope = Scope::root("t");
        lab.fake.set_script(script.clone());
        let tf = lab
            .builder("CentOS-Stream-9")
            .ready_timeout(Duration::from_secs(2))
            .max_retries(0)
            .build();
        tf.start(&scope).await.unwrap();
        tf.provision(Count::N(1)).unwrap();
        let err = tokio::time::timeout(Duration::from_secs(30), tf.get_remote())
            .await
            .expect("get_remote hung")
            .unwrap_err();
        let text = format!("{:#}", atex::error::chain(&err));
        assert!(
            text.contains("no usable guest within 2s"),
            "{script:?}: {text}"
        );
        tf.stop().await.unwrap();
        assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
        assert_eq!(lab.fake.requests().len(), 1);
        lab.assert_clean();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_fails_the_provisioner_at_once() {
    let lab = Lab::new();
    let scope = Scope::root("t");
    let tf = lab.builder("No-Such-Compose").build();
    tf.start(&scope).await.unwrap();
    tf.provision(Count::N(2)).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), tf.get_remote())
        .await
        .expect("get_remote hung")
        .unwrap_err();
    let text = format!("{:#}", atex::error::chain(&err));
    assert!(text.contains("HTTP 400"), "{text}");
    assert!(text.contains("No-Such-Compose"), "{text}");
    // No retry of a refusal; later calls fail too.
    assert!(tf.get_remote().await.is_err());
    assert!(lab.fake.requests().is_empty());
    // One POST per requested machine at most: a refusal is never retried. Whether the
    // second creation posted before the first refusal failed the provisioner is timing.
    let posts = lab.fake.calls_to("POST", "/v0.1/requests").len();
    assert!((1..=2).contains(&posts), "{posts} POSTs");
    tf.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    lab.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_while_the_create_is_in_flight_still_cancels() {
    let lab = Lab::new();
    let scope = Scope::root("t");
    // The create is committed at once, its reply comes 2 s later.
    lab.fake.add_fault(
        Fault::new(
            Some(Method::POST),
            "/v0.1/requests",
            FaultKind::Delay(Duration::from_secs(2)),
        )
        .times(1),
    );
    let tf = lab.builder("CentOS-Stream-9").build();
    tf.start(&scope).await.unwrap();
    tf.provision(Count::N(1)).unwrap();
    lab.fake
        .wait_until("the create", Duration::from_secs(20), |rs| !rs.is_empty());
    scope.cancel();
    tf.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    let r = &lab.fake.requests()[0];
    assert_eq!(r.delete_count, 1, "{r:?}");
    lab.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_reply_is_lost_is_found_and_cancelled_when_cancelled() {
    let lab = Lab::new();
    let scope = Scope::root("t");
    // Committed, then the connection hangs until the client's limit (5 s): cancel meanwhile.
    lab.fake.add_fault(
        Fault::new(
            Some(Method::POST),
            "/v0.1/requests",
            FaultKind::Delay(Duration::from_secs(3600)),
        )
        .times(1),
    );
    let tf = lab.builder("CentOS-Stream-9").build();
    tf.start(&scope).await.unwrap();
    tf.provision(Count::N(1)).unwrap();
    lab.fake
        .wait_until("the create", Duration::from_secs(20), |rs| !rs.is_empty());
    scope.cancel();
    tf.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    assert_eq!(lab.fake.requests().len(), 1);
    lab.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_create_reply_and_an_external_cancel_end_well() {
    let lab = Lab::new();
    let scope = Scope::root("t");
    // The first create is committed but answered with text/plain; its request is then
    // cancelled by Testing Farm itself.
    lab.fake.add_fault(
        Fault::new(Some(Method::POST), "/v0.1/requests", FaultKind::NonJson200).times(1),
    );
    lab.fake
        .set_script(Script::externally_cancelled(Duration::from_millis(300)));
    let tf = lab.builder("CentOS-Stream-9").max_retries(2).build();
    tf.start(&scope).await.unwrap();
    tf.provision(Count::N(1)).unwrap();
    lab.fake
        .wait_until("a first request", Duration::from_secs(20), |rs| {
            !rs.is_empty()
        });
    lab.fake.set_script(Script::reservation());
    let remote = tokio::time::timeout(Duration::from_secs(60), tf.get_remote())
        .await
        .expect("get_remote hung")
        .unwrap();
    remote
        .check(CommandSpec::new(["true"]), &scope)
        .await
        .unwrap();
    let requests = lab.fake.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        matches!(requests[0].state.as_str(), "cancel-requested" | "canceled"),
        "{}",
        requests[0].state
    );
    tf.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    lab.assert_clean();
}
