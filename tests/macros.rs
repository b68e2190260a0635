//! Compile tests of `#[resource]` and `#[subscribable]`: what must compile, and what must not,
//! with the exact diagnostics (`tests/ui/**/*.stderr`; bless with `TRYBUILD=overwrite`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
