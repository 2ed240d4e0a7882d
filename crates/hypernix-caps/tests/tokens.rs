//! Issued tokens against the authorizer: what is allowed, and each bad token denied with
//! its reason.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use hypernix_caps::request::{Access, Request};
use hypernix_caps::token::{self, Attenuation};
use hypernix_caps::{Authorizer, Denial, KeyRing};
use hypernix_config::schema::security::Security;
use serde_json::json;

fn security() -> Security {
    serde_json::from_value(json!({
        "capabilities": {
            "web-operator": {
                "resources": { "compute": { "control": true, "console": true, "limits": { "maxUnits": 2 } } },
                "scope": { "labels": { "tier": "frontend" } },
                "delegation": { "allowed": true, "maxDepth": 2 }
            },
            "viewer": { "resources": { "storage": { "read": true } } },
            "admin": { "resources": { "compute": { "create": true, "delete": true } } }
        },
        "principals": {
            "alice": { "type": "user", "grants": [ { "capability": "web-operator" } ] },
            "bob": { "type": "user", "grants": [ { "capability": "viewer" } ] },
            "carol": { "type": "user", "grants": [ { "capability": "admin",
                "temporal": { "validity": { "start": "2026-01-01T00:00:00Z", "end": "2026-12-31T00:00:00Z" } } } ] },
            "dave": { "type": "user", "grants": [ { "capability": "admin",
                "temporal": { "schedule": { "timezone": "Europe/Paris",
                    "windows": [ { "days": ["monday","tuesday","wednesday","thursday","friday","saturday","sunday"],
                                   "startTime": "09:00", "endTime": "17:00" } ] } } } ] },
            "erin": { "type": "user", "grants": [ { "capability": "admin",
                "temporal": { "usage": { "maxUses": 2 } } } ] },
            "oncall": { "type": "user", "grants": [ { "capability": "admin",
                "emergency": { "breakGlass": true } } ] }
        }
    }))
    .expect("the test security section types")
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 instant")
}

fn now() -> DateTime<Utc> {
    at("2026-06-10T12:00:00Z")
}

fn setup() -> (tempfile::TempDir, Authorizer, KeyRing) {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_init(&dir.path().join("keys")).unwrap();
    let auth = Authorizer::new(keys.clone(), &security()).unwrap();
    (dir, auth, keys)
}

fn issue(keys: &KeyRing, who: &str) -> String {
    token::issue(keys, &security(), who, None, now())
        .unwrap()
        .token
}

fn front() -> BTreeMap<String, String> {
    BTreeMap::from([("tier".to_string(), "frontend".to_string())])
}

fn start(unit: &str, labels: BTreeMap<String, String>) -> Request {
    Request::new("unit.start", Access::new("compute", "control"))
        .on(unit, labels)
        .units(1)
}

fn denial(auth: &Authorizer, token: &str, req: &Request, when: DateTime<Utc>) -> Denial {
    auth.authorize(Some(token), req, when)
        .expect_err("the request must be denied")
        .reason
}

#[test]
fn a_grant_allows_its_rights_and_nothing_else() {
    let (_d, auth, keys) = setup();
    let t = issue(&keys, "alice");
    let d = auth
        .authorize(Some(&t), &start("web", front()), now())
        .unwrap();
    assert_eq!(d.principal, "alice");
    assert_eq!(d.capability, "web-operator");
    let create = Request::new("unit.create", Access::new("compute", "create"));
    assert!(matches!(
        denial(&auth, &t, &create, now()),
        Denial::NotAllowed(_)
    ));
    // Any compute right lets the holder read compute state.
    let read = Request::new("unit.list", Access::new("compute", "read"));
    assert!(auth.authorize(Some(&t), &read, now()).is_ok());
    let storage = Request::new("volume.list", Access::new("storage", "read"));
    assert!(matches!(
        denial(&auth, &t, &storage, now()),
        Denial::NotAllowed(_)
    ));
}

#[test]
fn no_token_garbage_and_truncated_tokens_are_denied() {
    let (_d, auth, keys) = setup();
    let req = start("web", front());
    assert_eq!(
        auth.authorize(None, &req, now()).unwrap_err().reason,
        Denial::Missing
    );
    for bad in ["", "garbage", "!!!!", "En0KEwoEd2Vi", "\u{0}\u{1}"] {
        assert!(
            matches!(denial(&auth, bad, &req, now()), Denial::Malformed(_)),
            "{bad:?}"
        );
    }
    let t = issue(&keys, "alice");
    let truncated = &t[..t.len() / 2];
    assert!(matches!(
        denial(&auth, truncated, &req, now()),
        Denial::Malformed(_)
    ));
}

