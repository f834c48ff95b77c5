//! Podman containers as remotes (feature `podman`).
//!
//! * [`cli`]: [`Podman`], the `podman` program with its environment (a project-local
//!   `CONTAINERS_CONF`, say) and [`PodmanError`]s that quote podman's own message;
//! * [`connection`]: [`PodmanConnection`], commands and file transfers in a running
//!   container through `podman exec` (no sshd, no rsync in the image), with cancellation
//!   that kills the command's processes *inside* the container;
//! * [`provisioner`]: [`PodmanProvisioner`], one container per remote from an image,
//!   created in parallel, each held by a cleanup guard and labelled with atex's run id;
//!   a systemd variant whose containers reboot;
//! * [`cleanup`]: finds and removes the containers a killed run left, by label;
//! * `procs`: after `podman rm`, kills what a cancelled creation left of a container on
//!   this machine (conmon, `runc init`), found in `/proc` by the container's name;
//! * [`image`]: images without a registry: `podman import` of a root filesystem, and an
//!   image derived from another one with extra packages.

pub mod cleanup;
pub mod cli;
pub mod connection;
mod exec;
pub mod image;
mod procs;
pub mod provisioner;
mod transfer;

pub use cli::{Podman, PodmanError};
pub use connection::PodmanConnection;
pub use provisioner::{PodmanConfig, PodmanProvisioner, PodmanRemote};

/// The label every container of atex carries (value `1`).
pub const LABEL_ATEX: &str = "atex";
/// The label naming the run a container belongs to.
pub const LABEL_RUN: &str = "atex.run";
