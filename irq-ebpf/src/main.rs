//! irqtune's probes. Built for `bpfel-unknown-none` by irq-user/build.rs; on the host this
//! binary is an empty stub so that workspace-wide `cargo check`/`clippy` still work.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod probes;

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
