//! Control plane for cross-region Media Services encoding.
