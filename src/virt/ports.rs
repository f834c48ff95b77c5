//! [`PortAllocator`]: host ports for forwarded SSH, never one that is in use.
//!
//! A port is handed out only when no live clone holds it, it was not released within the
//! last [`REUSE_AFTER`] allocations (so a client never reaches a recently destroyed VM's
//! successor by mistake) and, when probing is on, it can be bound right now on the
//! forwarding address (so nothing else on the host listens there).

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::ops::RangeInclusive;

/// Allocations that must pass before a released port is handed out again.
pub const REUSE_AFTER: u64 = 200;

/// No port of the range could be handed out.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no free port in {start}-{end} on {address} ({in_use} held by live domains)")]
pub struct PortsExhausted {
    /// First port of the range.
    pub start: u16,
    /// Last port of the range.
    pub end: u16,
    /// The address ports are probed on.
    pub address: String,
    /// How many ports live domains hold.
    pub in_use: usize,
}

/// Hands out ports of a range; see the [module docs](self).
#[derive(Debug)]
pub struct PortAllocator {
    range: RangeInclusive<u16>,
    next: u16,
    in_use: HashSet<u16>,
    released_at: HashMap<u16, u64>,
    allocations: u64,
    probe: Option<String>,
}

impl PortAllocator {
    /// Ports of `range`, probed by binding them on `probe_address` (the forwarding address
    /// on this machine) unless `None` (the libvirt host is another machine).
    pub fn new(range: RangeInclusive<u16>, probe_address: Option<String>) -> Self {
        Self {
            next: *range.start(),
            range,
            in_use: HashSet::new(),
            released_at: HashMap::new(),
            allocations: 0,
            probe: probe_address,
        }
    }

    /// A port nobody holds; see the [module docs](self).
    pub fn allocate(&mut self) -> Result<u16, PortsExhausted> {
        let (start, end) = (*self.range.start(), *self.range.end());
        let len = u32::from(end - start) + 1;
        let mut candidate = self.next;
        for _ in 0..len {
            let port = candidate;
            candidate = if port >= end { start } else { port + 1 };
            if self.in_use.contains(&port) {
                continue;
            }
            if let Some(at) = self.released_at.get(&port)
                && self.allocations - at < REUSE_AFTER
            {
                continue;
            }
            if let Some(addr) = &self.probe
                && TcpListener::bind((addr.as_str(), port)).is_err()
            {
                tracing::debug!(port, "port busy on this machine, skipped");
                continue;
            }
            self.next = candidate;
            self.allocations += 1;
            self.released_at.remove(&port);
            self.in_use.insert(port);
            return Ok(port);
        }
        Err(PortsExhausted {
            start,
            end,
            address: self
                .probe
                .clone()
                .unwrap_or_else(|| "the libvirt host".into()),
            in_use: self.in_use.len(),
        })
    }

    /// Gives `port` back (its domain is gone).
    pub fn release(&mut self, port: u16) {
        if self.in_use.remove(&port) {
            self.released_at.insert(port, self.allocations);
        }
    }

    /// Ports held by live domains.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_twice_and_not_reused_early() {
        let mut a = PortAllocator::new(40000..=40004, None);
        let first: Vec<u16> = (0..5).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(first, vec![40000, 40001, 40002, 40003, 40004]);
        assert!(a.allocate().is_err());
        a.release(40002);
        // Released just now: not handed out before REUSE_AFTER more allocations.
        let err = a.allocate().unwrap_err();
        assert_eq!(err.in_use, 4);
        a.allocations += REUSE_AFTER;
        assert_eq!(a.allocate().unwrap(), 40002);
    }

    #[test]
    fn a_port_in_use_on_the_machine_is_skipped() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let mut a = PortAllocator::new(port..=port.saturating_add(1), Some("127.0.0.1".into()));
        let got = a.allocate().unwrap();
        assert_ne!(got, port);
    }
}
