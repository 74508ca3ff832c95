//! Unit tests of the manager's pure parts: metadata, error policy, jitter.

use super::submit::check_metadata;
use super::*;

#[test]
fn metadata_leaves_room_for_ours() {
    let mut m: BTreeMap<String, String> =
        (0..13).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    check_metadata(&m).unwrap();
    m.insert("k13".into(), "v".into());
    assert!(check_metadata(&m).is_err());
    for (k, v) in [
        ("", "v"),
        ("batchbeam_key", "v"),
        ("k", &"x".repeat(513)[..]),
    ] {
        assert!(
            check_metadata(&BTreeMap::from([(k.to_owned(), v.to_owned())])).is_err(),
            "{k}"
        );
    }
}

#[test]
fn only_errors_of_the_record_itself_end_it() {
    let api = |status| {
        Error::Api(Box::new(crate::ApiError {
            method: "GET".into(),
            path: "/batches/b".into(),
            status,
            error: None,
            body: String::new(),
            retry_after: None,
        }))
    };
    for status in [400, 404, 409] {
        assert!(ends_record(&api(status)), "{status}");
    }
    for status in [401, 403, 408, 429, 500, 503] {
        assert!(!ends_record(&api(status)), "{status}");
    }
    let missing = Error::io(Path::new("x"), std::io::ErrorKind::NotFound.into());
    assert!(ends_record(&missing));
    let busy = Error::io(Path::new("x"), std::io::ErrorKind::PermissionDenied.into());
    assert!(!ends_record(&busy));
    assert!(!ends_record(&Error::store("locked")));
}

#[test]
fn jitter_stays_within_a_fifth_and_above_zero() {
    for _ in 0..200 {
        let j = jitter(1000);
        assert!((800..=1200).contains(&j), "{j}");
        assert!(jitter(1) >= 1);
    }
}
