//! Checks of the [`Aggregator`] ingest contract (the artifacts of executors.md §2 and the
//! aggregator API): results recorded and files moved, the artifacts consumed, duplicates
//! refused or renamed, missing or bad results refused with nothing recorded and nothing
//! moved (so the ingest can be retried), concurrent ingests, no ingest after `finish`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{CheckResult, Context, DEFAULT_DEADLINE, Report, Violation, ensure};
use crate::aggregator::{Aggregator, AggregatorError};
use crate::artifacts::normalize_name;

/// One result of a recorded test, as an aggregator's output says it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedResult {
    /// The result's `name` (`None` for the test's own result).
    pub name: Option<String>,
    /// Its `status`.
    pub status: Option<String>,
    /// Its `files`.
    pub files: Vec<String>,
    /// Its `note`.
    pub note: Option<String>,
}

/// One recorded test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedTest {
    /// The platform it was ingested under.
    pub platform: String,
    /// The name it was recorded under (`<test> (1)` for an allowed duplicate).
    pub test: String,
    /// Its results in order. Outputs that merge the test's own (nameless) results into one
    /// (YAML) give one nameless result with the last status and note and all files.
    pub results: Vec<RecordedResult>,
}

type Create =
    Arc<dyn Fn(&Path, bool) -> Result<Arc<dyn Aggregator>, AggregatorError> + Send + Sync>;
type Read = Arc<dyn Fn(&Path) -> Result<Vec<RecordedTest>, String> + Send + Sync>;

/// An aggregator under test.
#[derive(Clone)]
pub struct AggregatorTarget {
    create: Create,
    read: Read,
    deadline: Duration,
}

impl std::fmt::Debug for AggregatorTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorTarget").finish_non_exhaustive()
    }
}

impl AggregatorTarget {
    /// `create(dir, allow_duplicate)` makes an aggregator writing its output below the
    /// empty directory `dir`, with uploaded files under `dir/files`
    /// (`files/<platform>/<test>/…`, names normalised); `read(dir)` reads back, after
    /// [`finish`](Aggregator::finish), the tests it recorded, in order.
    pub fn new<C, R>(create: C, read: R) -> Self
    where
        C: Fn(&Path, bool) -> Result<Arc<dyn Aggregator>, AggregatorError> + Send + Sync + 'static,
        R: Fn(&Path) -> Result<Vec<RecordedTest>, String> + Send + Sync + 'static,
    {
        Self {
            create: Arc::new(create),
            read: Arc::new(read),
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// How long one check may take (default [`DEFAULT_DEADLINE`]).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    fn make(&self, dir: &Path, allow_duplicate: bool) -> Result<Arc<dyn Aggregator>, Violation> {
        (self.create)(dir, allow_duplicate).context("creating the aggregator")
    }

    async fn finish_and_read(
        &self,
        agg: &dyn Aggregator,
        dir: &Path,
    ) -> Result<Vec<RecordedTest>, Violation> {
        agg.finish().await.context("finish")?;
        (self.read)(dir).map_err(|e| Violation(format!("reading the output back: {e}")))
    }
}

/// Runs every check of this module.
pub async fn all(target: &AggregatorTarget) -> Report {
    let mut report = Report::new("aggregator");
    let d = target.deadline;
    report
        .run(
            "aggregator::ingest_records_and_moves",
            d,
            ingest_records_and_moves(target),
        )
        .await;
    report
        .run("aggregator::missing_results", d, missing_results(target))
        .await;
    report
        .run(
            "aggregator::bad_results_all_or_nothing",
            d,
            bad_results_all_or_nothing(target),
        )
        .await;
    report
        .run(
            "aggregator::ingest_lines_like_ingest",
            d,
            ingest_lines_like_ingest(target),
        )
        .await;
    report
        .run("aggregator::duplicates", d, duplicates(target))
        .await;
    report
        .run(
            "aggregator::concurrent_ingests",
            d,
            concurrent_ingests(target),
        )
        .await;
    report
        .run(
            "aggregator::no_ingest_after_finish",
            d,
            no_ingest_after_finish(target),
        )
        .await;
    report
}

const PLATFORM: &str = "9.8@x86_64";

/// Artifacts of one test: a nameless result with an output file, a named result with a
/// file in a subdirectory, a symlink and a file nobody lists.
fn write_artifacts(dir: &Path, results: &str) -> Result<(), Violation> {
    let build = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join("files/sub/one/deeper"))?;
        std::fs::write(dir.join("results"), results)?;
        std::fs::write(dir.join("files/out.txt"), b"output\n")?;
        std::fs::write(dir.join("files/sub/one/deeper/log.txt"), [0u8, 1, 0xff])?;
        std::fs::write(dir.join("files/unlisted.bin"), b"extra")?;
        std::fs::set_permissions(
            dir.join("files/unlisted.bin"),
            std::fs::Permissions::from_mode(0o751),
        )?;
        std::os::unix::fs::symlink("out.txt", dir.join("files/link"))?;
        Ok(())
    };
    build().context(format!("writing artifacts in {}", dir.display()))
}

