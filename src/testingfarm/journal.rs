//! The request journal: outstanding Testing Farm requests on disk, so that a crashed or
//! killed run leaves nothing that `atex tf cleanup` cannot find.
//!
//! # Format
//!
//! One JSON object per line, only ever appended:
//!
//! ```text
//! {"pending":"<marker>","since":"2026-06-30T10:00:00.000000"}   a create is about to be posted
//! {"created":"<request id>","marker":"<marker>"}              the create returned this id
//! {"released":"<request id>"}                                 the request was cancelled
//! {"abandoned":"<marker>"}                                    the create definitely created nothing
//! ```
//!
//! A request id is *outstanding* while it has a `created` line and no `released` line. A
//! marker is outstanding while it has a `pending` line and neither a `created` nor an
//! `abandoned` line: the create may or may not have reached the server, and only a search
//! of the token's requests for the marker can tell (see
//! [`Client::find_created`](super::Client::find_created)).
//!
//! # Durability and sharing
//!
//! Every change takes an exclusive `flock` on the file, appends one line with a single
//! `write`, and `fsync`s it before returning, so an entry is on disk before the request it
//! describes can leak. When a change leaves nothing outstanding the file is truncated to
//! zero length under the same lock (it is never removed or replaced: another process may
//! hold it open, and a rename would split the lock). Several runs may share one journal.
//! Lines that cannot be parsed (a torn write after a power loss) are skipped with a
//! warning.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::client::Client;
pub use super::error::JournalError;
use super::error::TfError;
use super::new_request::NewRequest;
use super::request::Request;
use super::request_info::CancelOutcome;
use crate::timestamp::Timestamp;

/// The journal file `atex` uses when none is given.
pub const DEFAULT_JOURNAL: &str = ".atex-tf-journal";

/// How far before a `pending` entry's time a cleanup search looks (clock skew between us
/// and the server).
const SEARCH_SLACK: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
enum Entry {
    Pending { pending: String, since: String },
    Created { created: String, marker: String },
    Released { released: String },
    Abandoned { abandoned: String },
}

/// A create that may have reached the server but whose request id is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCreate {
    /// The request's idempotency marker.
    pub marker: String,
    /// When the create was started.
    pub since: Timestamp,
}

/// What a journal says is outstanding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outstanding {
    /// Request ids not yet released, in the order they were created.
    pub requests: Vec<String>,
    /// Creates whose outcome is unknown.
    pub pending: Vec<PendingCreate>,
}

impl Outstanding {
    /// Whether nothing is outstanding.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.pending.is_empty()
    }
}

/// An append-only file of outstanding requests (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal at `path` (created on the first change).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
        move |source| JournalError {
            path: self.path.clone(),
            op,
            source,
        }
    }

    fn lock(&self, create: bool) -> Result<Option<Flock<File>>, JournalError> {
        let file = match OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err("open")(e)),
        };
        Flock::lock(file, FlockArg::LockExclusive)
            .map(Some)
            .map_err(|(_, errno)| self.err("lock")(std::io::Error::from(errno)))
    }

    fn append(&self, file: &mut File, entry: &Entry) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(entry)
            .map_err(|e| self.err("encode an entry")(std::io::Error::other(e)))?;
        line.push(b'\n');
        file.write_all(&line).map_err(self.err("append"))?;
        file.sync_data().map_err(self.err("sync"))
    }

    fn read_all(&self, file: &mut File) -> Result<Outstanding, JournalError> {
        file.seek(SeekFrom::Start(0)).map_err(self.err("seek"))?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(self.err("read"))?;
        Ok(self.parse(&text))
    }

    fn parse(&self, text: &str) -> Outstanding {
        let mut requests: Vec<String> = Vec::new();
        let mut pending: Vec<PendingCreate> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry = match serde_json::from_str::<Entry>(line) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(journal = %self.path.display(), line = n + 1, error = %e, "skipping an unreadable journal line");
                    continue;
                }
            };
            match entry {
                Entry::Pending {
                    pending: marker,
                    since,
                } => {
                    let since =
                        Timestamp::parse(&since).unwrap_or_else(|_| Timestamp::from_micros(0));
                    pending.push(PendingCreate { marker, since });
                }
                Entry::Created { created, marker } => {
                    pending.retain(|p| p.marker != marker);
                    if !requests.contains(&created) {
                        requests.push(created);
                    }
                }
                Entry::Released { released } => requests.retain(|r| *r != released),
                Entry::Abandoned { abandoned } => pending.retain(|p| p.marker != abandoned),
            }
        }
        Outstanding { requests, pending }
    }

    fn change(&self, entry: Entry) -> Result<(), JournalError> {
        let Some(mut file) = self.lock(true)? else {
            return Ok(());
        };
        self.append(&mut file, &entry)?;
        if matches!(entry, Entry::Released { .. } | Entry::Abandoned { .. })
            && self.read_all(&mut file)?.is_empty()
        {
            file.set_len(0).map_err(self.err("truncate"))?;
            file.sync_data().map_err(self.err("sync"))?;
        }
        Ok(())
    }

    /// Records that a create carrying `marker` is about to be posted.
    pub fn record_pending(&self, marker: &str) -> Result<(), JournalError> {
        self.change(Entry::Pending {
            pending: marker.to_string(),
            since: Timestamp::now().to_string(),
        })
    }

    /// Records the id the create carrying `marker` returned.
    pub fn record_created(&self, id: &str, marker: &str) -> Result<(), JournalError> {
        self.change(Entry::Created {
            created: id.to_string(),
            marker: marker.to_string(),
        })
    }

    /// Records that request `id` no longer needs cancelling.
    pub fn record_released(&self, id: &str) -> Result<(), JournalError> {
        self.change(Entry::Released {
            released: id.to_string(),
        })
    }

    /// Records that the create carrying `marker` certainly created nothing.
    pub fn record_abandoned(&self, marker: &str) -> Result<(), JournalError> {
        self.change(Entry::Abandoned {
            abandoned: marker.to_string(),
        })
    }

    /// What is outstanding (nothing if the file does not exist).
    pub fn outstanding(&self) -> Result<Outstanding, JournalError> {
        match self.lock(false)? {
            Some(mut file) => self.read_all(&mut file),
            None => Ok(Outstanding::default()),
        }
    }

    /// [`Client::create`] with the request journaled: `pending` before the POST, `created`
    /// once the id is known. A create that failed without reaching the server (a refusal
    /// such as 400/401/422) is recorded as `abandoned`; one whose outcome stays unknown
    /// (cancelled mid-call, retries exhausted, [`TfError::CreateUnresolved`]) keeps its
    /// `pending` entry for [`cleanup`].
    pub async fn create(&self, client: &Client, request: &NewRequest) -> Result<Request, TfError> {
        self.record_pending(request.marker())?;
        match client.create(request).await {
            Ok(created) => {
                self.record_created(created.id(), request.marker())?;
                Ok(created)
            }
            Err(e) => {
                let refused =
                    matches!(
                        &e,
                        TfError::Api { status, .. } if !matches!(status, 408 | 429 | 500..=599)
                    ) || matches!(&e, TfError::Unauthorized { .. } | TfError::NoToken { .. });
                if refused {
                    self.record_abandoned(request.marker())?;
                }
                Err(e)
            }
        }
    }

    /// Cancels the request `id` and records it released when the server confirms it holds
    /// nothing any more (any [`CancelOutcome`]).
    pub async fn cancel(&self, client: &Client, id: &str) -> Result<CancelOutcome, TfError> {
        let outcome = client.cancel(id).await?;
        self.record_released(id)?;
        Ok(outcome)
    }
}

