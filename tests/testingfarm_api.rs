//! The Testing Farm API client against the fake Testing Farm: every endpoint, every fault
//! mode, token redaction, cancellation, the request journal, and a real sshd as the guest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atex::scope::Scope;
use atex::testingfarm::{
    CancelOutcome, Client, ClientBuilder, Journal, LineBuffer, LogChunk, MARKER_VARIABLE,
    NewRequest, PipelineLog, RetryPolicy, SearchQuery, State, TfError, Timestamp, cleanup,
};
use hyper::Method;
use support::fake_tf::{
    FakeConfig, FakeTf, Fault, FaultKind, Script, TOKEN, TOKEN_EXPIRED, TOKEN_REDHAT,
};

/// Fast retries so that fault tests take milliseconds.
fn fast_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        backoff_factor: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        retry_after_max: Duration::from_secs(5),
    }
}

fn builder(fake: &FakeTf, token: &str) -> ClientBuilder {
    ClientBuilder::new()
        .url(fake.url())
        .token(token)
        .retry(fast_retry(5))
        .request_timeout(Duration::from_secs(5))
        .poll_interval(Duration::from_millis(50))
}

fn client(fake: &FakeTf) -> Client {
    builder(fake, TOKEN).build().unwrap()
}

fn reserve() -> NewRequest {
    NewRequest::reserve("Fedora-42", "x86_64")
}

/// Bounds a future: a hang fails the test instead of blocking it.
async fn bounded<F: std::future::Future>(limit: Duration, fut: F) -> F::Output {
    tokio::time::timeout(limit, fut)
        .await
        .expect("call did not finish within its bound")
}

async fn wait_running(c: &Client, id: &str) -> atex::testingfarm::Request {
    let scope = Scope::root("wait");
    let mut r = c.request(id);
    bounded(
        Duration::from_secs(20),
        r.wait_for_state(&[State::Running], &scope),
    )
    .await
    .unwrap();
    r
}

#[tokio::test]
async fn whoami_is_cached_and_needs_a_valid_token() {
    let fake = FakeTf::start();
    let c = client(&fake);
    let me = c.whoami().await.unwrap();
    assert_eq!(me.ranch(), "public");
    assert_eq!(me.token_id(), "8c1f7d4e-5a0b-4c7e-9a55-2f3f7d0b9e11");
    assert_eq!(me.user_id(), "0b7a6f2c-1e2d-4c3b-8a9f-7e6d5c4b3a21");
    assert_eq!(me.user_name(), Some("jdoe"));
    c.clone().whoami().await.unwrap();
    assert_eq!(fake.calls_to("GET", "/v0.1/whoami").len(), 1, "cached");

    let anonymous = ClientBuilder::new().url(fake.url()).build().unwrap();
    let e = anonymous.whoami().await.unwrap_err();
    assert!(matches!(e, TfError::NoToken { .. }), "{e}");
    assert!(e.to_string().contains("TESTING_FARM_API_TOKEN"), "{e}");
    assert_eq!(
        fake.calls_to("GET", "/v0.1/whoami").len(),
        1,
        "nothing sent"
    );

    let expired = builder(&fake, TOKEN_EXPIRED).build().unwrap();
    let e = expired.whoami().await.unwrap_err();
    assert!(matches!(e, TfError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("Token has expired"), "{e}");
    assert!(e.to_string().contains("GET /v0.1/whoami"), "{e}");
}

#[tokio::test]
async fn about_and_composes() {
    let fake = FakeTf::start();
    let c = client(&fake);
    assert_eq!(c.about().await.unwrap()["app_version"], "fake");
    let public = c.composes(None).await.unwrap();
    assert!(public.iter().any(|x| x.name == "Fedora-42" && x.is_name()));
    assert!(public.iter().any(|x| x.kind == "regex"));
    // The ranch came from whoami.
    assert_eq!(fake.calls_to("GET", "/v0.1/whoami").len(), 1);
    let redhat = c.composes(Some("redhat")).await.unwrap();
    assert!(redhat.iter().any(|x| x.name == "RHEL-9.6.0-Nightly"));
    // Composes need no token and get none.
    assert!(
        fake.calls_to("GET", "/v0.2/composes/*")
            .iter()
            .all(|c| !c.auth)
    );
    let e = c.composes(Some("../v0.1/whoami")).await.unwrap_err();
    assert!(e.to_string().contains("not a ranch name"), "{e}");
    let e = c.composes(Some("nosuch")).await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
}

#[tokio::test]
async fn create_get_wait_cancel_round_trip() {
    let fake = FakeTf::start();
    let c = client(&fake);
    let req = reserve().timeout_minutes(60);
    let mut r = c.create(&req).await.unwrap();
    let rec = fake.request(r.id()).unwrap();
    assert_eq!(
        rec.body["environments"][0]["variables"][MARKER_VARIABLE],
        req.marker()
    );
    assert_eq!(rec.body["settings"]["pipeline"]["timeout"], 60);
    assert_eq!(r.state(), Some(&State::New));

    let got = c.get(r.id()).await.unwrap();
    assert_eq!(got.info().unwrap().id(), r.id());
    let scope = Scope::root("t");
    let state = bounded(
        Duration::from_secs(20),
        r.wait_for_state(&[State::Running], &scope),
    )
    .await
    .unwrap();
    assert_eq!(state, State::Running);
    let artifacts = r.info().unwrap().artifacts_url().unwrap().to_string();
    assert_eq!(artifacts, format!("{}/artifacts/{}", fake.url(), r.id()));
    assert_eq!(r.info().unwrap().platforms(), ["Fedora-42@x86_64"]);

    assert!(matches!(
        r.cancel().await.unwrap(),
        CancelOutcome::Requested {
            state: Some(State::CancelRequested)
        }
    ));
    assert_eq!(r.state(), Some(&State::CancelRequested));
    // A repeated cancel is not an error.
    assert_eq!(r.cancel().await.unwrap(), CancelOutcome::AlreadyCancelled);
    assert!(fake.alive().is_empty());
    fake.wait_until("canceled", Duration::from_secs(10), |rs| {
        rs[0].state == "canceled"
    });
    let rec = fake.request(r.id()).unwrap();
    assert_eq!(rec.delete_count, 2);
    let states: Vec<&str> = rec.history.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        states,
        ["new", "queued", "running", "cancel-requested", "canceled"]
    );
    let e = c
        .get("00000000-0000-4000-8000-00000000dead")
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = c.get("../whoami").await.unwrap_err();
    assert!(e.to_string().contains("not a request id"), "{e}");
}