const RESULTS: &str = "{\"status\": \"pass\", \"files\": [\"out.txt\"], \"note\": \"first\"}\n\
                       {\"name\": \"sub/one\", \"status\": \"fail\", \"files\": [\"deeper/log.txt\"]}\n";

fn expected_results() -> Vec<RecordedResult> {
    vec![
        RecordedResult {
            name: None,
            status: Some("pass".into()),
            files: vec!["out.txt".into()],
            note: Some("first".into()),
        },
        RecordedResult {
            name: Some("sub/one".into()),
            status: Some("fail".into()),
            files: vec!["deeper/log.txt".into()],
            note: None,
        },
    ]
}

fn destination(dir: &Path, platform: &str, test: &str) -> PathBuf {
    dir.join("files")
        .join(normalize_name(platform))
        .join(normalize_name(test))
}

/// The artifacts are untouched: results file and files still there.
fn untouched(art: &Path) -> CheckResult {
    ensure!(
        art.join("files/out.txt").is_file()
            && art.join("files/sub/one/deeper/log.txt").is_file()
            && art.join("files/link").symlink_metadata().is_ok(),
        "a failed ingest moved or deleted files of {}",
        art.display()
    );
    Ok(())
}

fn find<'a>(recorded: &'a [RecordedTest], test: &str) -> Vec<&'a RecordedTest> {
    recorded.iter().filter(|t| t.test == test).collect()
}

/// An ingest records every result line under the platform and the test and moves the
/// files (contents, modes, symlinks) to `files/<platform>/<test>/`; the artifacts are
/// consumed.
pub async fn ingest_records_and_moves(t: &AggregatorTarget) -> CheckResult {
    let out = tempfile::tempdir().context("an output directory")?;
    let agg = t.make(out.path(), false)?;
    let art = tempfile::tempdir().context("an artifacts directory")?;
    write_artifacts(art.path(), RESULTS)?;
    let test = "/conformance/ingest";
    agg.ingest(PLATFORM, test, art.path())
        .await
        .context("ingest")?;
    consumed_and_moved(art.path(), out.path(), test)?;
    recorded_once(t, agg.as_ref(), out.path(), test).await
}

/// After a good ingest of [`write_artifacts`]' artifacts in `art`: no `results` file and
/// nothing in `files/` is left there, and the files arrived intact (contents, modes,
/// symlinks) under `out/files/<platform>/<test>/`.
fn consumed_and_moved(art: &Path, out: &Path, test: &str) -> CheckResult {
    ensure!(
        !art.join("results").exists(),
        "the results file was not consumed"
    );
    let left_files = std::fs::read_dir(art.join("files"))
        .map(|d| d.count())
        .unwrap_or(0);
    ensure!(
        left_files == 0,
        "{left_files} entries were left in the artifacts' files/"
    );
    let dest = destination(out, PLATFORM, test);
    let read = |rel: &str| std::fs::read(dest.join(rel)).ok();
    ensure!(
        read("out.txt").as_deref() == Some(b"output\n".as_slice())
            && read("sub/one/deeper/log.txt").as_deref() == Some([0u8, 1, 0xff].as_slice())
            && read("unlisted.bin").as_deref() == Some(b"extra".as_slice()),
        "the files did not arrive intact in {}",
        dest.display()
    );
    let mode = std::fs::metadata(dest.join("unlisted.bin"))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    ensure!(mode == 0o751, "a moved file's mode became {mode:o}");
    let link = std::fs::read_link(dest.join("link")).ok();
    ensure!(
        link.as_deref() == Some(Path::new("out.txt")),
        "a symlink arrived as {link:?}"
    );
    Ok(())
}

