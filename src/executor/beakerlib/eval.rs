//! The exit code of a BeakerLib test, from its phases.

use serde_json::Value;

use crate::executor::fmf::reporter::Reporter;

/// Whether a phase status makes the test fail.
fn failing(status: &str) -> bool {
    matches!(status, "fail" | "warn" | "error")
}

/// The exit code of a BeakerLib test for its fallback result (executors.md §6): `exit_code`
/// unchanged once the test wrote its own (nameless) result; otherwise 1 when a result
/// reported so far (written or pending) has status `fail`, `warn` or `error`, since
/// BeakerLib tests exit 0 even when a phase failed; else `exit_code`.
pub fn eval_exit_code(reporter: &Reporter, exit_code: i32) -> i32 {
    if reporter.nameless_written() {
        return exit_code;
    }
    let written = reporter
        .written_statuses()
        .iter()
        .flatten()
        .any(|s| failing(s));
    let pending = reporter
        .pending()
        .any(|r| r.get("status").and_then(Value::as_str).is_some_and(failing));
    if written || pending { 1 } else { exit_code }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::fmf::control::ReportedResult;
    use serde_json::{Map, json};

    fn result(value: Value) -> ReportedResult {
        let Value::Object(map) = value else {
            panic!("not an object")
        };
        ReportedResult {
            value: map,
            refused: Vec::new(),
        }
    }

    fn reporter() -> (tempfile::TempDir, Reporter) {
        let dir = tempfile::tempdir().expect("tmp");
        let reporter = Reporter::create(dir.path()).expect("reporter");
        (dir, reporter)
    }

    #[test]
    fn passing_phases_keep_the_exit_code() {
        let (_d, mut r) = reporter();
        assert_eq!(eval_exit_code(&r, 0), 0);
        r.record(result(json!({"status": "pass", "name": "Setup"})))
            .expect("record");
        r.record(result(json!({"status": "info", "name": "x"})))
            .expect("record");
        assert_eq!(eval_exit_code(&r, 0), 0);
        assert_eq!(eval_exit_code(&r, 3), 3);
        r.finish(&crate::executor::fmf::reporter::Outcome::Exited(0));
    }

    #[test]
    fn a_failed_phase_fails_the_test() {
        for status in ["fail", "warn", "error"] {
            let (_d, mut r) = reporter();
            r.record(result(json!({"status": "pass", "name": "Setup"})))
                .expect("record");
            r.record(result(json!({"status": status, "name": "Test"})))
                .expect("record");
            assert_eq!(eval_exit_code(&r, 0), 1, "{status}");
        }
    }

    #[test]
    fn pending_partials_count() {
        let (_d, mut r) = reporter();
        r.record(result(
            json!({"partial": true, "status": "warn", "name": "p"}),
        ))
        .expect("record");
        assert_eq!(eval_exit_code(&r, 0), 1);
        let (_d, mut r) = reporter();
        r.record(result(json!({"partial": true, "files": []})))
            .expect("record");
        assert_eq!(eval_exit_code(&r, 0), 0);
    }

    #[test]
    fn an_own_result_wins() {
        let (_d, mut r) = reporter();
        r.record(result(json!({"status": "fail", "name": "Test"})))
            .expect("record");
        r.write(Map::from_iter([("status".to_string(), json!("pass"))]))
            .expect("write");
        assert_eq!(eval_exit_code(&r, 0), 0);
    }
}
