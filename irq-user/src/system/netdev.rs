//! The kernel's netdev-genl family (Documentation/netlink/specs/netdev.yaml): the NAPI
//! instances (`napi-get`, Linux 6.8+) with their IRQ, kthread and deferral settings, and the
//! queues each serves (`queue-get`). Through the generic netlink socket of
//! [`crate::system::genl`], with netlink-bindings' types generated from that spec.

use std::collections::BTreeMap;

use netlink_bindings::netdev;
use netlink_socket2::NetlinkSocket;

use crate::{
    model::machine::napi::{Napi, NapiParam, NapiTopology},
    system::genl::with_socket,
};

/// NAPI instances and queue -> NAPI ids, keyed by ifindex.
fn napis(sock: &mut NetlinkSocket) -> std::io::Result<Vec<Napi>> {
    let req = netdev::Request::new().op_napi_get_dump();
    let mut reply = sock.request(&req)?;
    let mut out = Vec::new();
    while let Some(r) = reply.recv() {
        let a = r?;
        let Ok(id) = a.get_id() else { continue };
        out.push(napi(id, &a));
    }
    Ok(out)
}

/// A NAPI as napi-get answers it (dump or do).
fn napi(id: u32, a: &netdev::IterableNapi<'_>) -> Napi {
    Napi {
        id,
        ifindex: a.get_ifindex().unwrap_or(0),
        irq: a.get_irq().ok(),
        pid: a.get_pid().ok().filter(|&p| p != 0),
        threaded: a.get_threaded().ok().map(|t| t != 0),
        defer_hard_irqs: a.get_defer_hard_irqs().ok(),
        gro_flush_timeout_ns: a.get_gro_flush_timeout().ok().map(u64::from),
        irq_suspend_timeout_ns: a.get_irq_suspend_timeout().ok().map(u64::from),
        ..Napi::default()
    }
}

/// (ifindex, NAPI id) -> (rx queues, tx queues).
type QueueMap = BTreeMap<(u32, u32), (Vec<u32>, Vec<u32>)>;

fn queues(sock: &mut NetlinkSocket) -> std::io::Result<QueueMap> {
    let req = netdev::Request::new().op_queue_get_dump();
    let mut reply = sock.request(&req)?;
    let mut out = QueueMap::new();
    while let Some(r) = reply.recv() {
        let a = r?;
        let (Ok(id), Ok(ifindex), Ok(napi)) = (a.get_id(), a.get_ifindex(), a.get_napi_id()) else {
            continue;
        };
        let e = out.entry((ifindex, napi)).or_default();
        // queue-type: rx = 0, tx = 1.
        match a.get_type() {
            Ok(0) => e.0.push(id),
            Ok(1) => e.1.push(id),
            _ => {}
        }
    }
    Ok(out)
}

/// The NAPI instances of the devices in this namespace, each with its queues; the device
/// name and CPUs are the caller's to fill (from sysfs and the IRQs).
pub fn read() -> NapiTopology {
    with_socket(|s| {
        let mut list = match napis(s) {
            Ok(l) => l,
            Err(e) => {
                return NapiTopology {
                    source: format!("netdev-genl napi-get: {e} (Linux 6.8+ has it)"),
                    napis: Vec::new(),
                }
            }
        };
        // Queues: 6.8+ too; without them the NAPIs still stand.
        let q = queues(s).unwrap_or_default();
        for n in &mut list {
            if let Some((rx, tx)) = q.get(&(n.ifindex, n.id)) {
                n.rx_queues.clone_from(rx);
                n.tx_queues.clone_from(tx);
            }
        }
        list.sort_by_key(|n| (n.ifindex, n.id));
        NapiTopology {
            source: "netdev-genl".into(),
            napis: list,
        }
    })
}

/// One NAPI instance (`napi-get` by id): its device's ifindex, kthread and settings.
pub fn get(id: u32) -> std::io::Result<Napi> {
    with_socket(|s| {
        let mut req = netdev::Request::new().op_napi_get_do();
        req.encode().push_id(id);
        let mut reply = s.request(&req)?;
        let Some(r) = reply.recv() else {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        };
        Ok(napi(id, &r?))
    })
}

/// Sets one setting of one NAPI (`napi-set`, 6.13+).
pub fn set(id: u32, param: NapiParam, value: u32) -> std::io::Result<()> {
    with_socket(|s| {
        let mut req = netdev::Request::new().op_napi_set_do();
        let e = req.encode().push_id(id);
        match param {
            NapiParam::DeferHardIrqs => e.push_defer_hard_irqs(value),
            NapiParam::GroFlushTimeout => e.push_gro_flush_timeout(value),
            NapiParam::IrqSuspendTimeout => e.push_irq_suspend_timeout(value),
        };
        let mut reply = s.request(&req)?;
        while let Some(r) = reply.recv() {
            r?;
        }
        Ok(())
    })
}
