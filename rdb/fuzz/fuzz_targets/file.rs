//! Fuzz `rdb::file::FileReader` over whole files: the input as is, and behind a valid header
//! with the checksum disabled so the body parsers see the hostile bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rdb::file::read_all(data);
    let mut f = b"REDIS0010".to_vec();
    f.extend_from_slice(data);
    if let Ok(mut r) = rdb::file::FileReader::new(&f) {
        while let Ok(Some(_)) = r.next_item() {}
    }
});
