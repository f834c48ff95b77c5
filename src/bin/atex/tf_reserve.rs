//! `atex tf reserve`: reserve one machine, print how to log in, hold it until Ctrl-C (or
//! until the request ends), then cancel the request.

use std::path::PathBuf;

use atex::error::chain;
use atex::provisioner::testingfarm::TestingFarmProvisioner;
use atex::scope::Scope;
use atex::testingfarm::{Client, DEFAULT_JOURNAL};
use serde_json::json;

use crate::errors;

/// Arguments of `atex tf reserve`.
#[derive(clap::Args, Debug)]
pub struct ReserveArgs {
    /// Compose to install, e.g. Fedora-42 (see `atex tf composes`).
    #[arg(long)]
    compose: String,
    /// Architecture.
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// tmt hardware requirements as JSON, e.g. '{"memory": ">= 8 GiB"}'.
    #[arg(long, value_name = "JSON", value_parser = parse_hardware)]
    hardware: Option<serde_json::Value>,
    /// Testing Farm pool (default: Testing Farm chooses).
    #[arg(long)]
    pool: Option<String>,
    /// Pipeline timeout in minutes: the longest the machine is held.
    #[arg(long, value_name = "MINUTES", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..))]
    timeout: u32,
    /// Private key to log in with (KEY.pub is installed); default: a fresh key, removed
    /// when the reservation ends.
    #[arg(long, value_name = "KEY")]
    ssh_key: Option<PathBuf>,
    /// Source address (CIDR) of the ingress rule on the public ranch (default: our public
    /// IPv4 address).
    #[arg(long, value_name = "CIDR")]
    source_host: Option<String>,
    /// Journal of the request (for `atex tf cleanup` after a crash).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_JOURNAL)]
    journal: PathBuf,
}

fn parse_hardware(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("expected a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Reserves, prints the login, holds until the scope is cancelled or the request ends,
/// cancels. Exit code 0 when the machine was held and cancelled.
pub async fn run(client: &Client, scope: &Scope, args: ReserveArgs, json: bool) -> u8 {
    let mut b = TestingFarmProvisioner::builder(client.clone(), &args.compose)
        .arch(&args.arch)
        .timeout_minutes(args.timeout)
        .journal(&args.journal);
    if let Some(hw) = args.hardware {
        b = b.hardware(hw);
    }
    if let Some(pool) = &args.pool {
        b = b.pool(pool);
    }
    if let Some(key) = &args.ssh_key {
        b = b.ssh_key(key);
    }
    if let Some(cidr) = &args.source_host {
        b = b.source_host(cidr);
    }
    let tf = b.build();
    eprintln!(
        "atex tf: reserving {}@{} (Ctrl-C to give it back)",
        args.compose, args.arch
    );
    let mut held = match tf.reserve_one(scope).await {
        Ok(r) => r,
        Err(e) => {
            if scope.is_cancelled() {
                eprintln!("atex tf: interrupted; the request was cancelled");
                return 130;
            }
            errors::print(&e);
            return 2;
        }
    };
    let id = held.request.id().to_string();
    let port = tf.guest_port();
    let port_opt = if port == 22 {
        String::new()
    } else {
        format!(" -p {port}")
    };
    let ssh = format!(
        "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null{port_opt} {}@{}",
        atex::connection::shell_quote(&held.private_key.display().to_string()),
        held.guest.user,
        held.guest.host
    );
    if json {
        println!(
            "{}",
            json!({
                "request": id, "user": held.guest.user, "host": held.guest.host,
                "port": port, "key": held.private_key.display().to_string(), "ssh": ssh,
            })
        );
    } else {
        println!(
            "request {id}: guest {}@{} is ready",
            held.guest.user, held.guest.host
        );
        println!("{ssh}");
    }
    eprintln!("atex tf: holding the machine until Ctrl-C");
    let ended = loop {
        let tick = held.request.refresh_if_stale();
        let alive = tokio::select! {
            biased;
            _ = scope.cancelled() => break None,
            r = tick => r.map(|info| info.state().is_alive()),
        };
        match alive {
            Ok(true) => {}
            Ok(false) => break held.request.state().cloned(),
            Err(e) if e.is_cancelled() => break None,
            Err(e) => eprintln!("atex tf: cannot check request {id}: {}", chain(&e)),
        }
        if scope
            .run(tokio::time::sleep(client.poll_interval()))
            .await
            .is_none()
        {
            break None;
        }
    };
    let code = match &ended {
        None => 0,
        Some(state) => {
            eprintln!("atex tf: request {id} ended with state '{state}'");
            1
        }
    };
    match held.guard.release().await {
        Ok(()) => {
            eprintln!("atex tf: request {id} cancelled");
            code
        }
        Err(e) => {
            errors::print(&e);
            2
        }
    }
}
