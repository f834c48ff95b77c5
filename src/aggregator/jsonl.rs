//! [`JsonlAggregator`]: one JSON array per result line, byte-compatible with upstream ATEX.

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::line_file::{Encoding, LineFile};
use super::names::RecordedNames;
use super::{Aggregator, AggregatorError, ResultLineError};
use crate::artifacts::{ArtifactsDir, normalize_name};
use crate::fs_tree;
use crate::jsonfmt::to_python_json;

/// How the results file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain text.
    #[default]
    None,
    /// gzip with this level (0–9; upstream default 9).
    Gzip(u32),
    /// xz with this preset (0–9; upstream default 9).
    Xz(u32),
}

impl Compression {
    fn default_suffix(&self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip(_) => ".gz",
            Compression::Xz(_) => ".xz",
        }
    }
}

/// Options of [`JsonlAggregator`].
#[derive(Debug, Clone)]
pub struct JsonlOptions {
    /// Allow ingesting a (platform, test) pair again; later ones are renamed `<test> (1)`,
    /// `<test> (2)`, …
    pub allow_duplicate: bool,
    /// Compression of the results file.
    pub compression: Compression,
    /// With compression: also compress every uploaded regular file (default true).
    pub compress_files: bool,
    /// Suffix of compressed uploaded files; `None` uses `.gz`/`.xz`, `Some("")` compresses
    /// in place under the original name.
    pub compress_files_suffix: Option<String>,
    /// Base names of uploaded files that are never compressed.
    pub compress_files_exclude: Vec<String>,
}

impl Default for JsonlOptions {
    fn default() -> Self {
        Self {
            allow_duplicate: false,
            compression: Compression::None,
            compress_files: true,
            compress_files_suffix: None,
            compress_files_exclude: Vec::new(),
        }
    }
}

impl JsonlOptions {
    fn file_suffix(&self) -> Option<String> {
        if self.compression == Compression::None || !self.compress_files {
            return None;
        }
        Some(
            self.compress_files_suffix
                .clone()
                .unwrap_or_else(|| self.compression.default_suffix().to_string()),
        )
    }
}

struct State {
    writer: Option<LineFile>,
    names: RecordedNames,
}

struct Inner {
    target: PathBuf,
    files: PathBuf,
    options: JsonlOptions,
    state: Mutex<State>,
    /// Bounds the ingests running in the blocking pool at once: they are file-system work
    /// serialised on one results file, so more threads would only add threads.
    slots: tokio::sync::Semaphore,
}

/// How many ingests of one aggregator run in the blocking pool at once.
const INGEST_THREADS: usize = 4;

/// Writes `results.jsonl` (optionally `.gz`/`.xz`) and a `files/` tree.
///
/// Each result line of an ingested test becomes the JSON array
/// `[platform, status, test_name, subtest_name, files, note]` (missing values `null`,
/// missing files `[]`), written with Python's `json.dumps` spacing. Uploaded files land at
/// `files/<platform>/<test>/<subtest>/<file>`.
///
/// An ingest is all or nothing: when it fails (a bad results line, a file that cannot be
/// moved or compressed, a failed write of the results file) the results file and the files
/// directory are as before, the artifacts are untouched and the same ingest can be retried.
/// A compressed results file is a series of complete gzip members / xz streams that
/// `gzip -d`, `xz -d` and Python's `gzip`/`lzma` modules read as one text; it is never left
/// with a torn line or a broken stream.
///
/// ```
/// use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let out = tempfile::tempdir()?;
/// let agg = JsonlAggregator::create(out.path().join("results.jsonl"), out.path().join("files"),
///                                   JsonlOptions::default())?;
/// let art = tempfile::tempdir()?;
/// std::fs::write(art.path().join("results"), "{\"status\": \"pass\"}\n")?;
/// agg.ingest("9.8@x86_64", "/some/test", art.path()).await?;
/// agg.finish().await?;
/// assert_eq!(std::fs::read_to_string(out.path().join("results.jsonl"))?,
///            "[\"9.8@x86_64\", \"pass\", \"/some/test\", null, [], null]\n");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JsonlAggregator {
    inner: Arc<Inner>,
}

