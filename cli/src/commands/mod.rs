//! The subcommands.

pub mod bulk;
pub mod fs;
