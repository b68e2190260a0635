//! Which address a request comes from: the TCP peer's, unless the peer is a trusted proxy; then
//! the right-most address of `X-Forwarded-For` that is not itself a trusted proxy. The header is
//! never read from any other peer, since a client can write whatever it likes in it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// The client's address, from the peer's and the values of its `X-Forwarded-For` header lines
/// in order. `None` when the peer is unknown.
pub fn resolve<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?.to_canonical();
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let lines: Vec<&str> = forwarded_for.into_iter().collect();
    let mut client = peer;
    // Each proxy appends the address it got the request from: walk from the right, through the
    // trusted proxies, to the first address one of them vouches for. What lies to its left was
    // written by the client.
    for hop in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
        // Unreadable (`unknown`, garbage): the last proxy that could be trusted is the client.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// `192.0.2.1`, `2001:db8::1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`, `[2001:db8::1]`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            hop.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// The key an address is throttled by: an IPv4 address, or an IPv6 address's /64 network (one
/// host is routinely given a whole /64, so its addresses are one client).
pub fn throttle_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = nets(&["10.0.0.0/8"]);
        for peer in ["192.0.2.7", "::ffff:192.0.2.7"] {
            let got = resolve(Some(ip(peer)), ["198.51.100.1", "10.0.0.1"], &trusted);
            assert_eq!(got, Some(ip("192.0.2.7")), "{peer}");
        }
        assert_eq!(resolve(None, ["198.51.100.1"], &trusted), None);
        assert_eq!(resolve(None, [], &[]), None);
    }

    #[test]
    fn through_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let peer = Some(ip("10.0.0.2"));
        let cases: &[(&[&str], &str)] = &[
            // What the client wrote itself (the left-most) is never believed.
            (&["203.0.113.9, 198.51.100.1"], "198.51.100.1"),
            (&["203.0.113.9, 198.51.100.1, 10.0.0.3"], "198.51.100.1"),
            // Several header lines are one list, in order.
            (&["203.0.113.9", "198.51.100.1, 10.0.0.3"], "198.51.100.1"),
            (&["198.51.100.1:4711"], "198.51.100.1"),
            (&["[2001:db8::1]:4711"], "2001:db8::1"),
            (&["[2001:db8::1]"], "2001:db8::1"),
            (&["2001:db8::1, 2001:db8:ffff::5"], "2001:db8::1"),
            (&["::ffff:198.51.100.1"], "198.51.100.1"),
            // No header, or only proxies: the last proxy is the client.
            (&[], "10.0.0.2"),
            (&["10.0.0.4, 10.0.0.3"], "10.0.0.4"),
            // Unreadable hops stop the walk at the last trusted one.
            (&["198.51.100.1, unknown"], "10.0.0.2"),
            (&["198.51.100.1, 10.0.0.3, garbage, 10.0.0.4"], "10.0.0.4"),
            (&[""], "10.0.0.2"),
        ];
        for (lines, client) in cases {
            let got = resolve(peer, lines.iter().copied(), &trusted);
            assert_eq!(got, Some(ip(client)), "{lines:?}");
        }
    }

    #[test]
    fn ipv6_clients_are_throttled_by_their_64() {
        assert_eq!(
            throttle_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(throttle_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(throttle_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }
}
