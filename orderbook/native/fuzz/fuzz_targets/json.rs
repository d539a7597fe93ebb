//! The JSON tape (src/json.rs) on any bytes: parsed or refused, never a panic; a parsed tape is
//! walked whole (every container's children, every string decoded) without one either.
#![no_main]

use _core::json::{Node, Tape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut tape = Tape::default();
    let Ok(doc) = tape.parse(data) else { return };
    assert!(!doc.nodes.is_empty(), "a parsed document has a top value");
    assert_eq!(doc.skip(0), doc.nodes.len(), "the top value spans the tape");
    for i in 0..doc.nodes.len() {
        match doc.nodes[i] {
            Node::Obj { .. } => {
                assert_eq!(doc.items(i).count() % 2, 0, "an object's children pair up");
                for (k, _) in doc.pairs(i) {
                    assert!(matches!(doc.nodes[k], Node::Str { .. }), "an object's key is a string");
                    let _ = doc.string(k);
                }
            }
            Node::Arr { .. } => assert!(doc.items(i).all(|c| c < doc.nodes.len())),
            Node::Str { .. } => {
                let _ = doc.string(i);
            }
            _ => {}
        }
    }
});
