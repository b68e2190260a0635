//! The client's address, as the server that accepted the connection saw it: [`ClientAddr`] is put
//! in each request's extensions by `rest_live_warp::serve`; under `warp::serve` warp's own remote
//! address is used instead.

use std::net::SocketAddr;

use warp::Filter;

/// The peer address of the TCP connection a request came on (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// A filter extracting the peer address of the request's connection, if the server knows it.
pub fn client_addr()
-> impl Filter<Extract = (Option<SocketAddr>,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<ClientAddr>()
        .and(warp::addr::remote())
        .map(|ours: Option<ClientAddr>, warps: Option<SocketAddr>| ours.map(|a| a.0).or(warps))
}
