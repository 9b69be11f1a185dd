//! Measures of call quality from plain numbers, no GStreamer: jitter and
//! late chunks, the E-model's MOS, and the sender's clock skew. Where they
//! are shown (properties, messages) is the elements' business.

pub mod emodel;
pub mod jitter;
pub mod skew;

pub use jitter::Jitter;
pub use skew::SkewEstimator;
