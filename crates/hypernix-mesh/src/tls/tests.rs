//! Unit tests: the CA's files, node certificates and join tokens.

use super::ca::{CA_CERT_FILE, CA_KEY_FILE};
use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

const LOOPBACK: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
const HOUR: Duration = Duration::from_secs(3600);

fn admit(ca: &mut ClusterCa, token: &str, now: SystemTime) -> Result<NodeCert, JoinError> {
    let key = NodeKey::generate().unwrap();
    ca.admit(token, now, &key.public_key(), 7, &LOOPBACK)
}

#[test]
fn a_saved_ca_loads_with_its_key_and_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::create("prod-1").unwrap();
    ca.save(dir.path()).unwrap();
    let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let loaded = ClusterCa::load(dir.path()).unwrap();
    assert_eq!(loaded.cluster(), "prod-1");
    assert_eq!(loaded.fingerprint(), ca.fingerprint());
    // Saved again, it is the same certificate.
    let again = tempfile::tempdir().unwrap();
    loaded.save(again.path()).unwrap();
    assert_eq!(
        ClusterCa::load(again.path()).unwrap().fingerprint(),
        ca.fingerprint()
    );
    // The loaded CA signs certificates that chain to the saved certificate.
    let key = NodeKey::generate().unwrap();
    let cert = loaded.sign(3, &LOOPBACK, &key.public_key()).unwrap();
    assert_eq!(cert.ca, *ca.certificate());
    cert.verify().unwrap();
    assert!(matches!(
        ca.save(dir.path()),
        Err(CaError::File(FileError::Exists { .. }))
    ));
}

#[test]
fn garbage_or_mismatched_ca_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    ClusterCa::create("a").unwrap().save(dir.path()).unwrap();
    let other = tempfile::tempdir().unwrap();
    ClusterCa::create("a").unwrap().save(other.path()).unwrap();

    let key = dir.path().join(CA_KEY_FILE);
    std::fs::copy(other.path().join(CA_KEY_FILE), &key).unwrap();
    let err = ClusterCa::load(dir.path()).err().unwrap();
    assert!(
        matches!(err, CaError::File(FileError::Mismatch { .. })),
        "{err}"
    );
    assert!(err.to_string().contains(CA_KEY_FILE), "{err}");

    std::fs::write(&key, "not a key").unwrap();
    let err = ClusterCa::load(dir.path()).err().unwrap();
    assert!(
        matches!(err, CaError::File(FileError::Garbage { ref path, .. }) if *path == key),
        "{err}"
    );

    std::fs::copy(other.path().join(CA_KEY_FILE), &key).unwrap();
    let cert = dir.path().join(CA_CERT_FILE);
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = ClusterCa::load(dir.path()).err().unwrap();
    assert!(
        matches!(err, CaError::File(FileError::Garbage { ref path, .. }) if *path == cert),
        "{err}"
    );
}

