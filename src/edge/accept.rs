//! The process-wide cap checked the moment a TCP connection is accepted, before a byte of it
//! is read: at most `server.max_connections_per_ip` connections per client address, however
//! far they got (idle TCP, a TLS handshake, slow headers, plain GETs, a live relay). The
//! excess is closed at once, so one address cannot fill `server.max_connections` and lock
//! everyone else out.
//!
//! At accept time only the socket peer is known. A peer that any route lists in
//! `trusted_proxies` carries many clients, so it is exempt here; the route's own per-IP limits
//! apply to the forwarded address once the request is read, and the proxy is expected to bound
//! its own clients. IPv6 peers are counted per /64, as one subscriber usually holds one.

use std::net::IpAddr;
use std::sync::Arc;

use super::client_ip::{Cidr, mask};
use super::limits::{ConnectionTracker, IpGuard};
use super::rejection::Rejection;

/// IPv6 peers are grouped by this prefix at accept time.
const IPV6_PREFIX: u8 = 64;

/// The address a peer is counted under: IPv4 as is, IPv6 by its /64.
fn key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 => mask(v6, IPV6_PREFIX).unwrap_or(v6),
    }
}

/// The accept-time per-address cap. Build once per listener.
#[derive(Debug)]
pub struct AcceptGate {
    tracker: Option<Arc<ConnectionTracker>>,
    exempt: Vec<Cidr>,
}

/// What the gate decided for one accepted connection.
#[derive(Debug)]
#[must_use = "the connection stops being counted as soon as the slot is dropped"]
pub enum AcceptSlot {
    /// Counted against its address until dropped.
    Counted(IpGuard),
    /// Not counted: the cap is off, or the peer is a trusted proxy.
    Exempt,
}

impl AcceptGate {
    /// A gate allowing `max_per_ip` connections per address (`None`: no cap), not counting
    /// peers inside `exempt` (the routes' trusted proxies).
    pub fn new(max_per_ip: Option<u32>, exempt: Vec<Cidr>) -> Self {
        Self {
            tracker: max_per_ip.map(ConnectionTracker::new),
            exempt,
        }
    }

    /// Counts a connection from `peer`, or refuses with [`Rejection::PerIpCap`]: close it
    /// without reading from it.
    pub fn admit(&self, peer: IpAddr) -> Result<AcceptSlot, Rejection> {
        let Some(tracker) = &self.tracker else {
            return Ok(AcceptSlot::Exempt);
        };
        if self.exempt.iter().any(|net| net.contains(peer)) {
            return Ok(AcceptSlot::Exempt);
        }
        tracker.try_acquire(key(peer)).map(AcceptSlot::Counted)
    }

    /// Connections counted now for `peer`'s address (0 when exempt or uncapped).
    pub fn count(&self, peer: IpAddr) -> u32 {
        self.tracker.as_ref().map_or(0, |t| t.count(key(peer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn excess_connections_from_one_address_are_refused_until_one_ends() {
        let gate = AcceptGate::new(Some(2), Vec::new());
        let a = gate.admit(ip("192.0.2.1")).unwrap();
        let _b = gate.admit(ip("192.0.2.1")).unwrap();
        assert!(matches!(
            gate.admit(ip("192.0.2.1")),
            Err(Rejection::PerIpCap { .. })
        ));
        // Another address is unaffected.
        let _c = gate.admit(ip("192.0.2.2")).unwrap();
        drop(a);
        let _d = gate.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(gate.count(ip("192.0.2.1")), 2);
    }

    #[test]
    fn ipv6_peers_share_their_slash_64_and_mapped_ipv4_is_ipv4() {
        let gate = AcceptGate::new(Some(1), Vec::new());
        let _a = gate.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(gate.admit(ip("2001:db8:1:2:ffff::9")).is_err());
        let _b = gate.admit(ip("2001:db8:1:3::1")).unwrap();
        let _c = gate.admit(ip("198.51.100.7")).unwrap();
        assert!(gate.admit(ip("::ffff:198.51.100.7")).is_err());
    }

    #[test]
    fn trusted_proxies_and_an_uncapped_gate_count_nothing() {
        let proxies = vec!["10.0.0.0/8".parse().unwrap()];
        let gate = AcceptGate::new(Some(1), proxies);
        let slots: Vec<_> = (0..5)
            .map(|_| gate.admit(ip("10.1.2.3")).unwrap())
            .collect();
        assert!(slots.iter().all(|s| matches!(s, AcceptSlot::Exempt)));
        assert_eq!(gate.count(ip("10.1.2.3")), 0);

        let open = AcceptGate::new(None, Vec::new());
        assert!((0..5).all(|_| matches!(open.admit(ip("192.0.2.1")), Ok(AcceptSlot::Exempt))));
    }
}
