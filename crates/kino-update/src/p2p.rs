//! P2P distribution (stub).
