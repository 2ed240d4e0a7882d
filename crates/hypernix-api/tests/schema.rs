//! The checked-in SDL is the contract: a change to the schema must update it.

#[test]
fn checked_in_sdl_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let checked_in = std::fs::read_to_string(&path).unwrap();
    let code = hypernix_api::sdl();
    assert!(
        checked_in == code,
        "schema.graphql differs from the code; run `hypernix api schema > {}`",
        path.display()
    );
}

#[test]
fn limits_refuse_deep_and_complex_queries_without_a_daemon() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let limits = hypernix_api::Limits {
        depth: 3,
        complexity: 5,
        ..Default::default()
    };
    let schema = hypernix_api::build(None, limits);
    let deep =
        "{ computeUnits { labels { key } } __schema { types { fields { type { name } } } } }";
    let r = rt.block_on(schema.execute(deep));
    assert!(!r.errors.is_empty());
    let msg = r.errors[0].message.to_lowercase();
    assert!(
        msg.contains("nested too deep") || msg.contains("too complex"),
        "{msg}"
    );
    for bad in [
        "{",
        "{ nosuchfield }",
        "mutation { applyConfig }",
        "subscription { events { id } } query",
        "",
    ] {
        let r = rt.block_on(schema.execute(bad));
        assert!(!r.errors.is_empty(), "{bad:?} gave no error");
    }
}
