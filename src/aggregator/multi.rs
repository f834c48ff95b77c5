//! [`MultiAggregator`]: fan one ingest out to several aggregators.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Aggregator, AggregatorError, ingest_with};
use crate::fs_tree;

/// Feeds every ingest to several aggregators: all but the last get a copy of the artifacts
/// (made next to them and always removed afterwards), the last gets the original.
///
/// One failing output never costs the others a result: every child is called even when an
/// earlier one failed, and each failure is logged naming the child. When some children
/// recorded the test and others failed, the error is [`AggregatorError::Outputs`] (naming
/// each failing child; do not retry the whole ingest, the others have the test); when every
/// child failed it is the first child's error.
#[derive(Debug, Clone)]
pub struct MultiAggregator {
    children: Vec<Arc<dyn Aggregator>>,
    names: Vec<String>,
}

impl MultiAggregator {
    /// Wraps at least one aggregator.
    pub fn new(children: Vec<Arc<dyn Aggregator>>) -> Result<Self, AggregatorError> {
        if children.is_empty() {
            return Err(AggregatorError::Config(
                "MultiAggregator needs at least one aggregator".into(),
            ));
        }
        let names = (1..=children.len())
            .map(|i| format!("output {i}"))
            .collect();
        Ok(Self { children, names })
    }

    /// Wraps at least one aggregator, each with a name for errors (e.g. `junit`).
    pub fn named(children: Vec<(String, Arc<dyn Aggregator>)>) -> Result<Self, AggregatorError> {
        let (names, children): (Vec<String>, Vec<_>) = children.into_iter().unzip();
        let mut multi = Self::new(children)?;
        multi.names = names;
        Ok(multi)
    }

    /// Copies the artifacts next to them and lets `child` ingest the copy.
    async fn ingest_copy(
        child: &Arc<dyn Aggregator>,
        platform: &str,
        test: &str,
        artifacts: &Path,
        lines: Option<&[u8]>,
    ) -> Result<(), AggregatorError> {
        let parent = artifacts.parent().unwrap_or(Path::new("."));
        let copy = tempfile::Builder::new()
            .prefix("atex-multi-")
            .tempdir_in(parent)
            .map_err(|e| {
                AggregatorError::io(format!("creating a copy in {}", parent.display()), e)
            })?;
        let (src, dst) = (artifacts.to_path_buf(), copy.path().to_path_buf());
        crate::scope::spawn_blocking("multi-copy", move || fs_tree::copy_tree(&src, &dst))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| AggregatorError::io(format!("copying {}", artifacts.display()), e))?;
        ingest_with(child.as_ref(), platform, test, copy.path(), lines).await
    }

    /// Feeds every child (see the type's documentation).
    async fn ingest_all(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
        lines: Option<&[u8]>,
    ) -> Result<(), AggregatorError> {
        let Some((last, rest)) = self.children.split_last() else {
            return Ok(());
        };
        let mut failures = Vec::new();
        for (i, child) in rest.iter().enumerate() {
            if let Err(e) = Self::ingest_copy(child, platform, test, artifacts, lines).await {
                tracing::error!(output = %self.names[i], %platform, %test, error = %crate::error::chain(&e), "an output failed to record a test");
                failures.push((self.names[i].clone(), e));
            }
        }
        if let Err(e) = ingest_with(last.as_ref(), platform, test, artifacts, lines).await {
            let name = &self.names[self.names.len() - 1];
            tracing::error!(output = %name, %platform, %test, error = %crate::error::chain(&e), "an output failed to record a test");
            failures.push((name.clone(), e));
        }
        if failures.is_empty() {
            Ok(())
        } else if failures.len() == self.children.len() {
            // Nothing recorded the test: a plain failure (every one was logged above).
            Err(failures.swap_remove(0).1)
        } else {
            Err(AggregatorError::Outputs {
                total: self.children.len(),
                failures,
            })
        }
    }
}

#[async_trait]
impl Aggregator for MultiAggregator {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError> {
        self.ingest_all(platform, test, artifacts, None).await
    }

    /// Hands the lines to every child's own [`ingest_lines`](Aggregator::ingest_lines).
    async fn ingest_lines(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
        lines: &[u8],
    ) -> Result<(), AggregatorError> {
        self.ingest_all(platform, test, artifacts, Some(lines))
            .await
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        let mut first = None;
        for child in &self.children {
            if let Err(e) = child.finish().await {
                tracing::error!(aggregator = ?child, error = %crate::error::chain(&e), "finishing an aggregator failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
