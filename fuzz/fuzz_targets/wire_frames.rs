//! Arbitrary bytes as a frame stream in both directions: reassembly and decoding must
//! never panic or allocate past MAX_FRAME.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = wire::FrameReader::new();
    let mut input = data;
    while !input.is_empty() {
        match r.push(input) {
            Ok((used, body)) => {
                input = &input[used..];
                if let Some(body) = body {
                    let _ = wire::decode::<wire::Call>(&body);
                    let _ = wire::decode::<wire::ToHost>(&body);
                }
            }
            Err(_) => break,
        }
    }
    let _ = wire::decode::<wire::Call>(data);
    let _ = wire::decode::<wire::ToHost>(data);
});
