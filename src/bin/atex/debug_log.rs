//! `--debug-log FILE`: the full debug-level log in a file (xz or gzip compressed when the
//! name ends in `.xz` or `.gz`), next to the terse console.
//!
//! The file is one [`tracing_subscriber`] layer with its own level filter; the console
//! layer keeps its own. [`DebugLog::finish`] writes the compressed stream's end: the
//! program calls it when the subcommand returned, which includes a run stopped by the
//! first SIGINT/SIGTERM/SIGHUP. Only the third signal (exit at once) leaves the file
//! without its end (the lines written so far decompress, with an "unexpected end" error).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use flate2::write::GzEncoder;
use liblzma::write::XzEncoder;

/// The file, through its compressor.
enum Encoder {
    Plain(BufWriter<File>),
    Gz(GzEncoder<BufWriter<File>>),
    Xz(XzEncoder<BufWriter<File>>),
}

impl Encoder {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Encoder::Plain(w) => w,
            Encoder::Gz(w) => w,
            Encoder::Xz(w) => w,
        }
    }

    /// Ends the compressed stream and flushes the file.
    fn finish(self) -> std::io::Result<()> {
        let mut file = match self {
            Encoder::Plain(w) => w,
            Encoder::Gz(w) => w.finish()?,
            Encoder::Xz(w) => w.finish()?,
        };
        file.flush()?;
        file.get_ref().sync_all()
    }
}

type Shared = Arc<Mutex<Option<Encoder>>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Option<Encoder>> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why the debug log failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DebugLogError {
    /// The file cannot be created.
    #[error("cannot create the debug log {}", .0.display())]
    Create(PathBuf, #[source] std::io::Error),
    /// The end of the file cannot be written.
    #[error("cannot finish the debug log {}", .0.display())]
    Finish(PathBuf, #[source] std::io::Error),
}

/// The open debug log; [`finish`](Self::finish) it before the program exits.
pub(crate) struct DebugLog {
    path: PathBuf,
    shared: Shared,
}

/// Where the file layer writes: a handle on the shared encoder; lines written after
/// [`DebugLog::finish`] are dropped.
#[derive(Clone)]
pub(crate) struct LogWriter(Shared);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match lock(&self.0).as_mut() {
            Some(enc) => enc.writer().write_all(buf).map(|()| buf.len()),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match lock(&self.0).as_mut() {
            Some(enc) => enc.writer().flush(),
            None => Ok(()),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl DebugLog {
    /// Creates (or truncates) `path`, compressed by its suffix: `.xz` xz, `.gz` gzip,
    /// anything else plain text.
    pub(crate) fn create(path: &Path) -> Result<(DebugLog, LogWriter), DebugLogError> {
        let file = File::create(path).map_err(|e| DebugLogError::Create(path.to_path_buf(), e))?;
        let file = BufWriter::new(file);
        let encoder = match path.extension().and_then(|e| e.to_str()) {
            Some("xz") => Encoder::Xz(XzEncoder::new(file, 6)),
            Some("gz") => Encoder::Gz(GzEncoder::new(file, flate2::Compression::default())),
            _ => Encoder::Plain(file),
        };
        let shared: Shared = Arc::new(Mutex::new(Some(encoder)));
        let log = DebugLog {
            path: path.to_path_buf(),
            shared: shared.clone(),
        };
        Ok((log, LogWriter(shared)))
    }

    /// Writes the end of the compressed stream and flushes the file.
    pub(crate) fn finish(self) -> Result<(), DebugLogError> {
        let encoder = lock(&self.shared).take();
        match encoder {
            Some(enc) => enc
                .finish()
                .map_err(|e| DebugLogError::Finish(self.path.clone(), e)),
            None => Ok(()),
        }
    }
}
