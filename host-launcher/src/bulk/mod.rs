//! Bulk jobs over many images.

pub mod df;
pub mod each;
pub mod pool;