/// Finishes `agg` and checks that `test` was recorded once, under [`PLATFORM`], with
/// [`RESULTS`]' results.
async fn recorded_once(
    t: &AggregatorTarget,
    agg: &dyn Aggregator,
    out: &Path,
    test: &str,
) -> CheckResult {
    let recorded = t.finish_and_read(agg, out).await?;
    let mine = find(&recorded, test);
    ensure!(
        mine.len() == 1,
        "the test was recorded {} times: {recorded:?}",
        mine.len()
    );
    ensure!(
        mine[0].platform == PLATFORM && mine[0].results == expected_results(),
        "recorded {:?}, expected platform {PLATFORM} and {:?}",
        mine[0],
        expected_results()
    );
    Ok(())
}

/// Artifacts without a results file are refused with an error, nothing is recorded or
/// moved, and the same ingest works once the file is there.
pub async fn missing_results(t: &AggregatorTarget) -> CheckResult {
    let out = tempfile::tempdir().context("an output directory")?;
    let agg = t.make(out.path(), false)?;
    let art = tempfile::tempdir().context("an artifacts directory")?;
    write_artifacts(art.path(), RESULTS)?;
    std::fs::remove_file(art.path().join("results")).context("removing results")?;
    let test = "/conformance/missing";
    let res = agg.ingest(PLATFORM, test, art.path()).await;
    ensure!(
        matches!(res, Err(AggregatorError::MissingResults(_))),
        "ingesting artifacts without results returned {res:?} (expected MissingResults)"
    );
    untouched(art.path())?;
    std::fs::write(art.path().join("results"), RESULTS).context("writing results")?;
    agg.ingest(PLATFORM, test, art.path())
        .await
        .context("the same ingest with the results file")?;
    let recorded = t.finish_and_read(agg.as_ref(), out.path()).await?;
    ensure!(
        find(&recorded, test).len() == 1,
        "after a refused and a good ingest, the test is recorded {} times",
        find(&recorded, test).len()
    );
    Ok(())
}

/// A results file with a bad line is refused as a whole: no line of it is recorded, no file
/// moved, and the ingest can be retried once fixed.
pub async fn bad_results_all_or_nothing(t: &AggregatorTarget) -> CheckResult {
    let out = tempfile::tempdir().context("an output directory")?;
    let agg = t.make(out.path(), false)?;
    let art = tempfile::tempdir().context("an artifacts directory")?;
    let bad = format!("{RESULTS}{{\"status\": \"pass\", \"files\": \n");
    write_artifacts(art.path(), &bad)?;
    let test = "/conformance/bad";
    let res = agg.ingest(PLATFORM, test, art.path()).await;
    ensure!(
        res.is_err(),
        "a results file with a broken line was accepted"
    );
    untouched(art.path())?;
    ensure!(
        art.path().join("results").is_file(),
        "a refused ingest consumed the results file"
    );
    ensure!(
        !destination(out.path(), PLATFORM, test).exists(),
        "a refused ingest created its destination"
    );
    std::fs::write(art.path().join("results"), RESULTS).context("fixing results")?;
    agg.ingest(PLATFORM, test, art.path())
        .await
        .context("the ingest retried after the fix")?;
    let recorded = t.finish_and_read(agg.as_ref(), out.path()).await?;
    let mine = find(&recorded, test);
    ensure!(
        mine.len() == 1 && mine[0].results == expected_results(),
        "after a refused and a retried ingest the output holds {mine:?}"
    );
    Ok(())
}

/// Result lines handed over in memory ([`Aggregator::ingest_lines`]) are recorded as the
/// same lines in a `results` file would be, and the files moved the same way; no `results`
/// file is left behind. Broken lines are refused as a whole, the artifacts left as they were
/// (without a `results` file), and the same call then succeeds with good lines.
pub async fn ingest_lines_like_ingest(t: &AggregatorTarget) -> CheckResult {
    let out = tempfile::tempdir().context("an output directory")?;
    let agg = t.make(out.path(), false)?;
    let art = tempfile::tempdir().context("an artifacts directory")?;
    write_artifacts(art.path(), RESULTS)?;
    std::fs::remove_file(art.path().join("results")).context("removing results")?;
    let test = "/conformance/lines";
    let bad = format!("{RESULTS}{{\"status\": \"pass\", \"files\": \n");
    let res = agg
        .ingest_lines(PLATFORM, test, art.path(), bad.as_bytes())
        .await;
    ensure!(res.is_err(), "broken result lines were accepted");
    untouched(art.path())?;
    ensure!(
        !art.path().join("results").exists(),
        "a refused ingest_lines left a results file"
    );
    ensure!(
        !destination(out.path(), PLATFORM, test).exists(),
        "a refused ingest_lines created its destination"
    );
    agg.ingest_lines(PLATFORM, test, art.path(), RESULTS.as_bytes())
        .await
        .context("ingest_lines")?;
    consumed_and_moved(art.path(), out.path(), test)?;
    recorded_once(t, agg.as_ref(), out.path(), test).await
}

