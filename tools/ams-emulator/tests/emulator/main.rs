//! Integration tests: each test runs the real emulator binary on its own port
//! and talks to it over HTTP, with a local webhook standing in for Event Grid's subscriber.
//! One test binary holds every module so the heavy dependencies link once.

mod arm;
mod blob;
mod common;
mod delivery;
mod faults;
mod lifecycle;
mod mkio;
mod mru;
mod streaming;
