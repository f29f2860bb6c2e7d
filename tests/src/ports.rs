//! Free TCP ports for the servers the tests start, taken **below the kernel's ephemeral
//! range**.
//!
//! A port the kernel handed out for `127.0.0.1:0` is an ephemeral port: once the process
//! listening on it stops (a test that restarts a coordinator, an agent or a MariaDB server on
//! the same port), any outgoing connection of the ~130 tests running alongside may take it as
//! its local port, and the restart then finds its port in use. Ports below the ephemeral
//! range are never chosen by the kernel, so only another listener can take them; each
//! process walks them from its own offset and checks each one by binding it.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

/// The lowest port handed out: above the well-known services a test machine may run.
const LOWEST: u32 = 20_000;

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// The kernel's ephemeral range (`ip_local_port_range`), 32768–60999 when unreadable.
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// One free port on 127.0.0.1, never handed out twice by this process.
pub fn free_port() -> Result<u16> {
    let top = ephemeral_start();
    if top <= LOWEST + 1_000 {
        // An unusual ephemeral range: fall back to the kernel's choice.
        let l = TcpListener::bind("127.0.0.1:0").context("probing a free port")?;
        return Ok(l.local_addr()?.port());
    }
    let span = top - LOWEST;
    // Seeded from the pid: two test processes at once start far apart.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = u16::try_from(LOWEST + n).context("port out of range")?;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port between {LOWEST} and {top}")
}

/// `n` distinct free ports (see [`free_port`]).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    (0..n).map(|_| free_port()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports = free_ports(50).expect("ports");
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 50);
        for p in ports {
            assert!(u32::from(p) < ephemeral_start());
            TcpListener::bind(("127.0.0.1", p)).expect("bindable");
        }
    }
}
