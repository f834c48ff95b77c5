//! The environment of plan scripts and tests.

use super::test::{FmfPlan, FmfTest};
use super::workdir::{pgid_file, wrapper_log};

/// Sets `key` in `env`, replacing an earlier value (later settings win).
pub(super) fn set_env(env: &mut Vec<(String, String)>, key: &str, value: impl Into<String>) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.into()));
}

/// The environment of plan `prepare`/`finish` scripts: the plan's, then the executor's own
/// (`extra`), then `TMT_TREE` and `TMT_PLAN_ENVIRONMENT_FILE`.
pub(super) fn plan_env(
    plan: &FmfPlan,
    extra: &[(String, String)],
    work: &str,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (k, v) in &plan.environment {
        set_env(&mut env, k, v.clone());
    }
    for (k, v) in extra {
        set_env(&mut env, k, v.clone());
    }
    set_env(&mut env, "TMT_TREE", format!("{work}/tests"));
    set_env(
        &mut env,
        "TMT_PLAN_ENVIRONMENT_FILE",
        format!("{work}/plan_env"),
    );
    env
}

/// The environment of attempt `restarts` of `test`: the plan's, the test's, the executor's
/// own (`extra`), then the `TMT_*` and `ATEX_*` variables of the wrapper.
pub(super) fn test_env(
    plan: &FmfPlan,
    extra: &[(String, String)],
    test: &FmfTest,
    work: &str,
    restarts: u32,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (k, v) in &plan.environment {
        set_env(&mut env, k, v.clone());
    }
    set_env(
        &mut env,
        "TMT_PLAN_ENVIRONMENT_FILE",
        format!("{work}/plan_env"),
    );
    set_env(&mut env, "TMT_TEST_NAME", test.name.clone());
    set_env(
        &mut env,
        "TMT_TEST_METADATA",
        format!("{work}/test/metadata.yaml"),
    );
    for (k, v) in &test.environment {
        set_env(&mut env, k, v.clone());
    }
    for (k, v) in extra {
        set_env(&mut env, k, v.clone());
    }
    set_env(&mut env, "TMT_TREE", format!("{work}/tests"));
    set_env(&mut env, "TMT_REBOOT_COUNT", restarts.to_string());
    set_env(&mut env, "TMT_TEST_RESTART_COUNT", restarts.to_string());
    set_env(&mut env, "ATEX_TEST_PGID_FILE", pgid_file(work, restarts));
    set_env(&mut env, "ATEX_WRAPPER_LOG", wrapper_log(work, restarts));
    env
}