#[tokio::test]
async fn request_handle_polls_at_most_every_interval() {
    let fake = FakeTf::start();
    fake.set_script(Script::stuck_queued());
    let c = builder(&fake, TOKEN)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut r = c.create(&reserve()).await.unwrap();
    for _ in 0..20 {
        r.refresh_if_stale().await.unwrap();
        r.assert_alive().await.unwrap();
    }
    assert_eq!(
        fake.request(r.id()).unwrap().polls,
        0,
        "the create reply is fresh"
    );
    r.set_poll_interval(Duration::ZERO);
    r.assert_alive().await.unwrap();
    assert_eq!(fake.request(r.id()).unwrap().polls, 1);
    r.cancel().await.unwrap();
}

#[tokio::test]
async fn cancel_outcomes_follow_the_api_table() {
    let fake = FakeTf::start();
    fake.set_script(Script::manual());
    let c = client(&fake);
    assert_eq!(
        c.cancel("00000000-0000-4000-8000-00000000beef")
            .await
            .unwrap(),
        CancelOutcome::NotFound
    );
    let done = c.create(&reserve()).await.unwrap();
    fake.set_state(done.id(), "complete");
    assert_eq!(
        c.cancel(done.id()).await.unwrap(),
        CancelOutcome::AlreadyFinished
    );
    let theirs = builder(&fake, TOKEN_REDHAT)
        .build()
        .unwrap()
        .create(&NewRequest::reserve("RHEL-9.6.0-Nightly", "aarch64"))
        .await
        .unwrap();
    let e = c.cancel(theirs.id()).await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("DELETE /v0.1/requests/{}", theirs.id())),
        "{e}"
    );
    let anonymous = ClientBuilder::new().url(fake.url()).build().unwrap();
    assert!(matches!(
        anonymous.cancel(theirs.id()).await.unwrap_err(),
        TfError::NoToken { .. }
    ));
}

