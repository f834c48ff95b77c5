//! Virtual machines on libvirt (feature `libvirt`).
//!
//! Everything goes through `virsh` (and, on a shared VM host, atex's own helper) run over a
//! [`Connection`](crate::connection::Connection), so the libvirt host may be this machine or
//! any machine reachable over SSH:
//!
//! * [`virsh`]: [`Virsh`], typed errors quoting virsh's message;
//! * [`domain`]: the origin's XML as a template and the XML of one transient clone
//!   (copy-on-write overlay, forwarded SSH port, atex metadata);
//! * [`ports`]: host ports that are never handed out while in use;
//! * [`ready`]: "ready" means the guest's sshd sent its banner;
//! * [`transient`]: [`CloneFactory`] makes
//!   [`TransientDomain`]s, each held by a cleanup guard;
//! * [`cleanup`]: finds and removes what a killed run left behind, by metadata;
//! * [`helper`]: the shared VM host's helper program (`atex virt-helper`) and its client.

pub mod cleanup;
pub mod domain;
pub mod helper;
pub mod ports;
pub mod ready;
pub mod transient;
pub mod virsh;

pub use transient::{CloneConfig, CloneFactory, NetworkChoice, TransientDomain};
pub use virsh::{Virsh, VirshError};

/// Errors of virtual machine handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VirtError {
    /// A virsh call failed.
    #[error(transparent)]
    Virsh(#[from] VirshError),
    /// The origin domain does not exist.
    #[error("origin domain '{origin}' does not exist on {host}")]
    UnknownOrigin {
        /// The origin's name.
        origin: String,
        /// The libvirt host (and URI).
        host: String,
        /// virsh's answer.
        #[source]
        source: Box<VirshError>,
    },
    /// The origin domain runs; clones need it shut off (its image must not change).
    #[error("origin domain '{origin}' is {state}; it must be shut off")]
    OriginRunning {
        /// The origin's name.
        origin: String,
        /// Its state.
        state: String,
    },
    /// The origin's XML cannot be cloned.
    #[error(transparent)]
    Xml(#[from] domain::DomainXmlError),
    /// No port could be allocated.
    #[error(transparent)]
    Ports(#[from] ports::PortsExhausted),
    /// Starting the domain failed every time.
    #[error("starting domain {domain} failed after {attempts} attempts: {source}")]
    Start {
        /// The domain.
        domain: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Box<VirshError>,
    },
    /// libvirt does not accept the passt backend that was asked for
    /// ([`NetworkChoice::Passt`]).
    #[error("libvirt on {host} does not accept the passt backend: {source}")]
    PasstRejected {
        /// The libvirt host (and URI).
        host: String,
        /// virsh's answer.
        #[source]
        source: Box<VirshError>,
    },
    /// The domain started but its sshd never answered.
    #[error("domain {domain} never became reachable: {message}")]
    NeverReady {
        /// The domain.
        domain: String,
        /// What was observed.
        message: String,
    },
    /// SSH to the domain failed.
    #[error("SSH to domain {domain} failed: {source}")]
    Ssh {
        /// The domain.
        domain: String,
        /// The cause.
        #[source]
        source: crate::connection::ConnectionError,
    },
    /// Invalid settings.
    #[error("invalid settings: {0}")]
    Config(String),
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
}
