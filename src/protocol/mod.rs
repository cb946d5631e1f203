//! RESP on the wire: framing requests and replies, and composing respgate's own replies.
pub mod args;
pub mod reply;
pub mod scan;
pub use args::{Args, OwnedArgs};
