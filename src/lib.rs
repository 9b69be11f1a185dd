pub mod codec;
pub mod protocol;