/// What [`cleanup`] did.
#[derive(Debug, Default)]
pub struct CleanupReport {
    /// Requests cancelled (or found already gone), with the server's answer.
    pub cancelled: Vec<(String, CancelOutcome)>,
    /// Pending creates resolved: the marker and the request ids found for it.
    pub resolved: Vec<(String, Vec<String>)>,
    /// Requests or markers that could not be dealt with (they stay in the journal).
    pub failed: Vec<(String, TfError)>,
}

impl CleanupReport {
    /// Whether everything outstanding was dealt with.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Cancels everything `journal` says is outstanding: each request id, and each request a
/// pending create may have made (found among the token's live requests by its marker).
/// Requests already gone (404, 409, 204) count as dealt with. Whatever fails stays in the
/// journal for a later attempt.
pub async fn cleanup(client: &Client, journal: &Journal) -> Result<CleanupReport, TfError> {
    let outstanding = journal.outstanding()?;
    let mut report = CleanupReport::default();
    for id in outstanding.requests {
        match journal.cancel(client, &id).await {
            Ok(outcome) => report.cancelled.push((id, outcome)),
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => report.failed.push((id, e)),
        }
    }
    for p in outstanding.pending {
        let found = match client
            .find_created(&p.marker, p.since.minus(SEARCH_SLACK))
            .await
        {
            Ok(found) => found,
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => {
                report.failed.push((format!("marker {}", p.marker), e));
                continue;
            }
        };
        let mut ids = Vec::new();
        let mut all = true;
        for info in found {
            let id = info.id().to_string();
            journal.record_created(&id, &p.marker)?;
            match journal.cancel(client, &id).await {
                Ok(outcome) => {
                    report.cancelled.push((id.clone(), outcome));
                    ids.push(id);
                }
                Err(e) if e.is_cancelled() => return Err(e),
                Err(e) => {
                    all = false;
                    report.failed.push((id, e));
                }
            }
        }
        if all {
            journal.record_abandoned(&p.marker)?;
            report.resolved.push((p.marker, ids));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_follows_the_entries_and_empties_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join("j"));
        assert!(j.outstanding().unwrap().is_empty());
        j.record_pending("m1").unwrap();
        j.record_pending("m2").unwrap();
        j.record_created("r1", "m1").unwrap();
        let o = j.outstanding().unwrap();
        assert_eq!(o.requests, ["r1"]);
        assert_eq!(o.pending.len(), 1);
        assert_eq!(o.pending[0].marker, "m2");
        j.record_abandoned("m2").unwrap();
        assert!(std::fs::metadata(j.path()).unwrap().len() > 0);
        j.record_released("r1").unwrap();
        assert!(j.outstanding().unwrap().is_empty());
        assert_eq!(std::fs::metadata(j.path()).unwrap().len(), 0);
    }

    #[test]
    fn torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(
            &path,
            "{\"created\":\"r1\",\"marker\":\"m\"}\n{\"created\":\"r2\",\"mar\n{\"created\":\"r3\",\"marker\":\"n\"}\n",
        )
        .unwrap();
        let o = Journal::new(&path).outstanding().unwrap();
        assert_eq!(o.requests, ["r1", "r3"]);
    }
}
