//! Fuzz `rdb::restore` twice per input: as a whole payload (mostly stopped by the CRC check) and
//! with a valid footer appended, so the body parsers see the hostile bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rdb::restore(data);
    let mut p = data.to_vec();
    p.extend_from_slice(&7u16.to_le_bytes());
    let crc = rdb::crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    if let Ok(v) = rdb::restore(&p) {
        // Whatever we accept, we can write back and read again.
        let again = rdb::restore(&rdb::dump(&v));
        assert!(
            again.is_ok(),
            "re-dump of an accepted value failed: {again:?}"
        );
    }
});