impl fmt::Debug for JsonlAggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlAggregator")
            .field("target", &self.inner.target)
            .field("files", &self.inner.files)
            .field("options", &self.inner.options)
            .finish()
    }
}

impl JsonlAggregator {
    /// Creates the results file (which must not exist) and the files directory (which must
    /// not exist either).
    pub fn create(
        target: impl Into<PathBuf>,
        files: impl Into<PathBuf>,
        options: JsonlOptions,
    ) -> Result<Self, AggregatorError> {
        let target = target.into();
        let files = files.into();
        if fs::symlink_metadata(&files).is_ok() {
            return Err(AggregatorError::DestinationExists(files));
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| AggregatorError::io(format!("creating {}", target.display()), e))?;
        fs::create_dir_all(&files)
            .map_err(|e| AggregatorError::io(format!("creating {}", files.display()), e))?;
        let writer = LineFile::new(file, encoding_of(options.compression));
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                files,
                options,
                state: Mutex::new(State {
                    writer: Some(writer),
                    names: RecordedNames::default(),
                }),
                slots: tokio::sync::Semaphore::new(INGEST_THREADS),
            }),
        })
    }

    /// Opens an existing results file to append to it (resuming a run that was killed).
    ///
    /// The file is read back (plain, gzip or xz, detected from its content; a torn last
    /// line or a cut compressed stream is dropped with a warning, see
    /// [`read_good_lines`](crate::results::read_good_lines)); the rows for which `keep`
    /// returns true are written to a new file in the same directory, which then replaces
    /// the old one atomically (a rename), so a crash during the rewrite leaves the old file.
    /// Appending starts after them. A compressed file is rewritten as complete gzip
    /// members / xz streams and appends start a new one: a cut stream cannot be continued,
    /// and a decoder must never meet a broken member in the middle of the file. The new
    /// file uses `options.compression`, whatever the old one used.
    ///
    /// The files directory is created if missing; staging directories of ingests that were
    /// cut off are removed. The kept rows count as recorded: ingesting their (platform,
    /// test) again is a duplicate. Returns the aggregator and the kept rows.
    pub fn reopen(
        target: impl Into<PathBuf>,
        files: impl Into<PathBuf>,
        options: JsonlOptions,
        keep: &dyn Fn(&crate::results::ResultRow) -> bool,
    ) -> Result<(Self, Vec<crate::results::ResultRow>), AggregatorError> {
        let target = target.into();
        let files = files.into();
        let good = crate::results::read_good_lines(&target).map_err(AggregatorError::Reopen)?;
        let mut text = Vec::new();
        let mut kept = Vec::new();
        for (line, row) in good.lines {
            if keep(&row) {
                text.extend_from_slice(&line);
                kept.push(row);
            }
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let io = |what: &str, e| AggregatorError::io(format!("{what} {}", target.display()), e);
        let tmp = tempfile::Builder::new()
            .prefix(".atex-results-")
            .tempfile_in(&dir)
            .map_err(|e| io("rewriting", e))?;
        let file = tmp.as_file().try_clone().map_err(|e| io("rewriting", e))?;
        let mut writer = LineFile::new(file, encoding_of(options.compression));
        if !text.is_empty() {
            writer.append(&text).map_err(|e| io("rewriting", e))?;
        }
        writer.seal().map_err(|e| io("rewriting", e))?;
        tmp.as_file().sync_all().map_err(|e| io("rewriting", e))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
                .map_err(|e| io("rewriting", e))?;
        }
        tmp.persist(&target).map_err(|e| io("replacing", e.error))?;
        fs::create_dir_all(&files)
            .map_err(|e| AggregatorError::io(format!("creating {}", files.display()), e))?;
        remove_staging(&files);
        let mut names = RecordedNames::default();
        for row in &kept {
            names.record(&row.platform, &row.test);
        }
        Ok((
            Self {
                inner: Arc::new(Inner {
                    target,
                    files,
                    options,
                    state: Mutex::new(State {
                        writer: Some(writer),
                        names,
                    }),
                    slots: tokio::sync::Semaphore::new(INGEST_THREADS),
                }),
            },
            kept,
        ))
    }

    /// One ingest on the blocking pool; `in_memory`: the result lines when they are not in
    /// the artifacts' `results` file.
    async fn ingest_from(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
        in_memory: Option<Vec<u8>>,
    ) -> Result<(), AggregatorError> {
        let name = self.inner.reserve(platform, test)?;
        // Never closed, so acquiring only waits for a free slot.
        let slot = self.inner.slots.acquire().await;
        let inner = self.inner.clone();
        let (platform_owned, art) = (platform.to_string(), ArtifactsDir::new(artifacts));
        let res = crate::scope::spawn_blocking("jsonl-ingest", move || {
            inner.ingest_blocking(&platform_owned, &name, &art, in_memory.as_deref())
        })
        .await
        .unwrap_or_else(|e| {
            Err(AggregatorError::io(
                "ingest task failed",
                std::io::Error::other(e),
            ))
        });
        drop(slot);
        if res.is_err() {
            self.inner.unreserve(platform, test);
        }
        res
    }

    /// Removes the uploaded files of (`platform`, `test`) — for a test about to run again
    /// whose earlier attempt was cut off after its files were placed but before its rows
    /// were written. Returns whether there was anything.
    pub fn remove_files_of(&self, platform: &str, test: &str) -> std::io::Result<bool> {
        let (platform, test) = (normalize_name(platform), normalize_name(test));
        // A name with nothing left (the root test `/`) would name every test's files.
        if platform.as_os_str().is_empty() || test.as_os_str().is_empty() {
            return Ok(false);
        }
        let dest = self.inner.files.join(platform).join(test);
        if fs::symlink_metadata(&dest).is_err() {
            return Ok(false);
        }
        fs_tree::remove_any(&dest)?;
        Ok(true)
    }

    /// The results file.
    pub fn target(&self) -> &Path {
        &self.inner.target
    }

    /// The top directory of uploaded files.
    pub fn files_dir(&self) -> &Path {
        &self.inner.files
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the (platform, test) pair and returns the name to record.
    fn reserve(&self, platform: &str, test: &str) -> Result<String, AggregatorError> {
        let mut st = self.lock();
        if st.writer.is_none() {
            return Err(AggregatorError::Finished);
        }
        st.names
            .reserve(platform, test, self.options.allow_duplicate)
    }

    fn unreserve(&self, platform: &str, test: &str) {
        self.lock().names.unreserve(platform, test);
    }

    /// The output lines for the results file `results`.
    fn convert(
        &self,
        platform: &str,
        test_name: &str,
        results: &Path,
    ) -> Result<String, AggregatorError> {
        let bytes = fs::read(results).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                AggregatorError::MissingResults(results.to_path_buf())
            } else {
                AggregatorError::io(format!("reading {}", results.display()), e)
            }
        })?;
        self.convert_lines(platform, test_name, &bytes, results)
    }

    /// The output lines for the result lines `bytes`; errors name `results` (where the
    /// lines are, or would be) and the line.
    fn convert_lines(
        &self,
        platform: &str,
        test_name: &str,
        bytes: &[u8],
        results: &Path,
    ) -> Result<String, AggregatorError> {
        let suffix = self.options.file_suffix().filter(|s| !s.is_empty());
        let mut out = String::new();
        for (idx, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bad = |source: ResultLineError| AggregatorError::BadResult {
                path: results.to_path_buf(),
                line: idx + 1,
                source,
            };
            let value: Value =
                serde_json::from_slice(line).map_err(|e| bad(ResultLineError::Json(e)))?;
            let Value::Object(obj) = value else {
                return Err(bad(ResultLineError::NotAnObject));
            };
            let mut files = match obj.get("files") {
                None | Some(Value::Null) => Value::Array(Vec::new()),
                Some(v @ Value::Array(_)) => v.clone(),
                Some(_) => return Err(bad(ResultLineError::FilesNotArray)),
            };
            if let (Some(suffix), Value::Array(items)) = (&suffix, &mut files) {
                for item in items.iter_mut() {
                    if let Value::String(name) = item {
                        let base = name.rsplit('/').next().unwrap_or(name);
                        if !self
                            .options
                            .compress_files_exclude
                            .iter()
                            .any(|e| e == base)
                        {
                            name.push_str(suffix);
                        }
                    }
                }
            }
            let row = Value::Array(vec![
                Value::String(platform.to_string()),
                obj.get("status").cloned().unwrap_or(Value::Null),
                Value::String(test_name.to_string()),
                obj.get("name").cloned().unwrap_or(Value::Null),
                files,
                obj.get("note").cloned().unwrap_or(Value::Null),
            ]);
            out.push_str(&to_python_json(&row));
            out.push('\n');
        }
        Ok(out)
    }

    /// Ingests one test, all or nothing: the result lines are converted first, the files
    /// are put in place next (moved, or copied and compressed while the originals stay), and
    /// the lines are appended last. A failure at any step undoes the earlier ones, so the
    /// artifacts stay as they were and the ingest can be retried.
    ///
    /// `in_memory`: the result lines, when they are not in the artifacts' `results` file
    /// (which is then neither read nor removed).
    fn ingest_blocking(
        &self,
        platform: &str,
        test_name: &str,
        artifacts: &ArtifactsDir,
        in_memory: Option<&[u8]>,
    ) -> Result<(), AggregatorError> {
        let results = artifacts.results();
        let lines = match in_memory {
            Some(bytes) => self.convert_lines(platform, test_name, bytes, &results)?,
            None => self.convert(platform, test_name, &results)?,
        };
        let dest = self
            .files
            .join(normalize_name(platform))
            .join(normalize_name(test_name));
        let src_files = artifacts.files();
        let have_files = !fs_tree::is_empty_dir(&src_files)
            .map_err(|e| AggregatorError::io(format!("reading {}", src_files.display()), e))?;
        let placed = if have_files {
            // The destination check is the rename's own (`place_files`).
            Some(self.place_files(&src_files, &dest).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    return AggregatorError::DestinationExists(dest.clone());
                }
                AggregatorError::io(
                    format!("moving {} to {}", src_files.display(), dest.display()),
                    e,
                )
            })?)
        } else {
            if fs::symlink_metadata(&dest).is_ok() {
                return Err(AggregatorError::DestinationExists(dest));
            }
            None
        };
        let written = {
            let mut st = self.lock();
            match st.writer.as_mut() {
                None => Err(AggregatorError::Finished),
                Some(writer) => writer.append(lines.as_bytes()).map_err(|e| {
                    AggregatorError::io(format!("writing {}", self.target.display()), e)
                }),
            }
        };
        if let Err(e) = written {
            if let Some(placed) = placed {
                placed.undo(&src_files, &dest);
            }
            return Err(e);
        }
        if let Some(placed) = placed {
            placed.commit(&src_files);
        }
        if in_memory.is_none()
            && let Err(e) = fs::remove_file(&results)
        {
            tracing::warn!(path = %results.display(), error = %crate::error::chain(&e), "could not remove ingested results");
        }
        Ok(())
    }

    /// Puts the uploaded files `src` at `dest` without losing `src` on failure: a rename
    /// when the files are not compressed, otherwise a (compressed) copy built in a staging
    /// directory under the files directory and renamed into place. An existing `dest` is
    /// an `AlreadyExists` error. The parent directory is created when missing (the
    /// rename says so: one system call per ingest instead of a check of every ancestor).
    fn place_files(&self, src: &Path, dest: &Path) -> std::io::Result<Placed> {
        let suffix = self.options.file_suffix();
        if suffix.is_none() {
            let mut renamed = fs_tree::rename_no_replace(src, dest);
            if renamed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
                && let Some(parent) = dest.parent()
            {
                fs::create_dir_all(parent)?;
                renamed = fs_tree::rename_no_replace(src, dest);
            }
            match renamed {
                Ok(()) => return Ok(Placed::Renamed),
                Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => {}
                Err(e) => return Err(e),
            }
        }
        if fs::symlink_metadata(dest).is_ok() {
            return Err(std::io::ErrorKind::AlreadyExists.into());
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        let stage = tempfile::Builder::new()
            .prefix(".atex-ingest-")
            .tempdir_in(&self.files)?;
        let built = stage.path().join("files");
        match &suffix {
            Some(suffix) => self.compress_copy(src, &built, suffix)?,
            None => fs_tree::copy_tree(src, &built)?,
        }
        fs_tree::rename_no_replace(&built, dest)?;
        if let Err(e) = stage.close() {
            tracing::warn!(error = %crate::error::chain(&e), "could not remove an empty staging directory");
        }
        Ok(Placed::Copied)
    }

    /// Copies `src` to `dst`, compressing regular files that are not excluded; `src` is
    /// left as it is.
    fn compress_copy(&self, src: &Path, dst: &Path, suffix: &str) -> std::io::Result<()> {
        let meta = fs::symlink_metadata(src)?;
        if meta.is_dir() {
            fs::create_dir(dst)?;
            for entry in fs::read_dir(src)? {
                let entry = entry?;
                self.compress_copy(&entry.path(), &dst.join(entry.file_name()), suffix)?;
            }
            return Ok(());
        }
        let base = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let excluded = self.options.compress_files_exclude.contains(&base);
        if meta.file_type().is_symlink() {
            return fs_tree::copy_tree(src, dst);
        }
        if !meta.is_file() || excluded {
            // Verbatim: a hard link shares the file (and keeps special files); a copy when
            // the staging directory is on another filesystem.
            return match fs::hard_link(src, dst) {
                Ok(()) => Ok(()),
                Err(_) => fs_tree::copy_tree(src, dst),
            };
        }
        let mut target = dst.as_os_str().to_owned();
        target.push(suffix);
        let target = PathBuf::from(target);
        let mut input = File::open(src)?;
        let output = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)?;
        match self.options.compression {
            Compression::Gzip(level) => {
                let mut enc =
                    flate2::write::GzEncoder::new(output, flate2::Compression::new(level.min(9)));
                std::io::copy(&mut input, &mut enc)?;
                enc.finish()?;
            }
            Compression::Xz(preset) => {
                let mut enc = liblzma::write::XzEncoder::new(output, preset.min(9));
                std::io::copy(&mut input, &mut enc)?;
                enc.finish()?;
            }
            Compression::None => {
                let mut output = output;
                std::io::copy(&mut input, &mut output)?;
            }
        }
        Ok(())
    }
}

