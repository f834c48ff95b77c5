//! [`MultiAggregator`]: fan one ingest out to several aggregators.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::{Aggregator, AggregatorError};
use crate::fs_tree;

/// Feeds every ingest to several aggregators: all but the last get a copy of the artifacts
/// (made next to them and always removed afterwards), the last gets the original. The first
/// error stops the fan-out and is returned.
#[derive(Debug, Clone)]
pub struct MultiAggregator {
    children: Vec<Arc<dyn Aggregator>>,
}

impl MultiAggregator {
    /// Wraps at least one aggregator.
    pub fn new(children: Vec<Arc<dyn Aggregator>>) -> Result<Self, AggregatorError> {
        if children.is_empty() {
            return Err(AggregatorError::Config(
                "MultiAggregator needs at least one aggregator".into(),
            ));
        }
        Ok(Self { children })
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
        let Some((last, rest)) = self.children.split_last() else {
            return Ok(());
        };
        let parent = artifacts.parent().unwrap_or(Path::new("."));
        for child in rest {
            let copy = tempfile::Builder::new()
                .prefix("atex-multi-")
                .tempdir_in(parent)
                .map_err(|e| {
                    AggregatorError::io(format!("creating a copy in {}", parent.display()), e)
                })?;
            let (src, dst) = (artifacts.to_path_buf(), copy.path().to_path_buf());
            crate::scope::spawn_blocking("multi-copy", move || fs_tree::copy_tree(&src, &dst))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(|e| AggregatorError::io(format!("copying {}", artifacts.display()), e))?;
            child.ingest(platform, test, copy.path()).await?;
        }
        last.ingest(platform, test, artifacts).await
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        let mut first = None;
        for child in &self.children {
            if let Err(e) = child.finish().await {
                tracing::error!(aggregator = ?child, error = %e, "finishing an aggregator failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
