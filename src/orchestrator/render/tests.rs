//! Golden output of every mode from recorded event sequences (time is given, never read).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::orchestrator::events::event_channel;
use crate::orchestrator::{CancelReason, ReleaseReason, RetireReason};
use crate::verdict::Verdict;

/// Records what a sink was asked to do.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

impl Sink for Recorder {
    fn line(&mut self, line: &str) {
        self.0.lock().expect("lock").push(format!("line {line}"));
    }

    fn status(&mut self, s: &Status) {
        self.0
            .lock()
            .expect("lock")
            .push(format!("bar  {}/{} {}", s.position, s.length, s.message));
    }

    fn finish(&mut self) {
        self.0.lock().expect("lock").push("finish".into());
    }
}

/// A shared byte buffer for [`Renderer::with_writer`].
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

/// Builds an event sequence the way the scheduler publishes it: statistics first, then
/// the event with a copy.
struct Script {
    stats: RunStats,
    events: Vec<Event>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

impl Script {
    fn new(tests: usize) -> Self {
        let mut script = Script {
            stats: RunStats::default(),
            events: Vec::new(),
        };
        script.stats.tests = tests;
        script.stats.queued = tests;
        script.push(
            0.0,
            EventKind::RunStarted {
                tests,
                provisioners: 1,
                max_remotes: Some(2),
            },
        );
        script
    }

    fn push(&mut self, at: f64, kind: EventKind) {
        self.events.push(Event::new(secs(at), kind, self.stats));
    }

    fn acquire(&mut self, at: f64, remote: &str) {
        self.stats.remotes.acquired += 1;
        self.stats.remotes.active += 1;
        self.push(
            at,
            EventKind::RemoteAcquired {
                remote: remote.into(),
                provisioner: "local".into(),
            },
        );
        self.push(
            at,
            EventKind::RemoteReady {
                remote: remote.into(),
            },
        );
    }

    fn start(&mut self, at: f64, test: &str, remote: &str, attempt: u32) {
        self.stats.queued -= 1;
        self.stats.running += 1;
        self.push(
            at,
            EventKind::TestStarted {
                test: test.into(),
                remote: remote.into(),
                attempt,
            },
        );
    }

    fn finish(&mut self, at: f64, test: &str, remote: &str, verdict: Verdict, rerun: bool) {
        self.stats.running -= 1;
        if rerun {
            self.stats.reruns += 1;
            self.stats.queued += 1;
        } else {
            self.stats.verdicts.add(verdict);
        }
        let (exit_code, error) = match verdict {
            Verdict::Infra => (None, Some("cancelled".to_string())),
            Verdict::Fail => (Some(1), None),
            _ => (Some(0), None),
        };
        self.push(
            at,
            EventKind::TestFinished {
                test: test.into(),
                remote: remote.into(),
                verdict,
                exit_code,
                error,
                duration: secs(0.5),
                rerun,
            },
        );
    }

    fn release(&mut self, at: f64, remote: &str, reason: ReleaseReason) {
        self.stats.remotes.active -= 1;
        self.push(
            at,
            EventKind::RemoteReleased {
                remote: remote.into(),
                reason,
            },
        );
    }

    fn cancel(&mut self, at: f64, reason: CancelReason) {
        self.stats.not_run += self.stats.queued;
        self.stats.queued = 0;
        self.stats.cancel = Some(reason);
        self.push(at, EventKind::CancelBegun { reason });
    }

