//! The kernel command line (`-append`): `skiff.test=...` knobs used by the test suite and
//! benchmarks. Unknown words are ignored.

/// Test behaviours selected with `skiff.test=<name>`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TestKnob {
    None,
    /// Power off as the first thing in Rust code (the benchmark's qemu floor).
    ExitAtOnce,
    /// Panic after initialisation.
    Panic,
    /// Announce a protocol version the host does not speak.
    BadVersion,
    /// Take a CPU exception (invalid opcode) after initialisation.
    Fault,
    /// Recurse until the stack overflows, after initialisation.
    StackOverflow,
}

pub fn test_knob(cmdline: &[u8]) -> TestKnob {
    for word in cmdline.split(|&b| b == b' ') {
        match word {
            b"skiff.test=exit-at-once" => return TestKnob::ExitAtOnce,
            b"skiff.test=panic" => return TestKnob::Panic,
            b"skiff.test=bad-version" => return TestKnob::BadVersion,
            b"skiff.test=fault" => return TestKnob::Fault,
            b"skiff.test=stack-overflow" => return TestKnob::StackOverflow,
            _ => {}
        }
    }
    TestKnob::None
}
