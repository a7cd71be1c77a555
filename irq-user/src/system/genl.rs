//! The generic netlink socket irqtune talks to the kernel's ethtool and netdev families
//! through. Opened once, in the namespace of the devices irqtune works on: with `--netns`,
//! [`open_in_current_netns`] runs while the process is inside it (a netlink socket stays in
//! the namespace it was created in).

use std::sync::{Mutex, OnceLock};

use netlink_socket2::NetlinkSocket;

static SOCKET: OnceLock<Mutex<NetlinkSocket>> = OnceLock::new();

/// Runs `f` with the socket (created on first use).
pub fn with_socket<T>(f: impl FnOnce(&mut NetlinkSocket) -> T) -> T {
    let sock = SOCKET.get_or_init(|| Mutex::new(NetlinkSocket::new()));
    let mut s = sock.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut s)
}

/// Creates the socket in the current network namespace (later calls keep it).
pub fn open_in_current_netns() {
    // Resolving a family creates the socket; what the request answers does not matter.
    let _ = crate::system::ethtool::read("lo");
}
