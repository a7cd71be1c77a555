//! The NAPI topology as the machine model places it: netdev-genl's instances named by their
//! device's ifindex, each with the IRQ that schedules it (the kernel's, else its rx queue's)
//! and the CPUs it runs on (its kthread's when threaded, else its IRQ's); instances of
//! devices not looked at are dropped.

use std::path::Path;

use irq_user::{
    model::machine::{
        napi::{Napi, NapiTopology},
        Machine,
    },
    model::procfs,
    model::tree::{ReadError, Tree},
    system::sysroot::SysRoot,
};
use irqtune_test_support::MachineSpec;

/// A fixture tree whose kernel answers netdev-genl with `napis`.
struct WithNapi {
    tree: SysRoot,
    napis: Vec<Napi>,
}

impl Tree for WithNapi {
    fn root(&self) -> &Path {
        self.tree.root()
    }
    fn read(&self, rel: &str) -> Result<String, ReadError> {
        Tree::read(&self.tree, rel)
    }
    fn list(&self, rel: &str) -> Vec<String> {
        Tree::list(&self.tree, rel)
    }
    fn link_name(&self, rel: &str) -> Option<String> {
        Tree::link_name(&self.tree, rel)
    }
    fn exists(&self, rel: &str) -> bool {
        Tree::exists(&self.tree, rel)
    }
    fn napi_topology(&self) -> Option<NapiTopology> {
        Some(NapiTopology {
            source: "netdev-genl".into(),
            napis: self.napis.clone(),
        })
    }
}

#[test]
fn napis_are_named_given_their_irq_and_placed_where_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = MachineSpec::two_socket_server();
    spec.write(dir.path()).unwrap();
    let nic = spec.nics[0].name.clone();
    let put = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put(&format!("sys/class/net/{nic}/ifindex"), "7\n");
    put(
        "proc/4321/status",
        "Name:\tnapi/eth-8194\nCpus_allowed_list:\t5,9-10\n",
    );
    let plain = SysRoot::new(dir.path());
    let m0 = Machine::read(&plain).unwrap();
    assert!(
        m0.napi.is_none(),
        "a tree without a kernel has no NAPI view"
    );
    let queue_irq = |q: u32| {
        m0.nic(&nic)
            .unwrap()
            .rx
            .iter()
            .find(|r| r.index == q)
            .unwrap()
            .irq
            .unwrap()
    };
    let napi = |id, ifindex, rx: Vec<u32>, irq, pid| Napi {
        id,
        ifindex,
        rx_queues: rx,
        irq,
        pid,
        ..Napi::default()
    };
    let t = WithNapi {
        tree: SysRoot::new(dir.path()),
        napis: vec![
            // The driver did not tell netdev-genl its IRQ: the rx queue's.
            napi(8193, 7, vec![0], None, None),
            // It did (queue 2's IRQ given for queue 1: the kernel's word is taken).
            napi(8194, 7, vec![1], Some(queue_irq(2)), None),
            // Threaded: its kthread's CPUs, not the IRQ's.
            napi(8195, 7, vec![3], None, Some(4321)),
            // A device not in the tree (another namespace's, or gone): dropped.
            napi(9000, 99, vec![0], Some(1), None),
        ],
    };
    let interrupts = procfs::read_interrupts(&t).unwrap();
    let m = Machine::from_interrupts(&t, &interrupts);
    let got = &m.napi.as_ref().unwrap().napis;
    assert_eq!(
        got.iter().map(|n| n.id).collect::<Vec<_>>(),
        vec![8193, 8194, 8195]
    );
    assert!(got.iter().all(|n| n.device == nic), "{got:?}");
    let cpus_of = |irq: u32| {
        let i = m.irq(irq).unwrap();
        i.effective.clone().unwrap_or_else(|| i.affinity.clone())
    };
    assert_eq!(
        (got[0].irq, got[0].irq_from_queue),
        (Some(queue_irq(0)), true)
    );
    assert_eq!(got[0].cpus, cpus_of(queue_irq(0)));
    assert_eq!(
        (got[1].irq, got[1].irq_from_queue),
        (Some(queue_irq(2)), false)
    );
    assert_eq!(got[1].cpus, cpus_of(queue_irq(2)));
    assert_eq!(got[2].cpus, vec![5, 9, 10], "the kthread's allowed CPUs");
    // show lists them under their device.
    let text = irq_user::render::show::text(&irq_user::render::show::Shown {
        machine: &m,
        sample_secs: None,
        rates: Default::default(),
    });
    assert!(text.contains("napi 8195"), "{text}");
    assert!(text.contains("threaded (kthread pid 4321)"), "{text}");
}
