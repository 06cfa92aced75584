//! The rules of a request, whatever the protocol that carries it: where
//! it goes and waiting for an instance (`route`), the one retry loop over
//! a protocol's [`attempts::Exchange`] (`attempts`), what an attempt's
//! failure or an answer's end means for the instance (`outcome`), what is
//! forwarded (`forwarding`) and what is recorded (`access`). The HTTP
//! paths (`crate::http`) and the TCP path (`crate::tcp`) only implement
//! their exchange and call these.

pub mod access;
pub mod attempts;
pub mod forwarding;
pub mod outcome;
pub mod route;
