//! The embedded eBPF object and the loader agree, both ways, without loading anything: every
//! program, map and global user space names exists in the object, and every program in the
//! object is attached by some row of the loader's table. A rename on one side only fails
//! here, in the fast tier, not in a root-only kernel test.

use std::collections::BTreeSet;

use irq_user::system::probes::{object, PROBES};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

/// Section name prefixes of program sections (aya's macros put each program in one).
const PROGRAM_SECTIONS: [&str; 6] = [
    "tp_btf/",
    "tracepoint/",
    "fentry/",
    "fexit/",
    "kprobe",
    "kretprobe",
];

struct Contents {
    programs: BTreeSet<String>,
    maps: BTreeSet<String>,
    globals: BTreeSet<String>,
    license: String,
}

fn contents() -> Contents {
    let file = object::File::parse(object()).expect("the embedded object is ELF");
    let section_name = |i: object::SectionIndex| {
        file.section_by_index(i)
            .ok()
            .and_then(|s| s.name().ok().map(str::to_string))
            .unwrap_or_default()
    };
    let mut c = Contents {
        programs: BTreeSet::new(),
        maps: BTreeSet::new(),
        globals: BTreeSet::new(),
        license: String::new(),
    };
    for sym in file.symbols() {
        let (Ok(name), Some(idx)) = (sym.name(), sym.section_index()) else {
            continue;
        };
        let section = section_name(idx);
        if PROGRAM_SECTIONS.iter().any(|p| section.starts_with(p))
            && sym.kind() == object::SymbolKind::Text
        {
            c.programs.insert(name.to_string());
        } else if section == "maps" || section == ".maps" {
            c.maps.insert(name.to_string());
        } else if section.starts_with(".rodata")
            || section.starts_with(".data")
            || section.starts_with(".bss")
        {
            c.globals.insert(name.to_string());
        }
    }
    if let Some(s) = file.section_by_name("license") {
        c.license = String::from_utf8_lossy(s.data().unwrap_or_default())
            .trim_end_matches('\0')
            .to_string();
    }
    c
}

#[test]
fn every_name_the_loader_uses_is_in_the_object() {
    let c = contents();
    assert!(!c.programs.is_empty(), "no programs found: {:?}", c.maps);
    for p in &PROBES {
        for name in p.program_names() {
            assert!(
                c.programs.contains(name),
                "{}:{} names program {name}, which the object lacks (object: {:?})",
                p.category,
                p.name,
                c.programs
            );
        }
    }
    for m in irq_ebpf::maps::ALL {
        assert!(
            c.maps.contains(m),
            "map {m} missing from the object: {:?}",
            c.maps
        );
    }
    for g in irq_ebpf::globals::ALL {
        assert!(
            c.globals.contains(g),
            "global {g} missing from the object: {:?}",
            c.globals
        );
    }
}

#[test]
fn every_program_in_the_object_is_attached_by_some_row() {
    let c = contents();
    let named: BTreeSet<&str> = PROBES.iter().flat_map(|p| p.program_names()).collect();
    let orphans: Vec<&String> = c
        .programs
        .iter()
        .filter(|p| !named.contains(p.as_str()))
        .collect();
    assert!(
        orphans.is_empty(),
        "programs no table row loads: {orphans:?}"
    );
}

#[test]
fn the_object_declares_a_gpl_compatible_license() {
    // kernel/bpf/core.c license_is_gpl_compatible().
    let ok = [
        "GPL",
        "GPL v2",
        "GPL and additional rights",
        "Dual BSD/GPL",
        "Dual MIT/GPL",
        "Dual MPL/GPL",
    ];
    let c = contents();
    assert!(
        ok.contains(&c.license.as_str()),
        "license section {:?}",
        c.license
    );
}
