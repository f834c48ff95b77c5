//! Mapping of [FMF discovery](crate::fmf::discover) results onto the executor's
//! [`FmfTest`] and [`FmfPlan`], and an [`ExecutorFactory`] over them.

use std::path::PathBuf;
use std::sync::Arc;

use super::{FmfExecutor, FmfOptions, FmfPlan, FmfTest, FmfTestSet, PlanStep, TestFramework};
use crate::executor::{Executor, ExecutorFactory};
use crate::fmf::{DiscoveredTest, DiscoveredTests, FinishStep, PlanData, PrepareStep};
use crate::provisioner::Remote;

impl From<&DiscoveredTest> for FmfTest {
    fn from(t: &DiscoveredTest) -> Self {
        FmfTest {
            name: t.name.clone(),
            script: t.test_script().unwrap_or_default().to_string(),
            source_dir: t.source_dir.clone(),
            duration: t.duration().map(str::to_string),
            environment: t.environment().into_iter().collect(),
            tty: t.tty(),
            require: t.require().into_iter().map(str::to_string).collect(),
            recommend: t.recommend().into_iter().map(str::to_string).collect(),
            metadata: serde_json::Value::Object(t.data.clone()),
        }
    }
}

impl From<&PlanData> for FmfPlan {
    fn from(plan: &PlanData) -> Self {
        FmfPlan {
            environment: plan
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            prepare: plan
                .prepare
                .iter()
                .map(|step| match step {
                    PrepareStep::Install { packages } => PlanStep::Install {
                        packages: packages.clone(),
                    },
                    PrepareStep::Shell { scripts } => PlanStep::Shell {
                        scripts: scripts.clone(),
                    },
                })
                .collect(),
            finish: plan
                .finish
                .iter()
                .map(|step| match step {
                    FinishStep::Shell { scripts } => PlanStep::Shell {
                        scripts: scripts.clone(),
                    },
                })
                .collect(),
        }
    }
}

/// Creates one [`FmfExecutor`] per remote over discovered tests.
///
/// The factory shares the tests and plan between executors; the tests tree is read from
/// [`DiscoveredTests::root`], so the `DiscoveredTests` value must outlive the run.
///
/// ```no_run
/// use atex::executor::fmf::FmfExecutorFactory;
/// use atex::fmf::{discover, DiscoverOptions};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tests = discover(&DiscoverOptions::new("path/to/tree"))?;
/// let factory = FmfExecutorFactory::new(&tests).with_env("DEBUG", "1");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FmfExecutorFactory {
    tree: PathBuf,
    tests: Arc<FmfTestSet>,
    plan: Arc<FmfPlan>,
    env: Vec<(String, String)>,
    options: Option<FmfOptions>,
    frameworks: Vec<Arc<dyn TestFramework>>,
}

impl FmfExecutorFactory {
    /// A factory for every test of `discovered`.
    pub fn new(discovered: &DiscoveredTests) -> Self {
        Self {
            tree: discovered.root().to_path_buf(),
            tests: Arc::new(discovered.tests.iter().map(FmfTest::from).collect()),
            plan: Arc::new(FmfPlan::from(&discovered.plan)),
            env: Vec::new(),
            options: None,
            frameworks: Vec::new(),
        }
    }

    /// Adds an environment variable for every executor (plan steps and tests).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Uses these options instead of [`FmfOptions::from_env`].
    pub fn with_options(mut self, options: FmfOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// Runs tests of `framework.name()` with its hooks in every executor (see
    /// [`FmfExecutor::with_framework`]).
    pub fn with_framework(mut self, framework: Arc<dyn TestFramework>) -> Self {
        self.frameworks.push(framework);
        self
    }

    /// The tests the executors will know.
    pub fn tests(&self) -> &FmfTestSet {
        &self.tests
    }
}

impl ExecutorFactory for FmfExecutorFactory {
    fn create(&self, remote: Arc<dyn Remote>) -> Box<dyn Executor> {
        let mut exec =
            FmfExecutor::with_shared(remote, &self.tree, self.tests.clone(), self.plan.clone());
        for (k, v) in &self.env {
            exec = exec.with_env(k.clone(), v.clone());
        }
        if let Some(options) = &self.options {
            exec = exec.with_options(options.clone());
        }
        for framework in &self.frameworks {
            exec = exec.with_framework(framework.clone());
        }
        Box::new(exec)
    }
}