    fn end(&mut self, at: f64) {
        self.push(at, EventKind::RunFinished { events_dropped: 0 });
    }
}

/// A run of three tests on two remotes: `/b` fails, is rerun and fails again, destroying
/// its remote; `/c`'s results cannot be recorded.
fn full_run() -> Vec<Event> {
    let mut s = Script::new(3);
    s.acquire(0.1, "r1");
    s.acquire(0.2, "r2");
    s.start(0.3, "/a", "r1", 0);
    s.start(0.4, "/b", "r2", 0);
    s.finish(1.0, "/a", "r1", Verdict::Pass, false);
    s.start(1.1, "/c", "r1", 0);
    s.finish(2.0, "/b", "r2", Verdict::Fail, true);
    s.push(
        2.0,
        EventKind::RerunScheduled {
            test: "/b".into(),
            attempt: 1,
        },
    );
    s.start(2.1, "/b", "r2", 1);
    s.finish(3.0, "/c", "r1", Verdict::Pass, false);
    s.stats.ingest_errors += 1;
    s.push(
        3.0,
        EventKind::TestIngested {
            test: "/c".into(),
            old: false,
            error: Some("disk full".into()),
        },
    );
    s.release(3.1, "r1", ReleaseReason::Done);
    s.finish(4.0, "/b", "r2", Verdict::Fail, false);
    s.stats.remotes.retired += 1;
    s.push(
        4.0,
        EventKind::RemoteRetired {
            remote: "r2".into(),
            test: "/b".into(),
            reason: RetireReason::Destructive,
        },
    );
    s.release(4.1, "r2", ReleaseReason::Destroyed);
    s.end(4.2);
    s.events
}

/// Two tests running on two remotes, a third queued; Ctrl-C twice.
fn cancelled_run() -> Vec<Event> {
    let mut s = Script::new(3);
    s.acquire(0.1, "r1");
    s.acquire(0.1, "r2");
    s.start(0.2, "/slow1", "r1", 0);
    s.start(0.2, "/slow2", "r2", 0);
    s.cancel(5.0, CancelReason::Interrupt);
    s.cancel(6.0, CancelReason::Kill);
    s.finish(6.5, "/slow1", "r1", Verdict::Infra, false);
    s.release(6.6, "r1", ReleaseReason::Cancelled);
    s.finish(6.5, "/slow2", "r2", Verdict::Infra, false);
    s.release(6.7, "r2", ReleaseReason::Cancelled);
    s.end(7.0);
    s.events
}

fn replay(renderer: &mut Renderer, events: &[Event], ticks: &[f64]) {
    let mut ticks = ticks.iter().copied().peekable();
    for e in events {
        while let Some(t) = ticks.next_if(|&t| secs(t) <= e.elapsed) {
            renderer.tick(secs(t));
        }
        renderer.handle(e);
    }
    for t in ticks {
        renderer.tick(secs(t));
    }
    renderer.finish();
}

#[test]
fn lines_mode_golden() {
    let out = Buffer::default();
    let mut r = Renderer::with_writer(Mode::Lines, out.clone());
    replay(&mut r, &full_run(), &[]);
    let expected = "\
[    0.00] run started: 3 tests, 1 provisioners, at most 2 remotes
[    0.10] remote r1 acquired from local
[    0.10] remote r1 ready
[    0.20] remote r2 acquired from local
[    0.20] remote r2 ready
[    0.30] start  /a on r1
[    0.40] start  /b on r2
[    1.00] pass   /a on r1 in 0.50s
[    1.10] start  /c on r1
[    2.00] fail   /b on r2 in 0.50s (exit code 1), will be rerun
[    2.10] start  /b on r2 (rerun 1)
[    3.00] pass   /c on r1 in 0.50s
[    3.00] results of /c not recorded: disk full
[    3.10] remote r1 released (done)
[    4.00] fail   /b on r2 in 0.50s (exit code 1)
[    4.00] remote r2 retired (destructive test /b)
[    4.10] remote r2 released (destroyed)
[    4.20] run finished: 3/3 done: 2 passed, 1 not passed (1 fail); 0 running, 0 queued, 1 reruns; 0 remotes, 1 retired; 1 results not recorded
";
    assert_eq!(out.text(), expected);
    assert_eq!(r.stats().finished(), 3);
}

#[test]
fn lines_mode_prints_periodic_statistics() {
    let out = Buffer::default();
    let mut r =
        Renderer::with_writer(Mode::Lines, out.clone()).stats_every(Some(Duration::from_secs(2)));
    // Ticks before the first period print nothing; a late tick prints one line, not one
    // per missed period.
    replay(&mut r, &cancelled_run(), &[0.15, 1.9, 2.0, 2.5, 4.9, 9.0]);
    let text = out.text();
    let stats: Vec<&str> = text.lines().filter(|l| l.contains("stats:")).collect();
    assert_eq!(
        stats,
        [
            "[    2.00] stats: 0/3 done: 0 passed, 0 not passed; 2 running, 1 queued, 0 reruns; 2 remotes",
            "[    4.90] stats: 0/3 done: 0 passed, 0 not passed; 2 running, 1 queued, 0 reruns; 2 remotes",
            "[    9.00] stats: 2/3 done: 0 passed, 2 not passed (2 infra); 0 running, 0 queued, 0 reruns, 1 not run; 0 remotes; cancelled (kill)",
        ]
    );
    let expected_tail = "\
[    5.00] cancelling (interrupt): interrupted: stopping running tests (again to kill)
[    6.00] cancelling (kill): killing running tests
[    6.50] infra  /slow1 on r1 in 0.50s (cancelled)
[    6.60] remote r1 released (cancelled)
[    6.50] infra  /slow2 on r2 in 0.50s (cancelled)
[    6.70] remote r2 released (cancelled)
[    7.00] run finished: 2/3 done: 0 passed, 2 not passed (2 infra); 0 running, 0 queued, 0 reruns, 1 not run; 0 remotes; cancelled (kill)
[    9.00] stats:";
    assert!(text.contains(expected_tail), "{text}");
}

#[test]
fn live_mode_golden() {
    let rec = Recorder::default();
    let mut r = Renderer::with_sink(Mode::Live, Box::new(rec.clone()));
    replay(&mut r, &full_run(), &[0.35, 0.35, 2.05, 2.5, 3.5, 5.0]);
    let expected = [
        "bar  0/3 0 not passed, 1 running [r1: /a 0s]",
        // Nothing changed, but a test runs: its clock is redrawn.
        "bar  0/3 0 not passed, 1 running [r1: /a 0s]",
        "line [    1.00] pass   /a on r1 in 0.50s",
        "line [    2.00] fail   /b on r2 in 0.50s (exit code 1), will be rerun",
        "bar  1/3 0 not passed, 1 running [r1: /c 0s]",
        "bar  1/3 0 not passed, 2 running [r1: /c 1s; r2: /b 0s]",
        "line [    3.00] pass   /c on r1 in 0.50s",
        "line [    3.00] results of /c not recorded: disk full",
        "bar  2/3 0 not passed, 1 running [r2: /b 1s]",
        "line [    4.00] fail   /b on r2 in 0.50s (exit code 1)",
        "line [    4.00] remote r2 retired (destructive test /b)",
        "bar  3/3 1 not passed, 0 running",
        "finish",
    ];
    assert_eq!(rec.take(), expected);
}

#[test]
fn live_mode_shows_the_longest_running_tests_and_the_cancel_reason() {
    let rec = Recorder::default();
    let mut r = Renderer::with_sink(Mode::Live, Box::new(rec.clone()));
    let mut s = Script::new(6);
    for i in 0..5 {
        let remote = format!("r{i}");
        s.acquire(0.0, &remote);
        s.start(i as f64, &format!("/t{i}"), &remote, 0);
    }
    s.cancel(10.0, CancelReason::Interrupt);
    replay(&mut r, &s.events, &[10.5]);
    assert_eq!(
        rec.take(),
        [
            "line [   10.00] cancelling (interrupt): interrupted: stopping running tests (again to kill)",
            "bar  0/6 0 not passed, 5 running, cancelling (interrupt) [r0: /t0 10s; r1: /t1 9s; r2: /t2 8s; +2 more]",
            "finish",
        ]
    );
}

#[test]
fn silent_mode_prints_nothing_but_follows_the_statistics() {
    let rec = Recorder::default();
    let mut r =
        Renderer::with_sink(Mode::Silent, Box::new(rec.clone())).stats_every(Some(secs(1.0)));
    let events = full_run();
    replay(&mut r, &events, &[1.0, 2.0, 5.0]);
    assert_eq!(rec.take(), ["finish"]);
    assert_eq!(r.stats(), &events[events.len() - 1].stats);
}

#[test]
fn recorded_statistics_are_consistent() {
    for events in [full_run(), cancelled_run()] {
        for e in &events {
            let s = &e.stats;
            assert_eq!(
                s.tests,
                s.finished() + s.running + s.queued + s.not_run,
                "{e:?}"
            );
        }
    }
}

#[tokio::test]
async fn drive_renders_a_stream_to_its_end() {
    let (tx, rx) = event_channel(64);
    let events = full_run();
    for e in &events {
        tx.emit(&e.stats, e.kind.clone());
    }
    drop(tx);
    let out = Buffer::default();
    let stats = Renderer::with_writer(Mode::Lines, out.clone())
        .drive(rx)
        .await;
    assert_eq!(stats, events[events.len() - 1].stats);
    let text = out.text();
    assert_eq!(text.lines().count(), 18, "{text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.contains("run finished: 3/3 done"))
    );
}

#[cfg(feature = "progress")]
#[test]
fn live_mode_draws_through_indicatif() {
    use indicatif::{ProgressDrawTarget, TermLike};

    /// A terminal that keeps the lines written to it.
    #[derive(Debug, Clone, Default)]
    struct Term(Arc<Mutex<Vec<String>>>);

    impl TermLike for Term {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().expect("lock").push(s.to_string());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().expect("lock").push(s.to_string());
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let term = Term::default();
    let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
    let mut r = Renderer::with_sink(Mode::Live, Box::new(live::BarSink::with_target(target)));
    replay(&mut r, &full_run(), &[0.35, 3.5]);
    let written = term.0.lock().expect("lock").join("\n");
    for line in [
        "pass   /a on r1 in 0.50s",
        "fail   /b on r2 in 0.50s (exit code 1)",
        "remote r2 retired (destructive test /b)",
    ] {
        assert!(written.contains(line), "{line} not in:\n{written}");
    }
    assert!(
        written.contains("0/3 tests, 0 not passed, 1 running [r1: /a 0s]"),
        "{written}"
    );
    // Details are not printed above the bar.
    assert!(!written.contains("start  /a"), "{written}");
}
