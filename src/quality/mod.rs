//! Measures of call quality from plain numbers, no GStreamer: jitter and
//! late chunks, the E-model's MOS, the sender's clock skew, and one call's meter of them. Where they
//! are shown (properties, messages) is the elements' business.

pub mod emodel;
pub mod jitter;
pub mod meter;
pub mod skew;

pub use jitter::Jitter;
pub use meter::{Figures, Meter};
pub use skew::SkewEstimator;
