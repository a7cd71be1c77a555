//! Writes a fixture machine tree: `cargo xtask fixture NAME DIR` (NAME: seed-4cpu,
//! two-socket, server-64cpu, server-256cpu, vm). Try `irqtune --root DIR show` on it.

use irqtune_test_support::MachineSpec;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(dir)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: fixture NAME DIR  (NAME: seed-4cpu, two-socket, server-64cpu, server-256cpu, vm)");
        std::process::exit(2);
    };
    let spec = match name.as_str() {
        "seed-4cpu" => MachineSpec::seed_4cpu(),
        "two-socket" => MachineSpec::two_socket_server(),
        "server-64cpu" => MachineSpec::server_64cpu(),
        "server-256cpu" => MachineSpec::server_256cpu(),
        "vm" => MachineSpec::vm(),
        other => {
            eprintln!("unknown fixture {other:?} (NAME: seed-4cpu, two-socket, server-64cpu, server-256cpu, vm)");
            std::process::exit(2);
        }
    };
    if let Err(e) = spec.write(std::path::Path::new(dir)) {
        eprintln!("writing {dir}: {e}");
        std::process::exit(1);
    }
    eprintln!("wrote the {name} machine to {dir}; try `irqtune --root {dir} show`");
}
