//! Aborting a client connection with a TCP reset, for the `reset` behaviour.

// actix-web offers no way to close a connection without answering, so each accepted socket is duplicated when the
// connection opens (kept in the connection's data, dropped with it). Disconnecting that socket by "connecting" it to
// `AF_UNSPEC` makes Linux send an RST at once and leaves the server's own handle unusable, so the server drops the
// connection without writing a byte.

use std::any::Any;

use actix_web::HttpRequest;
use actix_web::dev::Extensions;

/// A second handle on a connection's socket.
#[cfg(unix)]
#[derive(Debug)]
struct ConnSocket(std::os::fd::OwnedFd);

/// Server `on_connect` hook: keeps a handle on every TCP connection's socket.
pub(crate) fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>()
            && let Ok(handle) = stream.as_fd().try_clone_to_owned()
        {
            data.insert(ConnSocket(handle));
        }
    }
    #[cfg(not(unix))]
    let _ = (connection, data);
}

/// Aborts the connection `request` came on; false when that is not possible here.
pub(crate) fn abort_connection(request: &HttpRequest) -> bool {
    #[cfg(unix)]
    {
        let Some(ConnSocket(socket)) = request.conn_data::<ConnSocket>() else {
            return false;
        };
        if rustix::net::connect_unspec(socket).is_ok() {
            return true;
        }
        // Systems that refuse AF_UNSPEC: a zero linger turns the close into an RST, though a FIN may go first.
        let lingered = rustix::net::sockopt::set_socket_linger(socket, Some(std::time::Duration::ZERO)).is_ok();
        lingered && rustix::net::shutdown(socket, rustix::net::Shutdown::Both).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = request;
        false
    }
}
