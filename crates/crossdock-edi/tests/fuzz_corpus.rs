//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) on the stable toolchain: every input the
//! fuzzers kept, and every crash they found (saved there once fixed), runs through the same
//! checks as the fuzz targets.

use std::path::Path;

#[test]
fn every_fuzz_corpus_input_passes_its_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut inputs = 0;
    for target in std::fs::read_dir(&root).expect("fuzz/corpus is in the repository") {
        let target = target.unwrap().path();
        if !target.is_dir() {
            continue;
        }
        let name = target.file_name().unwrap().to_string_lossy().to_string();
        for file in std::fs::read_dir(&target).unwrap() {
            let path = file.unwrap().path();
            // A fuzzer running alongside may be rewriting its corpus.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match name.strip_prefix("set_") {
                Some(id) => crossdock_edi::harness::set(id, &bytes),
                None => crossdock_edi::harness::input(&bytes),
            }
            inputs += 1;
        }
    }
    assert!(
        inputs >= 11,
        "only {inputs} corpus inputs under {}",
        root.display()
    );
}