fn encoding_of(compression: Compression) -> Encoding {
    match compression {
        Compression::None => Encoding::Plain,
        Compression::Gzip(level) => Encoding::Gzip(level),
        Compression::Xz(preset) => Encoding::Xz(preset),
    }
}

/// Removes the staging directories (`.atex-ingest-*`) that ingests cut off by a crash left
/// in the files directory.
fn remove_staging(files: &Path) {
    let Ok(entries) = fs::read_dir(files) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".atex-ingest-")
            && let Err(e) = fs_tree::remove_any(&entry.path())
        {
            tracing::warn!(path = %entry.path().display(), error = %crate::error::chain(&e), "could not remove a staging directory");
        }
    }
}

/// How [`Inner::place_files`] put the files in place, to undo or complete it.
enum Placed {
    /// The source directory was renamed to the destination.
    Renamed,
    /// The destination is a copy; the source is still there.
    Copied,
}

impl Placed {
    /// The lines could not be written: put things back as they were.
    fn undo(self, src: &Path, dest: &Path) {
        let undone = match self {
            Placed::Renamed => fs::rename(dest, src),
            Placed::Copied => fs_tree::remove_any(dest),
        };
        if let Err(e) = undone {
            tracing::error!(src = %src.display(), dest = %dest.display(), error = %crate::error::chain(&e),
                "could not undo placing the files of a failed ingest");
        }
    }

