//! Host tests (see below).
