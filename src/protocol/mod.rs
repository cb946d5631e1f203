//! RESP on the wire: framing requests and replies, and composing respgate's own replies.
pub(crate) mod args;
pub(crate) mod int;
pub(crate) mod refusal;
mod refusal_cross_slot;
pub(crate) mod reply;
pub mod reply_scan;
pub mod scan;
pub mod value;
pub use args::{Args, OwnedArgs};
