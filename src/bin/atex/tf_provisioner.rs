//! `atex run --provisioner testingfarm:COMPOSE[@ARCH]`: machines reserved from Testing
//! Farm, with the request journal of `--journal`.

use std::path::PathBuf;
use std::sync::Arc;

use atex::provisioner::Provisioner;
use atex::provisioner::testingfarm::TestingFarmProvisioner;
use atex::testingfarm::{Client, DEFAULT_JOURNAL};

/// The options of `atex run` for `testingfarm:` provisioners.
#[derive(clap::Args, Debug)]
pub struct TfRunArgs {
    /// Journal of the Testing Farm requests a `testingfarm:` provisioner holds; after a
    /// crash, `atex tf cleanup FILE` cancels what it lists.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_JOURNAL)]
    journal: PathBuf,
    /// Testing Farm pool for `testingfarm:` provisioners (default: Testing Farm chooses).
    #[arg(long, value_name = "POOL")]
    tf_pool: Option<String>,
    /// Pipeline timeout of each Testing Farm request, in minutes: the longest a machine
    /// is held.
    #[arg(long, value_name = "MINUTES", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..))]
    tf_timeout: u32,
    /// The source address (CIDR) of the ingress rule on the public ranch (default: our
    /// public IPv4 address, looked up at ifconfig.me).
    #[arg(long, value_name = "CIDR")]
    tf_source_host: Option<String>,
}

/// What is wrong with a `testingfarm:` provisioner.
#[derive(Debug, thiserror::Error)]
pub enum TfSpecError {
    /// The spec is malformed.
    #[error("'testingfarm:{0}': expected testingfarm:COMPOSE[@ARCH]")]
    Syntax(String),
    /// The client cannot be set up (URL, token).
    #[error("cannot set up the Testing Farm client")]
    Client(#[source] atex::testingfarm::TfError),
}

/// `COMPOSE[@ARCH]` (ARCH defaults to `x86_64`).
fn parse(spec: &str) -> Result<(String, String), TfSpecError> {
    let bad = || TfSpecError::Syntax(spec.to_string());
    let (compose, arch) = match spec.rsplit_once('@') {
        Some((c, a)) => (c, a),
        None => (spec, "x86_64"),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.chars().all(|c| !c.is_whitespace() && !c.is_control())
    };
    if !ok(compose) || !ok(arch) || compose.contains('@') {
        return Err(bad());
    }
    Ok((compose.to_string(), arch.to_string()))
}

/// The provisioner of `testingfarm:SPEC` with room for `remotes` machines.
pub fn make(
    spec: &str,
    remotes: u32,
    args: &TfRunArgs,
) -> Result<Arc<dyn Provisioner>, TfSpecError> {
    let (compose, arch) = parse(spec)?;
    let client = Client::from_env().map_err(TfSpecError::Client)?;
    let mut b = TestingFarmProvisioner::builder(client, compose)
        .arch(arch)
        .max_remotes(remotes as usize)
        .timeout_minutes(args.tf_timeout)
        .journal(&args.journal);
    if let Some(pool) = &args.tf_pool {
        b = b.pool(pool);
    }
    if let Some(cidr) = &args.tf_source_host {
        b = b.source_host(cidr);
    }
    Ok(Arc::new(b.build()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_and_arch() {
        assert_eq!(
            parse("Fedora-42").unwrap(),
            ("Fedora-42".into(), "x86_64".into())
        );
        assert_eq!(
            parse("CentOS-Stream-9@aarch64").unwrap(),
            ("CentOS-Stream-9".into(), "aarch64".into())
        );
        for bad in ["", "@x86_64", "Fedora-42@", "-oops", "a b", "F@x@y"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
