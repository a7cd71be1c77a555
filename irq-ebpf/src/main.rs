//! irqtune's probes. Built for `bpfel-unknown-none` by irq-user/build.rs; on the host this
//! binary is an empty stub so that workspace-wide `cargo check`/`clippy` still work.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod probes;

/// The object's license, as the kernel reads it from the `license` section: GPL-compatible
/// (kernel/bpf/core.c, license_is_gpl_compatible), which the helpers the probes call
/// (bpf_probe_read_kernel, bpf_get_current_comm) require. The probes are dual licensed MIT or
/// GPL-2.0 (LICENSE-MIT, LICENSE-GPL-2.0).
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach a panic, so this is never executed.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("irq-probes is an eBPF object; it is built for bpfel-unknown-none by irq-user");
}
