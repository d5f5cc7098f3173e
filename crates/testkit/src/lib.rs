//! Helpers for the workspace's integration tests.
//!
//! - [`Azurite`]: a private, in-memory Azurite table emulator per test, killed on drop.
//! - [`free_port`], [`unique_prefix`]: ports and table-name prefixes that do not collide.
//! - [`wait_for_line`]: wait until a spawned binary announces it is listening.
//! - [`workspace_bin`]: path of another workspace binary, built on demand.
//! - [`servicebus`]: a Service Bus namespace (REST send, duplicate detection) that records messages.
//! - [`stack`]: the whole local stack (Azurite, emulator, devhost running the handler) for tests and the drill.
//! - [`cluster`]: several function app instances on one storage account behind a front door, each of
//!   which can be killed and restarted, the way Azure Functions scales out and recycles instances.

mod azurite;
pub mod cluster;
mod process;
pub mod servicebus;
pub mod stack;

pub use azurite::{Azurite, DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME};
pub use process::{try_workspace_bin, wait_for_line, workspace_bin, workspace_root};

use std::sync::atomic::{AtomicU32, Ordering};

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process may
/// take it before the caller binds it, so callers that spawn servers retry.
///
/// # Panics
/// If no port can be bound at all (no loopback interface); see [`try_free_port`].
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// Fallible form of [`free_port`].
pub fn try_free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// A short identifier made of lowercase letters and digits, starting with a
/// letter, different on every call (also across processes). Meant as a
/// per-test prefix for table names, which must be alphanumeric.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("t{n}{}", &random[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_prefixes_are_alphanumeric_short_and_distinct() {
        let a = unique_prefix();
        let b = unique_prefix();
        assert_ne!(a, b);
        for p in [&a, &b] {
            assert!(p.starts_with(|c: char| c.is_ascii_alphabetic()));
            assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
            assert!(p.len() <= 16, "{p}");
        }
    }

    #[test]
    fn free_ports_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