#[test]
fn a_tampered_signature_is_denied() {
    let (_d, auth, keys) = setup();
    let t = issue(&keys, "alice");
    // Flip one character near the end (inside the last signature).
    let mut bytes = t.into_bytes();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(matches!(
        denial(&auth, &tampered, &start("web", front()), now()),
        Denial::Malformed(_)
    ));
}

#[test]
fn a_token_of_another_root_key_is_denied() {
    let (_d, auth, _keys) = setup();
    let other = tempfile::tempdir().unwrap();
    let foreign = KeyRing::open_or_init(other.path()).unwrap();
    let t = issue(&foreign, "alice");
    // Both rings call their first key 1; the signature does not verify with ours.
    assert!(matches!(
        denial(&auth, &t, &start("web", front()), now()),
        Denial::Malformed(_) | Denial::UnknownKey(_)
    ));
}

#[test]
fn validity_window_expired_and_not_yet_valid() {
    let (_d, auth, keys) = setup();
    let t = issue(&keys, "carol");
    let req = Request::new("unit.create", Access::new("compute", "create"));
    assert!(auth.authorize(Some(&t), &req, now()).is_ok());
    assert_eq!(
        denial(&auth, &t, &req, at("2027-01-02T00:00:00Z")),
        Denial::Expired
    );
    assert_eq!(
        denial(&auth, &t, &req, at("2025-12-30T00:00:00Z")),
        Denial::NotYetValid
    );
}

#[test]
fn schedule_windows_follow_the_time_zone_across_daylight_saving() {
    let (_d, auth, keys) = setup();
    let t = issue(&keys, "dave");
    let req = Request::new("unit.create", Access::new("compute", "create"));
    // 07:30 UTC is 08:30 in Paris in winter (closed) and 09:30 in summer (open); Europe/Paris
    // moved to summer time on 2026-03-29 at 01:00 UTC.
    let before = Utc.with_ymd_and_hms(2026, 3, 28, 7, 30, 0).unwrap();
    let after = Utc.with_ymd_and_hms(2026, 3, 30, 7, 30, 0).unwrap();
    assert!(matches!(
        denial(&auth, &t, &req, before),
        Denial::OutsideSchedule(_)
    ));
    assert!(auth.authorize(Some(&t), &req, after).is_ok());
    // 16:30 UTC is 17:30 local in winter (closed) and 18:30 in summer (closed).
    let evening = Utc.with_ymd_and_hms(2026, 3, 30, 16, 30, 0).unwrap();
    assert!(matches!(
        denial(&auth, &t, &req, evening),
        Denial::OutsideSchedule(_)
    ));
    // The night of the change: 00:30 UTC on 2026-03-29 is 01:30 CET, closed.
    let night = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
    assert!(matches!(
        denial(&auth, &t, &req, night),
        Denial::OutsideSchedule(_)
    ));
}

