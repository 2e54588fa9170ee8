//! payguard: placeholder while the crate is assembled.
#![forbid(unsafe_code)]
