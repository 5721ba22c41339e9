//! Round trips with random keys, as Apple's SymmetricPIRTests (`oprfRoundtrip`, `database`):
//! two blindings of one keyword differ but finalize to the same output, which matches the
//! server's direct evaluation and opens the row the database transform produced.

use sift_spir::{ConfigType, OprfClient, OprfPrivateKey, process_database, read_key_file};

#[test]
fn oprf_round_trip_matches_database_transform() {
    let mut rng = rand::thread_rng();
    let key = OprfPrivateKey::generate(&mut rng);
    let client = OprfClient::new(&key.public_key(), ConfigType::default()).unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..10u8)
        .map(|i| (vec![1, 2, 3, 4, i], vec![i; 3]))
        .collect();
    let db = process_database(&key, rows.clone()).unwrap();
    assert_eq!(db.len(), rows.len());
    for (i, (keyword, value)) in rows.iter().enumerate() {
        let q1 = client.blind(keyword, &mut rng).unwrap();
        let q2 = client.blind(keyword, &mut rng).unwrap();
        assert_ne!(q1.element(), q2.element());
        let o1 = client
            .finalize(&q1, &key.blind_evaluate(q1.element()).unwrap())
            .unwrap();
        let o2 = client
            .finalize(&q2, &key.blind_evaluate(q2.element()).unwrap())
            .unwrap();
        assert_eq!(o1, o2);
        assert_eq!(o1.output, key.evaluate(keyword).unwrap());
        assert_eq!(o1.oblivious_keyword(), &db[i].0[..]);
        assert_eq!(db[i].1.len(), value.len() + sift_spir::TAG_LEN);
        assert_eq!(&o1.decrypt(&db[i].1).unwrap(), value);
        // Another row's entry does not open with this keyword's key.
        let j = (i + 1) % rows.len();
        assert!(o1.decrypt(&db[j].1).is_err());
    }
}

#[test]
fn key_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.txt");
    let key = OprfPrivateKey::generate(&mut rand::thread_rng());
    sift_spir::write_key_file(&path, &key).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 96);
    assert_eq!(text, text.to_lowercase());
    assert_eq!(read_key_file(&path).unwrap().to_bytes(), key.to_bytes());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");
    }
    std::fs::write(&path, "abcd").unwrap();
    assert!(read_key_file(&path).is_err());
    assert!(read_key_file(&dir.path().join("missing")).is_err());
}
