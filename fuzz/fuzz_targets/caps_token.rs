//! Token parsing and authorization on arbitrary input: as text, as the bytes of a token,
//! and spliced into a valid token. Every input must be refused or decided, never panic.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use hypernix_caps::token::{self, Attenuation};
use hypernix_caps::{Access, Authorizer, KeyRing, Request};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    auth: Authorizer,
    valid: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::open_or_init(dir.path()).unwrap();
        let security = serde_json::from_value(serde_json::json!({
            "capabilities": { "op": {
                "resources": { "compute": { "control": true, "limits": { "maxUnits": 3 } } },
                "scope": { "labels": { "tier": "frontend" } },
                "delegation": { "allowed": true, "maxDepth": 2 } } },
            "principals": { "p": { "type": "user", "grants": [ { "capability": "op",
                "temporal": { "schedule": { "timezone": "Europe/Paris", "windows": [
                    { "startTime": "22:00", "endTime": "06:00" } ] } } } ] } }
        }))
        .unwrap();
        let issued = token::issue(&keys, &security, "p", None, chrono::Utc::now()).unwrap();
        let narrowed = token::attenuate(
            &issued.token,
            &Attenuation {
                operations: vec!["unit.start".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let valid = base64::engine::general_purpose::URL_SAFE
            .decode(narrowed)
            .unwrap();
        Fixture {
            auth: Authorizer::new(keys, &security).unwrap(),
            valid,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let req = Request::new("unit.start", Access::new("compute", "control"))
        .on("unit/web", [("tier".to_string(), "frontend".to_string())].into())
        .units(u64::from(data.first().copied().unwrap_or(1) % 5));
    let now = chrono::Utc::now();
    let text = String::from_utf8_lossy(data);
    let _ = f.auth.authorize(Some(&text), &req, now);
    let _ = token::inspect(&text);
    let _ = token::attenuate(&text, &Attenuation::default());
    let b64 = base64::engine::general_purpose::URL_SAFE.encode(data);
    let _ = f.auth.authorize(Some(&b64), &req, now);
    // Splice the input into a valid token at an offset it chooses.
    if let Some((&at, rest)) = data.split_first() {
        let mut t = f.valid.clone();
        let start = usize::from(at) * t.len() / 256;
        let end = (start + rest.len()).min(t.len());
        t[start..end].copy_from_slice(&rest[..end - start]);
        let spliced = base64::engine::general_purpose::URL_SAFE.encode(&t);
        let _ = f.auth.authorize(Some(&spliced), &req, now);
        let _ = f.auth.recheck(Some(&spliced), &req, now);
    }
});
