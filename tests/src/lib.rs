//! Helpers shared by the integration tests: image building with the real tools.
