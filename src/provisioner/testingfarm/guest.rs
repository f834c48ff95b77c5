//! Finding the guest in `pipeline.log`: the API never names it, so (as upstream and
//! tft-cli) its user and address are read from the "Guest is ready" line, and logins start
//! once the reserve test runs ("starting tests execution").

use std::sync::LazyLock;

use regex::Regex;

/// `] Guest is ready: ArtemisGuest(<id>, <user>@<host>, arch=...`
static GUEST_READY: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::unwrap_used)] // a constant pattern
    Regex::new(r"\] Guest is ready: ArtemisGuest\([^,]+, ([^\s@,]+)@([^,\s]+), arch=").unwrap()
});

/// The line that says the reserve test runs (it installs our key).
const TESTS_STARTED: &str = "] starting tests execution";

/// The guest's login as the log gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAddress {
    /// The SSH user (in practice `root`).
    pub user: String,
    /// An IP address or host name.
    pub host: String,
}

/// Reads `pipeline.log` lines until the guest is known and the reserve test runs.
#[derive(Debug, Default)]
pub struct GuestScanner {
    guest: Option<GuestAddress>,
    started: bool,
}

impl GuestScanner {
    /// A scanner that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line; returns the guest once it is known and the tests started.
    pub fn feed(&mut self, line: &str) -> Option<GuestAddress> {
        if self.guest.is_none() {
            if let Some(c) = GUEST_READY.captures(line) {
                let host = c[2].trim_start_matches('[').trim_end_matches(']');
                if valid_host(host) {
                    self.guest = Some(GuestAddress {
                        user: c[1].to_string(),
                        host: host.to_string(),
                    });
                } else {
                    tracing::warn!(line, "ignoring a guest line with an unusable address");
                }
            }
        } else if line.contains(TESTS_STARTED) {
            self.started = true;
        }
        self.ready()
    }

    /// The guest, once known and the tests started.
    pub fn ready(&self) -> Option<GuestAddress> {
        self.guest.clone().filter(|_| self.started)
    }

    /// The guest, once known (the tests may not have started).
    pub fn guest(&self) -> Option<&GuestAddress> {
        self.guest.as_ref()
    }
}

/// A host name or address (never something an SSH client could read as an option).
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('-')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_then_tests_started() {
        let mut s = GuestScanner::new();
        assert_eq!(
            s.feed("[10:00:20] [+] [artemis] Guest is being provisioned"),
            None
        );
        assert_eq!(
            s.feed("[10:04:51] [+] [artemis] Guest is ready: ArtemisGuest(6a1e, root@198.51.100.23, arch=x86_64, compose=C)"),
            None
        );
        assert_eq!(s.guest().map(|g| g.host.as_str()), Some("198.51.100.23"));
        // The marker before the guest line does not count.
        assert_eq!(
            s.feed("[10:06:40] [+] [tmt] starting tests execution"),
            Some(GuestAddress {
                user: "root".into(),
                host: "198.51.100.23".into()
            })
        );
        let mut s = GuestScanner::new();
        assert_eq!(s.feed("[1] [+] [tmt] starting tests execution"), None);
        s.feed("[2] [+] [artemis] Guest is ready: ArtemisGuest(x, admin@guest.example.com, arch=s390x)");
        assert_eq!(s.ready(), None);
        assert_eq!(
            s.feed("[3] [+] [tmt] starting tests execution")
                .unwrap()
                .user,
            "admin"
        );
    }

    #[test]
    fn hostile_addresses_are_ignored() {
        let mut s = GuestScanner::new();
        s.feed("] Guest is ready: ArtemisGuest(x, root@-oProxyCommand=evil, arch=x86_64)");
        s.feed("] Guest is ready: ArtemisGuest(x, root@a;b, arch=x86_64)");
        assert!(s.guest().is_none());
    }
}