#[tokio::test]
async fn search_by_state_time_window_and_owner() {
    let fake = FakeTf::start();
    let c = client(&fake);
    let rh = builder(&fake, TOKEN_REDHAT).build().unwrap();
    let before = Timestamp::now();
    let a = c.create(&reserve()).await.unwrap();
    let b = c.create(&reserve()).await.unwrap();
    let x = rh
        .create(&NewRequest::reserve("RHEL-9.6.0-Nightly", "x86_64"))
        .await
        .unwrap();
    for id in [a.id(), b.id(), x.id()] {
        wait_running(&c, id).await;
    }
    fake.reset_calls();

    let mine = c
        .search(&SearchQuery::mine().states([State::Running]))
        .await
        .unwrap();
    let ids: Vec<&str> = mine.iter().map(|r| r.id()).collect();
    assert_eq!(ids, [a.id(), b.id()], "oldest first, only mine");
    let all = c.search(&SearchQuery::new()).await.unwrap();
    assert_eq!(all.len(), 3);
    // One call per state; "not mine" searches carry no token.
    let calls = fake.calls_to("GET", "/v0.1/requests");
    assert_eq!(calls.len(), 1 + 3);
    assert!(calls[0].auth && calls[0].query.contains("token_id="));
    assert!(calls[1..].iter().all(|c| !c.auth));

    // Time windows: 3 hours in pages of one hour, naive UTC bounds, no duplicates.
    fake.reset_calls();
    let windowed = c
        .search(
            &SearchQuery::new()
                .states([State::Running])
                .created_after(before.minus(Duration::from_secs(3 * 3600 - 1)))
                .page(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert_eq!(windowed.len(), 3);
    let calls = fake.calls_to("GET", "/v0.1/requests");
    assert_eq!(calls.len(), 3, "{calls:#?}");
    assert!(
        calls
            .iter()
            .all(|c| !c.query.contains("%2B") && !c.query.contains('Z'))
    );
    let future = c
        .search(&SearchQuery::new().created_after(Timestamp::now().plus(Duration::from_secs(60))))
        .await
        .unwrap();
    assert!(future.is_empty());
    let old = c
        .search(
            &SearchQuery::new()
                .states(State::ALL)
                .created_before(before.minus(Duration::from_secs(1))),
        )
        .await
        .unwrap();
    assert!(old.is_empty());
    let rh_only = c.search(&SearchQuery::new().ranch("redhat")).await.unwrap();
    assert_eq!(rh_only.len(), 1);
    assert_eq!(rh_only[0].id(), x.id());
    for id in [a.id(), b.id()] {
        c.cancel(id).await.unwrap();
    }
    rh.cancel(x.id()).await.unwrap();
    assert!(fake.alive().is_empty());
}

#[tokio::test]
async fn pipeline_log_is_read_incrementally_with_range() {
    let fake = FakeTf::start();
    let c = client(&fake);
    let r = c.create(&reserve()).await.unwrap();
    let r = wait_running(&c, r.id()).await;
    let mut log = r.pipeline_log().unwrap();
    assert!(bounded(Duration::from_secs(5), log.exists()).await.unwrap());
    // Wait for the whole scripted log (the last line is "execute task #1").
    let mut text = String::new();
    let mut lines = LineBuffer::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    while !text.contains("execute task #1") {
        assert!(Instant::now() < deadline, "log so far: {text}");
        if let LogChunk::Data(d) = log.read_new().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&d));
            all.extend(lines.push(&d));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        all.iter()
            .any(|l| l.contains("] Guest is ready: ArtemisGuest(")
                && l.contains("root@127.0.0.1, arch=x86_64"))
    );
    assert_eq!(log.offset(), text.len() as u64);
    assert_eq!(log.read_new().await.unwrap(), LogChunk::Nothing);
    let last = fake.calls_to("GET", "/artifacts/*").pop().unwrap();
    assert_eq!(
        last.range.as_deref(),
        Some(&*format!("bytes={}-", text.len()))
    );
    assert_eq!(last.status, Some(416));
    assert!(!last.auth, "the artifacts server gets no token");

    fake.append_log(r.id(), "one more line");
    assert_eq!(
        log.read_new().await.unwrap(),
        LogChunk::Data(b"one more line\n".to_vec())
    );
    assert_eq!(
        fake.calls_to("GET", "/artifacts/*").pop().unwrap().status,
        Some(206)
    );
    // Resuming elsewhere from an offset reads only what follows.
    fake.append_log(r.id(), "after resume");
    let mut resumed =
        PipelineLog::new(&c, r.info().unwrap().artifacts_url().unwrap()).resume_at(log.offset());
    assert_eq!(
        resumed.read_new().await.unwrap(),
        LogChunk::Data(b"after resume\n".to_vec())
    );
    // A server that ignores Range: the already-read part is skipped.
    fake.configure(|c| c.ignore_range = true);
    fake.append_log(r.id(), "no range");
    assert_eq!(
        log.read_new().await.unwrap(),
        LogChunk::Data(b"after resume\nno range\n".to_vec())
    );
    assert_eq!(log.read_new().await.unwrap(), LogChunk::Nothing);
    c.cancel(r.id()).await.unwrap();
}

#[tokio::test]
async fn pipeline_log_race_reports_not_yet() {
    let fake = FakeTf::start_with(FakeConfig {
        log_race: Duration::from_secs(3600),
        log_race_status: 403,
        ..FakeConfig::default()
    });
    let c = client(&fake);
    let r = c.create(&reserve()).await.unwrap();
    let r = wait_running(&c, r.id()).await;
    let mut log = r.pipeline_log().unwrap();
    assert!(!log.exists().await.unwrap());
    assert_eq!(log.read_new().await.unwrap(), LogChunk::NotYet);
    fake.configure(|c| c.log_race = Duration::ZERO);
    assert!(log.exists().await.unwrap());
    assert!(matches!(log.read_new().await.unwrap(), LogChunk::Data(_)));
    c.cancel(r.id()).await.unwrap();
}

#[tokio::test]
async fn a_request_that_errors_is_gone_with_its_note() {
    for from in ["new", "queued", "running"] {
        let fake = FakeTf::start();
        fake.set_script(Script::error_from(from, Duration::from_millis(100)));
        let c = client(&fake);
        let mut r = c.create(&reserve()).await.unwrap();
        let scope = Scope::root("t");
        let e = bounded(
            Duration::from_secs(20),
            r.wait_for_state(&[State::Complete], &scope),
        )
        .await
        .unwrap_err();
        match &e {
            TfError::Gone { id, state, note } => {
                assert_eq!(id, r.id());
                assert_eq!(state, &State::Error);
                assert_eq!(note.as_deref(), Some("Guest provisioning failed"));
            }
            other => panic!("{from}: {other}"),
        }
        assert!(e.to_string().contains("ended with state 'error'"), "{e}");
        assert!(r.assert_alive().await.is_err());
        // Cancelling a finished request is harmless.
        assert_eq!(r.cancel().await.unwrap(), CancelOutcome::AlreadyFinished);
    }
}

#[tokio::test]
async fn an_externally_cancelled_request_is_gone() {
    let fake = FakeTf::start();
    fake.set_script(Script::externally_cancelled(Duration::from_millis(100)));
    let c = client(&fake);
    let mut r = c.create(&reserve()).await.unwrap();
    let scope = Scope::root("t");
    let e = bounded(
        Duration::from_secs(20),
        r.wait_for_state(&[State::Complete], &scope),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, TfError::Gone { state, .. } if matches!(state, State::Canceled | State::CancelRequested)),
        "{e}"
    );
    let log = fake.request(r.id()).unwrap().log;
    assert!(
        log.contains("[testing-farm-request] Cancelling pipeline"),
        "{log}"
    );
}

