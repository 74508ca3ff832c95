//! Unit tests of the manager's pure parts: configuration, metadata, error policy, jitter.

use super::submit::check_metadata;
use super::*;

#[test]
fn config_reads_the_batch_variables() {
    let vars = [
        ("BATCH_POLL_INTERVAL_MS", "1500"),
        ("BATCH_MAX_WAIT_HOURS", "0.5"),
        ("BATCH_RESUBMIT_DELAY_MS", "10"),
    ];
    let get = |n: &str| {
        vars.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_string())
    };
    let c = ManagerConfig::from_lookup("d", get).unwrap();
    assert_eq!(c.poll_interval, Duration::from_millis(1500));
    assert_eq!(c.max_wait, Duration::from_secs(1800));
    assert_eq!(c.resubmit_delay, Duration::from_millis(10));
    assert_eq!(c.poll_ceiling, Duration::from_secs(600));
    let d = ManagerConfig::from_lookup("d", |_| None).unwrap();
    assert_eq!(d, ManagerConfig::new("d"));
    assert_eq!(d.poll_interval, Duration::from_millis(30_000));
    assert_eq!(d.max_wait, Duration::from_secs(24 * 3600));
    for (k, v) in [
        ("BATCH_POLL_INTERVAL_MS", "soon"),
        ("BATCH_MAX_WAIT_HOURS", "-1"),
    ] {
        let err = ManagerConfig::from_lookup("d", |n| (n == k).then(|| v.to_owned()));
        assert!(err.unwrap_err().to_string().contains(k));
    }
}

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
