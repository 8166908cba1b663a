//! Request and response bodies, one module each (shared by CLI and daemon).
pub mod request;
pub mod response;