#[tokio::test]
async fn pipeline_timeout_ends_the_request_in_error() {
    let fake = FakeTf::start_with(FakeConfig {
        minute: Duration::from_millis(200),
        ..FakeConfig::default()
    });
    let c = client(&fake);
    let mut r = c.create(&reserve().timeout_minutes(1)).await.unwrap();
    let scope = Scope::root("t");
    let e = bounded(
        Duration::from_secs(20),
        r.wait_for_state(&[State::Complete], &scope),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("ended with state 'error': Pipeline timeout"),
        "{e}"
    );
}

#[tokio::test]
async fn scope_cancellation_interrupts_a_wait_and_cancel_still_works() {
    let fake = FakeTf::start();
    fake.set_script(Script::stuck_queued());
    let scope = Scope::root("t");
    let c = client(&fake).with_scope(&scope);
    let mut r = c.create(&reserve()).await.unwrap();
    let id = r.id().to_string();
    let waiter = scope.spawn("wait", async move {
        let res = r
            .wait_for_state(&[State::Running], &Scope::root("inner"))
            .await;
        (res, r)
    });
    // The waiter watches only its own scope: cancel through the client's scope token.
    fake.wait_until("queued", Duration::from_secs(10), |rs| {
        rs[0].state == "queued"
    });
    scope.cancel();
    let (res, mut r) = bounded(Duration::from_secs(5), waiter).await.unwrap();
    let e = res.unwrap_err();
    assert!(e.is_cancelled(), "{e}");
    assert!(e.to_string().contains(&id), "{e}");
    // Ordinary calls stop, clean-up calls still go through after a graceful cancel.
    assert!(c.about().await.unwrap_err().is_cancelled());
    assert!(matches!(
        r.cancel().await.unwrap(),
        CancelOutcome::Requested { .. }
    ));
    assert!(fake.alive().is_empty());
    // Forced cancellation stops clean-up calls too.
    scope.kill();
    assert!(c.cancel(&id).await.unwrap_err().is_cancelled());
}

#[tokio::test]
async fn wait_for_state_races_its_scope() {
    let fake = FakeTf::start();
    fake.set_script(Script::stuck_queued());
    let c = client(&fake);
    let mut r = c.create(&reserve()).await.unwrap();
    let scope = Scope::root("t");
    let s2 = scope.clone();
    let (res, ()) = bounded(Duration::from_secs(10), async {
        tokio::join!(r.wait_for_state(&[State::Running], &scope), async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            s2.cancel();
        })
    })
    .await;
    assert!(res.unwrap_err().is_cancelled());
    r.cancel().await.unwrap();
}

