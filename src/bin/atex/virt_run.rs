//! `atex run --provisioner virt:ORIGIN`: transient clones of a libvirt origin domain as the
//! run's remotes, and the clone settings `atex virt reserve` shares;
//! `--provisioner shvirt:HOST_SPEC:IMAGE`: domains of a shared VM host reserved through
//! `atex virt-helper` (HOST_SPEC is `local` or `[user@]host[:port]`, reached over SSH).
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
use atex::provisioner::{
    Provisioner, SharedVirtConfig, SharedVirtProvisioner, TempVirtProvisioner,
};
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
    /// Command line of the helper on the VM host for `shvirt:` (split at white space; the
    /// libvirt URI of `--shvirt-connect` is appended).
    #[arg(
        long = "shvirt-helper",
        value_name = "CMD",
        default_value = "atex virt-helper"
    )]
    shvirt_helper: String,
    /// libvirt URI the helper uses on the VM host.
    #[arg(long = "shvirt-connect", value_name = "URI")]
    shvirt_connect: Option<String>,
    /// `dir` pool of the image and of the domains' disks on the VM host.
    #[arg(long = "shvirt-pool", value_name = "POOL", default_value = "default")]
    shvirt_pool: String,
    /// Only reserve domains whose name matches this regex in full.
    #[arg(long = "shvirt-filter", value_name = "RE")]
    shvirt_filter: Option<String>,
    /// Private SSH key the shared domains' guests accept (required for `shvirt:`).
    #[arg(long = "shvirt-key", value_name = "FILE")]
    shvirt_key: Option<PathBuf>,
    /// Private SSH key for the VM host itself (default: the usual SSH authentication).
    #[arg(long = "shvirt-host-key", value_name = "FILE")]
    shvirt_host_key: Option<PathBuf>,
    /// Address of the domains' forwarded ports (default: the VM host's address, or
    /// 127.0.0.1 for `local`).
    #[arg(long = "shvirt-domain-host", value_name = "ADDR")]
    shvirt_domain_host: Option<String>,
    /// Name of this run in the helper's `reservations` (at most 15 bytes).
    #[arg(long = "shvirt-name", value_name = "NAME")]
    shvirt_name: Option<String>,
}

/// The VM host of a `shvirt:` spec: this machine (`local`) or an SSH destination, with
/// the address its forwarded ports are reached at.
pub fn shvirt_host(
    spec: &str,
    host_key: Option<&PathBuf>,
    ssh_template: &atex::connection::ssh::SshConfig,
) -> Result<(Arc<dyn atex::connection::Connection>, String), String> {
    if spec == "local" {
        return Ok((Arc::new(LocalConnection::new()), "127.0.0.1".into()));
    }
    let dest = atex::connection::ssh::SshConfig::parse_destination(spec)
        .map_err(|e| format!("shvirt host '{spec}': {}", e.reason))?;
    let mut cfg = ssh_template.clone();
    cfg.host = dest.host;
    cfg.port = dest.port;
    cfg.user = dest.user;
    if let Some(key) = host_key {
        if !key.is_file() {
            return Err(format!("private key {} does not exist", key.display()));
        }
        cfg = cfg.key_file(key.clone());
    }
    let address = cfg.host.clone();
    Ok((Arc::new(atex::connection::SshConnection::new(cfg)), address))
}

/// Splits a `shvirt:` spec's rest into `(HOST_SPEC, IMAGE)` (at its last `:`).
pub fn split_shvirt(rest: &str) -> Result<(&str, &str), String> {
    match rest.rsplit_once(':') {
        Some((host, image)) if !host.is_empty() && !image.is_empty() => Ok((host, image)),
        _ => Err(format!(
            "provisioner 'shvirt:{rest}' must be shvirt:HOST_SPEC:IMAGE"
        )),
    }
}

/// The helper's command line: `cmd` split at white space, then the URI.
pub fn helper_argv(cmd: &str, uri: Option<&str>) -> Result<Vec<String>, String> {
    let mut argv: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
    if argv.is_empty() {
        return Err("the helper command is empty".into());
    }
    argv.extend(uri.map(str::to_string));
    Ok(argv)
}

/// The provisioner of a `shvirt:HOST_SPEC:IMAGE` spec.
pub fn shvirt_provisioner(
    rest: &str,
    args: &VirtRunArgs,
    remotes: usize,
    ssh_template: &atex::connection::ssh::SshConfig,
) -> Result<Arc<dyn Provisioner>, String> {
    let (host_spec, image) = split_shvirt(rest)?;
    let what = format!("shvirt:{rest}");
    let Some(key) = &args.shvirt_key else {
        return Err(format!(
            "{what}: needs the private SSH key the guests accept (--shvirt-key FILE)"
        ));
    };
    if !key.is_file() {
        return Err(format!(
            "{what}: private key {} does not exist",
            key.display()
        ));
    }
    let (host, address) = shvirt_host(host_spec, args.shvirt_host_key.as_ref(), ssh_template)?;
    let helper = helper_argv(&args.shvirt_helper, args.shvirt_connect.as_deref())?;
    let key = std::path::absolute(key).unwrap_or_else(|_| key.clone());
    let domain_host = args.shvirt_domain_host.clone().unwrap_or(address);
    let mut cfg = SharedVirtConfig::new(helper, image, key, domain_host);
    cfg.pool = args.shvirt_pool.clone();
    cfg.filter = args.shvirt_filter.clone();
    cfg.reserve_name = args.shvirt_name.clone();
    cfg.max_remotes = remotes;
    cfg.boot_timeout = Duration::from_secs(args.virt_boot_timeout);
    Ok(Arc::new(SharedVirtProvisioner::new(host, cfg)))
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
    fn shvirt_specs_split_at_the_last_colon() {
        assert_eq!(split_shvirt("local:img"), Ok(("local", "img")));
        assert_eq!(
            split_shvirt("root@host:2222:fedora.qcow2"),
            Ok(("root@host:2222", "fedora.qcow2"))
        );
        assert!(split_shvirt("local").is_err());
        assert!(split_shvirt("local:").is_err());
        assert_eq!(
            helper_argv("atex virt-helper --state-dir /x", Some("qemu:///system")).unwrap(),
            ["atex", "virt-helper", "--state-dir", "/x", "qemu:///system"]
        );
        assert!(helper_argv("  ", None).is_err());
    }

    #[test]
    fn run_ids_are_valid_names() {
        let id = new_run_id();
        assert!(!id.is_empty() && id.len() <= 40);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