    /// The lines are written: the originals of a copy go.
    fn commit(self, src: &Path) {
        if let Placed::Copied = self
            && let Err(e) = fs_tree::remove_any(src)
        {
            tracing::warn!(path = %src.display(), error = %crate::error::chain(&e), "could not remove ingested files");
        }
    }
}

#[async_trait]
impl Aggregator for JsonlAggregator {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError> {
        self.ingest_from(platform, test, artifacts, None).await
    }

    async fn ingest_lines(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
        lines: &[u8],
    ) -> Result<(), AggregatorError> {
        self.ingest_from(platform, test, artifacts, Some(lines.to_vec()))
            .await
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        let writer = self.inner.lock().writer.take();
        match writer {
            Some(w) => {
                let target = self.inner.target.clone();
                crate::scope::spawn_blocking("jsonl-finish", move || w.finish())
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(|e| AggregatorError::io(format!("closing {}", target.display()), e))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn artifacts(status: &str) -> tempfile::TempDir {
        let art = tempfile::tempdir().expect("tmp");
        fs::write(
            art.path().join("results"),
            format!("{{\"status\": \"{status}\"}}\n"),
        )
        .expect("write");
        art
    }

    #[test]
    fn removing_the_files_of_a_nameless_test_removes_nothing() {
        let out = tempfile::tempdir().expect("ok");
        let files = out.path().join("files");
        let agg = JsonlAggregator::create(
            out.path().join("results.jsonl"),
            &files,
            JsonlOptions::default(),
        )
        .expect("ok");
        std::fs::create_dir_all(files.join("p/other")).expect("ok");
        for test in ["/", "", "/./..", "//"] {
            assert!(!agg.remove_files_of("p", test).expect("ok"), "{test:?}");
            assert!(!agg.remove_files_of("..", "/other").expect("ok"));
        }
        assert!(files.join("p/other").is_dir());
        assert!(agg.remove_files_of("p", "/other").expect("ok"));
        assert!(!files.join("p/other").exists());
    }

    #[tokio::test]
    async fn reopen_keeps_chosen_rows_drops_a_cut_stream_and_appends_a_new_member() {
        let out = tempfile::tempdir().expect("tmp");
        let target = out.path().join("results.jsonl.xz");
        // What a killed writer leaves: two sync-flushed rows, a third cut mid-stream.
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(b"[\"p\", \"pass\", \"/a\", null, [], null]\n[\"p\", \"fail\", \"/b\", null, [], null]\n")
            .expect("xz");
        xz.flush().expect("flush");
        let _ = xz.write(&[]).expect("drain");
        let flushed = xz.get_ref().len();
        xz.write_all(b"[\"p\", \"pass\", \"/c\", null, [], null]\n")
            .expect("xz");
        let full = xz.finish().expect("xz");
        fs::write(&target, &full[..flushed + 5]).expect("write");
        let options = JsonlOptions {
            compression: Compression::Xz(6),
            ..JsonlOptions::default()
        };
        let (agg, kept) =
            JsonlAggregator::reopen(&target, out.path().join("files"), options, &|row| {
                row.test != "/b"
            })
            .expect("reopen");
        assert_eq!(kept.len(), 1);
        // /a counts as recorded; /b was dropped and runs again.
        let art = artifacts("pass");
        assert!(matches!(
            agg.ingest("p", "/a", art.path()).await,
            Err(AggregatorError::Duplicate { .. })
        ));
        agg.ingest("p", "/b", art.path()).await.expect("ingest");
        agg.finish().await.expect("finish");
        let text = crate::results::read_decoded(&target).expect("read");
        assert_eq!(
            String::from_utf8(text).expect("utf8"),
            "[\"p\", \"pass\", \"/a\", null, [], null]\n[\"p\", \"pass\", \"/b\", null, [], null]\n"
        );
        // A damaged (not torn) file is refused.
        fs::write(&target, "{}\n").expect("write");
        assert!(matches!(
            JsonlAggregator::reopen(
                &target,
                out.path().join("files"),
                JsonlOptions::default(),
                &|_| true
            ),
            Err(AggregatorError::Reopen(_))
        ));
    }
}
