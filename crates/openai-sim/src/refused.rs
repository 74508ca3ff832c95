//! `RefusedPort`: a loopback address that refuses every connection, for tests of what a client
//! does when the API is unreachable.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A loopback port bound but never listened on, held while this value lives: a connection to it
/// is refused at once. Unlike the port of a listener that was bound and dropped, it cannot be
/// handed meanwhile to a server that a test running in parallel starts on port 0.
///
/// ```
/// let dead = openai_sim::RefusedPort::new().unwrap();
/// assert!(std::net::TcpStream::connect(dead.addr()).is_err());
/// assert!(dead.base_url().ends_with("/v1"));
/// ```
#[derive(Debug)]
pub struct RefusedPort {
    _socket: Socket,
    addr: SocketAddr,
}

impl RefusedPort {
    /// Binds a free loopback port without listening on it.
    pub fn new() -> std::io::Result<RefusedPort> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("not an IP socket"))?;
        Ok(RefusedPort {
            _socket: socket,
            addr,
        })
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An OpenAI base URL on it (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}
