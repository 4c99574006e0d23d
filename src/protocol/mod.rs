//! Pure PostgreSQL framing and the few messages the proxy builds or reads.
//!
//! No I/O policy lives here (except the `PqStream` wrapper): lengths are bounded, payloads are
//! `Bytes` slices of what was read, and nothing is decoded that the proxy does not need.

pub mod frame;
pub mod messages;
pub mod params;
pub mod startup;
pub mod stream;

pub use frame::{Frame, FrameError};
pub use stream::PqStream;
