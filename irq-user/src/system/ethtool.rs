//! The kernel's ethtool-netlink interface (generic netlink family "ethtool",
//! Documentation/networking/ethtool-netlink.rst): a NIC's channels, ring sizes and
//! coalescing, read and set.
//!
//! Through netlink-bindings, whose request and reply types are generated from the kernel's own
//! YAML specs (Documentation/netlink/specs/ethtool.yaml): every attribute of the family,
//! typed, with extended-ack errors, no C library. Weighed against rust-netlink's `ethtool`
//! crate (async only, covers channels/rings/coalesce as hand-written parsers that lag the
//! kernel), neli (generic netlink by hand: every attribute id written out here) and nlink
//! (young, one maintainer). tuned parsed the `ethtool` program's text and broke on new
//! fields for years (redhat-performance/tuned#726); a generated binding cannot drift that way.
//!
//! Through the generic netlink socket of [`crate::system::genl`], in the devices' namespace.

use std::{ffi::CString, io};

use netlink_bindings::ethtool;
use netlink_bindings::traits::NetlinkRequest;
use netlink_socket2::NetlinkSocket;

use crate::model::machine::ethtool::{
    ChannelKind, Channels, Coalesce, CoalesceParam, NicLayer, RingKind, Rings,
};

/// The request commands (include/uapi/linux/ethtool_netlink.h, "userspace to kernel"). The
/// family numbers requests and replies apart; netlink-bindings 0.3.5 numbers its ops in one
/// sequence with the notifications, so each request's command is set from the kernel's ABI
/// here (a request with its number answers EOPNOTSUPP).
const MSG_RINGS_GET: u8 = 15;
const MSG_RINGS_SET: u8 = 16;
const MSG_CHANNELS_GET: u8 = 17;
const MSG_CHANNELS_SET: u8 = 18;
const MSG_COALESCE_GET: u8 = 19;
const MSG_COALESCE_SET: u8 = 20;

use crate::system::genl::with_socket;

/// Why a part could not be read or set, in words ("not supported by the driver").
#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    #[error("not supported by the driver")]
    NotSupported,
    /// virtio-net's tx-frames (its tx NAPI switch) is one: the driver takes it only with the
    /// link down, and irqtune does not take a link down.
    #[error("refused by the driver while the interface is up (EBUSY): it takes this change only with the link down")]
    Busy,
    #[error("{0:?} is not an interface name")]
    BadName(String),
    #[error("{0}")]
    Kernel(String),
}

impl EthtoolError {
    fn of(e: impl Into<io::Error>) -> EthtoolError {
        let e: io::Error = e.into();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => EthtoolError::NotSupported,
            Some(libc::EBUSY) => EthtoolError::Busy,
            _ => EthtoolError::Kernel(e.to_string()),
        }
    }
}

fn name(iface: &str) -> Result<CString, EthtoolError> {
    if iface.is_empty() || iface.len() > 15 || iface.contains('/') {
        return Err(EthtoolError::BadName(iface.to_string()));
    }
    CString::new(iface).map_err(|_| EthtoolError::BadName(iface.to_string()))
}