/// A second ingest of a (platform, test) pair is refused unless duplicates are allowed,
/// then it is recorded as `<test> (1)`, `<test> (2)`, …; another platform is another pair.
pub async fn duplicates(t: &AggregatorTarget) -> CheckResult {
    let test = "/conformance/dup";
    for allow in [false, true] {
        let out = tempfile::tempdir().context("an output directory")?;
        let agg = t.make(out.path(), allow)?;
        for (i, platform) in [PLATFORM, PLATFORM, "other@aarch64", PLATFORM]
            .iter()
            .enumerate()
        {
            let art = tempfile::tempdir().context("an artifacts directory")?;
            write_artifacts(art.path(), RESULTS)?;
            let res = agg.ingest(platform, test, art.path()).await;
            let duplicate = *platform == PLATFORM && i > 0;
            if duplicate && !allow {
                ensure!(
                    matches!(res, Err(AggregatorError::Duplicate { .. })),
                    "a duplicate ingest returned {res:?} (expected Duplicate)"
                );
                untouched(art.path())?;
            } else {
                res.context(format!("ingest {i} ({platform})"))?;
            }
        }
        let recorded = t.finish_and_read(agg.as_ref(), out.path()).await?;
        let mut names: Vec<(String, String)> = recorded
            .iter()
            .map(|r| (r.platform.clone(), r.test.clone()))
            .collect();
        names.sort();
        let mut expected = vec![
            ("other@aarch64".to_string(), test.to_string()),
            (PLATFORM.to_string(), test.to_string()),
        ];
        if allow {
            expected.push((PLATFORM.to_string(), format!("{test} (1)")));
            expected.push((PLATFORM.to_string(), format!("{test} (2)")));
        }
        expected.sort();
        ensure!(
            names == expected,
            "with duplicates {}allowed, recorded {names:?} (expected {expected:?})",
            if allow { "" } else { "not " }
        );
    }
    Ok(())
}

/// Concurrent ingests of different tests are all recorded whole.
pub async fn concurrent_ingests(t: &AggregatorTarget) -> CheckResult {
    let out = tempfile::tempdir().context("an output directory")?;
    let agg = t.make(out.path(), false)?;
    let mut arts = Vec::new();
    for _ in 0..16 {
        let art = tempfile::tempdir().context("an artifacts directory")?;
        write_artifacts(art.path(), RESULTS)?;
        arts.push(art);
    }
    let outcomes = futures::future::join_all(arts.iter().enumerate().map(|(i, art)| {
        let agg = agg.clone();
        async move {
            agg.ingest(PLATFORM, &format!("/conformance/many/{i}"), art.path())
                .await
        }
    }))
    .await;
    for (i, res) in outcomes.into_iter().enumerate() {
        res.context(format!("concurrent ingest {i}"))?;
    }
    let recorded = t.finish_and_read(agg.as_ref(), out.path()).await?;
    for i in 0..16 {
        let test = format!("/conformance/many/{i}");
        let mine = find(&recorded, &test);
        ensure!(
            mine.len() == 1 && mine[0].results == expected_results(),
            "{test} was recorded as {mine:?}"
        );
    }
    Ok(())
}

/// After `finish`, an ingest fails and leaves the artifacts alone.
pub async fn no_ingest_after_finish(t: &AggregatorTarget) -> CheckResult {
    let out = tempfile::tempdir().context("an output directory")?;
    let agg = t.make(out.path(), false)?;
    agg.finish().await.context("finish")?;
    let art = tempfile::tempdir().context("an artifacts directory")?;
    write_artifacts(art.path(), RESULTS)?;
    let res = agg.ingest(PLATFORM, "/conformance/late", art.path()).await;
    ensure!(res.is_err(), "an ingest after finish succeeded");
    untouched(art.path())?;
    Ok(())
}
