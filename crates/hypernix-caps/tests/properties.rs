//! Properties: attenuation never widens a token, and garbage never authorizes.

use std::collections::BTreeMap;

use chrono::Utc;
use hypernix_caps::token::{self, Attenuation};
use hypernix_caps::{Access, Authorizer, KeyRing, Request};
use proptest::prelude::*;

const OPS: [&str; 4] = ["unit.start", "unit.stop", "unit.console", "unit.list"];
const ACCESS: [(&str, &str); 4] = [
    ("compute", "control"),
    ("compute", "control"),
    ("compute", "console"),
    ("compute", "read"),
];

fn setup() -> (tempfile::TempDir, Authorizer, String) {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_init(dir.path()).unwrap();
    let security = serde_json::from_value(serde_json::json!({
        "capabilities": { "op": {
            "resources": { "compute": { "control": true, "console": true } },
            "scope": { "labels": { "tier": "frontend" } },
            "delegation": { "allowed": true, "maxDepth": 3 } } },
        "principals": { "p": { "type": "user", "grants": [ { "capability": "op" } ] } }
    }))
    .unwrap();
    let t = token::issue(&keys, &security, "p", None, Utc::now())
        .unwrap()
        .token;
    (dir, Authorizer::new(keys, &security).unwrap(), t)
}

fn request(op: usize, labels: &[(u8, u8)]) -> Request {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| {
            (
                ["tier", "env", "team"][*k as usize % 3].to_string(),
                format!("v{}", v % 3),
            )
        })
        .chain([("tier".to_string(), "frontend".to_string())])
        .collect();
    let (kind, action) = ACCESS[op];
    Request::new(OPS[op], Access::new(kind, action))
        .on("unit/x", labels)
        .units(1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn attenuation_never_widens(
        ops in proptest::collection::vec(0usize..4, 0..3),
        narrow in proptest::collection::vec((0u8..3, 0u8..3), 0..3),
        labels in proptest::collection::vec((0u8..3, 0u8..3), 0..3),
        op in 0usize..4,
    ) {
        let (_d, auth, t) = setup();
        let narrowed = token::attenuate(&t, &Attenuation {
            operations: ops.iter().map(|&i| OPS[i].to_string()).collect(),
            labels: narrow.iter().map(|(k, v)| (["tier", "env", "team"][*k as usize].to_string(), format!("v{v}"))).collect(),
            expires: None,
        }).unwrap();
        let req = request(op, &labels);
        let now = Utc::now();
        if auth.recheck(Some(&narrowed), &req, now).is_ok() {
            prop_assert!(auth.recheck(Some(&t), &req, now).is_ok());
        }
    }

    #[test]
    fn bytes_never_authorize(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (_d, auth, _) = setup();
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(auth.authorize(Some(&text), &request(0, &[]), Utc::now()).is_err());
    }
}