/// Sends a get request and decodes its one reply.
fn get_one<R: NetlinkRequest, T>(
    sock: &mut NetlinkSocket,
    req: &R,
    decode: impl Fn(&R::ReplyType<'_>) -> T,
) -> Result<T, EthtoolError> {
    let mut reply = sock.request(req).map_err(EthtoolError::of)?;
    let mut out = None;
    while let Some(r) = reply.recv() {
        out = Some(decode(&r.map_err(EthtoolError::of)?));
    }
    out.ok_or_else(|| EthtoolError::Kernel("no reply".into()))
}

/// A `do` request of `op` for device `dev`, with the kernel's command number `cmd`.
macro_rules! get_request {
    ($op:ident, $cmd:expr, $dev:expr) => {{
        let mut req = ethtool::Request::new().$op();
        req.header_mut().cmd = $cmd;
        req.encode()
            .nested_header()
            .push_dev_name($dev)
            .end_nested();
        req
    }};
}

fn channels(sock: &mut NetlinkSocket, iface: &str) -> Result<Channels, EthtoolError> {
    let req = get_request!(op_channels_get_do, MSG_CHANNELS_GET, &name(iface)?);
    get_one(sock, &req, |a| Channels {
        combined: a.get_combined_count().ok(),
        combined_max: a.get_combined_max().ok(),
        rx: a.get_rx_count().ok(),
        rx_max: a.get_rx_max().ok(),
        tx: a.get_tx_count().ok(),
        tx_max: a.get_tx_max().ok(),
    })
}

fn rings(sock: &mut NetlinkSocket, iface: &str) -> Result<Rings, EthtoolError> {
    let req = get_request!(op_rings_get_do, MSG_RINGS_GET, &name(iface)?);
    get_one(sock, &req, |a| Rings {
        rx: a.get_rx().ok(),
        rx_max: a.get_rx_max().ok(),
        tx: a.get_tx().ok(),
        tx_max: a.get_tx_max().ok(),
    })
}

fn coalesce(sock: &mut NetlinkSocket, iface: &str) -> Result<Coalesce, EthtoolError> {
    let req = get_request!(op_coalesce_get_do, MSG_COALESCE_GET, &name(iface)?);
    // The kernel puts only the parameters the driver supports (coalesce_fill_reply).
    get_one(sock, &req, |a| Coalesce {
        adaptive_rx: a.get_use_adaptive_rx().ok().map(|v| v != 0),
        adaptive_tx: a.get_use_adaptive_tx().ok().map(|v| v != 0),
        rx_usecs: a.get_rx_usecs().ok(),
        rx_frames: a.get_rx_max_frames().ok(),
        tx_usecs: a.get_tx_usecs().ok(),
        tx_frames: a.get_tx_max_frames().ok(),
    })
}

/// Channels, rings and coalescing of `iface`; what cannot be read is said in `unavailable`.
pub fn read(iface: &str) -> NicLayer {
    with_socket(|s| {
        let mut layer = NicLayer::default();
        match channels(s, iface) {
            Ok(c) => layer.channels = Some(c),
            Err(e) => layer.unavailable.push(format!("channels: {e}")),
        }
        match rings(s, iface) {
            Ok(r) => layer.rings = Some(r),
            Err(e) => layer.unavailable.push(format!("rings: {e}")),
        }
        match coalesce(s, iface) {
            Ok(c) => layer.coalesce = Some(c),
            Err(e) => layer.unavailable.push(format!("coalesce: {e}")),
        }
        layer
    })
}

/// A value of one parameter, read back.
pub fn get(iface: &str, what: &Param) -> Result<u32, EthtoolError> {
    with_socket(|s| {
        let v = match *what {
            Param::Channels(k) => channels(s, iface)?.get(k),
            Param::Ring(k) => rings(s, iface)?.get(k),
            Param::Coalesce(p) => coalesce(s, iface)?.get(p),
        };
        v.ok_or(EthtoolError::NotSupported)
    })
}

/// One settable parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    Channels(ChannelKind),
    Ring(RingKind),
    Coalesce(CoalesceParam),
}

/// Sets one parameter (the others untouched: the kernel's set requests change only the
/// attributes present).
pub fn set(iface: &str, what: &Param, value: u32) -> Result<(), EthtoolError> {
    let dev = name(iface)?;
    with_socket(|s| {
        macro_rules! send {
            ($req:expr) => {{
                let req = $req;
                let mut reply = s.request(&req).map_err(EthtoolError::of)?;
                while let Some(r) = reply.recv() {
                    r.map_err(EthtoolError::of)?;
                }
                Ok(())
            }};
        }
        match *what {
            Param::Channels(k) => {
                let mut req = ethtool::Request::new().op_channels_set_do();
                req.header_mut().cmd = MSG_CHANNELS_SET;
                let e = req
                    .encode()
                    .nested_header()
                    .push_dev_name(&dev)
                    .end_nested();
                match k {
                    ChannelKind::Combined => e.push_combined_count(value),
                    ChannelKind::Rx => e.push_rx_count(value),
                    ChannelKind::Tx => e.push_tx_count(value),
                };
                send!(req)
            }
            Param::Ring(k) => {
                let mut req = ethtool::Request::new().op_rings_set_do();
                req.header_mut().cmd = MSG_RINGS_SET;
                let e = req
                    .encode()
                    .nested_header()
                    .push_dev_name(&dev)
                    .end_nested();
                match k {
                    RingKind::Rx => e.push_rx(value),
                    RingKind::Tx => e.push_tx(value),
                };
                send!(req)
            }
            Param::Coalesce(p) => {
                let mut req = ethtool::Request::new().op_coalesce_set_do();
                req.header_mut().cmd = MSG_COALESCE_SET;
                let e = req
                    .encode()
                    .nested_header()
                    .push_dev_name(&dev)
                    .end_nested();
                let switch = u8::from(value != 0);
                match p {
                    CoalesceParam::AdaptiveRx => e.push_use_adaptive_rx(switch),
                    CoalesceParam::AdaptiveTx => e.push_use_adaptive_tx(switch),
                    CoalesceParam::RxUsecs => e.push_rx_usecs(value),
                    CoalesceParam::RxFrames => e.push_rx_max_frames(value),
                    CoalesceParam::TxUsecs => e.push_tx_usecs(value),
                    CoalesceParam::TxFrames => e.push_tx_max_frames(value),
                };
                send!(req)
            }
        }
    })
}
