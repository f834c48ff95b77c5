//! `atex run --provisioner virt:ORIGIN`: transient clones of a libvirt origin domain as the
//! run's remotes, and the clone settings `atex virt reserve` shares.
//!
//! The libvirt URI comes from `--virt-connect`, else `LIBVIRT_DEFAULT_URI`, else virsh's
//! own default. Every domain and overlay of a run is named `atex-<run id>-…` and carries
//! the run id in its metadata, so `atex virt cleanup --run ID` finds what a killed run
//! left.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use atex::connection::LocalConnection;
use atex::provisioner::{Provisioner, TempVirtProvisioner};
use atex::virt::{CloneConfig, Virsh};

/// Options of the `virt:` provisioner of `atex run`.
#[derive(clap::Args, Debug, Clone)]
pub struct VirtRunArgs {
    /// libvirt URI for `virt:` provisioners (default: $LIBVIRT_DEFAULT_URI, else virsh's
    /// default).
    #[arg(long = "virt-connect", value_name = "URI")]
    virt_connect: Option<String>,
    /// `dir` storage pool for the clones' overlays.
    #[arg(long = "virt-pool", value_name = "POOL", default_value = "default")]
    virt_pool: String,
    /// Private SSH key the origin's guest accepts (required for `virt:`).
    #[arg(long = "virt-key", value_name = "FILE")]
    virt_key: Option<PathBuf>,
    /// Guest user to log in as.
    #[arg(long = "virt-user", value_name = "USER", default_value = "root")]
    virt_user: String,
    /// Host ports to forward the clones' SSH from, `START-END`.
    #[arg(long = "virt-ports", value_name = "RANGE", default_value = "5100-5999",
          value_parser = parse_ports)]
    virt_ports: RangeInclusive<u16>,
    /// Cut the clones off every network but their forwarded SSH port (QEMU user
    /// networking only).
    #[arg(long = "virt-isolated")]
    virt_isolated: bool,
    /// Seconds a clone may take from start to a working SSH session.
    #[arg(long = "virt-boot-timeout", value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    virt_boot_timeout: u64,
}

/// Parses `START-END` (or a single port).
pub fn parse_ports(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("'{p}' is not a port number (1-65535)"))
    };
    let (a, b) = (port(a)?, port(b)?);
    if a > b {
        return Err(format!("port range {a}-{b} is empty"));
    }
    Ok(a..=b)
}

/// A run id safe in domain and volume names: seconds since the epoch and the process id.
pub fn new_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs:x}{:x}", std::process::id())
}

/// The libvirt URI: the option, else `LIBVIRT_DEFAULT_URI`.
pub fn libvirt_uri(option: Option<&str>) -> Option<String> {
    option
        .map(str::to_string)
        .or_else(|| std::env::var("LIBVIRT_DEFAULT_URI").ok())
        .filter(|u| !u.is_empty())
}

/// Clone settings shared by `atex run` and `atex virt reserve`.
pub struct CloneOptions<'a> {
    /// The origin domain.
    pub origin: &'a str,
    /// Overlay pool.
    pub pool: &'a str,
    /// Private key (required).
    pub key: Option<&'a PathBuf>,
    /// Guest user.
    pub user: &'a str,
    /// Port range.
    pub ports: RangeInclusive<u16>,
    /// No network but the forwarded port.
    pub isolated: bool,
    /// Boot limit.
    pub boot_timeout: Duration,
    /// Run id.
    pub run_id: String,
}

/// Builds the clone settings; an error message for a missing or unreadable key, an empty
/// origin.
pub fn clone_config(o: CloneOptions<'_>, what: &str) -> Result<CloneConfig, String> {
    if o.origin.is_empty() {
        return Err(format!("{what}: no origin domain given"));
    }
    let Some(key) = o.key else {
        return Err(format!(
            "{what}: needs the private SSH key the guest accepts (--virt-key FILE)"
        ));
    };
    if !key.is_file() {
        return Err(format!(
            "{what}: private key {} does not exist",
            key.display()
        ));
    }
    let key = std::path::absolute(key).unwrap_or_else(|_| key.clone());
    let mut cfg = CloneConfig::new(o.origin, o.pool, o.run_id, key);
    cfg.user = o.user.to_string();
    cfg.ports = o.ports;
    cfg.isolated = o.isolated;
    cfg.boot_timeout = o.boot_timeout;
    Ok(cfg)
}

/// The provisioner of a `virt:ORIGIN` spec (`rest` is what follows `virt:`), making up
/// to `remotes` clones at once.
pub fn provisioner(
    rest: &str,
    args: &VirtRunArgs,
    remotes: usize,
) -> Result<Arc<dyn Provisioner>, String> {
    let spec = format!("virt:{rest}");
    let cfg = clone_config(
        CloneOptions {
            origin: rest,
            pool: &args.virt_pool,
            key: args.virt_key.as_ref(),
            user: &args.virt_user,
            ports: args.virt_ports.clone(),
            isolated: args.virt_isolated,
            boot_timeout: Duration::from_secs(args.virt_boot_timeout),
            run_id: new_run_id(),
        },
        &spec,
    )?;
    tracing::info!(run = %cfg.run_id, origin = %cfg.origin,
        "transient domains of this run are named atex-{}-*", cfg.run_id);
    let virsh = Virsh::new(
        Arc::new(LocalConnection::new()),
        libvirt_uri(args.virt_connect.as_deref()),
    );
    Ok(Arc::new(TempVirtProvisioner::new(virsh, cfg, remotes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_or_name_the_problem() {
        assert_eq!(parse_ports("5100-5199"), Ok(5100..=5199));
        assert_eq!(parse_ports("6000"), Ok(6000..=6000));
        assert!(parse_ports("6000-5000").unwrap_err().contains("empty"));
        assert!(parse_ports("0-10").unwrap_err().contains("'0'"));
        assert!(parse_ports("x-10").unwrap_err().contains("'x'"));
    }

    #[test]
    fn run_ids_are_valid_names() {
        let id = new_run_id();
        assert!(!id.is_empty() && id.len() <= 40);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