#[tokio::test]
async fn backoff_waits_race_cancellation() {
    let fake = FakeTf::start();
    fake.add_fault(Fault::status(Method::GET, "/v0.1/about", 503));
    let token = tokio_util::sync::CancellationToken::new();
    let c = builder(&fake, TOKEN)
        .retry(RetryPolicy {
            max_retries: 100,
            backoff_factor: Duration::from_secs(3600),
            backoff_max: Duration::from_secs(3600),
            retry_after_max: Duration::from_secs(3600),
        })
        .cancel_token(token.clone())
        .build()
        .unwrap();
    let t2 = token.clone();
    let (res, ()) = tokio::join!(c.about(), async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        t2.cancel();
    });
    assert!(
        bounded(Duration::from_secs(5), async { res })
            .await
            .unwrap_err()
            .is_cancelled()
    );
    assert_eq!(fake.calls_to("GET", "/v0.1/about").len(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = FakeTf::start();
    fake.add_fault(Fault::too_many(Method::GET, "/v0.1/about", Some("1")).times(1));
    fake.add_fault(Fault::too_many(Method::GET, "/v0.1/whoami", None).times(2));
    let c = client(&fake);
    c.about().await.unwrap();
    let calls = fake.calls_to("GET", "/v0.1/about");
    assert_eq!(
        calls.iter().map(|c| c.status).collect::<Vec<_>>(),
        [Some(429), Some(200)]
    );
    assert!(
        calls[1].t - calls[0].t >= 0.95,
        "Retry-After: 1 was not honoured: {:?}",
        calls.iter().map(|c| c.t).collect::<Vec<_>>()
    );
    c.whoami().await.unwrap();
    assert_eq!(fake.calls_to("GET", "/v0.1/whoami").len(), 3);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_with_endpoint_and_status() {
    let fake = FakeTf::start();
    fake.add_fault(Fault::html(Method::GET, "/v0.1/about", 503).times(2));
    let c = client(&fake);
    c.about().await.unwrap();
    assert_eq!(fake.calls_to("GET", "/v0.1/about").len(), 3);

    fake.add_fault(Fault::html(Method::GET, "/v0.1/about", 502));
    let e = c.about().await.unwrap_err();
    assert_eq!(
        fake.calls_to("GET", "/v0.1/about").len(),
        3 + 6,
        "1 + 5 retries"
    );
    let TfError::RetriesExhausted { attempts, last, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(*attempts, 6);
    assert_eq!(last.status(), Some(502));
    let text = atex::error::chain(&e).to_string();
    assert!(
        text.contains("GET /v0.1/about") && text.contains("HTTP 502"),
        "{text}"
    );
    assert!(text.contains("Bad Gateway"), "the body is kept: {text}");
    assert_eq!(e.status(), Some(502));
}

#[tokio::test]
async fn non_json_replies_are_errors() {
    let fake = FakeTf::start();
    fake.add_fault(Fault::new(
        Some(Method::GET),
        "/v0.1/about",
        FaultKind::NonJson200,
    ));
    let c = client(&fake);
    let e = c.about().await.unwrap_err();
    assert!(
        matches!(&e, TfError::NotJson { content_type, .. } if content_type == "text/plain"),
        "{e}"
    );
    assert_eq!(fake.calls_to("GET", "/v0.1/about").len(), 1, "not retried");
}

#[tokio::test]
async fn dropped_connections_and_slow_replies_are_retried() {
    let fake = FakeTf::start();
    fake.set_script(Script::manual());
    let c = builder(&fake, TOKEN)
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let r = c.create(&reserve()).await.unwrap();
    fake.add_fault(Fault::new(Some(Method::GET), "/v0.1/requests/*", FaultKind::Drop).times(2));
    c.get(r.id()).await.unwrap();
    assert_eq!(fake.calls_to("GET", "/v0.1/requests/*").len(), 3);
    fake.add_fault(
        Fault::new(
            Some(Method::GET),
            "/v0.1/about",
            FaultKind::Delay(Duration::from_secs(3)),
        )
        .times(1),
    );
    c.about().await.unwrap();
    // Two calls: the slow one was cut off by the timeout (it would have succeeded).
    assert_eq!(fake.calls_to("GET", "/v0.1/about").len(), 2);
    c.cancel(r.id()).await.unwrap();
}

#[tokio::test]
async fn a_hanging_server_never_hangs_the_client_past_its_limits() {
    let fake = FakeTf::start();
    fake.add_fault(Fault::new(
        Some(Method::GET),
        "/v0.1/about",
        FaultKind::Hang,
    ));
    let c = builder(&fake, TOKEN)
        .retry(fast_retry(2))
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let e = bounded(Duration::from_secs(10), c.about())
        .await
        .unwrap_err();
    let TfError::RetriesExhausted {
        attempts: 3, last, ..
    } = &e
    else {
        panic!("{e}");
    };
    assert!(matches!(**last, TfError::Transport { .. }), "{last}");
}

/// Asserts the fake holds exactly one request, adopted by `r`, and cancels it.
async fn assert_single_adopted(fake: &FakeTf, c: &Client, r: &atex::testingfarm::Request) {
    let all = fake.requests();
    assert_eq!(all.len(), 1, "duplicate reservation: {all:#?}");
    assert_eq!(all[0].id, r.id());
    assert!(fake.orphans().is_empty(), "{:?}", fake.orphans());
    c.cancel(r.id()).await.unwrap();
    assert!(fake.alive().is_empty());
}

#[tokio::test]
async fn create_adopts_its_request_after_commit_then_drop() {
    let fake = FakeTf::start();
    fake.add_fault(
        Fault::new(
            Some(Method::POST),
            "/v0.1/requests",
            FaultKind::CommitThenDrop,
        )
        .times(1),
    );
    let c = client(&fake);
    let r = c.create(&reserve()).await.unwrap();
    assert_eq!(
        fake.calls_to("POST", "/v0.1/requests").len(),
        1,
        "not posted again"
    );
    assert!(
        !fake.calls_to("GET", "/v0.1/requests").is_empty(),
        "searched"
    );
    assert_single_adopted(&fake, &c, &r).await;
}

#[tokio::test]
async fn create_adopts_its_request_after_a_gateway_error() {
    let fake = FakeTf::start();
    fake.add_fault(
        Fault::new(
            Some(Method::POST),
            "/v0.1/requests",
            FaultKind::CommitThenStatus(502),
        )
        .times(1),
    );
    let c = client(&fake);
    let r = c.create(&reserve()).await.unwrap();
    assert_eq!(fake.calls_to("POST", "/v0.1/requests").len(), 1);
    assert_single_adopted(&fake, &c, &r).await;
}

#[tokio::test]
async fn create_adopts_its_request_after_an_unreadable_reply() {
    let fake = FakeTf::start();
    fake.add_fault(
        Fault::new(Some(Method::POST), "/v0.1/requests", FaultKind::NonJson200).times(1),
    );
    let c = client(&fake);
    let r = c.create(&reserve()).await.unwrap();
    assert_single_adopted(&fake, &c, &r).await;
}

#[tokio::test]
async fn create_adopts_its_request_after_a_reply_slower_than_the_timeout() {
    let fake = FakeTf::start();
    fake.add_fault(
        Fault::new(
            Some(Method::POST),
            "/v0.1/requests",
            FaultKind::Delay(Duration::from_secs(3)),
        )
        .times(1),
    );
    let c = builder(&fake, TOKEN)
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let r = c.create(&reserve()).await.unwrap();
    assert_eq!(fake.calls_to("POST", "/v0.1/requests").len(), 1);
    assert_single_adopted(&fake, &c, &r).await;
}

#[tokio::test]
async fn create_retries_refusals_that_committed_nothing() {
    let fake = FakeTf::start();
    fake.add_fault(Fault::too_many(Method::POST, "/v0.1/requests", Some("0")).times(2));
    let c = client(&fake);
    let r = c.create(&reserve()).await.unwrap();
    assert_eq!(fake.calls_to("POST", "/v0.1/requests").len(), 3);
    assert!(
        fake.calls_to("GET", "/v0.1/requests").is_empty(),
        "429 means nothing was created: no search"
    );
    assert_single_adopted(&fake, &c, &r).await;

    // A 503 might come from a gateway in front of a server that went on: search first.
    let fake = FakeTf::start();
    fake.add_fault(Fault::status(Method::POST, "/v0.1/requests", 503).times(1));
    let c = client(&fake);
    let r = c.create(&reserve()).await.unwrap();
    assert_eq!(fake.calls_to("POST", "/v0.1/requests").len(), 2);
    assert_eq!(
        fake.calls_to("GET", "/v0.1/requests").len(),
        3,
        "one search per live state"
    );
    assert_single_adopted(&fake, &c, &r).await;
}

#[tokio::test]
async fn create_refused_by_the_server_is_not_retried() {
    let fake = FakeTf::start();
    let c = client(&fake);
    let e = c
        .create(&NewRequest::reserve("Nonexistent-1", "x86_64"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(
        e.to_string()
            .contains("Compose 'Nonexistent-1' is not supported"),
        "{e}"
    );
    let e = c
        .create(&NewRequest::fmf("https://git/x", "main", "/plan"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(422), "{e}");
    assert!(e.to_string().contains("environments"), "{e}");
    assert_eq!(fake.calls_to("POST", "/v0.1/requests").len(), 2);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn create_exhausting_retries_creates_nothing() {
    let fake = FakeTf::start();
    fake.add_fault(Fault::status(Method::POST, "/v0.1/requests", 500));
    let c = builder(&fake, TOKEN).retry(fast_retry(2)).build().unwrap();
    let e = c.create(&reserve()).await.unwrap_err();
    assert!(
        matches!(e, TfError::RetriesExhausted { attempts: 3, .. }),
        "{e}"
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn create_with_an_unreachable_search_names_its_marker() {
    let fake = FakeTf::start();
    fake.add_fault(
        Fault::new(
            Some(Method::POST),
            "/v0.1/requests",
            FaultKind::CommitThenDrop,
        )
        .times(1),
    );
    fake.add_fault(Fault::status(Method::GET, "/v0.1/requests", 500));
    let c = builder(&fake, TOKEN).retry(fast_retry(2)).build().unwrap();
    let req = reserve();
    let e = c.create(&req).await.unwrap_err();
    match &e {
        TfError::CreateUnresolved { marker, .. } => assert_eq!(marker, req.marker()),
        other => panic!("{other}"),
    }
    assert_eq!(
        fake.calls_to("POST", "/v0.1/requests").len(),
        1,
        "never posted blindly"
    );
    assert_eq!(fake.orphans().len(), 1);
    // Once the search works, the marker finds it.
    fake.clear_faults();
    let found = c
        .find_created(
            req.marker(),
            Timestamp::now().minus(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    c.cancel(found[0].id()).await.unwrap();
    assert!(fake.alive().is_empty() && fake.orphans().is_empty());
}

#[tokio::test]
async fn cancel_is_retried_and_idempotent() {
    let fake = FakeTf::start();
    let c = client(&fake);
    let r = c.create(&reserve()).await.unwrap();
    fake.add_fault(Fault::status(Method::DELETE, "/v0.1/requests/*", 500).times(3));
    assert!(matches!(
        c.cancel(r.id()).await.unwrap(),
        CancelOutcome::Requested { .. }
    ));
    assert_eq!(fake.calls_to("DELETE", "/v0.1/requests/*").len(), 4);
    assert!(fake.alive().is_empty());

    let r = c.create(&reserve()).await.unwrap();
    fake.add_fault(
        Fault::new(
            Some(Method::DELETE),
            "/v0.1/requests/*",
            FaultKind::CommitThenDrop,
        )
        .times(1),
    );
    assert_eq!(
        c.cancel(r.id()).await.unwrap(),
        CancelOutcome::AlreadyCancelled
    );
    assert!(fake.alive().is_empty());
}

#[tokio::test]
async fn random_faults_everywhere_still_give_one_request_each() {
    let fake = FakeTf::start();
    fake.add_fault(Fault::html(Method::GET, "/v0.1/*", 503).probability(0.3));
    fake.add_fault(
        Fault::new(
            Some(Method::POST),
            "/v0.1/requests",
            FaultKind::CommitThenDrop,
        )
        .probability(0.3),
    );
    fake.add_fault(Fault::status(Method::POST, "/v0.1/requests", 502).probability(0.3));
    fake.add_fault(Fault::new(None, "/v0.1/requests/*", FaultKind::Drop).probability(0.3));
    let c = builder(&fake, TOKEN).retry(fast_retry(30)).build().unwrap();
    let mut ids = Vec::new();
    for _ in 0..8 {
        let r = bounded(Duration::from_secs(30), c.create(&reserve()))
            .await
            .unwrap();
        ids.push(r.id().to_string());
    }
    for id in &ids {
        bounded(Duration::from_secs(30), c.cancel(id))
            .await
            .unwrap();
    }
    assert_eq!(fake.requests().len(), 8, "no duplicates");
    assert!(fake.alive().is_empty(), "{:?}", fake.alive());
    assert!(fake.orphans().is_empty());
    assert!(
        fake.calls().iter().any(|c| c.fault.is_some()),
        "faults were injected"
    );
}

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_never_appears_in_logs_debug_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = FakeTf::start();
    let b = builder(&fake, TOKEN).retry(fast_retry(1));
    let c = b.clone().build().unwrap();
    let mut texts = vec![format!("{b:?}"), format!("{c:?}")];
    c.whoami().await.unwrap();
    let mut r = c.create(&reserve()).await.unwrap();
    texts.push(format!("{r:?}"));
    // A server that echoes the Authorization header into its error replies.
    fake.add_fault(Fault::new(None, "/v0.1/about", FaultKind::EchoAuth(500)));
    fake.add_fault(Fault::new(None, "/v0.1/requests", FaultKind::EchoAuth(401)));
    let e1 = c.about().await.unwrap_err();
    let e2 = c.create(&reserve()).await.unwrap_err();
    fake.add_fault(Fault::html(Method::DELETE, "/v0.1/requests/*", 503));
    let e3 = c.cancel(r.id()).await.unwrap_err();
    for e in [&e1, &e2, &e3] {
        texts.push(e.to_string());
        texts.push(format!("{e:?}"));
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            texts.push(s.to_string());
            source = s.source();
        }
    }
    assert!(
        atex::error::chain(&e1)
            .to_string()
            .contains("Bearer <redacted>"),
        "{e1}"
    );
    assert!(matches!(e2, TfError::Unauthorized { .. }), "{e2}");
    fake.clear_faults();
    r.cancel().await.unwrap();
    texts.push(String::from_utf8(captured.0.lock().unwrap().clone()).unwrap());
    // The fake did receive the token: the check above is meaningful.
    assert!(
        fake.calls()
            .iter()
            .any(|c| c.token.as_deref() == Some(TOKEN))
    );
    assert!(!texts.last().unwrap().is_empty(), "logs were captured");
    for t in &texts {
        assert!(!t.contains(TOKEN), "token leaked into: {t}");
    }
}

#[tokio::test]
async fn client_configuration_from_the_builder() {
    let fake = FakeTf::start();
    // A URL with the /v0.1 suffix (as tft-cli's TESTING_FARM_API_URL) works the same.
    let c = ClientBuilder::new()
        .url(format!("{}/v0.1/", fake.url()))
        .token(TOKEN)
        .build()
        .unwrap();
    assert_eq!(c.url(), fake.url());
    c.about().await.unwrap();
    for bad in [
        "ftp://x",
        "not a url",
        "http://user:pw@host",
        "http://h/?q=1",
    ] {
        let e = ClientBuilder::new().url(bad).build().unwrap_err();
        assert!(matches!(e, TfError::BadUrl { .. }), "{bad}: {e}");
    }
    assert_eq!(
        ClientBuilder::new().build().unwrap().url(),
        "https://api.testing-farm.io"
    );
    assert!(
        !ClientBuilder::new()
            .token("  ")
            .build()
            .unwrap()
            .has_token()
    );
}

#[tokio::test]
async fn journal_cleanup_cancels_what_a_crashed_run_left() {
    let fake = FakeTf::start();
    let c = client(&fake);
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::new(dir.path().join(".atex-tf-journal"));
    // Three requests created through the journal, one of them already released.
    let a = journal.create(&c, &reserve()).await.unwrap();
    let b = journal.create(&c, &reserve()).await.unwrap();
    let done = journal.create(&c, &reserve()).await.unwrap();
    journal.cancel(&c, done.id()).await.unwrap();
    // A create that reached the server but whose id never reached the journal (killed
    // right after the POST).
    let lost = reserve();
    journal.record_pending(lost.marker()).unwrap();
    let lost_id = c.create(&lost).await.unwrap().id().to_string();
    // An id the server no longer knows, and one that finished meanwhile.
    journal
        .record_created("00000000-0000-4000-8000-000000000404", "gone")
        .unwrap();
    let finished = journal.create(&c, &reserve()).await.unwrap();
    fake.set_state(finished.id(), "complete");
    let outstanding = journal.outstanding().unwrap();
    assert_eq!(outstanding.requests.len(), 4);
    assert_eq!(outstanding.pending.len(), 1);
    assert_eq!(fake.alive().len(), 3);

    let report = cleanup(&c, &journal).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        report.resolved,
        [(lost.marker().to_string(), vec![lost_id.clone()])]
    );
    let outcome = |id: &str| {
        report
            .cancelled
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, o)| o.clone())
    };
    assert!(matches!(
        outcome(a.id()),
        Some(CancelOutcome::Requested { .. })
    ));
    assert!(matches!(
        outcome(b.id()),
        Some(CancelOutcome::Requested { .. })
    ));
    assert!(matches!(
        outcome(&lost_id),
        Some(CancelOutcome::Requested { .. })
    ));
    assert_eq!(
        outcome("00000000-0000-4000-8000-000000000404"),
        Some(CancelOutcome::NotFound)
    );
    assert_eq!(outcome(finished.id()), Some(CancelOutcome::AlreadyFinished));
    assert!(fake.alive().is_empty(), "{:?}", fake.alive());
    assert!(journal.outstanding().unwrap().is_empty());
    assert_eq!(
        std::fs::metadata(journal.path()).unwrap().len(),
        0,
        "journal emptied"
    );
    // A second cleanup has nothing to do.
    let again = cleanup(&c, &journal).await.unwrap();
    assert!(again.cancelled.is_empty() && again.failed.is_empty());
}

#[tokio::test]
async fn journal_keeps_what_it_could_not_cancel() {
    let fake = FakeTf::start();
    let c = builder(&fake, TOKEN).retry(fast_retry(1)).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::new(dir.path().join("j"));
    let r = journal.create(&c, &reserve()).await.unwrap();
    // Refused creates leave nothing outstanding.
    journal
        .create(&c, &NewRequest::reserve("Nonexistent-1", "x86_64"))
        .await
        .unwrap_err();
    assert_eq!(journal.outstanding().unwrap().requests, [r.id()]);
    assert!(journal.outstanding().unwrap().pending.is_empty());
    fake.add_fault(Fault::status(Method::DELETE, "/v0.1/requests/*", 500));
    let report = cleanup(&c, &journal).await.unwrap();
    assert!(!report.is_complete());
    assert_eq!(report.failed[0].0, r.id());
    assert_eq!(journal.outstanding().unwrap().requests, [r.id()]);
    fake.clear_faults();
    assert!(cleanup(&c, &journal).await.unwrap().is_complete());
    assert!(fake.alive().is_empty());
}

#[tokio::test]
async fn journal_keeps_a_create_interrupted_mid_post() {
    let fake = FakeTf::start();
    // The POST is committed, then the reply hangs; Ctrl-C arrives meanwhile.
    fake.add_fault(Fault::new(
        Some(Method::POST),
        "/v0.1/requests",
        FaultKind::Delay(Duration::from_secs(3600)),
    ));
    let token = tokio_util::sync::CancellationToken::new();
    let c = client(&fake).with_cancel(&token);
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::new(dir.path().join("j"));
    let req = reserve();
    let t2 = token.clone();
    let fake_ref = &fake;
    let (res, ()) = tokio::join!(journal.create(&c, &req), async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        while fake_ref.requests().is_empty() {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        t2.cancel();
    });
    assert!(res.unwrap_err().is_cancelled());
    let pending = journal.outstanding().unwrap().pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].marker, req.marker());
    assert_eq!(fake.alive().len(), 1);
    // Cleanup is a clean-up call: the graceful token does not stop it.
    let report = cleanup(&c, &journal).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert!(fake.alive().is_empty());
    assert!(journal.outstanding().unwrap().is_empty());
}

/// The fake's guest is a real sshd (in its own network namespace, on port 22) into which
/// the request's key is installed once tests start, as the reserve test does.
#[cfg(feature = "ssh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_guest_is_a_real_sshd_that_receives_the_key() {
    use atex::connection::ssh::{HostKeyPolicy, SshConnection};
    use atex::connection::{CommandSpec, ConnectionExt};
    use base64::Engine as _;

    let host = support::sshd::NetnsHost::start();
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("id_ed25519");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "user@host", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let fields: Vec<&str> = public.split_whitespace().collect();
    let line = format!("{} {} foo@bar\n", fields[0], fields[1]);
    let fake = FakeTf::start_with(FakeConfig {
        guests: vec![support::fake_tf::Guest {
            user: "root".into(),
            host: host.ip.clone(),
        }],
        authorized_keys: Some(host.files.dir.path().join("authorized_keys.root")),
        ..FakeConfig::default()
    });
    let c = client(&fake);
    let req = reserve().map_environments(|e| {
        e.secret(
            "TF_RESERVATION_AUTHORIZED_KEYS_BASE64",
            base64::engine::general_purpose::STANDARD.encode(&line),
        )
    });
    let config = || {
        atex::connection::ssh::SshConfig::new(host.ip.clone())
            .user("root")
            .key_file(&key)
            .host_key_policy(HostKeyPolicy::Strict)
            .known_hosts(&host.files.known_hosts)
            .connect_timeout(Duration::from_secs(5))
    };
    // Before the reservation our key is refused.
    assert!(SshConnection::connect(config()).await.is_err());
    let r = c.create(&req).await.unwrap();
    assert_eq!(fake.request(r.id()).unwrap().keys, [line.trim_end()]);
    let r = wait_running(&c, r.id()).await;
    // Scrape the guest and wait for "starting tests execution", as the provisioner will.
    let mut log = r.pipeline_log().unwrap();
    let mut lines = LineBuffer::new();
    let mut guest = None;
    let mut started = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    let re =
        regex::Regex::new(r"\] Guest is ready: ArtemisGuest\([^,]+, ([^\s@,]+)@([^,]+), arch=")
            .unwrap();
    while !started {
        assert!(Instant::now() < deadline, "no 'starting tests execution'");
        if let LogChunk::Data(d) = log.read_new().await.unwrap() {
            for l in lines.push(&d) {
                if let Some(m) = re.captures(&l) {
                    guest = Some((m[1].to_string(), m[2].to_string()));
                }
                started |= guest.is_some() && l.contains("] starting tests execution");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(guest, Some(("root".to_string(), host.ip.clone())));
    // Probe until the key is in (the reserve test installs it shortly after).
    let scope = Scope::root("ssh");
    let conn = loop {
        match SshConnection::connect(config()).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "login never worked: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let out = conn
        .output(CommandSpec::new(["id", "-un"]), &scope)
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy().trim(), "root");
    c.cancel(r.id()).await.unwrap();
    assert!(fake.alive().is_empty());
    let _ = std::io::stderr().flush();
}
