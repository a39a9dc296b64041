//! The mount table: maps absolute guest paths to (filesystem, path within it).
