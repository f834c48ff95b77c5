//! ReportPortal (feature `reportportal`): an API client and an aggregator that reports
//! tests as launches, items and logs.
//!
//! # Tree
//!
//! ```text
//! launch "<name>"                          POST /launch (or a rerun of an existing one)
//! └── TEST "<platform>"                    one per platform, finished with the launch
//!     └── STEP "<test>"                    retry: true when the test ran before
//!         ├── STEP "<subtest>"             hasStats: false, logs, status, note
//!         └── …
//! ```
//!
//! In flat mode ([`RpOptions::join_subtest`]) subtests are siblings of their test named
//! `<test><join><subtest>`. Statuses map as [`rp_status`]; files are logged as
//! [`default_decide_file`] says unless [`RpOptions::decide_file`] says otherwise.
//!
//! # Configuration
//!
//! The `atex` program takes the URL, project and token from options or from
//! `ATEX_REPORTPORTAL_{URL,PROJECT,TOKEN}`, falling back to tmt's
//! `TMT_PLUGIN_REPORT_REPORTPORTAL_{URL,PROJECT,TOKEN}` ([`env_setting`]).
//!
//! # Failures
//!
//! Calls are retried as the Testing Farm client's are ([`RetryPolicy`](crate::http_retry::RetryPolicy):
//! 408, 429, 5xx and connection errors; 130 retries backing off to 2 min), POSTs too. A
//! POST whose reply was lost after the server applied it may therefore create a duplicate
//! item (as upstream); a finish whose retry is refused as "already finished" counts as
//! done.
//!
//! ```no_run
//! use atex::aggregator::reportportal::{ReportPortalAggregator, RpClient, RpConfig, RpOptions};
//! use atex::aggregator::Aggregator;
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let client = RpClient::new(RpConfig::new("https://rp.example.com", "myproject", "token"))?;
//! let rp = ReportPortalAggregator::start(client, RpOptions::new_launch("nightly")).await?;
//! rp.ingest("9.6@x86_64", "/some/test", std::path::Path::new("artifacts")).await?;
//! rp.finish().await?;
//! # Ok(()) }
//! ```

mod aggregator;
mod client;
mod config;
mod endpoints;
mod error;
mod log_entry;

pub use aggregator::{
    DecideFile, DecideSubtest, FileDecision, INLINE_LIMIT, Launch, ReportPortalAggregator,
    RpOptions, default_decide_file, rp_status,
};
pub use client::RpClient;
pub use config::{ENV_PROJECT, ENV_TOKEN, ENV_URL, RpConfig, env_setting};
pub use error::RpError;
pub use log_entry::{Attachment, LogEntry, guess_mime};
