//! `pipeline.log`: incremental reads with HTTP `Range`, and splitting into lines.

use reqwest::Method;
use reqwest::header::CONTENT_RANGE;

use super::client::Client;
use super::error::TfError;

/// What one [`PipelineLog::read_new`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogChunk {
    /// The log does not exist yet (404 or 403: the artifacts directory is published before
    /// the log; a known Testing Farm race).
    NotYet,
    /// Nothing was appended since the last read.
    Nothing,
    /// New bytes (the offset moved past them).
    Data(Vec<u8>),
}

/// Reads a request's `pipeline.log` incrementally from the artifacts server.
///
/// Each [`read_new`](Self::read_new) asks for `Range: bytes=<offset>-`; a `206` is
/// appended, a `416` means nothing new, and a `200` (the server ignored `Range`) is
/// trimmed of the bytes already read. The offset advances with every chunk received, so a
/// reply cut mid-way is not read twice; [`resume_at`](Self::resume_at) continues a log read
/// earlier (for example by another process).
#[derive(Debug, Clone)]
pub struct PipelineLog {
    client: Client,
    url: String,
    offset: u64,
}

impl PipelineLog {
    /// The `pipeline.log` inside the artifacts directory `artifacts_url`.
    pub fn new(client: &Client, artifacts_url: &str) -> Self {
        Self {
            client: client.clone(),
            url: format!("{}/pipeline.log", artifacts_url.trim_end_matches('/')),
            offset: 0,
        }
    }

    /// Continues after the first `offset` bytes.
    pub fn resume_at(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// The log's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// `HEAD`: whether the log exists yet (200), or not yet (404/403).
    pub async fn exists(&self) -> Result<bool, TfError> {
        let reply = self
            .client
            .artifacts_call(Method::HEAD, &self.url, None)
            .await?;
        match reply.status {
            200 => Ok(true),
            403 | 404 => Ok(false),
            _ => Err(self.client.reply_error(&self.endpoint("HEAD"), &reply)),
        }
    }

    fn endpoint(&self, method: &str) -> String {
        let path = reqwest::Url::parse(&self.url)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        format!("{method} {path}")
    }

    /// Reads what was appended since the last read.
    pub async fn read_new(&mut self) -> Result<LogChunk, TfError> {
        let reply = self
            .client
            .artifacts_call(Method::GET, &self.url, Some(self.offset))
            .await?;
        if let Some(e) = &reply.body_error {
            tracing::debug!(url = %self.url, got = reply.body.len(), error = %e, "pipeline.log reply cut; will resume");
        }
        match reply.status {
            206 => {
                if let Some(start) = range_start(&reply.headers)
                    && start != self.offset
                {
                    return Err(TfError::BadReply {
                        endpoint: self.endpoint("GET"),
                        reason: format!(
                            "asked for bytes from {} but got bytes from {start}",
                            self.offset
                        ),
                    });
                }
                self.offset += reply.body.len() as u64;
                Ok(if reply.body.is_empty() {
                    LogChunk::Nothing
                } else {
                    LogChunk::Data(reply.body)
                })
            }
            200 => {
                let seen = usize::try_from(self.offset).unwrap_or(usize::MAX);
                if reply.body.len() <= seen {
                    return Ok(LogChunk::Nothing);
                }
                let new = reply.body[seen..].to_vec();
                self.offset += new.len() as u64;
                Ok(LogChunk::Data(new))
            }
            416 => Ok(LogChunk::Nothing),
            403 | 404 => Ok(LogChunk::NotYet),
            _ => Err(self.client.reply_error(&self.endpoint("GET"), &reply)),
        }
    }
}

/// The first byte position of a `Content-Range: bytes START-END/TOTAL` header.
fn range_start(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let v = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

/// Splits a byte stream into lines (`\n`, a trailing `\r` dropped); invalid UTF-8 is
/// replaced, a partial last line is kept until completed or [`finish`](Self::finish)ed.
#[derive(Debug, Default, Clone)]
pub struct LineBuffer {
    partial: Vec<u8>,
}

impl LineBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the lines they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                lines.push(String::from_utf8_lossy(&line).into_owned());
            } else {
                self.partial.push(b);
            }
        }
        lines
    }

    /// The incomplete last line, if any.
    pub fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = std::mem::take(&mut self.partial);
        Some(String::from_utf8_lossy(&line).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_chunks() {
        let mut b = LineBuffer::new();
        assert!(b.push(b"ab").is_empty());
        assert_eq!(b.push(b"c\r\nde\nf"), ["abc", "de"]);
        assert_eq!(b.push(b"\xffg\n"), ["f\u{fffd}g"]);
        assert_eq!(b.finish(), None);
        b.push(b"tail");
        assert_eq!(b.finish().as_deref(), Some("tail"));
    }

    #[test]
    fn content_range_start() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(CONTENT_RANGE, "bytes 10-19/20".parse().unwrap());
        assert_eq!(range_start(&h), Some(10));
        h.insert(CONTENT_RANGE, "bytes */20".parse().unwrap());
        assert_eq!(range_start(&h), None);
    }
}
