//! Self-contained descriptions of FMF tests and plans, as the [`FmfExecutor`](super::FmfExecutor)
//! consumes them. They do not depend on the FMF tree parser: whoever discovers tests maps
//! its output onto these structs.

use std::path::PathBuf;

/// One test to run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FmfTest {
    /// The test name (for example `/tests/smoke`), exported as `TMT_TEST_NAME`.
    pub name: String,
    /// The `test` key: a bash script, run verbatim (after `set -e -o pipefail`).
    pub script: String,
    /// Directory of the test's definition, relative to the uploaded tests tree; the test's
    /// working directory.
    pub source_dir: PathBuf,
    /// The `duration` key (tmt grammar, see [`crate::duration`]); `None` means 5 minutes.
    pub duration: Option<String>,
    /// The test's `environment`, in order.
    pub environment: Vec<(String, String)>,
    /// The `tty` key: run the test on a pseudo-terminal.
    pub tty: bool,
    /// Packages that must be installed before the test (plain names or provides).
    pub require: Vec<String>,
    /// Packages installed when available.
    pub recommend: Vec<String>,
    /// The whole test metadata, written to `$TMT_TEST_METADATA`.
    pub metadata: serde_json::Value,
}

impl FmfTest {
    /// A test named `name` running `script` in the tree root, with default settings.
    pub fn new(name: impl Into<String>, script: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            script: script.into(),
            ..Self::default()
        }
    }
}

/// One step of a plan's `prepare` or `finish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanStep {
    /// `how: install`: install these packages (skipping installed ones).
    Install {
        /// Package names.
        packages: Vec<String>,
    },
    /// `how: shell`: run each script with bash in the tests tree root.
    Shell {
        /// The scripts, run in order.
        scripts: Vec<String>,
    },
}

/// The parts of a tmt plan the executor needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FmfPlan {
    /// The plan's `environment`, in order; given to prepare/finish scripts and tests.
    pub environment: Vec<(String, String)>,
    /// Steps run by [`Executor::start`](crate::executor::Executor::start).
    pub prepare: Vec<PlanStep>,
    /// Steps run by [`Executor::stop`](crate::executor::Executor::stop).
    pub finish: Vec<PlanStep>,
}

/// The tests an [`FmfExecutor`](super::FmfExecutor) knows, indexed by name. Share one set
/// between the executors of all remotes (`Arc<FmfTestSet>`): looking a test up is O(1)
/// however many tests there are.
#[derive(Debug, Clone, Default)]
pub struct FmfTestSet {
    tests: Vec<FmfTest>,
    index: std::collections::HashMap<String, usize>,
}

impl FmfTestSet {
    /// Indexes `tests`; a later test of the same name replaces an earlier one.
    pub fn new(tests: impl IntoIterator<Item = FmfTest>) -> Self {
        let mut set = Self::default();
        for test in tests {
            match set.index.get(&test.name) {
                Some(&i) => set.tests[i] = test,
                None => {
                    set.index.insert(test.name.clone(), set.tests.len());
                    set.tests.push(test);
                }
            }
        }
        set
    }

    /// The test named `name`.
    pub fn get(&self, name: &str) -> Option<&FmfTest> {
        self.index.get(name).map(|&i| &self.tests[i])
    }

    /// The tests in order.
    pub fn iter(&self) -> impl Iterator<Item = &FmfTest> {
        self.tests.iter()
    }

    /// Number of tests.
    pub fn len(&self) -> usize {
        self.tests.len()
    }

    /// Whether there are no tests.
    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }
}

impl FromIterator<FmfTest> for FmfTestSet {
    fn from_iter<I: IntoIterator<Item = FmfTest>>(iter: I) -> Self {
        Self::new(iter)
    }
}
