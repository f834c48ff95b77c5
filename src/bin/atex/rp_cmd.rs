//! `atex rp`: ReportPortal launches from the command line (start, finish, list).
//!
//! The URL, project and token come from the options or from
//! `ATEX_REPORTPORTAL_{URL,PROJECT,TOKEN}`, falling back to tmt's
//! `TMT_PLUGIN_REPORT_REPORTPORTAL_{URL,PROJECT,TOKEN}`. Prefer the environment for the
//! token: an option shows it to every user of the machine in the process list.

use std::process::ExitCode;

use atex::aggregator::reportportal::{RpClient, RpConfig, env_setting};
use atex::http_retry::RetryPolicy;
use serde_json::{Value, json};

use crate::errors::{self, CliError, Context as _};

/// Exit code: the command could not run (usage, configuration, API error).
const EXIT_ERROR: u8 = 2;

/// Connection options shared by `atex rp` and `atex report`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RpConn {
    /// ReportPortal URL (default: $ATEX_REPORTPORTAL_URL, else $TMT_PLUGIN_REPORT_REPORTPORTAL_URL).
    #[arg(long, value_name = "URL", global = true)]
    pub url: Option<String>,
    /// Project (default: $ATEX_REPORTPORTAL_PROJECT, else $TMT_PLUGIN_REPORT_REPORTPORTAL_PROJECT).
    #[arg(long, value_name = "NAME", global = true)]
    pub project: Option<String>,
    /// API token; prefer $ATEX_REPORTPORTAL_TOKEN (or $TMT_PLUGIN_REPORT_REPORTPORTAL_TOKEN):
    /// an option is visible in the process list.
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
    /// Do not verify the server's TLS certificate (self-signed instances).
    #[arg(long, global = true)]
    pub no_ssl_verify: bool,
    /// Retries of a call failing with 408, 429, 5xx or a connection error.
    #[arg(long, value_name = "N", global = true, default_value_t = 130)]
    pub max_retries: u32,
}

/// Builds a client from options, then the environment.
pub fn client(
    url: Option<&str>,
    project: Option<&str>,
    token: Option<&str>,
    ssl_verify: bool,
    max_retries: u32,
) -> Result<RpClient, CliError> {
    let pick = |given: Option<&str>, what: &str, option: &str| {
        given
            .map(str::to_string)
            .filter(|s| !s.trim().is_empty())
            .or_else(|| env_setting(what))
            .ok_or_else(|| {
                CliError::usage(format!(
                    "no ReportPortal {}: use {option} or set ATEX_REPORTPORTAL_{what}",
                    what.to_lowercase()
                ))
            })
    };
    let mut config = RpConfig::new(
        pick(url, "URL", "--url")?,
        pick(project, "PROJECT", "--project")?,
        pick(token, "TOKEN", "--token")?,
    );
    config.ssl_verify = ssl_verify;
    config.retry = RetryPolicy {
        max_retries,
        ..RetryPolicy::default()
    };
    RpClient::new(config).map_err(CliError::lib)
}

/// Arguments of `atex rp`.
#[derive(clap::Args, Debug)]
pub struct RpArgs {
    #[command(flatten)]
    conn: RpConn,
    /// What to do.
    #[command(subcommand)]
    cmd: RpCommand,
}

/// `atex rp` subcommands (upstream's names).
#[derive(clap::Subcommand, Debug)]
#[allow(clippy::enum_variant_names)]
enum RpCommand {
    /// Start a launch; prints its UUID.
    #[command(visible_alias = "start")]
    LaunchStart {
        /// Launch name.
        #[arg(short = 'n', long)]
        name: String,
        /// Launch description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Finish a launch (RP finishes whatever is still open in it).
    #[command(visible_alias = "finish")]
    LaunchFinish {
        /// Launch UUID.
        uuid: String,
    },
    /// List launches, newest first: `uuid status: name #number`.
    #[command(visible_alias = "ls")]
    LaunchList {
        /// Launches per page.
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        /// Pages to read at most.
        #[arg(long, default_value_t = 1)]
        max_pages: u32,
    },
}

async fn run_async(args: RpArgs) -> Result<(), CliError> {
    let c = &args.conn;
    let client = client(
        c.url.as_deref(),
        c.project.as_deref(),
        c.token.as_deref(),
        !c.no_ssl_verify,
        c.max_retries,
    )?;
    match args.cmd {
        RpCommand::LaunchStart { name, description } => {
            let extra = description.map(|d| json!({ "description": d }));
            let uuid = client
                .start_launch(&name, extra.as_ref())
                .await
                .context(|| format!("cannot start the launch '{name}'"))?;
            println!("{uuid}");
        }
        RpCommand::LaunchFinish { uuid } => {
            let reply = client
                .finish_launch(&uuid)
                .await
                .context(|| format!("cannot finish the launch {uuid}"))?;
            if let Some(link) = reply.get("link").and_then(Value::as_str) {
                println!("{link}");
            }
        }
        RpCommand::LaunchList {
            page_size,
            max_pages,
        } => {
            let mut page = 1;
            while page <= max_pages.max(1) {
                let reply = client
                    .list_launches(page, page_size.max(1))
                    .await
                    .context(|| "cannot list the launches")?;
                let content = reply
                    .get("content")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for l in &content {
                    let s = |k: &str| match l.get(k) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => String::new(),
                        Some(v) => v.to_string(),
                    };
                    println!(
                        "{} {}: {} #{}",
                        s("uuid"),
                        s("status"),
                        s("name"),
                        s("number")
                    );
                }
                let pages = reply
                    .pointer("/page/totalPages")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                if content.is_empty() || u64::from(page) >= pages {
                    break;
                }
                page += 1;
            }
        }
    }
    Ok(())
}

/// Runs `atex rp`.
pub fn run(args: RpArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errors::print(&CliError::failed("cannot start the async runtime", e));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(run_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errors::print(&e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}
