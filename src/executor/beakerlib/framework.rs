//! [`BeakerlibFramework`]: the [`TestFramework`] hook for `framework: beakerlib`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::FRAMEWORK;
use super::install::prepare;
use crate::connection::shell_quote;
use crate::executor::ExecutorError;
use crate::executor::fmf::helpers::run_helper_script;
use crate::executor::fmf::reporter::Reporter;
use crate::executor::fmf::{FmfTest, FrameworkContext, TestFramework};
use crate::scope::Scope;

/// Runs BeakerLib tests on the FMF executor (see the [module docs](super)).
///
/// ```no_run
/// use std::sync::Arc;
/// use atex::executor::beakerlib::BeakerlibFramework;
/// use atex::executor::fmf::FmfExecutorFactory;
/// use atex::fmf::{discover, DiscoverOptions};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tests = discover(&DiscoverOptions::new("path/to/tree"))?;
/// let beakerlib = BeakerlibFramework::new().from_path("beakerlib.tar.gz");
/// let factory = FmfExecutorFactory::new(&tests).with_framework(Arc::new(beakerlib));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct BeakerlibFramework {
    from: Option<PathBuf>,
}

impl BeakerlibFramework {
    /// BeakerLib installed with the system's package manager where it is missing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where BeakerLib is missing, installs it from this local directory or tarball (a
    /// BeakerLib source tree: its top-level `Makefile` installs it) before trying the
    /// package manager.
    pub fn from_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.from = Some(path.into());
        self
    }

    /// The directory or tarball BeakerLib is installed from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.from.as_deref()
    }
}

/// A random version 4 UUID (the test's `TESTID`).
fn random_uuid() -> String {
    use std::io::Read as _;
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if read.is_err() {
        // No /dev/urandom: unique enough from the clock and the process.
        use std::hash::{BuildHasher, Hasher};
        for chunk in b.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default(),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[async_trait]
impl TestFramework for BeakerlibFramework {
    fn name(&self) -> &str {
        FRAMEWORK
    }

    async fn prepare_system(
        &self,
        ctx: FrameworkContext<'_>,
        scope: &Scope,
    ) -> Result<(), ExecutorError> {
        prepare(ctx, self.from.as_deref(), scope).await
    }

    async fn prepare_test(
        &self,
        ctx: FrameworkContext<'_>,
        test: &FmfTest,
        scope: &Scope,
    ) -> Result<Vec<(String, String)>, ExecutorError> {
        let dir = format!("{}/beakerlib", ctx.work);
        let q = shell_quote(&dir);
        let script = format!(
            "rm -rf -- {q} && mkdir -- {q} && ln -s ../test/metadata.yaml {q}/metadata.yaml\n"
        );
        run_helper_script(ctx.conn, script, &test.name, scope).await?;
        let bin = format!("{}/bin", ctx.work);
        Ok(vec![
            (
                "BEAKERLIB_COMMAND_REPORT_RESULT".into(),
                format!("{bin}/atex-report-result"),
            ),
            (
                "BEAKERLIB_COMMAND_SUBMIT_LOG".into(),
                format!("{bin}/atex-file-submit"),
            ),
            ("BEAKERLIB_DIR".into(), dir),
            ("TESTID".into(), random_uuid()),
            ("BEAKERLIB_JOURNAL".into(), "0".into()),
        ])
    }

    fn eval_exit_code(&self, _test: &FmfTest, reporter: &Reporter, exit_code: i32) -> i32 {
        super::eval_exit_code(reporter, exit_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4_and_differ() {
        let a = random_uuid();
        let b = random_uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{a}");
    }
}
