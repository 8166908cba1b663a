//! Request and response bodies, one module each (shared by CLI and daemon), and the event stream.
pub mod event;
pub mod request;
pub mod response;