#[test]
fn a_saved_node_identity_loads_and_a_mismatched_one_does_not() {
    let ca = ClusterCa::create("c").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The bootstrap node may keep its identity next to the CA files.
    ca.save(dir.path()).unwrap();
    let identity = ca.node_identity(3, &LOOPBACK).unwrap();
    identity.save(dir.path()).unwrap();
    let mode = std::fs::metadata(dir.path().join(identity::NODE_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let loaded = NodeIdentity::load(dir.path()).unwrap();
    assert_eq!((loaded.node(), loaded.cluster()), (3, "c"));
    assert_eq!(
        loaded.certificate().certificate,
        identity.certificate().certificate
    );

    let other = tempfile::tempdir().unwrap();
    ca.node_identity(3, &LOOPBACK)
        .unwrap()
        .save(other.path())
        .unwrap();
    let key = dir.path().join(identity::NODE_KEY_FILE);
    std::fs::copy(other.path().join(identity::NODE_KEY_FILE), &key).unwrap();
    let err = NodeIdentity::load(dir.path()).err().unwrap();
    assert!(matches!(err, FileError::Mismatch { .. }), "{err}");

    // A CA file from another cluster CA: the certificate no longer chains to it.
    let third = tempfile::tempdir().unwrap();
    let foreign = ClusterCa::create("c").unwrap();
    foreign
        .node_identity(3, &LOOPBACK)
        .unwrap()
        .save(third.path())
        .unwrap();
    let ca_file = other.path().join(identity::NODE_CA_FILE);
    std::fs::copy(third.path().join(identity::NODE_CA_FILE), &ca_file).unwrap();
    let err = NodeIdentity::load(other.path()).err().unwrap();
    assert!(matches!(err, FileError::Garbage { .. }), "{err}");
}

#[test]
fn cluster_names_must_fit_in_a_dns_name() {
    for bad in ["", "Prod", "a.b", "-a", "a-", &"x".repeat(64)] {
        assert!(
            matches!(ClusterCa::create(bad), Err(CaError::ClusterName { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn a_node_certificate_names_its_node_and_cluster() {
    let ca = ClusterCa::create("c").unwrap();
    let identity = ca.node_identity(42, &LOOPBACK).unwrap();
    let cert = &identity.certificate().certificate;
    assert_eq!(identity::node_id_of(cert, "c"), Some(42));
    assert_eq!(identity::node_id_of(cert, "other"), None);
    assert_eq!(identity::node_name(42, "c"), "node-42.c.hypernix");
    // A certificate from another CA does not chain to this one.
    let foreign = ClusterCa::create("c")
        .unwrap()
        .node_identity(42, &LOOPBACK)
        .unwrap();
    let mut forged = foreign.certificate().clone();
    forged.ca = ca.certificate().clone();
    assert!(matches!(forged.verify(), Err(CertError::Untrusted { .. })));
}

#[test]
fn a_valid_token_admits_a_node_whose_certificate_chains_to_the_ca() {
    let mut ca = ClusterCa::create("c").unwrap();
    let now = SystemTime::now();
    let token = ca.issue_token(HOUR, now).unwrap().to_string();
    assert!(token.starts_with("hnxjoin1."), "{token}");
    let parsed = JoinToken::parse(&token).unwrap();
    assert_eq!(parsed.ca_fingerprint(), ca.fingerprint());

    let key = NodeKey::generate().unwrap();
    let cert = ca
        .admit(&token, now, &key.public_key(), 7, &LOOPBACK)
        .unwrap();
    assert_eq!(cert.node, 7);
    let identity = NodeIdentity::joined(&parsed, cert, &key).unwrap();
    assert_eq!(identity.node(), 7);
    assert_eq!(identity.cluster(), "c");
}

#[test]
fn expired_reused_tampered_and_foreign_tokens_are_refused() {
    let mut ca = ClusterCa::create("c").unwrap();
    let now = SystemTime::now();

    let token = ca.issue_token(HOUR, now).unwrap().to_string();
    let later = now + HOUR + Duration::from_secs(1);
    assert!(matches!(
        admit(&mut ca, &token, later),
        Err(JoinError::Expired { .. })
    ));

    let token = ca.issue_token(HOUR, now).unwrap().to_string();
    admit(&mut ca, &token, now).unwrap();
    assert!(matches!(admit(&mut ca, &token, now), Err(JoinError::Used)));

    let token = ca.issue_token(HOUR, now).unwrap().to_string();
    // Change one character of the secret, the fingerprint, then the expiry.
    let secret_at = "hnxjoin1.".len() + 65;
    let fingerprint_at = "hnxjoin1.".len();
    let expiry_at = token.len() - 1;
    for at in [secret_at, fingerprint_at, expiry_at] {
        let mut tampered = token.clone().into_bytes();
        tampered[at] = if tampered[at] == b'1' { b'2' } else { b'1' };
        let tampered = String::from_utf8(tampered).unwrap();
        let err = admit(&mut ca, &tampered, now).unwrap_err();
        let expected = if at == fingerprint_at {
            matches!(err, JoinError::WrongCa { .. })
        } else {
            matches!(err, JoinError::Unknown)
        };
        assert!(expected, "{tampered}: {err}");
    }
    // The untampered token still works once.
    admit(&mut ca, &token, now).unwrap();

    let mut other = ClusterCa::create("c").unwrap();
    let foreign = other.issue_token(HOUR, now).unwrap().to_string();
    assert!(matches!(
        admit(&mut ca, &foreign, now),
        Err(JoinError::WrongCa { .. })
    ));
}

#[test]
fn a_joiner_refuses_a_ca_other_than_the_one_its_token_pins() {
    let mut ca = ClusterCa::create("c").unwrap();
    let impostor = ClusterCa::create("c").unwrap();
    let token = ca.issue_token(HOUR, SystemTime::now()).unwrap();
    assert!(token.check_ca(ca.certificate()).is_ok());
    assert!(matches!(
        token.check_ca(impostor.certificate()),
        Err(JoinError::WrongCa { .. })
    ));
    let key = NodeKey::generate().unwrap();
    let cert = impostor.sign(5, &LOOPBACK, &key.public_key()).unwrap();
    assert!(matches!(
        NodeIdentity::joined(&token, cert, &key),
        Err(JoinError::WrongCa { .. })
    ));
}

#[test]
fn malformed_tokens_and_keys_are_errors() {
    let fp = "a".repeat(64);
    for bad in [
        "",
        "hnxjoin1",
        "hnxjoin2.x.y.1",
        &format!("hnxjoin1.{fp}.{fp}"),
        &format!("hnxjoin1.{fp}.{fp}.1.2"),
        &format!("hnxjoin1.{fp}.{fp}.-1"),
        &format!("hnxjoin1.{fp}.{fp}.99999999999999999999999"),
        &format!("hnxjoin1.{}.{fp}.1", "A".repeat(64)),
        &format!("hnxjoin1.{fp}.{}.1", "a".repeat(63)),
    ] {
        assert!(
            matches!(JoinToken::parse(bad), Err(JoinError::Malformed { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        NodePublicKey::from_raw(&[0; 31]),
        Err(JoinError::PublicKey { len: 31 })
    ));
}

proptest! {
    #[test]
    fn parsing_arbitrary_strings_never_panics(text in ".{0,200}", fp in "[0-9a-f]{64}") {
        let _ = JoinToken::parse(&text);
        let _ = JoinToken::parse(&format!("hnxjoin1.{fp}.{text}"));
    }
}
