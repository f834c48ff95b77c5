//! Leftovers of killed runs: domains carrying atex's metadata, and overlay volumes named
//! like atex's, found and removed ([`find_leftovers`], [`remove_leftovers`]).
//!
//! A domain is atex's when its XML has an `<atex:instance>` metadata element
//! ([`METADATA_NS`](super::domain::METADATA_NS)); its overlay volume is named there. Volumes
//! whose name starts with `atex-` and ends in `.qcow2` in a given pool are overlays too
//! (a run killed between creating the overlay and starting the domain leaves only that);
//! with a run id, only `atex-<run>-…` ones are taken.

use super::VirtError;
use super::domain::{NAME_PREFIX, instance_metadata};
use super::transient::delete_volume;
use super::virsh::Virsh;
use crate::scope::Scope;

/// One atex domain found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftoverDomain {
    /// Domain name.
    pub name: String,
    /// Its metadata.
    pub metadata: super::domain::InstanceMetadata,
}

/// What [`find_leftovers`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// atex domains (of the run, when one was given).
    pub domains: Vec<LeftoverDomain>,
    /// Overlay volumes as `(pool, volume)`.
    pub volumes: Vec<(String, String)>,
}

impl Leftovers {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty() && self.volumes.is_empty()
    }
}

/// Finds atex domains (and their overlays) on the host, of run `run` only when given, and
/// `atex-*.qcow2` volumes in `pools`.
pub async fn find_leftovers(
    virsh: &Virsh,
    run: Option<&str>,
    pools: &[String],
    scope: &Scope,
) -> Result<Leftovers, VirtError> {
    let mut found = Leftovers::default();
    for name in virsh.list(true, false, scope).await? {
        let xml = match virsh.dumpxml(&name, false, scope).await {
            Ok(xml) => xml,
            // Gone meanwhile.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let Some(metadata) = instance_metadata(&name, &xml)? else {
            continue;
        };
        if run.is_some_and(|r| r != metadata.run) {
            continue;
        }
        if !metadata.volume.is_empty() {
            let key = (metadata.pool.clone(), metadata.volume.clone());
            if !found.volumes.contains(&key) {
                found.volumes.push(key);
            }
        }
        found.domains.push(LeftoverDomain { name, metadata });
    }
    let prefix = match run {
        Some(r) => format!("{NAME_PREFIX}{r}-"),
        None => NAME_PREFIX.to_string(),
    };
    for pool in pools {
        for vol in virsh.vol_list(pool, scope).await? {
            if vol.starts_with(&prefix) && vol.ends_with(".qcow2") {
                let key = (pool.clone(), vol);
                if !found.volumes.contains(&key) {
                    found.volumes.push(key);
                }
            }
        }
    }
    Ok(found)
}

/// Destroys every found domain, then deletes every found volume. Errors are collected;
/// everything that can be removed is.
pub async fn remove_leftovers(virsh: &Virsh, leftovers: &Leftovers, scope: &Scope) -> Vec<String> {
    let mut errors = Vec::new();
    for d in &leftovers.domains {
        match virsh.destroy(&d.name, scope).await {
            Ok(_) => tracing::info!(domain = %d.name, run = %d.metadata.run, "destroyed"),
            Err(e) => errors.push(e.to_string()),
        }
        // A persistent domain survives destroy: atex creates only transient ones, but
        // undefine a persistent one carrying our metadata too.
        if let Ok(true) = is_persistent(virsh, &d.name, scope).await
            && let Err(e) = virsh
                .run(&["undefine", "--domain", &d.name, "--nvram"], scope)
                .await
        {
            errors.push(e.to_string());
        }
    }
    for (pool, vol) in &leftovers.volumes {
        match delete_volume(virsh, pool, vol, scope).await {
            Ok(_) => tracing::info!(%pool, volume = %vol, "deleted"),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

async fn is_persistent(virsh: &Virsh, domain: &str, scope: &Scope) -> Result<bool, VirtError> {
    match virsh.run(&["dominfo", "--domain", domain], scope).await {
        Ok(out) => Ok(out
            .lines()
            .any(|l| l.starts_with("Persistent:") && l.trim_end().ends_with("yes"))),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}
