//! Which address a request comes from: the socket peer, or, only when that peer is a trusted
//! proxy, the right-most untrusted address in the forwarding header the proxies write.
//!
//! Walking from the right matters: every proxy appends, so everything left of the first
//! untrusted hop was written by the client and can say anything. Only one header is read (the
//! one configured), because a proxy that writes `X-Forwarded-For` passes a client-made
//! `Forwarded` through untouched, and vice versa.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use serde::{Deserialize, Serialize};

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`); a bare address is a single
/// host (`/32` or `/128`). Host bits must be zero, so a typo cannot silently widen the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("{0:?} is not an IP address or CIDR network")]
    Address(String),
    /// The prefix length is not a number in range.
    #[error("prefix length must be a number from 0 to {max}")]
    Prefix {
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// The address has bits set beyond the prefix.
    #[error("host bits are set; did you mean {0}?")]
    HostBits(String),
    /// An IPv4-mapped IPv6 network; peers are compared in their IPv4 form.
    #[error("write IPv4 networks in IPv4 form")]
    Mapped,
}

impl Cidr {
    /// Whether `ip` (IPv4-mapped IPv6 counts as IPv4) is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        mask(ip.to_canonical(), self.prefix) == Some(self.network)
    }
}

/// `ip` with every bit after `prefix` cleared; `None` when `prefix` is longer than the address.
pub(crate) fn mask(ip: IpAddr, prefix: u8) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) if prefix <= 32 => {
            let bits = u32::from(a) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            Some(IpAddr::V4(Ipv4Addr::from(bits)))
        }
        IpAddr::V6(a) if prefix <= 128 => {
            let bits = u128::from(a) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            Some(IpAddr::V6(Ipv6Addr::from(bits)))
        }
        _ => None,
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address(s.into()))?;
        if matches!(addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()) {
            return Err(CidrError::Mapped);
        }
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse()
                .ok()
                .filter(|&n| n <= max)
                .ok_or(CidrError::Prefix { max })?,
            Some(_) => return Err(CidrError::Prefix { max }),
        };
        let network = mask(addr, prefix).ok_or(CidrError::Prefix { max })?;
        if network != addr {
            return Err(CidrError::HostBits(format!("{network}/{prefix}")));
        }
        Ok(Self { network, prefix })
    }
}

/// The forwarding header trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, Envoy, cloud load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// The forwarding header from a trusted proxy could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unreadable {0} header from a trusted proxy")]
pub struct ForwardedError(pub &'static str);

/// Resolves the client address of a request.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<Cidr>,
    header: ForwardedHeader,
}

impl ClientIpResolver {
    /// A resolver trusting `trusted` proxies to write `header`.
    pub fn new(trusted: Vec<Cidr>, header: ForwardedHeader) -> Self {
        Self { trusted, header }
    }

    /// The trusted proxy networks.
    pub fn trusted(&self) -> &[Cidr] {
        &self.trusted
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client address: `peer` unless `peer` is a trusted proxy, in which case the
    /// right-most untrusted address in the header (or, if every hop is trusted, the left-most).
    /// IPv4-mapped IPv6 addresses come back as IPv4.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, ForwardedError> {
        let mut client = peer.to_canonical();
        if !self.is_trusted(client) {
            return Ok(client);
        }
        let name = self.header.name();
        let values: Vec<_> = headers.get_all(name).iter().collect();
        for value in values.into_iter().rev() {
            let text = value.to_str().map_err(|_| ForwardedError(name))?;
            for entry in split_outside_quotes(text, ',').into_iter().rev() {
                let entry = entry.trim();
                if entry.is_empty() {
                    continue;
                }
                let hop = match self.header {
                    ForwardedHeader::XForwardedFor => parse_node(entry),
                    ForwardedHeader::Forwarded => forwarded_for(entry).and_then(parse_node),
                }
                .ok_or(ForwardedError(name))?
                .to_canonical();
                client = hop;
                if !self.is_trusted(hop) {
                    return Ok(hop);
                }
            }
        }
        Ok(client)
    }
}

/// Splits on `sep` except inside double-quoted strings (with `\` escapes).
fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The `for=` value of one `Forwarded` element, quotes removed.
fn forwarded_for(element: &str) -> Option<&str> {
    split_outside_quotes(element, ';')
        .into_iter()
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case("for").then(|| {
                let v = v.trim();
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
            })
        })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`. `unknown` and obfuscated names are not addresses.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    node.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
#[path = "client_ip_tests.rs"]
mod tests;
