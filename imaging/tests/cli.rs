//! The `imaging` binary's shared command line (`--help`, `--version`, usage errors). Being an
//! integration test also makes `cargo test` build the binary the end-to-end tests in tests/ run.

#[test]
fn shared_options() {
    e2e::check_shared_cli(env!("CARGO_BIN_EXE_imaging"), "imaging");
}