#[test]
fn delegation_narrows_and_is_bounded() {
    let (_d, auth, keys) = setup();
    let t = issue(&keys, "alice");
    let only_console = Attenuation {
        operations: vec!["unit.console".into()],
        ..Default::default()
    };
    let t1 = token::attenuate(&t, &only_console).unwrap();
    assert!(matches!(
        denial(&auth, &t1, &start("web", front()), now()),
        Denial::NotAllowed(_)
    ));
    let console = Request::new("unit.console", Access::new("compute", "console"))
        .on("web", front())
        .units(1);
    assert!(auth.authorize(Some(&t1), &console, now()).is_ok());
    let t2 = token::attenuate(&t1, &Attenuation::default()).unwrap();
    assert!(auth.authorize(Some(&t2), &console, now()).is_ok());
    let t3 = token::attenuate(&t2, &Attenuation::default()).unwrap();
    assert!(matches!(
        denial(&auth, &t3, &console, now()),
        Denial::DelegationDepth {
            depth: 3,
            max: 2,
            ..
        }
    ));
    // bob's viewer capability may not be delegated at all.
    let b = token::attenuate(&issue(&keys, "bob"), &Attenuation::default()).unwrap();
    let read = Request::new("volume.list", Access::new("storage", "read"));
    assert!(matches!(
        denial(&auth, &b, &read, now()),
        Denial::DelegationNotAllowed(_)
    ));
    // An attenuated expiry applies.
    let short = token::attenuate(
        &t,
        &Attenuation {
            expires: Some(at("2026-06-10T13:00:00Z")),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(auth.authorize(Some(&short), &console, now()).is_ok());
    assert_eq!(
        denial(&auth, &short, &console, at("2026-06-10T14:00:00Z")),
        Denial::Expired
    );
}

#[test]
fn label_scope_and_max_units() {
    let (_d, auth, keys) = setup();
    let t = issue(&keys, "alice");
    let back = BTreeMap::from([("tier".to_string(), "backend".to_string())]);
    assert!(matches!(
        denial(&auth, &t, &start("db", back), now()),
        Denial::Scope { .. }
    ));
    assert!(matches!(
        denial(&auth, &t, &start("db", BTreeMap::new()), now()),
        Denial::Scope { .. }
    ));
    let many = start("web", front()).units(3);
    assert_eq!(
        denial(&auth, &t, &many, now()),
        Denial::MaxUnits { units: 3 }
    );
    // Attenuating with a label narrows the scope further.
    let narrow = token::attenuate(
        &t,
        &Attenuation {
            labels: vec![("env".into(), "prod".into())],
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        denial(&auth, &narrow, &start("web", front()), now()),
        Denial::Scope { .. }
    ));
    let mut both = front();
    both.insert("env".into(), "prod".into());
    assert!(
        auth.authorize(Some(&narrow), &start("web", both), now())
            .is_ok()
    );
}

#[test]
fn revoked_tokens_and_their_attenuations_are_denied() {
    let (_d, auth, keys) = setup();
    let issued = token::issue(&keys, &security(), "alice", None, now()).unwrap();
    let child = token::attenuate(&issued.token, &Attenuation::default()).unwrap();
    assert!(
        auth.authorize(Some(&child), &start("web", front()), now())
            .is_ok()
    );
    auth.revoke(&issued.revocation_ids[0]);
    for t in [&issued.token, &child] {
        assert!(matches!(
            denial(&auth, t, &start("web", front()), now()),
            Denial::Revoked(_)
        ));
    }
}

#[test]
fn usage_is_counted_server_side() {
    let (_d, auth, keys) = setup();
    let t = issue(&keys, "erin");
    let req = Request::new("unit.create", Access::new("compute", "create"));
    assert!(auth.authorize(Some(&t), &req, now()).is_ok());
    assert!(auth.authorize(Some(&t), &req, now()).is_ok());
    assert!(matches!(denial(&auth, &t, &req, now()), Denial::Usage(_)));
}

#[test]
fn break_glass_grants_only_ask_for_emergency_access() {
    let (_d, auth, keys) = setup();
    let t = issue(&keys, "oncall");
    let create = Request::new("unit.create", Access::new("compute", "create"));
    assert!(matches!(
        denial(&auth, &t, &create, now()),
        Denial::NotAllowed(_)
    ));
    let ask = Request::new("caps.breakGlass", Access::new("emergency", "request"));
    let d = auth.authorize(Some(&t), &ask, now()).unwrap();
    let e = token::emergency(
        &keys,
        &security(),
        &d.principal,
        &d.capability,
        "db down",
        now(),
    )
    .unwrap();
    let d = auth.authorize(Some(&e.token), &create, now()).unwrap();
    assert_eq!(d.emergency.as_deref(), Some("db down"));
    let later = now() + token::BREAK_GLASS_TTL + chrono::Duration::seconds(1);
    assert_eq!(denial(&auth, &e.token, &create, later), Denial::Expired);
}

#[test]
fn rotated_keys_keep_old_tokens_for_the_grace_period() {
    let (dir, auth, keys) = setup();
    let old = issue(&keys, "bob");
    let mut ring = KeyRing::open(&dir.path().join("keys")).unwrap();
    ring.rotate(chrono::Duration::hours(1)).unwrap();
    auth.set_keys(ring.clone());
    let read = Request::new("volume.list", Access::new("storage", "read"));
    let real_now = Utc::now();
    assert!(auth.authorize(Some(&old), &read, real_now).is_ok());
    let new = token::issue(&ring, &security(), "bob", None, real_now)
        .unwrap()
        .token;
    assert!(auth.authorize(Some(&new), &read, real_now).is_ok());
    let after_grace = real_now + chrono::Duration::hours(2);
    assert!(matches!(
        denial(&auth, &old, &read, after_grace),
        Denial::UnknownKey(_)
    ));
}
